//! The api layer's clock: wall-clock milliseconds that advance with tokio's clock, so they
//! never go backwards within a run and tests can drive them with a paused tokio clock.

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, read from tokio's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    /// A clock that reads the wall clock once, now, and counts on from there.
    pub fn new() -> Clock {
        Clock {
            base_ms: faas_common::clock::now_ms(),
            base: faas_common::clock::tokio_instant(),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
    }
}

impl crate::service::Clock for Clock {
    fn now_ms(&self) -> i64 {
        Clock::now_ms(self)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::new();
        let t0 = clock.now_ms();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms() - t0, 1_500);
    }
}
