//! `faas invoke NAME --async` and `faas result ID [--wait [SECS]]`: calls that run in the
//! background on the API server (`faas.invoke.v1.Invocations`).
//!
//! `--async` sends the call (`InvokeAsync`, routed as `faas invoke` routes: `--route-id`,
//! `--route`, `--routing-key` travel in the message) and prints the invocation id the server
//! answers once the call is stored; with `-v` also how to fetch the result.
//! `--idempotency-key`, `--on-success` and `--on-failure` travel in the message too. `faas result ID` asks for it
//! (`GetInvocation`) and:
//!
//! - succeeded: prints the body, exit 0;
//! - failed, or dead (a dead letter after its last attempt): prints the error
//!   (`invocation ID of NAME failed: CODE: message`) and exits with
//!   the code of its gRPC code (`faas_cli::exit::for_status`: 6 the function failed, 7 it
//!   timed out, 3 not found, ...);
//! - queued or running: prints the state, exit 0; with `--wait [SECS]` (default 60) asks
//!   again (every 100 ms at first, slowing to every second) until it finished, or the time is
//!   up: then exit 7.
//!
//! An id the server never gave or no longer keeps is `NOT_FOUND` (exit 3). `-o json` prints
//! the whole record ([`ResultJson`]) whatever the state; the exit code is the same.

use std::time::Duration;

use anyhow::anyhow;
use faas_cli::client::{Api, RouteRequest};
use faas_cli::exit::{self, call_failed};
use faas_proto::invoke::{GetInvocationReply, GetInvocationRequest, InvokeAsyncRequest};
use serde::Serialize;

use crate::output::{OutputArgs, print_json};

/// How long `--wait` without a value waits, in seconds.
pub const DEFAULT_WAIT_SECS: &str = "60";
/// The first pause between two asks of `--wait`, and the longest.
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(1);

/// The flags of `faas result` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct ResultArgs {
    /// The invocation id `faas invoke --async` printed.
    pub id: String,
    /// Wait until the call finished, at most SECS seconds (then exit 7).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = DEFAULT_WAIT_SECS)]
    pub wait: Option<u64>,
    /// Also print (on stderr) the request id, what served it, and when it ran.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What `--async` sends besides the call: `--idempotency-key`, `--on-success`,
/// `--on-failure` (empty: none).
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub idempotency_key: String,
    pub on_success: String,
    pub on_failure: String,
}

/// One asynchronous call to submit.
pub struct AsyncCall<'a> {
    pub account: &'a str,
    pub name: &'a str,
    pub event: Vec<u8>,
    pub route: &'a RouteRequest,
    pub extras: Extras,
}

/// `faas invoke NAME --async`: submits the call and prints its invocation id.
pub async fn submit(api: &Api, call: AsyncCall<'_>, verbose: bool) -> anyhow::Result<()> {
    let AsyncCall {
        account,
        name,
        event,
        route,
        extras,
    } = call;
    let mut request = tonic::Request::new(InvokeAsyncRequest {
        function_name: name.to_string(),
        account_id: account.to_string(),
        event,
        route_id: route.route_id.clone().unwrap_or_default(),
        route_params: route.params.iter().cloned().collect(),
        routing_key: route.routing_key.clone().unwrap_or_default(),
        idempotency_key: extras.idempotency_key,
        on_success: extras.on_success,
        on_failure: extras.on_failure,
    });
    request.set_timeout(Duration::from_secs(30));
    let id = api
        .invocations()
        .invoke_async(request)
        .await
        .map_err(call_failed(format!("invoke {name} --async")))?
        .into_inner()
        .invocation_id;
    println!("{id}");
    if verbose {
        eprintln!("accepted; its result: faas result {id} (--wait to wait for it)");
    }
    Ok(())
}

/// An invocation as `faas result -o json` prints it.
#[derive(Debug, Serialize)]
pub struct ResultJson {
    pub invocation_id: String,
    pub function: String,
    pub state: String,
    /// The body (succeeded), as text (invalid UTF-8 replaced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    pub submitted_at_ms: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub request_id: String,
    pub version: String,
    pub target: String,
    pub cold_start: bool,
}

impl From<&GetInvocationReply> for ResultJson {
    fn from(r: &GetInvocationReply) -> ResultJson {
        ResultJson {
            invocation_id: r.invocation_id.clone(),
            function: r.function_name.clone(),
            state: r.state.clone(),
            body: (r.state == "succeeded").then(|| String::from_utf8_lossy(&r.body).into_owned()),
            error_code: r.error_code.clone(),
            error_message: r.error_message.clone(),
            submitted_at_ms: r.submitted_at_ms,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            request_id: r.request_id.clone(),
            version: r.version.clone(),
            target: r.target.clone(),
            cold_start: r.cold_start,
        }
    }
}

/// Whether the call is done (succeeded, failed, or dead-lettered after its last attempt).
fn finished(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "dead")
}

