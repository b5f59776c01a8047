//! A per-connection budget of inbound frames (GCRA: a sustained rate with a
//! burst), kept to 16 bytes because every connection carries one.

use std::time::{Duration, Instant};

pub struct FrameBudget {
    /// When the budget is back to empty; frames are refused while that is
    /// more than the burst allowance ahead of now.
    theoretical_arrival: Instant,
}

impl FrameBudget {
    pub fn new() -> Self {
        Self {
            theoretical_arrival: Instant::now(),
        }
    }

    /// Spends one frame; false when over the rate and burst.
    pub fn allow(&mut self, per_second: u32, burst: u32) -> bool {
        let interval = Duration::from_secs(1) / per_second.max(1);
        let tolerance = interval * burst.saturating_sub(1);
        let now = Instant::now();
        let tat = self.theoretical_arrival.max(now);
        if tat.duration_since(now) > tolerance {
            return false;
        }
        self.theoretical_arrival = tat + interval;
        true
    }
}

impl Default for FrameBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses() {
        let mut budget = FrameBudget::new();
        let allowed = (0..50).filter(|_| budget.allow(1, 10)).count();
        assert_eq!(allowed, 10);
    }
}
