//! What the unit tests of both queue stores (`sqlite::queue`, `jetstream`) build their calls
//! and outcomes with.

use crate::service::async_calls::{Callback, InvocationStore, NewCall, Outcome, State};

pub fn call(function: &str, event: &[u8]) -> NewCall {
    NewCall {
        function_name: function.into(),
        account_id: "acct".into(),
        event: event.to_vec(),
        ..NewCall::default()
    }
}

pub fn ok(body: &[u8]) -> Outcome {
    Outcome {
        request_id: "r".into(),
        version: "latest".into(),
        target: "hello".into(),
        cold_start: true,
        result: Ok(body.to_vec()),
    }
}

pub fn failed(code: &str) -> Outcome {
    Outcome {
        request_id: "r".into(),
        result: Err((code.into(), "it broke".into())),
        ..Outcome::default()
    }
}

/// A call's life, `queued → running → succeeded`, then forgotten after its retention: `q`
/// keeps results 100 ms.
pub fn a_call_goes_queued_running_succeeded(q: &dyn InvocationStore) {
    let mut c = call("hello", b"abc");
    c.route_id = Some("user-1".into());
    c.route_params = vec![("a".into(), "1".into())];
    c.on_success = Some(Callback::Url("http://127.0.0.1:9/x".into()));
    c.on_failure = Some(Callback::Function("audit".into()));
    assert!(q.submit("a", &c, 1).unwrap().new);
    let got = q.get("a", 1).unwrap();
    assert_eq!(
        (got.state, got.attempts, got.outcome),
        (State::Queued, 0, None)
    );
    let due = q.due(1, 10, &[]);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].call, c, "the call comes back as it was kept");
    assert_eq!(q.next_due_ms(), Some(1));
    assert!(q.start("a", 2));
    assert!(!q.start("a", 2), "a running call is not started twice");
    assert!(q.due(2, 10, &[]).is_empty());
    q.finish("a", ok(b"hello"), 5);
    let got = q.get("a", 5).unwrap();
    assert_eq!(got.state, State::Succeeded);
    assert_eq!(
        (got.started_at_ms, got.finished_at_ms, got.attempts),
        (2, 5, 1)
    );
    assert_eq!(got.outcome.unwrap().result, Ok(b"hello".to_vec()));
    // Finishing twice changes nothing.
    q.finish("a", failed("INTERNAL"), 6);
    assert_eq!(q.get("a", 6).unwrap().state, State::Succeeded);
    assert_eq!(q.get("nope", 6), None);
    // Forgotten after the retention.
    assert!(q.get("a", 104).is_some());
    assert_eq!(q.get("a", 105), None);
}
