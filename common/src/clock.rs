//! The one place that reads the machine's clocks. Business code takes `now` as an argument;
//! the edges (servers, drivers, the CLI, examples and tests that measure real time) read it
//! here. `clippy.toml` forbids `Instant::now`, `SystemTime::now` and `env::set_var` everywhere
//! else, so a clock read is always visible as a call into this module.

#![allow(clippy::disallowed_methods)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The monotonic clock, now (to measure how long something took).
pub fn instant() -> Instant {
    Instant::now()
}

/// tokio's monotonic clock, now: it stands still under a paused test runtime, so timers and
/// tests agree.
pub fn tokio_instant() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The wall clock, now.
pub fn system_time() -> SystemTime {
    SystemTime::now()
}
