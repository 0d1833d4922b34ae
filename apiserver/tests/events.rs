//! Topics and chains over real gRPC on 127.0.0.1:0, against the fake scheduler and node of
//! `support/fakes.rs` (the node answers `hello world` for every function and logs each call
//! with its function and request id), with the queue and the events tables in a real SQLite
//! file: a topic with two subscribers and a filter, a repeated emit, an emit that does not
//! fit the queue (nothing kept), chains on success (asynchronous and synchronous calls) and on
//! failure (same request id), a
//! cycle, every bad input, deleting a subscribed function, and `POST /topics/TOPIC`.

#![allow(dead_code)]

include!("support/fakes.rs");

use std::path::Path;

use faas_proto::events::event_admin_client::EventAdminClient;
use faas_proto::events::events_client::EventsClient;
use faas_proto::events::{
    Chain, EmitReply, EmitRequest, GetChainRequest, ListTopicsRequest, SetChainRequest,
    SubscribeRequest, Subscription, UnsubscribeRequest,
};
use faas_proto::invoke::{GetInvocationReply, InvokeAsyncRequest};

#[path = "support/http.rs"]
mod http;
#[path = "support/queue_backend.rs"]
mod queue_backend;

/// The fakes' defaults, with the server's data in `dir` and its calls retried after 1 to 5 ms.
fn setup(dir: &Path) -> Setup {
    Setup {
        config: queue_backend::quick_retries(dir, 5),
        ..Setup::default()
    }
}

struct Events {
    events: EventsClient<Channel>,
    admin: EventAdminClient<Channel>,
}

async fn clients(p: &Platform) -> Events {
    let channel = faas_common::serve::connect(&p.addr).await.unwrap();
    Events {
        events: EventsClient::new(channel.clone()),
        admin: EventAdminClient::new(channel),
    }
}

/// The platform of `setup` with `functions` deployed, and its events clients.
async fn up(setup: Setup, functions: &[&str]) -> (Platform, Events) {
    let mut p = start(setup).await;
    p.deploy_all(functions).await;
    let e = clients(&p).await;
    (p, e)
}

impl Events {
    async fn subscribe(
        &mut self,
        topic: &str,
        function: &str,
        filter: &[&str],
    ) -> Result<bool, Status> {
        self.admin
            .subscribe(SubscribeRequest {
                topic: topic.into(),
                function: function.into(),
                filter: filter.iter().map(|f| f.to_string()).collect(),
            })
            .await
            .map(|r| r.into_inner().created)
    }

