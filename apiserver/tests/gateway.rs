//! The HTTP gateway over a real socket (a tiny HTTP/1.1 client, `support/http.rs`) and the
//! gRPC `faas.invoke.v1.Invocations`, against the real API server on 127.0.0.1:0 with fake
//! scheduler and nodes: every row of the status table (docs/GATEWAY.md), asynchronous
//! invocations and their retention, keys.

#![allow(dead_code)]

include!("support/fakes.rs");

#[path = "support/http.rs"]
mod http;

use faas_proto::invoke::{GetInvocationRequest, InvokeAsyncRequest};
use http::{Reply, get, post, request, send_raw};

#[path = "support/keys.rs"]
mod keys;

use keys::{ADMIN_KEY, INVOKE_KEY};

/// The platform with its gateway.
async fn gateway(setup: Setup) -> (Platform, String) {
    let p = start(Setup {
        http: true,
        ..setup
    })
    .await;
    let addr = p.http.clone().unwrap();
    (p, addr)
}

fn with_config(config: Config) -> Setup {
    Setup {
        config,
        ..Setup::default()
    }
}

/// Reads `/invocations/ID` until `done` says so (at most about 10 s).
async fn poll(addr: &str, id: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let path = format!("/invocations/{id}");
    for _ in 0..500 {
        let reply = get(addr, &path, &[]).await;
        if done(&reply) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never reached the expected state");
}

fn finished(reply: &Reply) -> bool {
    reply.status == 200 && matches!(reply.json()["state"].as_str(), Some("succeeded" | "failed"))
}

#[tokio::test]
async fn a_call_answers_the_functions_body_with_what_served_it() {
    let (p, addr) = gateway(Setup::default()).await;
    let reply = post(&addr, "/function/hello", &[], b"{\"x\":1}").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, b"hello world");
    uuid::Uuid::parse_str(reply.must("x-faas-request-id")).unwrap();
    assert_eq!(reply.must("x-faas-cold-start"), "true");
    assert_eq!(reply.must("x-faas-duration-ms"), "0.004");
    assert_eq!(reply.must("x-faas-node-id"), "node-7");
    assert_eq!(reply.must("x-faas-container-id"), "container-42");
    assert!(reply.must("x-faas-acquire-ms").parse::<f64>().unwrap() >= 0.0);
    assert_eq!(reply.must("x-faas-target"), "hello");
    assert_eq!(reply.must("x-faas-version"), "latest");
    // The default account, and the event as sent.
    let calls = p.calls();
    let Some(Call::Acquire(acquire)) = calls.first() else {
        panic!("{calls:?}")
    };
    assert_eq!(acquire.account_id, "faas-cli");
    assert_eq!(acquire.request_id, reply.must("x-faas-request-id"));
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Invoke(i) if i.event == b"{\"x\":1}"))
    );

    // GET works too, with an empty event, and the caller names its account.
    let reply = get(&addr, "/function/hello", &[("x-faas-account", "acct-9")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let accounts: Vec<_> = p
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Acquire(a) => Some(a.account_id),
            _ => None,
        })
        .collect();
    assert_eq!(accounts, ["faas-cli", "acct-9"]);
    p.stop().await;
}

/// Asserts `reply` is the JSON error `status` `code` whose message contains `text`.
fn assert_error(reply: &Reply, status: u16, code: &str, text: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.error_code(), code, "{reply:?}");
    assert!(reply.error_message().contains(text), "{reply:?}");
}

/// `POST path` with an event `x` on a new platform of `setup`.
async fn call_once(setup: Setup, path: &str) -> (Reply, Platform) {
    let (p, addr) = gateway(setup).await;
    (post(&addr, path, &[], b"x").await, p)
}

#[tokio::test]
async fn an_unknown_function_is_404_and_nothing_is_acquired() {
    let (reply, p) = call_once(Setup::default(), "/function/nope").await;
    assert_error(&reply, 404, "not_found", "function nope not found");
    assert!(reply.header("x-faas-request-id").is_some());
    assert_eq!(p.acquires(), 0);
    p.stop().await;
}

#[tokio::test]
async fn a_bad_event_or_bad_headers_are_400() {
    let (p, addr) = gateway(Setup::node(NodeBehaviour::BadEvent)).await;
    let reply = post(&addr, "/function/echo", &[], b"x").await;
    assert_error(&reply, 400, "bad_request", "cannot read the event");
    let reply = post(
        &addr,
        "/function/echo",
        &[("x-faas-timeout-ms", "soon")],
        b"",
    )
    .await;
    assert_error(&reply, 400, "bad_request", "x-faas-timeout-ms");
    let reply = post(&addr, "/function/echo", &[("x-faas-route", "novalue")], b"").await;
    assert_error(&reply, 400, "bad_request", "key=value");
    // A name that is not UTF-8 once percent-decoded.
    let reply = post(&addr, "/function/%FF%FE", &[], b"").await;
    assert_error(&reply, 400, "bad_request", "percent-encode UTF-8");
    p.stop().await;
}

