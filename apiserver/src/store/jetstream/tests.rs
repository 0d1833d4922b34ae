//! The JetStream store's methods against a real `nats-server -js` (skipped loudly without
//! one, failed in CI: `faas_testkit::nats`).

use super::*;
use crate::store::queue_test_support::{self, call, failed, ok};
use std::time::Duration;

use crate::service::async_calls::{InvocationStore, QueueStats, RetryPolicy, State, Submitted};
use faas_testkit::nats::NatsServer;

fn limits(max_kept: usize, max_bytes: u64, retention_ms: u64) -> AsyncLimits {
    AsyncLimits {
        max_kept,
        max_bytes,
        retention_ms,
    }
}

fn open(nats: &NatsServer, l: AsyncLimits) -> JetStreamQueue {
    JetStreamQueue::connect(&nats.address(), l).expect("the test nats-server answers")
}

#[test]
fn a_call_goes_queued_running_succeeded_and_is_forgotten_after_its_retention() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    queue_test_support::a_call_goes_queued_running_succeeded(&open(&nats, limits(10, 1000, 100)));
}

#[test]
fn a_retry_is_due_later_the_last_failure_a_dead_letter_and_redrive_queues_it() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 100));
    q.submit("a", &call("hello", b"x"), 1).unwrap();
    q.submit("b", &call("hello", b"y"), 1).unwrap();
    assert!(q.start("a", 1));
    q.retry("a", failed("UNAVAILABLE"), 50, 2);
    let got = q.get("a", 2).unwrap();
    assert_eq!((got.state, got.attempts), (State::Queued, 1));
    assert_eq!(
        q.due(10, 10, &[])
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["b"],
        "a is not due before 50"
    );
    assert_eq!(q.due(50, 10, &[])[0].id, "b", "the earliest due first");
    assert!(q.start("a", 50));
    q.dead_letter("a", failed("UNAVAILABLE"), 51);
    let dead = q.dead_letters("hello");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].state, dead[0].attempts), (State::Dead, 2));
    let stats = q.stats();
    assert_eq!(
        stats,
        vec![QueueStats {
            function: "hello".into(),
            depth: 1,
            oldest_submitted_ms: Some(1),
            dead: 1,
        }]
    );
    assert_eq!(
        q.due(60, 10, &["hello".into()]),
        Vec::new(),
        "a busy function's calls are left out"
    );
    assert_eq!(
        q.redrive("hello", &["zzz".into()], 60),
        Vec::<String>::new()
    );
    assert_eq!(q.redrive("hello", &[], 60), vec!["a".to_string()]);
    let got = q.get("a", 60).unwrap();
    assert_eq!((got.state, got.attempts), (State::Queued, 0));
    assert!(q.dead_letters("hello").is_empty());
}

#[test]
fn an_idempotency_key_answers_the_first_call_even_to_another_server() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 100));
    let mut c = call("hello", b"x");
    c.idempotency_key = Some("k1".into());
    assert_eq!(
        q.submit("a", &c, 1).unwrap(),
        Submitted {
            id: "a".into(),
            new: true
        }
    );
    assert_eq!(
        q.submit("b", &c, 2).unwrap(),
        Submitted {
            id: "a".into(),
            new: false
        }
    );
    // A second store on the same NATS (its own copy) finds the key in the bucket.
    let other = open(&nats, limits(10, 1000, 100));
    assert_eq!(other.submit("c", &c, 3).unwrap().id, "a");
    let mut elsewhere = c.clone();
    elsewhere.account_id = "other".into();
    assert_eq!(other.submit("d", &elsewhere, 3).unwrap().id, "d");
    assert_eq!(q.get("b", 3), None, "the repeat kept nothing");
}

#[test]
fn calls_survive_a_restart_of_nats_and_running_ones_are_queued_again() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 1000));
    q.submit("a", &call("hello", b"x"), 1).unwrap();
    q.submit("b", &call("hello", b"y"), 1).unwrap();
    assert!(q.start("a", 2));
    drop(q);
    nats.restart();
    let q = open(&nats, limits(10, 1000, 1000));
    assert_eq!(q.get("a", 3).unwrap().state, State::Running);
    assert_eq!(q.recover(3).unwrap(), 1);
    let due: Vec<String> = q.due(3, 10, &[]).into_iter().map(|p| p.id).collect();
    assert_eq!(due, ["b", "a"]);
    assert_eq!(q.due(3, 10, &[])[1].attempts, 1, "the attempt counts");
}

#[test]
fn two_servers_never_start_the_same_attempt() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 1000));
    q.submit("a", &call("hello", b"x"), 1).unwrap();
    let other = open(&nats, limits(10, 1000, 1000));
    assert!(other.start("a", 2));
    assert!(
        !q.start("a", 2),
        "its copy says queued, the bucket says running"
    );
    assert_eq!(q.get("a", 2).unwrap().attempts, 1);
}

#[test]
fn a_second_server_sees_the_calls_the_first_accepts_and_what_becomes_of_them() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 1000));
    let other = open(&nats, limits(10, 1000, 1000));
    q.submit("a", &call("hello", b"x"), 1).unwrap();
    let seen = |store: &JetStreamQueue, want: usize| {
        // The watch's delay: a few ms on loopback; bounded by the test harness, not a clock.
        loop {
            let due = store.due(1, 10, &[]);
            if due.len() == want {
                return due;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(seen(&other, 1)[0].id, "a");
    assert!(other.start("a", 2));
    seen(&q, 0);
    assert!(!q.start("a", 2));
    other.finish("a", ok(b"done"), 3);
    loop {
        let stats = q.stats();
        if stats.first().is_some_and(|s| s.depth == 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.get("a", 3).unwrap().state, State::Succeeded);
}

#[test]
fn a_full_queue_forgets_finished_calls_first_then_refuses() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(2, 1000, 1000));
    q.submit("a", &call("hello", b"x"), 1).unwrap();
    assert!(q.start("a", 1));
    q.finish("a", ok(b"done"), 2);
    q.submit("b", &call("hello", b"y"), 3).unwrap();
    q.submit("c", &call("hello", b"z"), 4).unwrap();
    assert_eq!(q.get("a", 4), None, "the finished call made room");
    let err = q.submit("d", &call("hello", b"w"), 5).unwrap_err();
    assert_eq!(err, AsyncError::TooMany { kept: 2 });
    assert!(err.to_string().contains("--async-max-kept"), "{err}");
    let small = open(&nats, limits(10, 5, 1000));
    let err = small.submit("e", &call("hello", b"123456"), 6).unwrap_err();
    assert!(matches!(err, AsyncError::TooLarge { .. }), "{err}");
}

#[test]
fn retry_settings_are_kept_per_function() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let q = open(&nats, limits(10, 1000, 1000));
    assert_eq!(q.retry_policy("hello"), None);
    let p = RetryPolicy {
        attempts: 5,
        first_delay_ms: 10,
        max_delay_ms: 100,
    };
    q.set_retry_policy("hello", Some(p), 1).unwrap();
    assert_eq!(q.retry_policy("hello"), Some(p));
    assert_eq!(q.retry_policy("hello-2"), None);
    q.set_retry_policy("hello", None, 2).unwrap();
    assert_eq!(q.retry_policy("hello"), None);
}

#[test]
fn an_address_where_no_nats_answers_fails_naming_it_and_does_not_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let err = JetStreamQueue::connect(&address, AsyncLimits::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&address) && text.contains("--queue"),
        "{text}"
    );
}
