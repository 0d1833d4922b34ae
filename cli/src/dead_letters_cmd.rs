//! `faas dead-letters NAME`, `faas redrive NAME [ID...]` and `faas retry NAME`: the durable
//! queue's dead letters and retry settings.
//!
//! An asynchronous call whose attempts all failed with a failure that may pass (no capacity,
//! a timeout, unavailable) ends on its function's dead-letter list with its event kept.
//!
//! - `dead-letters NAME` lists them (`Invocations/ListDeadLetters`), oldest first: id,
//!   attempts, when it was submitted and when it died, and the last error; `-o json` one
//!   object per call.
//! - `redrive NAME [ID...]` queues them again (`Invocations/Redrive`), their attempts counted
//!   from zero: the ids given, or every one; prints the ids queued. An id that is not a
//!   dead letter of NAME is `NOT_FOUND` (exit 3), and names it.
//! - `retry NAME [--attempts N] [--first-delay-ms MS] [--max-delay-ms MS] [--clear]` sets the
//!   function's retry settings (`Admin/SetAsyncRetry`; a flag left out takes the server's
//!   default) and prints those in force.

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::admin::SetAsyncRetryRequest;
use faas_proto::invoke::{ListDeadLettersRequest, RedriveRequest};
use serde::Serialize;

use crate::output::{OutputArgs, print_json};
use crate::routing_cmds::utc;

/// The flags of `faas retry` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct RetryArgs {
    /// The function.
    pub name: String,
    /// Attempts in all, the first included (1 to 100).
    #[arg(long, allow_negative_numbers = true)]
    pub attempts: Option<i64>,
    /// The bound of the first wait between attempts, ms (doubled each attempt; full jitter).
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub first_delay_ms: Option<i64>,
    /// The longest wait between attempts, ms.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub max_delay_ms: Option<i64>,
    /// Remove the function's own settings: the server's defaults apply again.
    #[arg(long, conflicts_with_all = ["attempts", "first_delay_ms", "max_delay_ms"])]
    pub clear: bool,
}

/// One dead letter as `-o json` prints it.
#[derive(Debug, Serialize)]
struct DeadJson {
    invocation_id: String,
    function: String,
    attempts: u32,
    submitted_at_ms: i64,
    dead_at_ms: i64,
    error_code: String,
    error_message: String,
}

/// `faas dead-letters NAME`.
pub async fn list(api: &Api, name: &str, output: &OutputArgs) -> anyhow::Result<()> {
    let dead = api
        .invocations()
        .list_dead_letters(ListDeadLettersRequest {
            function_name: name.to_string(),
        })
        .await
        .map_err(call_failed(format!("dead-letters {name}")))?
        .into_inner()
        .dead_letters;
    if output.is_json() {
        for d in &dead {
            print_json(&DeadJson {
                invocation_id: d.invocation_id.clone(),
                function: d.function_name.clone(),
                attempts: d.attempts,
                submitted_at_ms: d.submitted_at_ms,
                dead_at_ms: d.finished_at_ms,
                error_code: d.error_code.clone(),
                error_message: d.error_message.clone(),
            })?;
        }
        return Ok(());
    }
    if dead.is_empty() {
        println!("no dead letters for {name}");
        return Ok(());
    }
    println!(
        "{:<36}  {:>8}  {:<23}  {:<23}  LAST ERROR",
        "ID", "ATTEMPTS", "SUBMITTED", "DEAD SINCE"
    );
    for d in &dead {
        println!(
            "{:<36}  {:>8}  {:<23}  {:<23}  {}: {}",
            d.invocation_id,
            d.attempts,
            utc(d.submitted_at_ms),
            utc(d.finished_at_ms),
            d.error_code,
            d.error_message
        );
    }
    Ok(())
}

/// `faas redrive NAME [ID...]`.
pub async fn redrive(api: &Api, name: &str, ids: &[String]) -> anyhow::Result<()> {
    let queued = api
        .invocations()
        .redrive(RedriveRequest {
            function_name: name.to_string(),
            invocation_ids: ids.to_vec(),
        })
        .await
        .map_err(call_failed(format!("redrive {name}")))?
        .into_inner()
        .invocation_ids;
    for id in &queued {
        println!("{id}");
    }
    eprintln!("{} dead letters of {name} queued again", queued.len());
    Ok(())
}

/// `faas retry NAME ...`.
pub async fn retry(api: &Api, args: &RetryArgs) -> anyhow::Result<()> {
    let set = api
        .admin()
        .set_async_retry(SetAsyncRetryRequest {
            function: args.name.clone(),
            max_attempts: args.attempts,
            first_delay_ms: args.first_delay_ms,
            max_delay_ms: args.max_delay_ms,
            clear: args.clear,
        })
        .await
        .map_err(call_failed(format!("retry {}", args.name)))?
        .into_inner();
    let r = set.retry.unwrap_or_default();
    println!(
        "{}: {} attempts, waits up to {} ms doubling to {} ms (full jitter)",
        args.name, r.max_attempts, r.first_delay_ms, r.max_delay_ms
    );
    Ok(())
}
