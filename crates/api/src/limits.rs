//! Rate limits: per API key for server-to-server calls, per user for the
//! feed endpoints, and failed credentials per client address. A refused
//! request gets 429 with `Retry-After` and changes nothing.
//!
//! Keyed limiters keep one entry per key they have seen; `prune` (run
//! periodically) drops the entries of keys that are back to a full burst,
//! so a stream of distinct users does not grow memory forever.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Requests per second and burst of one limiter.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Failed credential attempts per minute (and burst) of one client.
#[derive(Clone, Copy, Debug)]
pub struct FailureRate {
    pub per_minute: u32,
    pub burst: u32,
}

pub struct RateLimits {
    keys: DefaultKeyedRateLimiter<String>,
    users: DefaultKeyedRateLimiter<String>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients over their failure limit, refused until then whatever
    /// credentials they send: a correct key must not tell itself apart.
    blocked: RwLock<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

fn limiter(rate: Rate) -> DefaultKeyedRateLimiter<String> {
    let per_second = NonZeroU32::new(rate.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}

/// The key failures are counted under: the address, or for IPv6 its /64,
/// which one host is commonly given whole.
fn failure_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
        v4 => v4,
    }
}

impl RateLimits {
    pub fn new(per_key: Rate, per_user: Rate, failures: FailureRate) -> Self {
        let per_minute = NonZeroU32::new(failures.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(failures.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            keys: limiter(per_key),
            users: limiter(per_user),
            failures: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            blocked: RwLock::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Refuses a client that is over its failed-credential limit; call
    /// before comparing anything it sent.
    pub fn check_client(&self, client: IpAddr) -> Result<(), ApiError> {
        let until = self
            .blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&failure_key(client))
            .copied();
        match until.map(|until| until.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => Err(ApiError::RateLimited(retry_after(wait))),
            _ => Ok(()),
        }
    }

    /// Counts a failed credential of `client`: returns `refusal`, or 429
    /// once the client is over its limit (and blocks it until a new attempt
    /// is allowed).
    pub fn failed(&self, client: IpAddr, refusal: ApiError) -> ApiError {
        let key = failure_key(client);
        let Err(not_until) = self.failures.check_key(&key) else {
            return refusal;
        };
        let wait = not_until.wait_time_from(self.clock.now());
        self.blocked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Instant::now() + wait);
        tracing::warn!(%key, "client over its failed-credential limit");
        ApiError::RateLimited(retry_after(wait))
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
            ApiError::RateLimited(retry_after(wait))
        })
    }

    pub fn prune(&self) {
        for limiter in [&self.keys, &self.users] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        let mut blocked = self.blocked.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }
}

/// Whole seconds to wait, rounded up (at least one): retrying earlier is
/// refused again.
fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
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
        let limits = RateLimits::new(
            fast,
            slow,
            FailureRate {
                per_minute: 1,
                burst: 1,
            },
        );
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

#[cfg(test)]
mod failure_tests {
    use super::*;

    fn limits(burst: u32) -> RateLimits {
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        RateLimits::new(
            rate,
            rate,
            FailureRate {
                per_minute: 1,
                burst,
            },
        )
    }

    #[test]
    fn a_client_over_its_failures_is_refused_until_it_may_try_again() {
        let limits = limits(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            limits.check_client(a).unwrap();
            assert!(matches!(
                limits.failed(a, ApiError::InvalidApiKey),
                ApiError::InvalidApiKey
            ));
        }
        let ApiError::RateLimited(retry) = limits.failed(a, ApiError::InvalidApiKey) else {
            panic!("the third failure within a minute is over the limit");
        };
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(matches!(
            limits.check_client(a),
            Err(ApiError::RateLimited(_))
        ));
        limits.check_client(b).unwrap();
        // Pruning keeps a blocked client blocked.
        limits.prune();
        assert!(limits.check_client(a).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        let limits = limits(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other_prefix: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _ = limits.failed(one, ApiError::InvalidApiKey);
        let _ = limits.failed(same_prefix, ApiError::InvalidApiKey);
        assert!(limits.check_client(one).is_err());
        assert!(limits.check_client(same_prefix).is_err());
        limits.check_client(other_prefix).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(failure_key(mapped), "192.0.2.9".parse::<IpAddr>().unwrap());
    }
}