    async fn emit(&mut self, topic: &str, event: &[u8], key: &str) -> Result<EmitReply, Status> {
        self.events
            .emit(EmitRequest {
                topic: topic.into(),
                event: event.to_vec(),
                account_id: "acct".into(),
                idempotency_key: key.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Every subscription, as `ListTopics` answers.
    async fn topics(&mut self) -> Vec<Subscription> {
        self.admin
            .list_topics(ListTopicsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .subscriptions
    }

    /// The chain `function` starts.
    async fn get_chain(&mut self, function: &str) -> Chain {
        self.admin
            .get_chain(GetChainRequest {
                function: function.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn chain(&mut self, function: &str, ok: &str, fail: &str) -> Result<(), Status> {
        self.admin
            .set_chain(SetChainRequest {
                function: function.into(),
                on_success: ok.into(),
                on_failure: fail.into(),
            })
            .await
            .map(|_| ())
    }
}

impl Platform {
    /// Polls `id` until it has finished (no wall-clock bound: the test harness's).
    async fn finished(&mut self, id: &str) -> GetInvocationReply {
        loop {
            let got = self.get(id).await;
            if matches!(got.state.as_str(), "succeeded" | "failed" | "dead") {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Submits an asynchronous call of `function` (account `acct`); its id.
    async fn submit(&mut self, function: &str, event: &[u8]) -> String {
        self.invocations
            .invoke_async(InvokeAsyncRequest {
                function_name: function.into(),
                account_id: "acct".into(),
                event: event.to_vec(),
                ..InvokeAsyncRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .invocation_id
    }

    /// The node's calls of `function`: (request id, event).
    fn node_calls(&self, function: &str) -> Vec<(String, Vec<u8>)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Invoke(r)
                    if r.function_meta.as_ref().map(|m| m.function_name.as_str())
                        == Some(function) =>
                {
                    Some((r.request_id, r.event))
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until the node has seen `n` calls of `function`.
    async fn wait_calls(&self, function: &str, n: usize) -> Vec<(String, Vec<u8>)> {
        loop {
            let calls = self.node_calls(function);
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn deploy_all(&mut self, names: &[&str]) {
        for name in names {
            self.deploy(admin_spec(name, "hello", 1000)).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_topic_reaches_every_subscriber_whose_filter_matches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut e) = up(setup(dir.path()), &["audit", "orders"]).await;
    assert!(e.subscribe("shop.events", "audit", &[]).await.unwrap());
    assert!(
        e.subscribe("shop.events", "orders", &["type=order", "n=2"])
            .await
            .unwrap()
    );
    let events: [&[u8]; 4] = [
        br#"{"type":"order","n":2}"#,
        br#"{"type":"refund","n":2}"#,
        br#"{"type":"order","n":3}"#,
        b"not json",
    ];
    let mut ids = Vec::new();
    for event in events {
        let reply = e.emit("shop.events", event, "").await.unwrap();
        ids.extend(reply.deliveries.into_iter().map(|d| d.invocation_id));
    }
    assert_eq!(ids.len(), 5, "audit gets all four, orders one");
    for id in &ids {
        assert_eq!(p.finished(id).await.state, "succeeded");
    }
    assert_eq!(p.node_calls("audit").len(), 4);
    let orders = p.node_calls("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].1, events[0]);

    // The same key delivers nothing twice.
    let first = e.emit("shop.events", events[0], "once-1").await.unwrap();
    let again = e.emit("shop.events", events[0], "once-1").await.unwrap();
    assert_eq!(first.emit_id, "once-1");
    assert_eq!(first.deliveries.len(), 2);
    assert!(first.deliveries.iter().all(|d| d.created));
    assert!(again.deliveries.iter().all(|d| !d.created));
    let firsts: Vec<_> = first.deliveries.iter().map(|d| &d.invocation_id).collect();
    let agains: Vec<_> = again.deliveries.iter().map(|d| &d.invocation_id).collect();
    assert_eq!(firsts, agains);
    for d in &first.deliveries {
        p.finished(&d.invocation_id).await;
    }
    assert_eq!(p.node_calls("audit").len(), 5);
    assert_eq!(p.node_calls("orders").len(), 2);

    // A topic nobody listens to: OK, nothing delivered.
    let none = e.emit("nobody.listens", b"{}", "").await.unwrap();
    assert!(none.deliveries.is_empty());

    let listed = e.topics().await;
    let shown: Vec<_> = listed
        .iter()
        .map(|s| (s.topic.as_str(), s.function.as_str(), s.filter.join(",")))
        .collect();
    assert_eq!(
        shown,
        [
            ("shop.events", "audit", String::new()),
            ("shop.events", "orders", "n=2,type=order".to_string())
        ]
    );
    e.admin
        .unsubscribe(UnsubscribeRequest {
            topic: "shop.events".into(),
            function: "audit".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        e.emit("shop.events", b"{}", "")
            .await
            .unwrap()
            .deliveries
            .len(),
        0
    );
    p.stop().await;
}

#[tokio::test]
async fn an_emit_the_queue_cannot_hold_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut tight = setup(dir.path());
    tight.config.async_max_kept = 1;
    let (p, mut e) = up(tight, &["a", "b"]).await;
    e.subscribe("t", "a", &[]).await.unwrap();
    e.subscribe("t", "b", &[]).await.unwrap();
    let refused = e.emit("t", b"{}", "").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--async-max-kept"),
        "{refused:?}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("apiserver.db")).unwrap();
    let kept: i64 = conn
        .query_row("SELECT COUNT(*) FROM async_calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        kept, 0,
        "all or nothing: the first call was not kept either"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_chain_on_success_calls_the_target_with_the_result_under_the_first_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut e) = up(setup(dir.path()), &["first", "second", "third"]).await;
    e.chain("first", "second", "").await.unwrap();
    e.chain("second", "third", "").await.unwrap();
    let id = p.submit("first", b"{\"go\":1}").await;
    let done = p.finished(&id).await;
    assert_eq!(done.state, "succeeded");
    let third = p.wait_calls("third", 1).await;
    let second = p.node_calls("second");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].1, b"hello world", "the first call's result");
    assert_eq!(second[0].0, done.request_id, "the first call's request id");
    assert_eq!(third[0].0, done.request_id, "down every step");
    let chain = e.get_chain("first").await;
    assert_eq!(
        (chain.on_success.as_str(), chain.on_failure.as_str()),
        ("second", "")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.node_calls("third").len(), 1, "one step each");

    // A synchronous call follows the chain too, under its own request id.
    let reply = p
        .api
        .invoke_function(invoke("second", "acct", b"{}"))
        .await
        .unwrap()
        .into_inner();
    let third = p.wait_calls("third", 2).await;
    assert_eq!(third[1].0, reply.request_id);
    assert_eq!(third[1].1, b"hello world", "the synchronous call's result");
    p.stop().await;
}

#[tokio::test]
async fn a_chain_on_failure_calls_its_target_once_after_the_last_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut e) = up(
        Setup {
            refuse: Some((Code::ResourceExhausted, "no capacity")),
            refuse_first: 2,
            ..setup(dir.path())
        },
        &["flaky", "alarm"],
    )
    .await;
    p.admin
        .set_async_retry(admin::SetAsyncRetryRequest {
            function: "flaky".into(),
            max_attempts: Some(2),
            first_delay_ms: Some(1),
            max_delay_ms: Some(5),
            clear: false,
        })
        .await
        .unwrap();
    e.chain("flaky", "", "alarm").await.unwrap();
    let id = p.submit("flaky", b"").await;
    let done = p.finished(&id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("dead", 2));
    let alarm = p.wait_calls("alarm", 1).await;
    let event: serde_json::Value = serde_json::from_slice(&alarm[0].1).unwrap();
    assert_eq!(event["invocation_id"], id.as_str());
    assert_eq!(event["state"], "dead");
    assert_eq!(event["error"]["code"], "RESOURCE_EXHAUSTED");
    assert!(event["started_at_ms"].as_u64().unwrap() > 0, "{event}");
    assert_eq!(alarm[0].0, done.request_id, "the failed call's request id");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.node_calls("alarm").len(), 1, "called once");
    assert!(p.node_calls("flaky").is_empty(), "never reached a node");
    p.stop().await;
}

#[tokio::test]
async fn a_cycle_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut e) = up(setup(dir.path()), &["a", "b", "c"]).await;
    e.chain("a", "b", "").await.unwrap();
    e.chain("b", "", "c").await.unwrap();
    let refused = e.chain("c", "a", "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("on_success: the chain c -> a -> b -> c is a cycle"),
        "{refused:?}"
    );
    let own = e.chain("c", "", "c").await.unwrap_err();
    assert!(
        own.message().starts_with("on_failure: the chain c -> c"),
        "{own:?}"
    );
    // A diamond is no cycle.
    e.chain("a", "b", "c").await.unwrap();
    p.stop().await;
}

/// Each result is an error of its code whose message starts with its text.
fn refused_as<T: std::fmt::Debug>(
    cases: impl IntoIterator<Item = (Result<T, Status>, Code, &'static str)>,
) {
    for (got, code, start) in cases {
        let s = got.unwrap_err();
        assert_eq!(s.code(), code, "{s:?}");
        assert!(
            s.message().starts_with(start),
            "{s:?} does not start with {start}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut small = setup(dir.path());
    small.config.max_event_bytes = 64;
    let (p, mut e) = up(small, &["a"]).await;
    let cases = [
        (
            e.subscribe("t", "ghost", &[]).await,
            Code::NotFound,
            "function: function ghost is not deployed",
        ),
        (
            e.subscribe("bad topic", "a", &[]).await,
            Code::InvalidArgument,
            "topic: ",
        ),
        (
            e.subscribe("t", "a", &["type"]).await,
            Code::InvalidArgument,
            "filter[0]: \"type\" is not FIELD=VALUE",
        ),
        (
            e.subscribe("t", "a:9", &[]).await,
            Code::NotFound,
            "function: version 9 of a",
        ),
        (
            e.subscribe("t", "", &[]).await,
            Code::InvalidArgument,
            "function: cannot be empty",
        ),
    ];
    refused_as(cases);
    let chains = [
        (
            e.chain("a", "ghost", "").await,
            Code::NotFound,
            "on_success: function ghost is not deployed",
        ),
        (
            e.chain("a", "", "ghost").await,
            Code::NotFound,
            "on_failure: function ghost is not deployed",
        ),
        (
            e.chain("ghost", "a", "").await,
            Code::NotFound,
            "function: function ghost is not deployed",
        ),
        (
            e.chain("a", "a:live", "").await,
            Code::InvalidArgument,
            "on_success: ",
        ),
    ];
    refused_as(chains);
    let big = e.emit("t", &[b'x'; 65], "").await.unwrap_err();
    assert_eq!(big.code(), Code::InvalidArgument, "{big:?}");
    assert!(big.message().contains("event is 65 bytes"), "{big:?}");
    let topic = e.emit("a/b", b"{}", "").await.unwrap_err();
    assert_eq!(topic.code(), Code::InvalidArgument);
    assert!(
        topic.message().starts_with("topic: \"a/b\" contains '/'"),
        "{topic:?}"
    );
    let key = e.emit("t", b"{}", &"k".repeat(200)).await.unwrap_err();
    assert!(key.message().starts_with("idempotency_key: "), "{key:?}");
    let gone = e
        .admin
        .unsubscribe(UnsubscribeRequest {
            topic: "t".into(),
            function: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    p.stop().await;
}

#[tokio::test]
async fn deleting_a_function_removes_its_subscriptions_and_the_chains_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut e) = up(setup(dir.path()), &["a", "b"]).await;
    e.subscribe("t", "b", &[]).await.unwrap();
    e.subscribe("t", "a", &[]).await.unwrap();
    e.chain("a", "b", "b").await.unwrap();
    p.admin
        .delete_function(admin::DeleteFunctionRequest { name: "b".into() })
        .await
        .unwrap();
    let left = e.topics().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].function, "a");
    let chain = e.get_chain("a").await;
    assert_eq!(
        (chain.on_success.as_str(), chain.on_failure.as_str()),
        ("", "")
    );
    // Deployed again, b starts with no subscription.
    p.deploy_all(&["b"]).await;
    assert_eq!(e.emit("t", b"{}", "").await.unwrap().deliveries.len(), 1);
    p.stop().await;
}

#[tokio::test]
async fn the_gateway_emits_with_post_topics() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut e) = up(
        Setup {
            http: true,
            ..setup(dir.path())
        },
        &["a"],
    )
    .await;
    e.subscribe("web.hook", "a", &["kind=ping"]).await.unwrap();
    let addr = p.http.clone().unwrap();
    let reply = http::post(
        &addr,
        "/topics/web.hook",
        &[("idempotency-key", "h1")],
        br#"{"kind":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["emit_id"], "h1");
    let id = body["deliveries"][0]["invocation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(body["deliveries"][0]["function"], "a");
    assert_eq!(p.finished(&id).await.state, "succeeded");
    let other = http::post(&addr, "/topics/web.hook", &[], br#"{"kind":"pong"}"#).await;
    assert_eq!(other.status, 202);
    assert_eq!(other.json()["deliveries"].as_array().unwrap().len(), 0);
    let big = vec![b'x'; 7 * 1024 * 1024];
    let too_large = http::post(&addr, "/topics/web.hook", &[], &big).await;
    assert_eq!(too_large.status, 413, "{too_large:?}");
    let bad = http::post(&addr, "/topics/a%20b", &[], b"{}").await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error_message().starts_with("topic: "), "{bad:?}");
    p.stop().await;
}
