//! `ContainerService.Logs` over real gRPC: a command function's output read back from the
//! container's ring after real invocations, filtered as a poller asks, and a built-in
//! container that has none.

mod support;

use faas_common::units::GIB;
use faas_proto::container::{InvokeRequest, LogLine, LogsReply, LogsRequest};
use support::{Server, bundle_config, config, example, invoke, request, start};
use tonic::Code;

/// Invokes the shell example as request `request_id` with `event`.
async fn invoke_as(server: &Server, request_id: &str, event: &[u8]) {
    let reply = server
        .client
        .clone()
        .invoke(InvokeRequest {
            request_id: request_id.into(),
            ..request("f", event)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
}

async fn logs(server: &Server, after_seq: u64, since_ms: i64, limit: u32) -> LogsReply {
    server
        .client
        .clone()
        .logs(LogsRequest {
            after_seq,
            since_ms,
            limit,
        })
        .await
        .unwrap()
        .into_inner()
}

/// (seq, stream, request id, text) of each line.
fn summary(lines: &[LogLine]) -> Vec<(u64, &str, &str, &str)> {
    lines
        .iter()
        .map(|l| {
            (
                l.seq,
                l.stream.as_str(),
                l.request_id.as_str(),
                l.text.as_str(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_command_functions_stderr_lines_come_back_numbered_with_their_request_ids() {
    let server = start(bundle_config(&example("shell-exec"), GIB)).await;
    assert_eq!(logs(&server, 0, 0, 0).await, LogsReply::default());

    invoke_as(&server, "req-a", br#"{"name":"A"}"#).await;
    let reply = logs(&server, 0, 0, 0).await;
    assert_eq!(
        summary(&reply.lines),
        [(1, "stderr", "req-a", "read 12 bytes of event")]
    );
    assert_eq!(reply.dropped, 0);
    let first_at = reply.lines[0].at_ms;
    assert!(first_at > 1_600_000_000_000, "wall clock ms: {first_at}");

    invoke_as(&server, "req-b", b"{}").await;
    let newer = logs(&server, 1, 0, 0).await;
    assert_eq!(
        summary(&newer.lines),
        [(2, "stderr", "req-b", "read 2 bytes of event")],
        "after_seq 1 leaves the line already read out"
    );
    assert!(logs(&server, 2, 0, 0).await.lines.is_empty());

    let newest = logs(&server, 0, 0, 1).await;
    assert_eq!(summary(&newest.lines)[0].0, 2, "limit 1 keeps the newest");
    assert_eq!(logs(&server, 0, first_at, 0).await.lines.len(), 2);
    let later = newer.lines[0].at_ms + 60_000;
    assert!(logs(&server, 0, later, 0).await.lines.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_negative_since_is_refused_with_what_to_send() {
    let server = start(bundle_config(&example("shell-exec"), GIB)).await;
    let status = server
        .client
        .clone()
        .logs(LogsRequest {
            since_ms: -1,
            ..LogsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("since_ms is -1"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_built_in_container_has_no_lines() {
    let server = start(config("f", "echo", GIB)).await;
    invoke(&server, "f", br#"{"x":1}"#).await;
    assert_eq!(logs(&server, 0, 0, 0).await, LogsReply::default());
    server.stop().await;
}