#[tokio::test]
async fn an_event_over_the_limit_is_413_before_it_is_read() {
    let config = Config {
        max_event_bytes: 16,
        ..Config::default()
    };
    let (p, addr) = gateway(with_config(config)).await;
    // Only the head is sent: the refusal cannot have waited for the body.
    let raw =
        format!("POST /function/hello HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 100000\r\n\r\n");
    let reply = send_raw(&addr, raw.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.error_code(), "payload_too_large");
    assert!(
        reply.error_message().contains("--max-event-bytes"),
        "{reply:?}"
    );
    // Chunked, without a length: refused once it grows past the limit.
    let raw = format!(
        "POST /function/hello HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n20\r\n{}\r\n0\r\n\r\n",
        "y".repeat(32)
    );
    let reply = send_raw(&addr, raw.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(p.acquires(), 0);
    // Within the limit it runs.
    let reply = post(&addr, "/function/hello", &[], b"0123456789").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    p.stop().await;
}

#[tokio::test]
async fn an_account_over_its_limit_is_429_with_retry_after() {
    let config = Config {
        account_concurrency: 1,
        ..Config::default()
    };
    let (p, addr) = gateway(Setup {
        hang_acquire: true,
        ..with_config(config)
    })
    .await;
    let first = {
        let addr = addr.clone();
        tokio::spawn(async move { post(&addr, "/function/hello", &[], b"").await })
    };
    while p.acquires() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reply = post(&addr, "/function/hello", &[], b"").await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.error_code(), "rate_limited");
    assert_eq!(reply.must("retry-after"), "1");
    assert!(
        reply.error_message().contains("--account-concurrency"),
        "{reply:?}"
    );
    // Another account is not held back.
    let other = tokio::spawn({
        let addr = addr.clone();
        async move { post(&addr, "/function/hello", &[("x-faas-account", "b")], b"").await }
    });
    while p.acquires() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    other.abort();
    drop(p);
}

#[tokio::test]
async fn no_capacity_is_429_with_retry_after() {
    let setup = Setup::refuse(Code::ResourceExhausted, "no room left");
    let (reply, p) = call_once(setup, "/function/hello").await;
    assert_error(&reply, 429, "no_capacity", "no room left");
    assert_eq!(reply.must("retry-after"), "1");
    p.stop().await;
}

#[tokio::test]
async fn a_function_error_is_502_with_its_message() {
    let setup = Setup::node(NodeBehaviour::FunctionError);
    let (reply, p) = call_once(setup, "/function/echo").await;
    let message = "function echo failed: division by zero";
    assert_error(&reply, 502, "function_error", message);
    assert_eq!(reply.error_message(), message);
    assert_eq!(reply.must("x-faas-target"), "echo");
    p.stop().await;
}

#[tokio::test]
async fn a_timeout_is_504() {
    let (reply, p) = call_once(Setup::node(NodeBehaviour::Timeout), "/function/echo").await;
    assert_error(&reply, 504, "timeout", "timed out");
    p.stop().await;
}

#[tokio::test]
async fn the_callers_deadline_is_504_while_the_node_still_runs_the_call() {
    let (p, addr) = gateway(Setup::node(NodeBehaviour::Hang)).await;
    let reply = post(
        &addr,
        "/function/echo",
        &[("x-faas-timeout-ms", "300")],
        b"x",
    )
    .await;
    assert_error(
        &reply,
        504,
        "timeout",
        "no answer within the 300 ms of x-faas-timeout-ms",
    );
    p.stop().await;
}

