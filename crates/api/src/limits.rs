//! Rate limits: per API key for server-to-server calls, per user for the
//! feed endpoints. A refused request gets 429 with `Retry-After` and changes
//! nothing.
//!
//! Keyed limiters keep one entry per key they have seen; `prune` (run
//! periodically) drops the entries of keys that are back to a full burst,
//! so a stream of distinct users does not grow memory forever.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Requests per second and burst of one limiter.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

pub struct Limits {
    keys: DefaultKeyedRateLimiter<String>,
    users: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn limiter(rate: Rate) -> DefaultKeyedRateLimiter<String> {
    let per_second = NonZeroU32::new(rate.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}

impl Limits {
    pub fn new(per_key: Rate, per_user: Rate) -> Self {
        Self {
            keys: limiter(per_key),
            users: limiter(per_user),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_key(&self, key: &String) -> Result<(), ApiError> {
        self.check(&self.keys, key)
    }

    pub fn check_user(&self, user: &String) -> Result<(), ApiError> {
        self.check(&self.users, user)
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<String>,
        key: &String,
    ) -> Result<(), ApiError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited(wait.as_secs() + 1)
        })
    }

    pub fn prune(&self) {
        for limiter in [&self.keys, &self.users] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
