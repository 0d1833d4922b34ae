//! `memory`: allocates and touches the event's `mb` MiB (default 16), holds them `ms`
//! milliseconds (default 100), then frees them.

use std::time::Duration;

use super::block::{allocate_touched, mib_to_bytes};
use super::event::Event;
use super::{Context, HandlerError, json_body};

/// Holds the memory, then answers `{"mb":N,"ms":M}`.
pub async fn run(event: &Event, ctx: &Context) -> Result<Vec<u8>, HandlerError> {
    let mb = event.uint("mb", 16)?;
    let ms = event.uint("ms", 100)?;
    let bytes = mib_to_bytes(mb)?;
    let (budget, cancel) = (ctx.budget.clone(), ctx.cancel.clone());
    let block = ctx
        .blocking(move || allocate_touched(bytes, &budget, &cancel))
        .await?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    drop(block);
    Ok(json_body(serde_json::json!({ "mb": mb, "ms": ms })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::context;
    use faas_common::units::MIB;

    #[tokio::test]
    async fn holds_the_memory_and_reports_it() {
        let ctx = context(u64::MAX);
        let body = run(&Event::parse(br#"{"mb":2,"ms":1}"#).unwrap(), &ctx)
            .await
            .unwrap();
        assert_eq!(body, br#"{"mb":2,"ms":1}"#);
    }

    #[tokio::test]
    async fn refuses_beyond_the_limit() {
        let ctx = context(MIB);
        let err = run(&Event::parse(br#"{"mb":64}"#).unwrap(), &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "OutOfMemory");
    }
}