#[tokio::test]
async fn a_platform_that_cannot_serve_is_503() {
    let setup = Setup::refuse(Code::Unavailable, "no node answers");
    let (reply, p) = call_once(setup, "/function/hello").await;
    assert_error(&reply, 503, "unavailable", "no node answers");
    p.stop().await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_huge_headers_do_no_harm() {
    let (p, addr) = gateway(Setup::default()).await;
    let reply = get(&addr, "/nothing/here", &[]).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.error_code(), "not_found");
    let reply = get(&addr, "/function/a/b", &[]).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = request(&addr, "DELETE", "/function/hello", &[], b"").await;
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.error_code(), "method_not_allowed");
    let reply = post(&addr, "/functions", &[], b"").await;
    assert_eq!(reply.status, 405, "{reply:?}");
    let huge = "h".repeat(1024 * 1024);
    let reply = post(&addr, "/function/hello", &[("x-huge", &huge)], b"").await;
    assert!(reply.status == 0 || reply.status == 431, "{reply:?}");
    let long_route = "r".repeat(1000);
    let reply = post(
        &addr,
        "/function/hello",
        &[("x-faas-route-id", &long_route)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // Still serving.
    let reply = get(&addr, "/healthz", &[]).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    p.stop().await;
}

#[tokio::test]
async fn functions_and_metrics_are_listed() {
    let (p, addr) = gateway(Setup::default()).await;
    let reply = get(&addr, "/functions", &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let list = reply.json();
    let hello = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "hello")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(hello["handler"], "hello");
    assert_eq!(hello["kind"], "builtin");
    assert_eq!(hello["memory_bytes"], 128 * 1024 * 1024);
    assert_eq!(hello["timeout_ms"], 60_000);
    post(&addr, "/function/hello", &[], b"").await;
    let reply = get(&addr, "/metrics", &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .text()
            .contains(r#"faas_apiserver_invocations_total{function="hello",outcome="ok"} 1"#),
        "{}",
        reply.text()
    );
    p.stop().await;
}

#[tokio::test]
async fn an_async_call_answers_202_then_its_result() {
    let (p, addr) = gateway(Setup::default()).await;
    let reply = post(
        &addr,
        "/async-function/hello",
        &[("x-faas-account", "a")],
        b"ev",
    )
    .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let v = reply.json();
    let id = v["invocation_id"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(v["status_url"], format!("/invocations/{id}"));
    assert_eq!(reply.must("x-faas-invocation-id"), id);

    let done = poll(&addr, &id, finished).await.json();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["body"], "hello world");
    assert_eq!(done["function_name"], "hello");
    assert_eq!(done["target"], "hello");
    assert_eq!(done["version"], "latest");
    assert_eq!(done["cold_start"], true);
    let submitted = done["submitted_at_ms"].as_u64().unwrap();
    let started = done["started_at_ms"].as_u64().unwrap();
    let ended = done["finished_at_ms"].as_u64().unwrap();
    assert!(
        submitted > 0 && submitted <= started && started <= ended,
        "{done}"
    );
    let calls = p.calls();
    assert!(
        calls.iter().any(|c| matches!(c,
            Call::Acquire(a) if a.account_id == "a" && a.request_id == done["request_id"])),
        "{calls:?}"
    );

    // A call that fails is a result too, with InvokeFunction's code.
    let reply = post(&addr, "/async-function/nope", &[], b"").await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let id = reply.json()["invocation_id"].as_str().unwrap().to_string();
    let done = poll(&addr, &id, finished).await.json();
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "NOT_FOUND");
    assert_eq!(done["error"]["message"], "function nope not found");

    let reply = get(&addr, "/invocations/no-such-id", &[]).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(
        reply.error_message().contains("--async-retention-ms"),
        "{reply:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_result_is_forgotten_after_the_retention() {
    let config = Config {
        async_retention_ms: 300,
        ..Config::default()
    };
    let (p, addr) = gateway(with_config(config)).await;
    let reply = post(&addr, "/async-function/hello", &[], b"").await;
    let id = reply.json()["invocation_id"].as_str().unwrap().to_string();
    let done = poll(&addr, &id, |r| r.status != 200 || finished(r)).await;
    // Read before it is forgotten, or already forgotten on a slow machine: both end in 404.
    if done.status == 200 {
        assert_eq!(done.json()["state"], "succeeded");
    }
    let gone = poll(&addr, &id, |r| r.status == 404).await;
    assert_eq!(gone.error_code(), "not_found");
    assert!(gone.error_message().contains("300 ms"), "{gone:?}");
    p.stop().await;
}

#[tokio::test]
async fn a_full_async_store_is_429_with_retry_after() {
    let config = Config {
        async_max_kept: 1,
        async_concurrency: 1,
        ..Config::default()
    };
    let (p, addr) = gateway(Setup {
        hang_acquire: true,
        ..with_config(config)
    })
    .await;
    let reply = post(&addr, "/async-function/hello", &[], b"").await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let id = reply.json()["invocation_id"].as_str().unwrap().to_string();
    poll(&addr, &id, |r| r.json()["state"] == "running").await;
    let reply = post(&addr, "/async-function/hello", &[], b"").await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.error_code(), "no_capacity");
    assert_eq!(reply.must("retry-after"), "1");
    assert!(
        reply.error_message().contains("--async-max-kept"),
        "{reply:?}"
    );
    drop(p);
}

#[tokio::test]
async fn keys_are_checked_as_on_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        keys_file: Some(keys::admin_and_invoke(dir.path())),
        ..Config::default()
    };
    let (mut p, addr) = gateway(with_config(config)).await;
    let invoke_key = format!("Bearer {INVOKE_KEY}");
    let admin_key = format!("Bearer {ADMIN_KEY}");
    for path in ["/function/hello", "/async-function/hello"] {
        let reply = post(&addr, path, &[], b"").await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
        assert_eq!(reply.must("www-authenticate"), "Bearer");
        assert_eq!(reply.error_code(), "unauthenticated");
        assert!(
            reply.error_message().contains("Authorization: Bearer KEY"),
            "{reply:?}"
        );
    }
    for path in ["/functions", "/invocations/x", "/metrics"] {
        assert_eq!(get(&addr, path, &[]).await.status, 401, "{path}");
    }
    let wrong = post(
        &addr,
        "/function/hello",
        &[("authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(
        wrong
            .error_message()
            .contains("not one of this API server's keys")
    );
    let malformed = post(
        &addr,
        "/function/hello",
        &[("authorization", INVOKE_KEY)],
        b"",
    )
    .await;
    assert_eq!(malformed.status, 401, "{malformed:?}");
    assert!(malformed.error_message().contains("Bearer KEY"));

    let reply = post(
        &addr,
        "/function/hello",
        &[("authorization", &invoke_key)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = get(&addr, "/functions", &[("authorization", &invoke_key)]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // The figures are the operator's.
    let reply = get(&addr, "/metrics", &[("authorization", &invoke_key)]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reply.error_code(), "permission_denied");
    assert!(reply.error_message().contains("scope admin"), "{reply:?}");
    let reply = get(&addr, "/metrics", &[("authorization", &admin_key)]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // Probes need none.
    assert_eq!(get(&addr, "/healthz", &[]).await.status, 200);

    // The gRPC Invocations service sits behind the same check.
    let status = p
        .invocations
        .get_invocation(GetInvocationRequest {
            invocation_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    p.stop().await;
}

#[tokio::test]
async fn the_grpc_invocations_service_submits_and_reads() {
    let config = Config {
        max_event_bytes: 8,
        ..Config::default()
    };
    let (mut p, addr) = gateway(with_config(config)).await;
    let id = p
        .invocations
        .invoke_async(InvokeAsyncRequest {
            function_name: "hello".into(),
            account_id: "acct".into(),
            event: b"e".to_vec(),
            route_id: "user-1".into(),
            ..InvokeAsyncRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .invocation_id;
    // Read over gRPC until it ends; the gateway shows the same call.
    let mut reply = Default::default();
    for _ in 0..500 {
        reply = p
            .invocations
            .get_invocation(GetInvocationRequest {
                invocation_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if reply.state == "succeeded" || reply.state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reply.state, "succeeded", "{reply:?}");
    assert_eq!(reply.body, b"hello world");
    assert_eq!(reply.function_name, "hello");
    assert_eq!(reply.target, "hello");
    assert!(reply.cold_start);
    assert!(reply.finished_at_ms >= reply.started_at_ms && reply.started_at_ms > 0);
    let http = get(&addr, &format!("/invocations/{id}"), &[]).await.json();
    assert_eq!(http["request_id"], reply.request_id.as_str());

    let status = p
        .invocations
        .get_invocation(GetInvocationRequest {
            invocation_id: "gone".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let too_big = InvokeAsyncRequest {
        function_name: "hello".into(),
        account_id: "acct".into(),
        event: vec![b'x'; 9],
        ..InvokeAsyncRequest::default()
    };
    let status = p.invocations.invoke_async(too_big).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("over the limit of 8 bytes"),
        "{status:?}"
    );
    let no_account = InvokeAsyncRequest {
        function_name: "hello".into(),
        ..InvokeAsyncRequest::default()
    };
    let status = p.invocations.invoke_async(no_account).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    p.stop().await;
}

#[path = "support/cert.rs"]
mod cert;

#[tokio::test]
async fn a_plain_gateway_beside_tls_is_refused_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert::localhost_cert(dir.path());
    let config = Config {
        tls_cert: Some(cert.cert.clone()),
        tls_key: Some(cert.key.clone()),
        scheduler: "127.0.0.1:1".into(),
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = faas_apiserver::serve_with(listener, Some(http), config, shutdown::channel().1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--http-allow-plaintext"), "{err}");
}
