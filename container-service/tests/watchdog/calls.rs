//! Calls that work: the examples, concurrent calls, stdout and stderr, failing calls and
//! timeouts.

use std::time::Duration;

use crate::support::{bundle_config, example, json, start};
use faas_common::units::GIB;
use faas_container_service::watchdog::logs::Stream;
use faas_container_service::watchdog::{Limits, Watchdog};
use faas_proto::container::StatusRequest;
use serde_json::json;

use crate::fixtures::*;

#[tokio::test]
async fn the_python_example_serves_several_calls_at_once() {
    require_python3();
    let server = start(bundle_config(&example("python-http"), GIB)).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut client = server.client.clone();
            tokio::spawn(async move {
                let event = json!({"name": format!("caller-{i}")}).to_string();
                let id = format!("r-{i}");
                client.invoke(call(event.as_bytes(), &id, 0)).await
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let reply = c.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.error_code, "", "{}", reply.error_message);
        let body = json(&reply.body);
        assert_eq!(body["message"], format!("Hello, caller-{i}!"));
        assert_eq!(body["runtime"], "python");
        assert!(reply.duration_in_nanos > 0);
        assert!(
            reply.max_memory_usage_in_bytes > 4 << 20,
            "the Python process's memory is counted: {}",
            reply.max_memory_usage_in_bytes
        );
    }
    let reply = send(&server, call(b"[1]", "r-bad", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert!(
        reply.error_message.starts_with("HTTP 400 Bad Request: ")
            && reply.error_message.contains("must be a JSON object"),
        "{}",
        reply.error_message
    );

    let mut client = server.client.clone();
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "f");
    assert_eq!(
        status.handler, "bundle:python-http",
        "bundle:<the directory's name>"
    );
    assert_eq!(status.served, 9);
    assert!(status.rss_bytes > 4 << 20);
    let mut named = call(b"{}", "r-named", 0);
    named.handler = "bundle:python-http".into();
    let reply = client.invoke(named).await.unwrap().into_inner();
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    let mut wrong = call(b"", "r-x", 0);
    wrong.handler = "hello".into();
    let err = client.invoke(wrong).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("command [\"python3\", \"main.py\"]"),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http_function_gets_its_calls_at_the_same_time() {
    // Each call waits in the server until four are in flight: serialized calls would break
    // the barrier (after 20 s) and fail.
    let dir = http_bundle(json!({"BARRIER": "4"}));
    let server = start(bundle_config(dir.path(), GIB)).await;
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let mut client = server.client.clone();
            tokio::spawn(async move {
                client
                    .invoke(call(br#"{"barrier": true}"#, &format!("call-{i}"), 0))
                    .await
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let reply = c.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.error_code, "", "{}", reply.error_message);
        assert_eq!(json(&reply.body)["id"], format!("call-{i}"), "X-Request-Id");
    }
    let reply = send(&server, call(br#"{"status": 500}"#, "r", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert_eq!(
        reply.error_message,
        "HTTP 500 Internal Server Error: bad things"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_shell_example_answers_from_stdout_and_returns_its_stderr() {
    let server = start(bundle_config(&example("shell-exec"), GIB)).await;
    let reply = send(&server, call(br#"{"name":"Ada"}"#, "req-7", 0)).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert_eq!(
        reply.body,
        br#"{"message":"Hello, Ada!","runtime":"sh","bytes":14}"#
    );
    assert_eq!(reply.function_log, "read 14 bytes of event\n");
    assert!(reply.max_memory_usage_in_bytes > 0);
    let reply = send(&server, call(b"", "req-8", 0)).await;
    assert_eq!(json(&reply.body)["message"], "Hello, world!");
    server.stop().await;
}

#[tokio::test]
async fn exec_stderr_lines_are_kept_with_their_request_id() {
    let limits = Limits {
        memory_bytes: 256 << 20,
        enforce_memory: true,
    };
    let watchdog = Watchdog::start(&example("shell-exec"), limits)
        .await
        .unwrap();
    for (id, event) in [("req-a", r#"{"name":"A"}"#), ("req-b", "{}")] {
        let report = watchdog
            .invoke(id, event.as_bytes().to_vec(), Duration::from_secs(30))
            .await;
        assert!(report.result.is_ok(), "{:?}", report.result);
    }
    let lines = watchdog.logs();
    let kept: Vec<_> = lines
        .iter()
        .map(|l| (l.request_id.as_deref(), l.stream, l.text.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (Some("req-a"), Stream::Stderr, "read 12 bytes of event"),
            (Some("req-b"), Stream::Stderr, "read 2 bytes of event"),
        ]
    );
    assert!(lines[0].at <= lines[1].at);
}

#[tokio::test]
async fn a_failing_exec_call_is_a_function_error_with_its_stderr() {
    let pids = tempfile::tempdir().unwrap();
    let dir = exec_bundle(&pids.path().join("pids"));
    let server = start(bundle_config(dir.path(), GIB)).await;
    let reply = send(&server, call(b"fail", "r", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert!(
        reply.error_message.contains("exit status: 3")
            && reply.error_message.ends_with("something broke"),
        "{}",
        reply.error_message
    );
    assert_eq!(reply.function_log, "event: fail\nsomething broke\n");
    let reply = send(&server, call(b"hi", "r", 0)).await;
    assert_eq!(reply.body, b"you said hi");
    server.stop().await;
}

#[tokio::test]
async fn an_exec_call_past_its_timeout_is_killed_with_its_children() {
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("pids");
    let dir = exec_bundle(&pid_file);
    let server = start(bundle_config(dir.path(), GIB)).await;
    let reply = send(&server, call(b"sleep", "r", 2_000)).await;
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 2000 ms");
    let started = pids_in(&pid_file);
    assert_eq!(started.len(), 2, "the shell and its sleep: {started:?}");
    assert_all_gone(&started).await;
    let reply = send(&server, call(b"again", "r", 0)).await;
    assert_eq!(reply.body, b"you said again", "{}", reply.error_message);
    server.stop().await;
}

#[tokio::test]
async fn an_http_call_past_its_timeout_is_cancelled_and_the_server_lives_on() {
    let dir = http_bundle(json!({}));
    let server = start(bundle_config(dir.path(), GIB)).await;
    let reply = send(&server, call(br#"{"sleep": 600}"#, "r", 300)).await;
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 300 ms");
    let reply = send(&server, call(b"{}", "r2", 0)).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert_eq!(json(&reply.body)["id"], "r2");
    server.stop().await;
}
