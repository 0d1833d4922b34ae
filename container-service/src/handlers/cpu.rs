//! `cpu`: real CPU work of a size the event sets: `rounds` (default 100000) of iterated
//! SHA-256 over a 32-byte digest, on the blocking pool, stopping early when cancelled.

use sha2::{Digest, Sha256};

use super::event::Event;
use super::{Context, HandlerError, json_body};

/// How many rounds run between two looks at the cancellation flag.
const CHECK_EVERY: u64 = 1024;

/// Iterates SHA-256 `rounds` times starting from `sha256("faas")`; `None` if cancelled.
pub fn digest(rounds: u64, cancelled: impl Fn() -> bool) -> Option<[u8; 32]> {
    let mut d: [u8; 32] = Sha256::digest(b"faas").into();
    for i in 0..rounds {
        if i % CHECK_EVERY == 0 && cancelled() {
            return None;
        }
        d = Sha256::digest(d).into();
    }
    Some(d)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Runs the rounds and answers `{"rounds":N,"digest":"<hex>"}`.
pub async fn run(event: &Event, ctx: &Context) -> Result<Vec<u8>, HandlerError> {
    let rounds = event.uint("rounds", 100_000)?;
    let cancel = ctx.cancel.clone();
    let d = ctx
        .blocking(move || digest(rounds, || cancel.is_cancelled()).ok_or(HandlerError::Cancelled))
        .await?;
    Ok(json_body(
        serde_json::json!({ "rounds": rounds, "digest": hex(&d) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::context;

    #[tokio::test]
    async fn computes_the_iterated_digest() {
        let ctx = context(u64::MAX);
        let body = run(&Event::parse(br#"{"rounds":2}"#).unwrap(), &ctx)
            .await
            .unwrap();
        let one: [u8; 32] = Sha256::digest(b"faas").into();
        let two: [u8; 32] = Sha256::digest(one).into();
        let three: [u8; 32] = Sha256::digest(two).into();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["rounds"], 2);
        assert_eq!(v["digest"], hex(&three));
        assert_eq!(ctx.jobs.running(), 0);
    }

    #[test]
    fn stops_when_cancelled() {
        assert_eq!(digest(u64::MAX, || true), None);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
