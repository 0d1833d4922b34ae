//! `sleep`: waits the event's `ms` (default 50) milliseconds without using a thread.

use std::time::Duration;

use super::event::Event;
use super::{HandlerError, json_body};

/// Sleeps, then answers `{"ms":N}`.
pub async fn run(event: &Event) -> Result<Vec<u8>, HandlerError> {
    let ms = event.uint("ms", 50)?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json_body(serde_json::json!({ "ms": ms })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleeps_the_asked_time() {
        let start = faas_common::clock::tokio_instant();
        let body = run(&Event::parse(br#"{"ms":1500}"#).unwrap())
            .await
            .unwrap();
        assert_eq!(body, br#"{"ms":1500}"#);
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
    }
}
