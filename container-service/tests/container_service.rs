//! Integration tests: the real gRPC server started in-process on 127.0.0.1:0 through `run`,
//! and the real binary as a child process.

mod support;

use std::time::Duration;

use faas_common::shutdown;
use faas_common::units::GIB;
use faas_container_service::{Config, run};
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{BindRequest, StatusRequest};
use support::{config, invoke, json, request, start};

/// A container started `--unbound` (the memory limit emulated once bound).
fn unbound() -> Config {
    Config {
        unbound: true,
        function_name: None,
        handler: None,
        ..config("", "", GIB)
    }
}

fn bind_request(function: &str, handler: &str, memory: i64, timeout: i64) -> BindRequest {
    BindRequest {
        function_name: function.into(),
        handler: handler.into(),
        memory_in_bytes: memory,
        timeout_in_ms: timeout,
    }
}

#[tokio::test]
async fn every_handler_answers_its_body_with_measurements() {
    let cases: [(&str, &[u8], serde_json::Value); 5] = [
        (
            "hello",
            br#"{"name":"Ada"}"#,
            serde_json::json!({"message":"Hello, Ada!"}),
        ),
        ("sleep", br#"{"ms":5}"#, serde_json::json!({"ms":5})),
        (
            "memory",
            br#"{"mb":4,"ms":1}"#,
            serde_json::json!({"mb":4,"ms":1}),
        ),
        (
            "spin",
            br#"{"ms":2,"mb":1}"#,
            serde_json::json!({"mb":1,"ms":2}),
        ),
        ("hello", b"", serde_json::json!({"message":"Hello, world!"})),
    ];
    for (handler, event, expected) in cases {
        let server = start(config("f", handler, GIB)).await;
        let reply = invoke(&server, "f", event).await;
        assert_eq!(reply.error_code, "", "{handler}: {}", reply.error_message);
        assert_eq!(json(&reply.body), expected, "{handler}");
        assert!(reply.duration_in_nanos > 0, "{handler}");
        assert!(reply.max_memory_usage_in_bytes > 0, "{handler}");
        server.stop().await;
    }

    let server = start(config("f", "echo", GIB)).await;
    let reply = invoke(&server, "f", b"\x01raw bytes").await;
    assert_eq!(reply.body, b"\x01raw bytes");
    server.stop().await;

    let server = start(config("f", "cpu", GIB)).await;
    let reply = invoke(&server, "f", br#"{"rounds":1000}"#).await;
    let body = json(&reply.body);
    assert_eq!(body["rounds"], 1000);
    assert_eq!(body["digest"].as_str().unwrap().len(), 64);
    server.stop().await;
}

#[tokio::test]
async fn a_memory_request_reports_at_least_what_it_held() {
    let server = start(config("f", "memory", GIB)).await;
    let reply = invoke(&server, "f", br#"{"mb":48,"ms":1}"#).await;
    assert_eq!(reply.error_code, "");
    assert!(
        reply.max_memory_usage_in_bytes >= 48 << 20,
        "{}",
        reply.max_memory_usage_in_bytes
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_requests_run_together() {
    let server = start(config("f", "sleep", GIB)).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = server.client.clone();
            tokio::spawn(async move { client.invoke(request("f", br#"{"ms":1000}"#)).await })
        })
        .collect();
    // With any lock around handlers the ten sleeps could never all be in flight at once.
    let mut most = 0;
    while most < 10 && !calls.iter().all(|c| c.is_finished()) {
        let status = server
            .client
            .clone()
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        most = most.max(status.in_flight);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().into_inner().error_code, "");
    }
    assert_eq!(most, 10, "the ten sleeps never ran together");
    let status = server
        .client
        .clone()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.in_flight, status.served), (0, 10));
    assert_eq!(status.function_name, "f");
    assert_eq!(status.handler, "sleep");
    assert!(status.rss_bytes > 0);
    server.stop().await;
}

#[tokio::test]
async fn a_call_past_its_timeout_is_a_timeout_error() {
    let server = start(config("f", "sleep", GIB)).await;
    let mut req = request("f", br#"{"ms":600000}"#);
    req.timeout_in_ms = 50;
    let reply = server
        .client
        .clone()
        .invoke(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 50 ms");
    let status = server
        .client
        .clone()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.in_flight, 0);
    server.stop().await;
}

#[tokio::test]
async fn memory_past_the_limit_is_out_of_memory() {
    let server = start(config("f", "memory", 96 << 20)).await;
    let reply = invoke(&server, "f", br#"{"mb":512}"#).await;
    assert_eq!(reply.error_code, "OutOfMemory");
    assert!(
        reply
            .error_message
            .contains("memory limit of 100663296 bytes"),
        "{}",
        reply.error_message
    );
    server.stop().await;

    let server = start(config("f", "spin", 96 << 20)).await;
    let reply = invoke(&server, "f", br#"{"ms":1,"mb":512}"#).await;
    assert_eq!(reply.error_code, "OutOfMemory");
    server.stop().await;
}

#[tokio::test]
async fn bad_events_name_the_field() {
    let server = start(config("f", "sleep", GIB)).await;
    let reply = invoke(&server, "f", br#"{"ms":"soon"}"#).await;
    assert_eq!(reply.error_code, "BadEvent");
    assert!(
        reply.error_message.contains("`ms`"),
        "{}",
        reply.error_message
    );
    let reply = invoke(&server, "f", b"not json").await;
    assert_eq!(reply.error_code, "BadEvent");
    server.stop().await;
}

#[tokio::test]
async fn another_function_is_refused() {
    let server = start(config("f", "hello", GIB)).await;
    let err = server
        .client
        .clone()
        .invoke(request("g", b""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("runs function \"f\""),
        "{}",
        err.message()
    );
    let mut req = request("f", b"");
    req.handler = "echo".into();
    let err = server.client.clone().invoke(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn run_refuses_an_unknown_handler() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = run(
        listener,
        config("f", "python3.9", GIB),
        shutdown::Shutdown::never(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the handler \"python3.9\" is not a built-in handler"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unbound_container_serves_after_one_bind() {
    let server = start(unbound()).await;
    let mut client = server.client.clone();
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "", "unbound: no function");
    assert_eq!((status.handler.as_str(), status.memory_in_bytes), ("", 0));
    assert!(status.rss_bytes > 0);

    let err = client.invoke(request("f", b"")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("container is not bound to a function"),
        "{}",
        err.message()
    );

    client
        .bind(bind_request("f", "hello", 128 << 20, 0))
        .await
        .unwrap();
    let reply = invoke(&server, "f", br#"{"name":"Ada"}"#).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert_eq!(
        json(&reply.body),
        serde_json::json!({"message":"Hello, Ada!"})
    );
    assert!(reply.max_memory_usage_in_bytes > 0);
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "f");
    assert_eq!(status.handler, "hello");
    assert_eq!(status.memory_in_bytes, 128 << 20);
    assert_eq!(
        status.timeout_in_ms, 60_000,
        "0 ms binds the default timeout"
    );
    assert_eq!(status.served, 1);
    let err = client.invoke(request("g", b"")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("runs function \"f\""),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_container_is_bound_once() {
    let server = start(unbound()).await;
    let mut client = server.client.clone();
    client
        .bind(bind_request("f", "echo", 64 << 20, 1_000))
        .await
        .unwrap();
    let err = client
        .bind(bind_request("g", "hello", 64 << 20, 1_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("already bound to function \"f\""),
        "{}",
        err.message()
    );
    assert_eq!(
        invoke(&server, "f", b"still echo").await.body,
        b"still echo"
    );
    server.stop().await;

    // The start-up flags are a bind too.
    let server = start(config("f", "hello", GIB)).await;
    let err = server
        .client
        .clone()
        .bind(bind_request("g", "hello", 64 << 20, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_bind_is_refused_and_binds_nothing() {
    let server = start(unbound()).await;
    let mut client = server.client.clone();
    for (req, words) in [
        (
            bind_request("f", "python3.9", 1 << 20, 0),
            "\"python3.9\" is not a built-in handler",
        ),
        (bind_request(" ", "hello", 1 << 20, 0), "function name"),
        (
            bind_request(&"f".repeat(257), "hello", 1 << 20, 0),
            "the function name is 257 bytes long",
        ),
        (
            bind_request("f", &"h".repeat(1 << 20), 1 << 20, 0),
            "(1048576 bytes)\" is not a built-in handler",
        ),
        (
            bind_request("f", "hello", 0, 0),
            "memory_in_bytes must be between 1 byte and 1 TiB",
        ),
        (
            bind_request("f", "hello", -5, 0),
            "memory_in_bytes must be between",
        ),
        (
            bind_request("f", "hello", 1_000_000_000_000_000_000, 0),
            "memory_in_bytes must be between",
        ),
        (
            bind_request("f", "hello", 1 << 20, -1),
            "timeout_in_ms must be between 0 and 86400000 ms",
        ),
        (
            bind_request("f", "hello", 1 << 20, 86_400_001),
            "timeout_in_ms must be between",
        ),
    ] {
        let err = client.bind(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(words),
            "{} should say {words}",
            err.message()
        );
        assert!(err.message().len() < 400, "{} bytes", err.message().len());
    }
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "", "still unbound");
    client
        .bind(bind_request("f", "hello", 1 << 20, 10))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_memory_limit_of_a_bind_is_emulated() {
    let server = start(unbound()).await;
    server
        .client
        .clone()
        .bind(bind_request("f", "memory", 96 << 20, 0))
        .await
        .unwrap();
    let reply = invoke(&server, "f", br#"{"mb":512}"#).await;
    assert_eq!(reply.error_code, "OutOfMemory");
    assert!(
        reply
            .error_message
            .contains("memory limit of 100663296 bytes"),
        "{}",
        reply.error_message
    );
    let reply = invoke(&server, "f", br#"{"mb":8,"ms":1}"#).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert!(reply.max_memory_usage_in_bytes >= 8 << 20);
    server.stop().await;
}

#[tokio::test]
async fn the_timeout_of_a_bind_applies() {
    let server = start(unbound()).await;
    server
        .client
        .clone()
        .bind(bind_request("f", "sleep", 64 << 20, 40))
        .await
        .unwrap();
    let reply = invoke(&server, "f", br#"{"ms":600000}"#).await;
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 40 ms");
    server.stop().await;
}

fn binary() -> faas_common::launch::Launcher {
    faas_common::launch::Launcher::new(env!("CARGO_BIN_EXE_container-service"), vec![])
}

#[tokio::test]
async fn the_binary_announces_serves_and_stops() {
    let mut cmd = binary().command();
    cmd.args(["--port", "0", "--function-name", "f", "--handler", "hello"]);
    let (mut child, addr) = faas_common::launch::Child::spawn_ready(cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    let status = ContainerServiceClient::new(channel)
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.handler, "hello");
    child.stop(Duration::from_secs(5)).await;
    assert!(child.has_exited());
}

#[tokio::test]
async fn the_binary_starts_unbound_and_binds() {
    let mut cmd = binary().command();
    cmd.args(["--port", "0", "--unbound"]);
    let (mut child, addr) = faas_common::launch::Child::spawn_ready(cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    let mut client = ContainerServiceClient::new(channel);
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "");
    client
        .bind(bind_request("f", "echo", 64 << 20, 0))
        .await
        .unwrap();
    let reply = client
        .invoke(request("f", b"bound"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.body, b"bound");
    child.stop(Duration::from_secs(5)).await;
    assert!(child.has_exited());
}

#[tokio::test]
async fn the_binary_refuses_unbound_with_a_function() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
        .args(["--unbound", "--function-name", "f"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--unbound"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
        .args(["--handler", "hello"])
        .env_remove("FAAS_FUNCTION_NAME")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a function name or --unbound is required"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn the_binary_refuses_an_unknown_handler_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
        .args(["--function-name", "f", "--handler", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the handler \"nope\" is not a built-in handler; use one of hello"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "announced before refusing");
}

#[tokio::test]
async fn the_binary_refuses_absurd_sizes_at_start() {
    for (flag, value, says) in [
        (
            "--memory-bytes",
            "1000000000000000000",
            "the memory limit must be between 1 byte and 1 TiB",
        ),
        ("--memory-bytes", "0", "the memory limit must be between"),
        (
            "--timeout-ms",
            "86400001",
            "the timeout must be between 0 and 86400000 ms",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
            .args(["--function-name", "f", "--handler", "hello", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(out.stdout.is_empty(), "announced before refusing");
    }
}

#[tokio::test]
async fn an_undecodable_request_is_an_invalid_argument() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(run(listener, unbound(), shutdown));
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    for (path, message) in [
        (
            "/faas.container.v1.ContainerService/Invoke",
            "faas.container.v1.InvokeRequest",
        ),
        (
            "/faas.container.v1.ContainerService/Bind",
            "faas.container.v1.BindRequest",
        ),
    ] {
        faas_proto::codec::check_refuses_undecodable(channel.clone(), path, message)
            .await
            .unwrap();
    }
    trigger.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_absurd_invoke_timeout_is_an_invalid_argument() {
    let server = start(config("f", "hello", GIB)).await;
    for timeout in [-1, 86_400_001, i64::MAX] {
        let mut req = request("f", b"");
        req.timeout_in_ms = timeout;
        let err = server.client.clone().invoke(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{timeout}");
        assert!(
            err.message().contains("timeout_in_ms must be between"),
            "{}",
            err.message()
        );
    }
    let mut req = request("f", b"");
    req.timeout_in_ms = 86_400_000;
    let reply = server
        .client
        .clone()
        .invoke(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.error_code, "",
        "a day is allowed: {}",
        reply.error_message
    );
    server.stop().await;
}

#[tokio::test]
async fn a_six_mib_event_is_echoed() {
    let server = start(config("f", "echo", GIB)).await;
    let event: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
    let reply = server
        .client
        .clone()
        .max_encoding_message_size(faas_common::serve::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(faas_common::serve::MAX_MESSAGE_BYTES)
        .invoke(request("f", &event))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert!(reply.body == event, "the body is the event");
    server.stop().await;
}
