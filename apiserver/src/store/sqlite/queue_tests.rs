use super::*;
use crate::service::async_calls::CODE_RESULT_TOO_LARGE;
use crate::store::queue_test_support::{self, call, failed, ok};

fn queue(max_kept: usize, max_bytes: u64, retention_ms: u64) -> SqliteQueue {
    SqliteQueue::in_memory(AsyncLimits {
        max_kept,
        max_bytes,
        retention_ms,
    })
}

trait DueAll {
    fn due_all(&self, now_ms: u64, max: usize) -> Vec<Pending>;
}

impl DueAll for SqliteQueue {
    fn due_all(&self, now_ms: u64, max: usize) -> Vec<Pending> {
        self.due(now_ms, max, &[])
    }
}

#[test]
fn a_call_goes_queued_running_succeeded() {
    queue_test_support::a_call_goes_queued_running_succeeded(&queue(10, 1000, 100));
}

#[test]
fn a_retry_is_due_later_and_the_last_failure_is_a_dead_letter() {
    let q = queue(10, 1000, 100);
    q.submit("a", &call("f", b"e"), 0).unwrap();
    assert!(q.start("a", 0));
    q.retry("a", failed("UNAVAILABLE"), 50, 1);
    let got = q.get("a", 1).unwrap();
    assert_eq!((got.state, got.attempts), (State::Queued, 1));
    assert_eq!(
        got.outcome.unwrap().result,
        Err(("UNAVAILABLE".into(), "it broke".into()))
    );
    assert!(q.due_all(49, 10).is_empty(), "not due before its time");
    assert_eq!(q.next_due_ms(), Some(50));
    assert_eq!(q.due_all(50, 10)[0].attempts, 1);
    assert!(q.start("a", 50));
    q.dead_letter("a", failed("UNAVAILABLE"), 60);
    assert_eq!(
        q.get("a", 1_000_000).unwrap().state,
        State::Dead,
        "dead letters stay"
    );
    let dead = q.dead_letters("f");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert!(q.dead_letters("g").is_empty());
    assert_eq!(q.stats()[0].dead, 1);
    // Redrive: queued again with its event, attempts from zero.
    assert!(q.redrive("f", &["other".into()], 70).is_empty());
    assert_eq!(q.redrive("f", &[], 70), vec!["a".to_string()]);
    let due = q.due_all(70, 10);
    assert_eq!(
        (due[0].attempts, due[0].call.event.as_slice()),
        (0, &b"e"[..])
    );
    assert!(q.dead_letters("f").is_empty());
}

#[test]
fn running_calls_are_queued_again_on_recovery() {
    let q = queue(10, 1000, 100);
    q.submit("a", &call("f", b""), 0).unwrap();
    q.submit("b", &call("f", b""), 0).unwrap();
    q.start("a", 1);
    assert_eq!(q.recover(5).unwrap(), 1);
    let due: Vec<_> = q
        .due_all(5, 10)
        .into_iter()
        .map(|p| (p.id, p.attempts))
        .collect();
    assert_eq!(due, vec![("b".to_string(), 0), ("a".to_string(), 1)]);
}

#[test]
fn an_idempotency_key_answers_the_first_call() {
    let q = queue(10, 1000, 100);
    let mut c = call("f", b"1");
    c.idempotency_key = Some("k".into());
    assert_eq!(
        q.submit("a", &c, 0).unwrap(),
        Submitted {
            id: "a".into(),
            new: true
        }
    );
    assert_eq!(
        q.submit("b", &c, 1).unwrap(),
        Submitted {
            id: "a".into(),
            new: false
        }
    );
    // Per function and per account.
    let mut other = c.clone();
    other.account_id = "other".into();
    assert!(q.submit("c", &other, 1).unwrap().new);
    other.function_name = "g".into();
    assert!(q.submit("d", &other, 1).unwrap().new);
    assert_eq!(q.due_all(1, 10).len(), 3);
}

#[test]
fn a_full_queue_forgets_finished_calls_first_then_refuses() {
    let q = queue(2, 1000, 100);
    q.submit("a", &call("f", b""), 0).unwrap();
    q.submit("b", &call("f", b""), 0).unwrap();
    q.start("a", 0);
    q.finish("a", ok(b"x"), 1);
    q.submit("c", &call("f", b""), 2).unwrap();
    assert_eq!(q.get("a", 2), None);
    let err = q.submit("d", &call("f", b""), 2).unwrap_err();
    assert_eq!(err, AsyncError::TooMany { kept: 2 });
    assert!(err.to_string().contains("raise --async-max-kept"), "{err}");
    assert_eq!(q.get("d", 2), None, "nothing kept of a refused call");
}

#[test]
fn events_and_results_share_the_byte_limit() {
    let q = queue(100, 10, 100);
    q.submit("a", &call("f", b"123456"), 0).unwrap();
    let err = q.submit("b", &call("f", b"12345"), 0).unwrap_err();
    assert_eq!(
        err,
        AsyncError::TooLarge {
            held: 6,
            event: 5,
            limit: 10
        }
    );
    assert!(err.to_string().contains("raise --async-max-bytes"), "{err}");
    q.start("a", 0);
    q.finish("a", ok(b"12345678901"), 1);
    let got = q.get("a", 1).unwrap();
    assert_eq!(got.state, State::Failed);
    let (code, message) = got.outcome.unwrap().result.unwrap_err();
    assert_eq!(code, CODE_RESULT_TOO_LARGE);
    assert!(message.contains("--async-max-bytes"), "{message}");
}

#[test]
fn a_queue_file_keeps_its_calls_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE functions (name TEXT PRIMARY KEY);")
            .unwrap();
        conn.execute_batch(QUEUE_TABLES).unwrap();
    }
    let q = SqliteQueue::open(&path, AsyncLimits::default()).unwrap();
    q.submit("a", &call("f", b"e"), 0).unwrap();
    q.start("a", 1);
    drop(q);
    let q = SqliteQueue::open(&path, AsyncLimits::default()).unwrap();
    assert_eq!(q.get("a", 2).unwrap().state, State::Running);
    assert_eq!(q.recover(2).unwrap(), 1);
    assert_eq!(q.due_all(2, 1)[0].call.event, b"e");
}

#[test]
fn retry_settings_are_kept_per_function_in_memory_too() {
    let q = queue(10, 1000, 100);
    assert_eq!(q.retry_policy("f"), None);
    let p = RetryPolicy {
        attempts: 5,
        first_delay_ms: 10,
        max_delay_ms: 100,
    };
    q.set_retry_policy("f", Some(p), 1).unwrap();
    assert_eq!(q.retry_policy("f"), Some(p));
    q.set_retry_policy("f", None, 2).unwrap();
    assert_eq!(q.retry_policy("f"), None);
}

#[test]
fn the_calls_of_busy_functions_are_left_out_versions_and_aliases_too() {
    let q = queue(10, 1000, 100);
    q.submit("a", &call("f", b""), 0).unwrap();
    q.submit("b", &call("f:2", b""), 1).unwrap();
    q.submit("c", &call("g", b""), 2).unwrap();
    let ids = |busy: &[&str]| -> Vec<String> {
        let busy: Vec<String> = busy.iter().map(|s| s.to_string()).collect();
        q.due(5, 10, &busy).into_iter().map(|p| p.id).collect()
    };
    assert_eq!(ids(&[]), vec!["a", "b", "c"]);
    assert_eq!(ids(&["f"]), vec!["c"]);
    assert_eq!(ids(&["g", "f"]), Vec::<String>::new());
}
