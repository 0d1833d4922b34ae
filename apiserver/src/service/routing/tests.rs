//! The service layer end to end over fake ports: a scheduler that always grants, a node whose
//! behaviour (latency, failure) is set per concrete function, and a clock that moves only
//! when the node says a call took time. Seeded dice make every run the same.
//! The catalog's own rules (no calls) are in `tests/catalog.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::routing::{
    BreakerConfig, Fallback, FallbackOn, Qualifier, RoutePolicy, Rule, TargetRef, parse_weights,
};
use crate::model::{
    AcquireRequest, Execution, Failure, FunctionSpec, MIB, NodeError, Placement, RemoteError,
    ReturnRequest,
};
use crate::service::invoke::{
    Clock, InvokeError, InvokeRequest, Invoker, NodeCall, NodePort, SchedulerPort,
};
use crate::service::registry::{Registry, RegistryError};
use crate::service::routing::{BreakerState, FallbackReason, RouteContext, Routed, Router};

/// How a concrete function behaves on the fake node.
#[derive(Clone, Copy, Debug)]
enum Acts {
    Fine { ms: u64 },
    Fails,
    TimesOut,
}

#[derive(Default)]
struct World {
    now: AtomicU64,
    acts: Mutex<HashMap<String, Acts>>,
    /// Concrete functions the node ran, in order.
    ran: Mutex<Vec<String>>,
}

impl World {
    fn act(&self, function: &str, acts: Acts) {
        self.acts.lock().unwrap().insert(function.to_string(), acts);
    }

