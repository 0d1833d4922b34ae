//! The queue's part of `faas.admin.v1.Admin`: a function's retry settings
//! (`SetAsyncRetry`, `faas retry NAME`) and its queue figures in `DescribeFunction`.

use faas_proto::admin::{AsyncRetry, AsyncStatus, SetAsyncRetryReply, SetAsyncRetryRequest};
use tonic::Status;

use crate::api::async_runner::{AsyncRunner, base_name, now_ms};
use crate::api::convert::registry_status;
use crate::core::retry::RetryPolicy;
use crate::service::Registry;

/// A retry policy as the admin API shows it.
pub fn retry_record(p: RetryPolicy) -> AsyncRetry {
    AsyncRetry {
        max_attempts: p.attempts,
        first_delay_ms: p.first_delay_ms,
        max_delay_ms: p.max_delay_ms,
    }
}

/// `SetAsyncRetry`: the function must be deployed (a plain name); a bad field is
/// `INVALID_ARGUMENT` naming it.
pub async fn set_retry(
    runner: &AsyncRunner,
    registry: &Registry,
    req: SetAsyncRetryRequest,
) -> Result<SetAsyncRetryReply, Status> {
    if req.function.contains(':') {
        return Err(Status::invalid_argument(format!(
            "function: retry settings belong to a function, not a version or alias: give {}",
            faas_common::text::clip(base_name(&req.function))
        )));
    }
    registry
        .get(&req.function)
        .map_err(|e| registry_status(&e))?;
    let policy = if req.clear {
        None
    } else {
        Some(
            RetryPolicy::from_request(
                req.max_attempts,
                req.first_delay_ms,
                req.max_delay_ms,
                runner.default_retry(),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
        )
    };
    let function = req.function.clone();
    let store = runner.store().clone();
    tokio::task::spawn_blocking(move || store.set_retry_policy(&function, policy, now_ms()))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
    tracing::info!(function = %req.function, ?policy, "asynchronous retry settings set");
    Ok(SetAsyncRetryReply {
        retry: Some(retry_record(runner.retry_policy(&req.function).await)),
    })
}

/// The queue figures of `name` (its versions and aliases included) for `DescribeFunction`.
pub async fn status(runner: &AsyncRunner, name: &str) -> AsyncStatus {
    let now = now_ms();
    let mut out = AsyncStatus {
        retry: Some(retry_record(runner.retry_policy(name).await)),
        ..AsyncStatus::default()
    };
    for s in runner.stats().await {
        if base_name(&s.function) != name {
            continue;
        }
        out.depth += s.depth;
        out.dead_letters += s.dead;
        if let Some(t) = s.oldest_submitted_ms {
            out.oldest_age_ms = out.oldest_age_ms.max(now.saturating_sub(t));
        }
    }
    out
}
