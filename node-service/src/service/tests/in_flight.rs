//! Calls in flight: counted from before the container is called until the call answers,
//! fails or is dropped.

use super::*;

#[tokio::test]
async fn a_call_is_in_flight_from_before_the_container_is_called_until_it_answers() {
    let (node, _, invoker, gate, c) = gated().await;
    let idle = described(&node, &c.id).await;
    assert_eq!(idle.in_flight, 0);
    assert_eq!(
        idle.last_used_at_ms, c.created_at_ms,
        "never used: its creation"
    );

    let call = start_call(&node, &invoker, &c).await;
    let busy = described(&node, &c.id).await;
    assert_eq!(busy.in_flight, 1);
    assert!(busy.last_used_at_ms > c.created_at_ms, "the start is a use");
    assert_eq!(
        node.activity().busy(),
        1,
        "the node is not idle under a call"
    );
    let second = start_call(&node, &invoker, &c).await;
    assert_eq!(described(&node, &c.id).await.in_flight, 2);

    gate.add_permits(1);
    call.await.unwrap().unwrap();
    let one = described(&node, &c.id).await;
    assert_eq!(one.in_flight, 1);
    assert!(
        one.last_used_at_ms > busy.last_used_at_ms,
        "the end is a use"
    );
    gate.add_permits(1);
    second.await.unwrap().unwrap();
    assert_eq!(described(&node, &c.id).await.in_flight, 0);
    assert_eq!(node.activity().busy(), 0);
}

#[tokio::test]
async fn a_call_that_fails_or_is_dropped_is_no_longer_in_flight() {
    let (node, _, invoker, gate, c) = gated().await;
    // An error from the container.
    invoker
        .replies
        .lock()
        .unwrap()
        .push(Err(InvokeError::Failed("broken pipe".into())));
    let call = start_call(&node, &invoker, &c).await;
    gate.add_permits(1);
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, NodeError::Invoke { .. }), "{err}");
    assert_eq!(described(&node, &c.id).await.in_flight, 0);

    // The caller goes away: tonic drops the handler's future mid-call.
    let call = start_call(&node, &invoker, &c).await;
    assert_eq!(described(&node, &c.id).await.in_flight, 1);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(described(&node, &c.id).await.in_flight, 0);
    assert_eq!(node.activity().busy(), 0);

    // Refused before the container is called: never counted.
    let err = node
        .invoke(&c.id, "r".into(), vec![], meta("g", "", 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::WrongFunction(_)), "{err}");
    assert_eq!(described(&node, &c.id).await.in_flight, 0);
}

#[tokio::test]
async fn a_call_begun_on_a_running_container_ends_on_its_dead_record() {
    let (node, runtime, invoker, gate, c) = gated().await;
    let call = start_call(&node, &invoker, &c).await;
    // Its process exits during the call; describe asks the runtime and buries it.
    runtime.alive.lock().unwrap().insert(c.id.clone(), false);
    let dead = described(&node, &c.id).await;
    assert!(dead.dead);
    assert_eq!(
        dead.in_flight, 1,
        "the call still runs as far as the node knows"
    );
    gate.add_permits(1);
    call.await.unwrap().unwrap();
    let after = described(&node, &c.id).await;
    assert_eq!((after.dead, after.in_flight), (true, 0));
}
