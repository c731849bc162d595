//! Wall-clock helpers: every timestamp the robot records is unix seconds as f64.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, with sub-second precision.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