    fn advance(&self, ms: u64) {
        self.now.fetch_add(ms * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for Arc<World> {
    fn monotonic_nanos(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl SchedulerPort for Arc<World> {
    async fn acquire(
        &self,
        req: AcquireRequest,
        _within: Option<Duration>,
    ) -> Result<Placement, RemoteError> {
        Ok(Placement {
            node_id: "node-1".into(),
            node_address: "127.0.0.1".into(),
            node_port: 1,
            container_id: format!("c-{}", req.function_name),
            cold_start: Some(false),
        })
    }

    async fn return_container(&self, _req: ReturnRequest) -> Result<(), RemoteError> {
        Ok(())
    }
}

impl NodePort for Arc<World> {
    async fn invoke(
        &self,
        _placement: &Placement,
        call: NodeCall<'_>,
    ) -> Result<Execution, NodeError> {
        let name = call.function.name.clone();
        self.ran.lock().unwrap().push(name.clone());
        let acts = self
            .acts
            .lock()
            .unwrap()
            .get(&name)
            .copied()
            .unwrap_or(Acts::Fine { ms: 1 });
        let failure = |code: &str| Failure {
            code: code.into(),
            message: format!("{name} says no"),
        };
        let (ms, failure) = match acts {
            Acts::Fine { ms } => (ms, None),
            Acts::Fails => (1, Some(failure("FunctionError"))),
            Acts::TimesOut => (call.function.timeout_ms as u64, Some(failure("Timeout"))),
        };
        self.advance(ms);
        Ok(Execution {
            body: name.into_bytes(),
            duration_nanos: (ms * 1_000_000) as i64,
            max_memory_bytes: 1,
            failure,
        })
    }
}

type TestRouter = Router<Arc<World>, Arc<World>, Arc<World>>;

fn spec(name: &str, handler: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 1000,
        description: String::new(),
        ..Default::default()
    }
}

/// `shop` (echo) with versions 1 (echo) and 2 (sleep), alias `live` = `weights`.
fn shop(weights: &str, seed: u64) -> (TestRouter, Arc<World>) {
    let world = Arc::new(World::default());
    let registry = Arc::new(Registry::new());
    registry.deploy(spec("shop", "echo"), 0).unwrap();
    registry.publish("shop", None, None, 1).unwrap();
    registry
        .publish("shop", Some(spec("shop", "sleep")), Some(2), 2)
        .unwrap();
    registry
        .set_alias("shop", "live", parse_weights(weights).unwrap(), 3)
        .unwrap();
    let invoker = Invoker::new(
        registry,
        world.clone(),
        world.clone(),
        world.clone(),
        1 << 20,
    );
    (Router::new(invoker, Some(seed)), world)
}

fn registry(router: &TestRouter) -> &Registry {
    router.invoker().registry()
}

fn call(name: &str, event: &str) -> InvokeRequest {
    InvokeRequest {
        request_id: "r".into(),
        account_id: "a".into(),
        function_name: name.into(),
        event: event.as_bytes().to_vec(),
        deadline: None,
    }
}

async fn served(router: &TestRouter, name: &str, ctx: &RouteContext) -> Routed {
    router.invoke(call(name, "{}"), ctx).await
}

fn body(r: &Routed) -> String {
    String::from_utf8(r.result.as_ref().expect("the call succeeds").body.clone()).unwrap()
}

fn fallback_to(target: &str, on: FallbackOn) -> Option<Fallback> {
    Some(Fallback {
        target: TargetRef::parse(target),
        on,
        share_percent: 0.0,
    })
}

const ALL: FallbackOn = FallbackOn {
    not_found: true,
    error: true,
    timeout: true,
};

#[tokio::test]
async fn names_versions_and_aliases_resolve_and_the_reply_says_which() {
    let (router, _) = shop("2", 1);
    let none = RouteContext::default();
    let r = served(&router, "shop", &none).await;
    assert_eq!(body(&r), "shop");
    assert_eq!(r.note.version.as_deref(), Some("latest"));
    let r = served(&router, "shop:1", &none).await;
    assert_eq!(
        (body(&r), r.note.version.as_deref()),
        ("shop:1".into(), Some("1"))
    );
    let r = served(&router, "shop:live", &none).await;
    assert_eq!(
        (body(&r), r.note.target.as_deref()),
        ("shop:2".into(), Some("shop:2"))
    );
    for missing in ["shop:7", "shop:nope", "nobody", "nobody:1"] {
        let r = served(&router, missing, &none).await;
        assert!(
            matches!(r.result, Err(InvokeError::NotFound { .. })),
            "{missing}: {:?}",
            r.result
        );
    }
}

#[tokio::test]
async fn rules_route_by_id_regex_event_fields_and_call_parameters() {
    let (router, _) = shop("1", 1);
    let rule =
        |id: Option<&str>, regex: Option<&str>, fields: &[(&str, &str)], target: &str| Rule {
            route_id: id.map(str::to_string),
            route_id_regex: regex.map(str::to_string),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            target: TargetRef::parse(target),
        };
    let policy = RoutePolicy {
        default: Some(TargetRef::parse("shop:live")),
        rules: vec![
            rule(Some("vip"), None, &[], "shop:2"),
            rule(None, Some("^test-[0-9]+$"), &[], "shop"),
            rule(None, None, &[("wareHouseId", "2001")], "shop:2"),
        ],
        ..RoutePolicy::default()
    };
    registry(&router).set_policy("shop", Some(policy)).unwrap();
    let ctx = |id: Option<&str>, params: &[(&str, &str)]| RouteContext {
        route_id: id.map(str::to_string),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        routing_key: None,
    };
    let go = |name: &'static str, event: &'static str, c: RouteContext| {
        let router = &router;
        async move { router.invoke(call(name, event), &c).await }
    };
    // Default: the alias, at version 1.
    let r = go("shop", "{}", ctx(None, &[])).await;
    assert_eq!(
        (body(&r), r.note.chosen_by.as_str()),
        ("shop:1".into(), "default")
    );
    // Routing id equal.
    let r = go("shop", "{}", ctx(Some("vip"), &[])).await;
    assert_eq!(
        (body(&r), r.note.chosen_by.as_str()),
        ("shop:2".into(), "rule 1")
    );
    // Routing id matching the regex; a near miss does not.
    let r = go("shop", "{}", ctx(Some("test-42"), &[])).await;
    assert_eq!(
        (body(&r), r.note.chosen_by.as_str()),
        ("shop".into(), "rule 2")
    );
    let r = go("shop", "{}", ctx(Some("test-x"), &[])).await;
    assert_eq!(body(&r), "shop:1");
    // An event field, as a string or a number; another value does not match.
    for event in [r#"{"wareHouseId":"2001"}"#, r#"{"wareHouseId":2001}"#] {
        let r = go("shop", event, ctx(None, &[])).await;
        assert_eq!(
            (body(&r), r.note.chosen_by.as_str()),
            ("shop:2".into(), "rule 3"),
            "{event}"
        );
    }
    let r = go("shop", r#"{"wareHouseId":"2002"}"#, ctx(None, &[])).await;
    assert_eq!(body(&r), "shop:1");
    // Dynamic: a call parameter decides before the event does.
    let r = go(
        "shop",
        r#"{"wareHouseId":"2002"}"#,
        ctx(None, &[("wareHouseId", "2001")]),
    )
    .await;
    assert_eq!(body(&r), "shop:2");
    let r = go("shop", "not json", ctx(None, &[("wareHouseId", "2001")])).await;
    assert_eq!(body(&r), "shop:2");
    // Rules apply to plain NAME only: a version or alias called by name is served as named.
    let r = go("shop:1", "{}", ctx(Some("vip"), &[])).await;
    assert_eq!(body(&r), "shop:1");
}

#[tokio::test]
async fn weights_hold_within_two_points_and_a_routing_key_sticks() {
    let (router, _) = shop("1=90,2=10", 42);
    let none = RouteContext::default();
    let mut to_v2 = 0;
    for _ in 0..10_000 {
        if served(&router, "shop:live", &none)
            .await
            .note
            .version
            .as_deref()
            == Some("2")
        {
            to_v2 += 1;
        }
    }
    let share = to_v2 as f64 / 100.0;
    assert!(
        (8.0..=12.0).contains(&share),
        "version 2 got {share}% of calls, weight 10"
    );

    let mut per_key = HashMap::new();
    for round in 0..5 {
        for user in 0..200 {
            let ctx = RouteContext {
                routing_key: Some(format!("user-{user}")),
                ..RouteContext::default()
            };
            let version = served(&router, "shop:live", &ctx)
                .await
                .note
                .version
                .unwrap();
            let first = per_key.entry(user).or_insert_with(|| version.clone());
            assert_eq!(*first, version, "user-{user} moved in round {round}");
        }
    }
    let on_v2 = per_key.values().filter(|v| *v == "2").count();
    assert!(
        (5..=45).contains(&on_v2),
        "{on_v2} of 200 users on version 2"
    );
}

#[tokio::test]
async fn the_fallback_serves_on_not_found_error_and_timeout_as_configured() {
    let (router, world) = shop("2", 7);
    let none = RouteContext::default();
    world.act("shop:2", Acts::Fails);
    // No policy: the failure is the answer.
    let r = served(&router, "shop:live", &none).await;
    assert!(
        matches!(r.result, Err(InvokeError::FunctionFailed { .. })),
        "{:?}",
        r.result
    );

    let policy = |on| RoutePolicy {
        default: Some(TargetRef::parse("shop:live")),
        fallback: fallback_to("shop:1", on),
        ..RoutePolicy::default()
    };
    registry(&router)
        .set_policy("shop", Some(policy(ALL)))
        .unwrap();
    for name in ["shop", "shop:live", "shop:2"] {
        let r = served(&router, name, &none).await;
        assert_eq!(body(&r), "shop:1", "{name}");
        let fb = r.note.fallback.clone().unwrap();
        assert_eq!(
            (fb.meant_for.as_str(), fb.reason),
            ("shop:2", FallbackReason::Error)
        );
        assert_eq!(r.note.version.as_deref(), Some("1"));
    }
    let r = served(&router, "shop:9", &none).await;
    assert_eq!(body(&r), "shop:1");
    assert_eq!(r.note.fallback.unwrap().reason, FallbackReason::NotFound);
    world.act("shop:2", Acts::TimesOut);
    let r = served(&router, "shop", &none).await;
    assert_eq!(r.note.fallback.unwrap().reason, FallbackReason::Timeout);

    // Only the failures named fall back.
    registry(&router)
        .set_policy(
            "shop",
            Some(policy(FallbackOn {
                error: true,
                ..FallbackOn::default()
            })),
        )
        .unwrap();
    let r = served(&router, "shop", &none).await;
    assert!(
        matches!(r.result, Err(InvokeError::Timeout { .. })),
        "{:?}",
        r.result
    );
    assert!(matches!(
        served(&router, "shop:9", &none).await.result,
        Err(InvokeError::NotFound { .. })
    ));

    // A failing fallback: its error decides, and says what it stood in for.
    registry(&router)
        .set_policy("shop", Some(policy(ALL)))
        .unwrap();
    world.act("shop:1", Acts::Fails);
    let r = served(&router, "shop", &none).await;
    let err = r.result.unwrap_err();
    assert_eq!(err.outcome(), "function_error");
    assert!(
        err.to_string()
            .contains("the fallback of shop:2, which timed out"),
        "{err}"
    );
    // The caller's own mistakes never fall back.
    let r = router
        .invoke(
            InvokeRequest {
                account_id: String::new(),
                ..call("shop", "{}")
            },
            &none,
        )
        .await;
    assert!(matches!(r.result, Err(InvokeError::MissingAccount)));
    assert!(r.note.fallback.is_none());
}

#[tokio::test]
async fn the_breaker_opens_on_latency_probes_after_the_cooldown_and_closes() {
    let (router, world) = shop("2", 3);
    let none = RouteContext::default();
    let policy = RoutePolicy {
        default: Some(TargetRef::parse("shop:live")),
        fallback: fallback_to("shop:1", ALL),
        breaker: Some(BreakerConfig {
            latency_baseline_ms: 50,
            margin_ms: 100,
            window_ms: 10_000,
            min_calls: 5,
            cooldown_ms: 2_000,
            probe_calls: 2,
            ..BreakerConfig::default()
        }),
        ..RoutePolicy::default()
    };
    registry(&router).set_policy("shop", Some(policy)).unwrap();
    world.act("shop:2", Acts::Fine { ms: 20 });
    for _ in 0..10 {
        assert_eq!(body(&served(&router, "shop", &none).await), "shop:2");
    }
    // The canary regresses: 400 ms a call. The fifth slow call opens the breaker (p99 over the
    // last 15 calls is 400 ms > 150 ms once five are in).
    world.act("shop:2", Acts::Fine { ms: 400 });
    let mut opened_after = None;
    for i in 1..=10 {
        let r = served(&router, "shop", &none).await;
        if let Some((target, t)) = r.note.transitions.first() {
            assert_eq!((target.as_str(), t.to), ("shop:2", BreakerState::Open));
            opened_after = Some(i);
            break;
        }
    }
    let opened_after = opened_after.expect("the breaker opened");
    assert!(opened_after <= 5, "opened after {opened_after} slow calls");
    // Open: the canary's calls go to the fallback without touching it.
    let ran_before = world.ran.lock().unwrap().len();
    let r = served(&router, "shop", &none).await;
    assert_eq!(body(&r), "shop:1");
    assert_eq!(
        r.note.fallback.clone().unwrap().reason,
        FallbackReason::BreakerOpen
    );
    assert_eq!(world.ran.lock().unwrap()[ran_before..], ["shop:1"]);
    let status = router.status("shop");
    let canary = status.iter().find(|s| s.target == "shop:2").unwrap();
    assert_eq!(canary.breaker, BreakerState::Open);
    assert!(
        canary.fallbacks >= 1 && canary.window_p99_ms >= 400.0,
        "{canary:?}"
    );

    // After the cooldown: half-open; a slow probe opens it again.
    world.advance(2_000);
    let r = served(&router, "shop", &none).await;
    let kinds: Vec<_> = r.note.transitions.iter().map(|(_, t)| t.to).collect();
    assert_eq!(kinds, [BreakerState::HalfOpen, BreakerState::Open]);
    // Fixed: after the next cooldown two fast probes close it.
    world.act("shop:2", Acts::Fine { ms: 20 });
    world.advance(2_000);
    let first = served(&router, "shop", &none).await;
    assert_eq!(body(&first), "shop:2");
    let second = served(&router, "shop", &none).await;
    assert_eq!(body(&second), "shop:2");
    assert_eq!(
        second.note.transitions.last().unwrap().1.to,
        BreakerState::Closed
    );
    assert_eq!(
        router
            .status("shop")
            .iter()
            .find(|s| s.target == "shop:2")
            .unwrap()
            .breaker,
        BreakerState::Closed
    );
}

#[tokio::test]
async fn errors_over_the_limit_open_the_breaker() {
    let (router, world) = shop("2", 3);
    let policy = RoutePolicy {
        fallback: fallback_to("shop:1", FallbackOn::default()),
        breaker: Some(BreakerConfig {
            max_error_percent: 50.0,
            min_calls: 4,
            ..BreakerConfig::default()
        }),
        ..RoutePolicy::default()
    };
    registry(&router).set_policy("shop", Some(policy)).unwrap();
    world.act("shop:2", Acts::Fails);
    let none = RouteContext::default();
    // The fallback does not take errors (on is empty): the first four fail, then it opens.
    for _ in 0..4 {
        assert!(served(&router, "shop:2", &none).await.result.is_err());
    }
    let r = served(&router, "shop:2", &none).await;
    assert_eq!(body(&r), "shop:1");
    assert_eq!(r.note.fallback.unwrap().reason, FallbackReason::BreakerOpen);
}

#[tokio::test]
async fn a_traffic_share_goes_to_the_fallback() {
    let (router, _) = shop("2", 11);
    let mut policy = RoutePolicy {
        default: Some(TargetRef::parse("shop:live")),
        fallback: fallback_to("shop:1", FallbackOn::default()),
        ..RoutePolicy::default()
    };
    policy.fallback.as_mut().unwrap().share_percent = 30.0;
    registry(&router).set_policy("shop", Some(policy)).unwrap();
    let mut shed = 0;
    for _ in 0..5_000 {
        let r = served(&router, "shop", &RouteContext::default()).await;
        if let Some(fb) = r.note.fallback {
            assert_eq!(fb.reason, FallbackReason::Share);
            assert_eq!(
                body(&Routed {
                    result: r.result,
                    note: Default::default()
                }),
                "shop:1"
            );
            shed += 1;
        }
    }
    let share = shed as f64 / 50.0;
    assert!((28.0..=32.0).contains(&share), "{share}% shed, asked 30%");
}

mod catalog;
