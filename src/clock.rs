//! Clocks. The deployment's clock ("wall" time) schedules background work, leases and retries;
//! every rule about a PSP's objects reads that PSP's clock instead, which in a sandbox may run
//! ahead of the wall by the PSP's own offset (SPEC §11) and in production is the wall itself.
//! Timestamps are kept to whole microseconds so that what the API returns equals what both
//! databases store. The tests may move the deployment's clock forward.

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

/// A moment on a PSP's clock (`now`), with the deployment's time it was read at (`wall`).
/// Objects, events and messages are dated `now`; work and deliveries are scheduled by `wall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PspTime {
    pub now: DateTime<Utc>,
    pub wall: DateTime<Utc>,
}

impl PspTime {
    /// A PSP clock `offset_us` microseconds ahead of `wall`.
    pub fn ahead(wall: DateTime<Utc>, offset_us: i64) -> PspTime {
        PspTime { now: wall + Duration::microseconds(offset_us.max(0)), wall }
    }

    /// The offset of this PSP clock from the wall, in microseconds.
    pub fn offset_us(&self) -> i64 {
        (self.now - self.wall).num_microseconds().unwrap_or(0)
    }

    /// The same wall moment with the PSP's clock at `now` (never behind the wall).
    pub fn at(&self, now: DateTime<Utc>) -> PspTime {
        PspTime { now: now.max(self.wall), wall: self.wall }
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
