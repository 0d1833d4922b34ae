//! `faas invoke --async` and `faas result ID [--wait]` against a real platform (the `faas`
//! binary as a subprocess): the id comes back at once, the result is the body or the error
//! with its exit code, and `--wait` waits until the call finished or its time is up.

mod support;

use faas_cli::exit;
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use support::{faas, fails_with, ok};

/// Submits `args` (`invoke NAME ... --async`) and returns the invocation id it printed.
async fn submit(addr: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--async");
    let out = ok(addr, &all).await;
    let id = out.trim().to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{out:?}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_async_call_is_fetched_by_its_id() {
    let (platform, api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    api.admin()
        .deploy_function(DeployFunctionRequest {
            function: Some(FunctionSpec {
                name: "nap".into(),
                handler: "sleep".into(),
                memory_in_bytes: 128 << 20,
                timeout_in_ms: 300,
                ..FunctionSpec::default()
            }),
        })
        .await
        .unwrap();

    // Succeeded: the body, exit 0; -o json the whole record.
    let id = submit(addr, &["invoke", "hello", "--event", r#"{"name":"later"}"#]).await;
    let body = ok(addr, &["result", &id, "--wait", "60"]).await;
    assert!(body.contains("Hello, later!"), "{body}");
    let record: serde_json::Value =
        serde_json::from_str(&ok(addr, &["result", &id, "-o", "json"]).await).unwrap();
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["invocation_id"], id.as_str());
    assert!(record["body"].as_str().unwrap().contains("Hello, later!"));

    // -v says how to fetch it.
    let out = faas(addr, &["invoke", "hello", "--async", "-v"]).await;
    assert!(out.status.success(), "{out:?}");
    let id2 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let hint = String::from_utf8(out.stderr).unwrap();
    assert!(hint.contains(&format!("faas result {id2}")), "{hint}");

    // Failed: the error, exit code by its kind (a timeout: 7).
    let id = submit(addr, &["invoke", "nap", "--event", r#"{"ms":5000}"#]).await;
    let line = fails_with(addr, &["result", &id, "--wait"], exit::TIMEOUT.into()).await;
    assert!(
        line.contains(&format!("invocation {id} of nap failed: DEADLINE_EXCEEDED")),
        "{line}"
    );
    // A call of an unknown function is accepted, then fails NOT_FOUND (3).
    let id = submit(addr, &["invoke", "nope"]).await;
    let line = fails_with(addr, &["result", &id, "--wait"], exit::NOT_FOUND.into()).await;
    assert!(line.contains("NOT_FOUND"), "{line}");

    // Not finished: its state, exit 0; --wait whose time is up: exit 7.
    let id = submit(addr, &["invoke", "sleep", "--event", r#"{"ms":20000}"#]).await;
    let state = ok(addr, &["result", &id]).await;
    assert!(state == "queued\n" || state == "running\n", "{state:?}");
    let line = fails_with(addr, &["result", &id, "--wait", "0"], exit::TIMEOUT.into()).await;
    assert!(line.contains("is still"), "{line}");

    // An id the server never gave: 3.
    let line = fails_with(addr, &["result", "no-such-id"], exit::NOT_FOUND.into()).await;
    assert!(line.contains("NotFound"), "{line}");
    platform.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_retries_dead_letters_and_bad_input_from_the_command_line() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();

    // The same key twice: one call, one id.
    let keyed = ["invoke", "hello", "--idempotency-key", "order-17"];
    let first = submit(addr, &keyed).await;
    assert_eq!(submit(addr, &keyed).await, first);
    let body = ok(addr, &["result", &first, "--wait", "60"]).await;
    assert!(body.contains("Hello"), "{body}");

    // Retry settings: set, shown by describe; a bad one names its field.
    let set = ok(
        addr,
        &[
            "retry",
            "hello",
            "--attempts",
            "5",
            "--first-delay-ms",
            "10",
        ],
    )
    .await;
    assert!(set.contains("5 attempts"), "{set}");
    let described = ok(addr, &["describe", "hello"]).await;
    assert!(described.contains("retries: 5 attempts"), "{described}");
    for bad in ["0", "-1"] {
        let line = fails_with(
            addr,
            &["retry", "hello", "--attempts", bad],
            exit::BAD_INPUT.into(),
        )
        .await;
        assert!(line.contains("max_attempts"), "{line}");
    }

    // No dead letters yet; redriving one that is not there names it.
    let listed = ok(addr, &["dead-letters", "hello"]).await;
    assert!(listed.contains("no dead letters for hello"), "{listed}");
    let line = fails_with(addr, &["redrive", "hello", "nope"], exit::NOT_FOUND.into()).await;
    assert!(line.contains("nope"), "{line}");

    // A callback off loopback is refused, naming the flag's field.
    let out = faas(
        addr,
        &[
            "invoke",
            "hello",
            "--async",
            "--on-success",
            "http://example.com/hook",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT.into()), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("on_success"),
        "{out:?}"
    );
    platform.stop().await.unwrap();
}

/// `faas replay --async`: every call of a short contest load goes through the durable queue;
/// the report gives each run's end-to-end delay (submit to result) beside the latency, and
/// no call is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_through_the_queue_reports_the_end_to_end_delay() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let json_arg = json.to_str().unwrap();
    let out = ok(
        &addr,
        &[
            "replay",
            "--async",
            "--duration",
            "4s",
            "--lead-in-ms",
            "0",
            "--memory-scale",
            "0.02",
            "--no-progress",
            "--stats-interval-ms",
            "0",
            "--json",
            json_arg,
        ],
    )
    .await;
    assert!(out.contains("end to end (submit to result)"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let policies = report["policies"].as_object().expect("policies");
    assert_eq!(policies.len(), 1, "{report}");
    let run = policies.values().next().unwrap();
    let requests = run["requests"].as_u64().unwrap();
    assert!(requests > 10, "a meaningful load: {run}");
    assert_eq!(run["errors"], 0, "{run}");
    let e2e = &run["end_to_end_ms"];
    let (p50, p99) = (e2e["p50"].as_f64().unwrap(), e2e["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{e2e}");
    // Submit to result holds the last attempt (started to finished) and the wait before it.
    assert!(
        e2e["max"].as_f64().unwrap() >= run["latency_ms"]["max"].as_f64().unwrap(),
        "{run}"
    );
    platform.stop().await.expect("platform stops");
}
