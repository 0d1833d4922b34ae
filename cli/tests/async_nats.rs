//! The platform with its asynchronous queue on NATS JetStream (`faas up --queue
//! nats://HOST:PORT`): `faas invoke --async` and `faas result` through a real
//! `nats-server -js` started by the test (skipped loudly without one, failed in CI:
//! `faas_testkit::nats`), and `faas up` refusing a bad `--queue` or a NATS that does not
//! answer, at once and naming the flag.

mod support;

use std::process::Output;

use faas_cli::platform::PlatformOptions;
use faas_testkit::nats::NatsServer;
use support::ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_calls_go_through_nats_and_their_results_come_back() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (platform, _api) = support::start(PlatformOptions {
        data_dir: Some(dir.path().to_path_buf()),
        apiserver_args: vec!["--queue".into(), nats.url()],
        ..support::small_options()
    })
    .await;
    let addr = platform.apiserver.to_string();
    let id = ok(
        &addr,
        &[
            "invoke",
            "hello",
            "--event",
            r#"{"name":"nats"}"#,
            "--async",
        ],
    )
    .await;
    let id = id.trim();
    let body = ok(&addr, &["result", id, "--wait", "60"]).await;
    assert!(body.contains("Hello, nats!"), "{body}");
    // The record, read back by id from the bucket.
    let record: serde_json::Value =
        serde_json::from_str(&ok(&addr, &["result", id, "-o", "json"]).await).unwrap();
    assert_eq!(record["state"], "succeeded", "{record}");
    platform.stop().await.unwrap();
}

/// `faas up ARGS` on free ports and a temporary data directory (no queue from the
/// environment), stopped after a minute.
async fn faas_up(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["up", "--apiserver-port", "0", "--scheduler-port", "0"];
    all.extend(["--resource-manager-port", "0", "--http-port", "0"]);
    all.extend(["--ready-nodes", "1", "--data-dir", dir.to_str().unwrap()]);
    all.extend(args);
    support::faas_within_a_minute(&all, &["FAAS_QUEUE"]).await
}

#[tokio::test]
async fn faas_up_refuses_a_bad_queue_and_a_nats_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let out = faas_up(dir.path(), &["--queue", "redis://127.0.0.1:6379"]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--queue") && stderr.contains("nats://HOST:PORT"),
        "{stderr}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let queue = format!("nats://127.0.0.1:{port}");
    let out = faas_up(dir.path(), &["--queue", &queue]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apiserver cannot start")
            && stderr.contains(&format!("127.0.0.1:{port}"))
            && stderr.contains("--queue"),
        "{stderr}"
    );
}
