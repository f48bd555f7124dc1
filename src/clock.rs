//! The deployment's clock. Timestamps are kept to whole microseconds so that what the API returns
//! equals what both databases store. A sandbox (and the tests) may move it forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far this clock runs ahead of the system clock, in microseconds.
    offset_us: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now().trunc_subsecs(6);
        now + Duration::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    /// Moves the clock forward (never back) by `by`.
    pub fn advance(&self, by: Duration) {
        let us = by.num_microseconds().unwrap_or(0).max(0);
        self.offset_us.fetch_add(us, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let a = Clock::default();
        let b = a.clone();
        let before = b.now();
        a.advance(Duration::hours(2));
        assert!(b.now() - before >= Duration::hours(2));
        a.advance(Duration::hours(-5));
        assert!(b.now() - before >= Duration::hours(2));
    }
}
