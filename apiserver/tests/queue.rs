//! The durable asynchronous queue over real gRPC on 127.0.0.1:0, against the fake scheduler
//! and node of `support/fakes.rs`, with the queue in a real SQLite file in a temporary data
//! directory: submit and result, retries after transient failures, dead letters and
//! redrive, callbacks (a function, a loopback URL), idempotency keys, bad input. The behaviour
//! tests run twice (`on_both_queues!`): `NAME::sqlite` with the embedded queue, `NAME::nats`
//! with the queue on a real `nats-server -js`. The restart test, SIGKILL on a real
//! `apiserver` process, is `queue_kill.rs`.

#![allow(dead_code)]

include!("support/fakes.rs");

use std::path::Path;

use faas_proto::invoke::{
    GetInvocationReply, InvokeAsyncRequest, ListDeadLettersRequest, RedriveRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/http.rs"]
mod http;
#[path = "support/queue_backend.rs"]
mod queue_backend;
use queue_backend::{Backend, QueueHome, quick_retries};

on_both_queues!(
    an_async_call_is_delivered_and_its_result_kept,
    a_transient_failure_is_retried_then_succeeds,
    the_last_failed_attempt_is_a_dead_letter_and_redrive_sends_it_back,
    callbacks_reach_a_function_and_a_loopback_url,
    an_idempotency_key_answers_the_first_calls_id,
    a_function_at_its_limit_waits_without_holding_up_another,
    the_gateway_takes_the_idempotency_key_and_callbacks_as_headers,
);

/// A server with its queue in `home` (the embedded database or NATS), retrying quickly (1 to
/// 20 ms between attempts).
fn queue_on(home: &QueueHome) -> Config {
    Config {
        queue: home.queue(),
        ..quick_retries(home.dir.path(), 20)
    }
}

/// The fakes' defaults, with [`queue_on`]: what a test changes of it is what it is about.
fn on(home: &QueueHome) -> Setup {
    Setup {
        config: queue_on(home),
        ..Setup::default()
    }
}

/// The fakes' defaults with `config`, but the scheduler never answers an acquire: every call
/// the queue takes stays running.
fn hanging(config: Config) -> Setup {
    Setup {
        hang_acquire: true,
        config,
        ..Setup::default()
    }
}

/// A home on the embedded queue, for the tests that run on it alone.
fn sqlite_home() -> QueueHome {
    QueueHome::new(Backend::Sqlite).expect("the embedded queue needs no server")
}

fn submit(function: &str, event: &[u8]) -> InvokeAsyncRequest {
    InvokeAsyncRequest {
        function_name: function.into(),
        account_id: "acct".into(),
        event: event.to_vec(),
        ..InvokeAsyncRequest::default()
    }
}

impl Platform {
    async fn submit(&mut self, request: InvokeAsyncRequest) -> Result<String, Status> {
        self.invocations
            .invoke_async(request)
            .await
            .map(|r| r.into_inner().invocation_id)
    }

    /// Polls `id` until its state is `state` (no wall-clock bound: the test harness's).
    async fn wait_for(&mut self, id: &str, state: &str) -> GetInvocationReply {
        loop {
            let got = self.get(id).await;
            if got.state == state {
                return got;
            }
            assert!(
                !(matches!(got.state.as_str(), "succeeded" | "failed" | "dead")),
                "{id} ended {} ({} {}), not {state}",
                got.state,
                got.error_code,
                got.error_message
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The events the node was called with, in order.
    fn events(&self) -> Vec<Vec<u8>> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Invoke(r) => Some(r.event),
                _ => None,
            })
            .collect()
    }

    async fn set_retry(
        &mut self,
        function: &str,
        attempts: Option<i64>,
    ) -> Result<admin::SetAsyncRetryReply, Status> {
        self.admin
            .set_async_retry(admin::SetAsyncRetryRequest {
                function: function.into(),
                max_attempts: attempts,
                first_delay_ms: Some(1),
                max_delay_ms: Some(5),
                clear: false,
            })
            .await
            .map(|r| r.into_inner())
    }
}

async fn an_async_call_is_delivered_and_its_result_kept(home: QueueHome) {
    let mut p = start(on(&home)).await;
    let id = p.submit(submit("hello", b"{\"n\":1}")).await.unwrap();
    let done = p.wait_for(&id, "succeeded").await;
    assert_eq!(done.body, b"hello world");
    assert_eq!(done.attempts, 1);
    assert!(!done.request_id.is_empty());
    assert_eq!(p.events(), vec![b"{\"n\":1}".to_vec()]);
    if home.backend == Backend::Sqlite {
        // The call is in the database file.
        assert_eq!(rusqlite_count(home.dir.path(), &id), 1);
    }
    p.stop().await;
}

/// Rows of `async_calls` with this id, read with the `sqlite3` view of the file.
fn rusqlite_count(dir: &Path, id: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("apiserver.db")).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM async_calls WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

async fn a_transient_failure_is_retried_then_succeeds(home: QueueHome) {
    let mut p = start(Setup {
        refuse: Some((Code::ResourceExhausted, "no capacity")),
        refuse_first: 2,
        ..on(&home)
    })
    .await;
    let id = p.submit(submit("hello", b"")).await.unwrap();
    let done = p.wait_for(&id, "succeeded").await;
    assert_eq!(done.attempts, 3, "two refusals, then the container");
    assert_eq!(done.body, b"hello world");
    assert_eq!(p.acquires(), 3);
    p.stop().await;
}

#[tokio::test]
async fn a_bad_event_or_the_functions_own_failure_is_not_retried() {
    let home = sqlite_home();
    let mut p = start(on(&home)).await;
    let id = p.submit(submit("nope", b"")).await.unwrap();
    let done = p.wait_for(&id, "failed").await;
    assert_eq!((done.error_code.as_str(), done.attempts), ("NOT_FOUND", 1));
    let home2 = sqlite_home();
    let mut p2 = start(Setup {
        nodes: vec![NodeBehaviour::FunctionError],
        ..on(&home2)
    })
    .await;
    let id = p2.submit(submit("hello", b"")).await.unwrap();
    let done = p2.wait_for(&id, "failed").await;
    assert_eq!(done.attempts, 1, "the function's own failure is its result");
    assert_eq!(p2.acquires(), 1);
    // Nor is the function's own timeout, though its code is DEADLINE_EXCEEDED.
    let home3 = sqlite_home();
    let mut p3 = start(Setup {
        nodes: vec![NodeBehaviour::Timeout],
        ..on(&home3)
    })
    .await;
    let id = p3.submit(submit("hello", b"")).await.unwrap();
    let done = p3.wait_for(&id, "failed").await;
    assert_eq!(
        (done.error_code.as_str(), done.attempts),
        ("DEADLINE_EXCEEDED", 1)
    );
    p.stop().await;
    p2.stop().await;
    p3.stop().await;
}

async fn the_last_failed_attempt_is_a_dead_letter_and_redrive_sends_it_back(home: QueueHome) {
    let mut p = start(Setup {
        refuse: Some((Code::ResourceExhausted, "no capacity")),
        refuse_first: 2,
        ..on(&home)
    })
    .await;
    let set = p.set_retry("hello", Some(2)).await.unwrap();
    assert_eq!(set.retry.unwrap().max_attempts, 2);
    let id = p.submit(submit("hello", b"again")).await.unwrap();
    let dead = p.wait_for(&id, "dead").await;
    assert_eq!(
        (dead.attempts, dead.error_code.as_str()),
        (2, "RESOURCE_EXHAUSTED")
    );
    let listed = p
        .invocations
        .list_dead_letters(ListDeadLettersRequest {
            function_name: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].invocation_id, id);
    // Describe shows it.
    let described = p
        .admin
        .describe_function(admin::DescribeFunctionRequest {
            name: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let queue = described.queue.unwrap();
    assert_eq!((queue.dead_letters, queue.depth), (1, 0));
    assert_eq!(queue.retry.unwrap().max_attempts, 2);
    // An id that is no dead letter is named.
    let err = p
        .invocations
        .redrive(RedriveRequest {
            function_name: "hello".into(),
            invocation_ids: vec!["not-one".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("not-one"), "{err:?}");
    // The scheduler has room now: the redriven call succeeds, with its event.
    let redriven = p
        .invocations
        .redrive(RedriveRequest {
            function_name: "hello".into(),
            invocation_ids: vec![id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .invocation_ids;
    assert_eq!(redriven, vec![id.clone()]);
    let done = p.wait_for(&id, "succeeded").await;
    assert_eq!(done.attempts, 1, "attempts count from zero after a redrive");
    assert_eq!(p.events(), vec![b"again".to_vec()]);
    p.stop().await;
}

/// A loopback HTTP server that answers 200 to each request and hands over each body.
async fn hook() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the body by its length.
            let body = loop {
                let n = stream.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + len {
                        break String::from_utf8_lossy(&seen[end + 4..end + 4 + len]).to_string();
                    }
                }
                assert!(n > 0, "the callback closed early");
            };
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            tx.send(body).unwrap();
        }
    });
    (format!("http://{addr}/hook"), rx)
}

async fn callbacks_reach_a_function_and_a_loopback_url(home: QueueHome) {
    let mut p = start(on(&home)).await;
    let (url, mut bodies) = hook().await;
    // On success, to a URL.
    let ok = p
        .submit(InvokeAsyncRequest {
            on_success: url.clone(),
            on_failure: "http://127.0.0.1:1/never".into(),
            ..submit("hello", b"1")
        })
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&bodies.recv().await.unwrap()).unwrap();
    assert_eq!(body["invocation_id"], ok.as_str());
    assert_eq!(body["state"], "succeeded");
    assert_eq!(body["body"], "hello world");
    // On failure, to a URL.
    let failed = p
        .submit(InvokeAsyncRequest {
            on_success: "http://127.0.0.1:1/never".into(),
            on_failure: url.clone(),
            ..submit("nope", b"2")
        })
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&bodies.recv().await.unwrap()).unwrap();
    assert_eq!(body["invocation_id"], failed.as_str());
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    // On success, to a function: invoked through the queue with the result as its event.
    let first = p
        .submit(InvokeAsyncRequest {
            on_success: "echo".into(),
            ..submit("hello", b"3")
        })
        .await
        .unwrap();
    p.wait_for(&first, "succeeded").await;
    let chained = loop {
        let found = p.events().into_iter().find_map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e).ok()?;
            (v["invocation_id"] == first.as_str()).then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(chained["state"], "succeeded");
    assert_eq!(chained["function_name"], "hello");
    p.stop().await;
}

async fn an_idempotency_key_answers_the_first_calls_id(home: QueueHome) {
    let mut p = start(on(&home)).await;
    let keyed = |account: &str| InvokeAsyncRequest {
        idempotency_key: "order-17".into(),
        account_id: account.into(),
        ..submit("hello", b"x")
    };
    let first = p
        .invocations
        .invoke_async(keyed("acct"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    let again = p
        .invocations
        .invoke_async(keyed("acct"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.invocation_id, first.invocation_id);
    assert!(!again.created);
    let other = p
        .invocations
        .invoke_async(keyed("other"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        other.invocation_id, first.invocation_id,
        "keys are per account"
    );
    p.wait_for(&first.invocation_id, "succeeded").await;
    p.wait_for(&other.invocation_id, "succeeded").await;
    assert_eq!(p.events().len(), 2, "the repeated submit was not delivered");
    p.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let home = sqlite_home();
    let mut p = start(hanging(Config {
        max_event_bytes: 16,
        async_max_kept: 1,
        ..queue_on(&home)
    }))
    .await;
    let err = p
        .submit(InvokeAsyncRequest {
            on_success: "http://example.com/hook".into(),
            ..submit("hello", b"")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("on_success:"), "{err:?}");
    let err = p
        .submit(InvokeAsyncRequest {
            on_failure: "https://127.0.0.1/x".into(),
            ..submit("hello", b"")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("on_failure:"), "{err:?}");
    for attempts in [0, -1] {
        let err = p.set_retry("hello", Some(attempts)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("max_attempts"), "{err:?}");
    }
    let err = p.set_retry("nope", Some(2)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = p.submit(submit("hello", &[b'x'; 17])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("event is 17 bytes"), "{err:?}");
    // The queue holds one call (its acquire never answers): the next is refused, and
    // nothing of it is kept.
    let id = p.submit(submit("hello", b"")).await.unwrap();
    p.wait_for(&id, "running").await;
    let err = p.submit(submit("hello", b"")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("--async-max-kept"), "{err:?}");
    let conn = rusqlite::Connection::open(home.dir.path().join("apiserver.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM async_calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    drop(p);
}

async fn a_function_at_its_limit_waits_without_holding_up_another(home: QueueHome) {
    let mut p = start(hanging(Config {
        async_concurrency: 8,
        async_function_concurrency: 2,
        ..queue_on(&home)
    }))
    .await;
    let mut hello = Vec::new();
    for name in ["hello"; 4] {
        hello.push(p.submit(submit(name, b"")).await.unwrap());
    }
    let echo = p.submit(submit("echo", b"")).await.unwrap();
    // echo runs though hello's calls came first and two of them wait.
    p.wait_for(&echo, "running").await;
    while p.acquires() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut states = Vec::new();
    for id in &hello {
        states.push(p.get(id).await.state);
    }
    let running = states.iter().filter(|s| *s == "running").count();
    assert_eq!(
        running, 2,
        "NAME and its versions share the limit: {states:?}"
    );
    assert_eq!(p.acquires(), 3, "two of hello, one of echo");
    drop(p);
}

async fn the_gateway_takes_the_idempotency_key_and_callbacks_as_headers(home: QueueHome) {
    let mut p = start(Setup {
        http: true,
        ..on(&home)
    })
    .await;
    let addr = p.http.clone().unwrap();
    let (url, mut bodies) = hook().await;
    let headers = [("idempotency-key", "k-1"), ("x-callback-url", url.as_str())];
    let first = http::post(&addr, "/async-function/hello", &headers, b"{}").await;
    assert_eq!(first.status, 202, "{first:?}");
    let id = first.json()["invocation_id"].as_str().unwrap().to_string();
    let again = http::post(&addr, "/async-function/hello", &headers, b"{}").await;
    assert_eq!(again.json()["invocation_id"], id.as_str());
    let body: serde_json::Value = serde_json::from_str(&bodies.recv().await.unwrap()).unwrap();
    assert_eq!(
        (body["invocation_id"].as_str(), body["state"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
    assert_eq!(p.wait_for(&id, "succeeded").await.attempts, 1);
    let bad = http::post(
        &addr,
        "/async-function/hello",
        &[("x-faas-on-failure", "http://192.0.2.1/hook")],
        b"",
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error_message().starts_with("on_failure:"), "{bad:?}");
    p.stop().await;
}
