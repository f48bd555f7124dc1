//! The deployment's clock. Timestamps are kept to whole microseconds so that what the API returns
//! equals what both databases store.

use chrono::{DateTime, SubsecRound, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock;

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
