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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_forgets_keys_back_to_a_full_burst_and_keeps_the_limited() {
        let fast = Rate {
            per_second: 1_000_000,
            burst: 1,
        };
        let slow = Rate {
            per_second: 1,
            burst: 1,
        };
        let limits = Limits::new(fast, slow);
        for i in 0..10_000 {
            limits.check_key(&format!("key-{i}")).unwrap();
        }
        limits.check_user(&"alice".to_string()).unwrap();
        assert!(limits.check_user(&"alice".to_string()).is_err());
        assert_eq!(limits.keys.len(), 10_000);
        // A fast key is back to a full burst within a microsecond; the slow
        // user needs a second.
        std::thread::sleep(std::time::Duration::from_millis(5));
        limits.prune();
        assert_eq!(limits.keys.len(), 0);
        assert_eq!(limits.users.len(), 1);
        assert!(limits.check_user(&"alice".to_string()).is_err());
    }
}
