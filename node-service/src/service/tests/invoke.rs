//! Invocations: the container's function used, containers gone before the call, dying during
//! it, silent or never answering.

use super::*;

#[tokio::test]
async fn an_invocation_without_meta_uses_the_containers_function() {
    let (node, _, invoker) = node(FakeInvoker::default());
    let spec = validate_spec(meta("f", "hello", 128, 300)).unwrap();
    let c = node.create_container(spec).await.unwrap().container;
    node.invoke(&c.id, "r1".into(), b"{}".to_vec(), None)
        .await
        .unwrap();
    node.invoke(&c.id, "r2".into(), vec![], meta("f", "", 0, 40))
        .await
        .unwrap();
    let calls = invoker.calls.lock().unwrap();
    assert_eq!(calls[0].0.function_name, "f");
    assert_eq!(calls[0].0.handler, "hello");
    assert_eq!(calls[0].0.timeout_ms, 0);
    assert_eq!(calls[0].1, Duration::from_millis(300) + ANSWER_GRACE);
    assert_eq!(calls[1].0.timeout_ms, 40);
    assert_eq!(calls[1].1, Duration::from_millis(40) + ANSWER_GRACE);
}

#[tokio::test]
async fn a_container_gone_before_the_call_is_unreachable_and_buried() {
    let (node, runtime, invoker) = node(FakeInvoker::default());
    let c = created(&node, "hello", 128).await;
    assert_eq!(node.containers().committed_bytes(), 128);
    runtime.alive.lock().unwrap().insert(c.id.clone(), false);
    invoker
        .replies
        .lock()
        .unwrap()
        .push(Err(InvokeError::Unreachable("connection refused".into())));

    let err = node
        .invoke(&c.id, "r".into(), vec![], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NodeError::ContainerUnreachable { .. }),
        "{err}"
    );
    assert_eq!(err.error_code(), Some("ContainerUnreachable"));
    assert!(err.to_string().contains("process exited"), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(*runtime.removed.lock().unwrap(), vec![c.id.clone()]);
    assert_eq!(node.containers().committed_bytes(), 0);

    let err = node
        .invoke(&c.id, "r".into(), vec![], None)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::ContainerDead { .. }), "{err}");
    assert_eq!(err.error_code(), Some("ContainerDead"));
    assert!(err.to_string().contains("process exited"), "{err}");
    assert_eq!(
        invoker.calls.lock().unwrap().len(),
        1,
        "a dead container is not called"
    );
    node.remove_container(&c.id).await.unwrap();
    let err = node.remove_container(&c.id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container {} not found on node n1", c.id)
    );
}

#[tokio::test]
async fn a_container_that_dies_during_the_call_is_a_container_exited_reply() {
    let (node, runtime, invoker) = node(FakeInvoker::default());
    let c = created(&node, "sleep", 128).await;
    runtime.alive.lock().unwrap().insert(c.id.clone(), false);
    invoker
        .replies
        .lock()
        .unwrap()
        .push(Err(InvokeError::Disconnected("connection reset".into())));
    let inv = node.invoke(&c.id, "r".into(), vec![], None).await.unwrap();
    let failure = inv.failure.unwrap();
    assert_eq!(failure.code, Failure::CONTAINER_EXITED);
    assert!(
        failure.message.contains("process exited"),
        "{}",
        failure.message
    );
    assert!(!inv.handled);
    assert_eq!(*runtime.removed.lock().unwrap(), vec![c.id.clone()]);
    assert_eq!(node.containers().running(), 0);
}

#[tokio::test]
async fn a_silent_live_container_is_marked_dead_and_stopped() {
    let (node, runtime, invoker) = node(FakeInvoker::default());
    let c = created(&node, "sleep", 1).await;
    invoker
        .replies
        .lock()
        .unwrap()
        .push(Err(InvokeError::NoAnswer(Duration::from_secs(65))));
    let inv = node.invoke(&c.id, "r".into(), vec![], None).await.unwrap();
    let message = inv.failure.unwrap().message;
    assert!(message.contains("does not answer"), "{message}");
    assert!(
        runtime.liveness(&c.id).await == Liveness::Unknown,
        "it was stopped"
    );
}

#[tokio::test]
async fn a_container_that_never_answers_is_not_kept() {
    let invoker = FakeInvoker {
        not_ready: true,
        ..Default::default()
    };
    let (node, runtime, _) = node(invoker);
    let err = node
        .create_container(validate_spec(meta("f", "hello", 1, 0)).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::NotReady { .. }), "{err}");
    assert_eq!(runtime.removed.lock().unwrap().len(), 1);
    assert!(node.containers().all().is_empty());
    // Its memory was given back: creates as large as the node allows are not refused
    // for memory by the earlier failures.
    for _ in 0..3 {
        let err = node
            .create_container(validate_spec(meta("f", "hello", 2000, 0)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::NotReady { .. }), "{err}");
    }
}
