//! The notification ids one connection was sent recently, so a notification
//! that arrives both from a MySQL backfill and live from Redis (in either
//! order) goes out once. Ids are tracked individually, not as a high-water
//! mark: several api nodes publish concurrently, so live ids can arrive out
//! of order, and an older id that was never sent must still go out.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long an id is remembered: well past the longest a live event can
/// trail its row (publisher retries take a few seconds).
const WINDOW: Duration = Duration::from_secs(120);
/// Most ids remembered; the oldest are forgotten first.
const MAX_IDS: usize = 4096;

#[derive(Default)]
pub struct Seen {
    ids: HashSet<u64>,
    order: VecDeque<(u64, Instant)>,
    /// The highest id sent so far.
    pub last: u64,
}

impl Seen {
    /// Records `id`; false if it was already sent.
    pub fn first_time(&mut self, id: u64) -> bool {
        let now = Instant::now();
        self.forget_older_than(now);
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((id, now));
        self.last = self.last.max(id);
        true
    }
}

impl Seen {
    /// Forgets ids sent longer than the window before `now` (and the oldest
    /// beyond the bound).
    fn forget_older_than(&mut self, now: Instant) {
        while let Some(&(old, at)) = self.order.front() {
            if self.order.len() < MAX_IDS && now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
    }

    /// Forgets what no longer needs remembering and gives back the memory
    /// a burst grew; true when nothing is left, so the caller can drop the
    /// whole set of an idle connection.
    pub fn prune(&mut self, now: Instant) -> bool {
        self.forget_older_than(now);
        if self.ids.len() * 4 < self.ids.capacity() {
            self.ids.shrink_to_fit();
            self.order.shrink_to_fit();
        }
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_ids_are_not_dropped() {
        let mut seen = Seen::default();
        assert!(seen.first_time(11));
        assert!(seen.first_time(10));
        assert!(!seen.first_time(11));
        assert!(!seen.first_time(10));
        assert_eq!(seen.last, 11);
    }

    #[test]
    fn an_idle_set_shrinks_and_empties() {
        let mut seen = Seen::default();
        for id in 0..MAX_IDS as u64 {
            seen.first_time(id);
        }
        let grown = seen.ids.capacity();
        assert!(!seen.prune(Instant::now()));
        assert!(seen.prune(Instant::now() + WINDOW));
        assert!(seen.ids.capacity() < grown / 4);
        assert!(seen.order.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut seen = Seen::default();
        for id in 0..10 * MAX_IDS as u64 {
            seen.first_time(id);
        }
        assert!(seen.ids.len() <= MAX_IDS);
        assert_eq!(seen.ids.len(), seen.order.len());
    }
}
