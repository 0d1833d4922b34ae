//! `spin`: keeps one core busy for the event's `ms` (default 100) while holding `mb` MiB
//! (default 0): the body trace replay uses to reproduce a function's duration and memory.

use std::time::Duration;

use super::block::{allocate_touched, mib_to_bytes};
use super::event::Event;
use super::{Context, HandlerError, json_body};

/// Spins, then answers `{"mb":N,"ms":M}`.
pub async fn run(event: &Event, ctx: &Context) -> Result<Vec<u8>, HandlerError> {
    let ms = event.uint("ms", 100)?;
    let mb = event.uint("mb", 0)?;
    let bytes = mib_to_bytes(mb)?;
    let (budget, cancel) = (ctx.budget.clone(), ctx.cancel.clone());
    ctx.blocking(move || {
        let start = faas_common::clock::instant();
        let block = allocate_touched(bytes, &budget, &cancel)?;
        let until = Duration::from_millis(ms);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while start.elapsed() < until {
            if cancel.is_cancelled() {
                return Err(HandlerError::Cancelled);
            }
            for _ in 0..1000 {
                x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(31));
            }
        }
        drop(block);
        Ok(())
    })
    .await?;
    Ok(json_body(serde_json::json!({ "ms": ms, "mb": mb })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::context;

    #[tokio::test]
    async fn spins_and_reports() {
        let ctx = context(u64::MAX);
        let body = run(&Event::parse(br#"{"ms":1,"mb":1}"#).unwrap(), &ctx)
            .await
            .unwrap();
        assert_eq!(body, br#"{"mb":1,"ms":1}"#);
        let err = run(&Event::parse(br#"{"ms":"soon"}"#).unwrap(), &ctx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("`ms`"), "{err}");
    }
}
