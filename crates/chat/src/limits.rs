//! Per-user rate limits of chat requests, kept per process: a user's
//! devices on one gateway share them.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{ChatError, ChatSettings};

/// Checks between two prunings of the limiters' keys.
const PRUNE_EVERY: u32 = 4096;

pub(crate) struct ChatLimits {
    messages: DefaultKeyedRateLimiter<String>,
    /// Typing and read frames.
    signals: DefaultKeyedRateLimiter<String>,
    checks: AtomicU32,
    clock: DefaultClock,
}

fn limiter(per_second: u32, burst: u32) -> DefaultKeyedRateLimiter<String> {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl ChatLimits {
    pub(crate) fn new(settings: &ChatSettings) -> Self {
        Self {
            messages: limiter(settings.message_rate, settings.message_burst),
            signals: limiter(settings.signal_rate, settings.signal_burst),
            checks: AtomicU32::new(0),
            clock: DefaultClock::default(),
        }
    }

    pub(crate) fn message(&self, user: &str) -> Result<(), ChatError> {
        self.check(&self.messages, user)
    }

    pub(crate) fn signal(&self, user: &str) -> Result<(), ChatError> {
        self.check(&self.signals, user)
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<String>,
        user: &str,
    ) -> Result<(), ChatError> {
        // Keyed limiters keep every key they saw: drop those back at a full
        // burst now and then, so passing users do not grow memory forever.
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            for limiter in [&self.messages, &self.signals] {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        limiter.check_key(&user.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ChatError::RateLimited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }
}