/// The error a failed invocation ends the command with: its message, and the exit code of
/// its gRPC code (by name).
pub fn failure(r: &GetInvocationReply) -> anyhow::Error {
    let code = exit::code_named(&r.error_code)
        .map_or(exit::OTHER, |code| exit::for_status(code, &r.error_message));
    exit::coded(
        code,
        anyhow!(
            "invocation {} of {} {}: {}: {}",
            r.invocation_id,
            r.function_name,
            if r.state == "dead" {
                format!(
                    "failed its last attempt ({}) and is a dead letter (faas redrive {} {})",
                    r.attempts, r.function_name, r.invocation_id
                )
            } else {
                "failed".to_string()
            },
            if r.error_code.is_empty() {
                "?"
            } else {
                &r.error_code
            },
            r.error_message
        ),
    )
}

/// `-v`: what served it and when it ran, one line.
fn details(r: &GetInvocationReply) -> String {
    let span = |from: i64, to: i64| {
        if from > 0 && to >= from {
            format!("{} ms", to - from)
        } else {
            "-".to_string()
        }
    };
    let or = |s: &str| {
        if s.is_empty() {
            "?".to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "request {} | version {} | target {} | cold {} | queued {} | ran {}",
        or(&r.request_id),
        or(&r.version),
        or(&r.target),
        r.cold_start,
        span(r.submitted_at_ms, r.started_at_ms),
        span(r.started_at_ms, r.finished_at_ms)
    )
}

/// `faas result ID [--wait [SECS]]`.
pub async fn result(api: &Api, args: &ResultArgs) -> anyhow::Result<()> {
    let until = args
        .wait
        .map(|secs| faas_common::clock::instant() + Duration::from_secs(secs));
    let mut pause = FIRST_POLL;
    let reply = loop {
        let mut request = tonic::Request::new(GetInvocationRequest {
            invocation_id: args.id.clone(),
        });
        request.set_timeout(Duration::from_secs(10));
        let reply = api
            .invocations()
            .get_invocation(request)
            .await
            .map_err(call_failed(format!("result {}", args.id)))?
            .into_inner();
        match until {
            Some(until)
                if !finished(&reply.state) && faas_common::clock::instant() + pause < until =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_POLL);
            }
            _ => break reply,
        }
    };
    if args.verbose {
        eprintln!("{}", details(&reply));
    }
    if args.output.is_json() {
        print_json(&ResultJson::from(&reply))?;
    }
    match reply.state.as_str() {
        "succeeded" => {
            if !args.output.is_json() {
                println!("{}", String::from_utf8_lossy(&reply.body));
            }
            Ok(())
        }
        "failed" | "dead" => Err(failure(&reply)),
        state => match args.wait {
            Some(secs) => Err(exit::coded(
                exit::TIMEOUT,
                anyhow!(
                    "invocation {} of {} is still {state} after {secs} s",
                    reply.invocation_id,
                    reply.function_name
                ),
            )),
            None => {
                if !args.output.is_json() {
                    println!("{state}");
                }
                Ok(())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str, message: &str) -> GetInvocationReply {
        GetInvocationReply {
            invocation_id: "inv-1".into(),
            function_name: "f".into(),
            state: "failed".into(),
            error_code: code.into(),
            error_message: message.into(),
            ..GetInvocationReply::default()
        }
    }

    #[test]
    fn a_failure_exits_by_its_code() {
        let cases = [
            ("UNKNOWN", "function f failed: exit 1", exit::FUNCTION_ERROR),
            ("DEADLINE_EXCEEDED", "timed out", exit::TIMEOUT),
            ("NOT_FOUND", "function f not found", exit::NOT_FOUND),
            ("UNAVAILABLE", "node lost", exit::UNAVAILABLE),
            (
                "RESOURCE_EXHAUSTED",
                "f ran out of memory",
                exit::FUNCTION_ERROR,
            ),
            ("", "?", exit::OTHER),
        ];
        for (code, message, want) in cases {
            let e = failure(&failed(code, message));
            assert_eq!(exit::code_of(&e), want, "{code}");
        }
        let e = failure(&failed("UNKNOWN", "boom"));
        assert_eq!(
            faas_cli::errors::one_line(&e),
            "invocation inv-1 of f failed: UNKNOWN: boom"
        );
    }

    #[test]
    fn details_and_json_say_what_is_known() {
        let r = GetInvocationReply {
            invocation_id: "inv-2".into(),
            function_name: "hello".into(),
            state: "succeeded".into(),
            body: b"hi".to_vec(),
            submitted_at_ms: 1_000,
            started_at_ms: 1_004,
            finished_at_ms: 1_010,
            request_id: "r-1".into(),
            version: "latest".into(),
            target: "hello".into(),
            cold_start: true,
            ..GetInvocationReply::default()
        };
        assert_eq!(
            details(&r),
            "request r-1 | version latest | target hello | cold true | queued 4 ms | ran 6 ms"
        );
        let json = serde_json::to_value(ResultJson::from(&r)).unwrap();
        assert_eq!(json["body"], "hi");
        assert!(json.get("error_code").is_none());
        let queued = GetInvocationReply {
            state: "queued".into(),
            ..GetInvocationReply::default()
        };
        assert!(details(&queued).ends_with("queued - | ran -"));
        assert!(!finished("running") && finished("failed"));
    }
}
