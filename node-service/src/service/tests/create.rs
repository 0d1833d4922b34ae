//! Creates: requests validated, the over-commit limit, a runtime that cannot list.

use super::*;

#[test]
fn create_requests_are_validated() {
    let long = "f".repeat(257);
    let huge = "h".repeat(1 << 20);
    for (m, field) in [
        (None, "function_meta"),
        (meta(" ", "hello", 1, 0), "function_name"),
        (meta(&long, "hello", 1, 0), "function_name is 257 bytes"),
        (meta("f", "", 1, 0), "handler"),
        (
            meta("f", "python3.9", 1, 0),
            "\"python3.9\" is not a built-in handler",
        ),
        (meta("f", &huge, 1, 0), "(1048576 bytes)"),
        (meta("f", "hello", 0, 0), "memory_in_bytes"),
        (meta("f", "hello", -1, 0), "memory_in_bytes"),
        (
            meta("f", "hello", 1_000_000_000_000_000_000, 0),
            "memory_in_bytes",
        ),
        (meta("f", "hello", 1, -1), "timeout_in_ms"),
        (meta("f", "hello", 1, 86_400_001), "timeout_in_ms"),
    ] {
        let err = validate_spec(m).unwrap_err();
        assert!(
            matches!(err, NodeError::InvalidArgument(_) | NodeError::Limit(_)),
            "{err}"
        );
        assert!(err.to_string().contains(field), "{err} should name {field}");
        assert!(err.to_string().len() < 300, "clipped: {err}");
    }
    let spec = validate_spec(meta("f", "hello", 128, 300)).unwrap();
    assert_eq!((spec.memory_bytes, spec.timeout_ms), (128, 300));
    let spec = validate_spec(meta(&"f".repeat(256), "spin", 1 << 40, 86_400_000));
    assert!(spec.is_ok(), "the limits themselves are allowed");
    let err = validate_create(&"n".repeat(257), meta("f", "hello", 1, 0)).unwrap_err();
    assert!(
        err.to_string().starts_with("name is 257 bytes long"),
        "{err}"
    );
}

#[tokio::test]
async fn absurd_invoke_meta_is_refused_before_the_container_is_called() {
    let (node, _, invoker) = node(FakeInvoker::default());
    let c = created(&node, "hello", 128).await;
    for (m, field) in [
        (meta(&"f".repeat(257), "", 0, 0), "function_name"),
        (meta("", "python3.9", 0, 0), "handler"),
        (meta("", "", -1, 0), "memory_in_bytes"),
        (meta("", "", 1 << 41, 0), "memory_in_bytes"),
        (meta("", "", 0, -1), "timeout_in_ms"),
        (meta("", "", 0, 86_400_001), "timeout_in_ms"),
    ] {
        let err = node.invoke(&c.id, "r".into(), vec![], m).await.unwrap_err();
        assert!(matches!(err, NodeError::Limit(_)), "{err}");
        assert!(err.to_string().contains(field), "{err} should name {field}");
        assert_eq!(err.error_code(), None, "not a container's fault");
    }
    // Unknown container ids are checked after the arguments, and quoted clipped.
    let err = node
        .invoke(&"x".repeat(1 << 20), "r".into(), vec![], None)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().len() < 300,
        "clipped: {} bytes",
        err.to_string().len()
    );
    assert_eq!(err.error_code(), Some("ContainerNotFound"));
    assert!(invoker.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_call_for_another_function_is_refused_by_the_node() {
    let (node, _, invoker) = node(FakeInvoker::default());
    let c = created(&node, "echo", 128).await;
    for m in [meta("g", "", 0, 0), meta("f", "sleep", 0, 0)] {
        let err = node.invoke(&c.id, "r".into(), vec![], m).await.unwrap_err();
        assert!(matches!(err, NodeError::WrongFunction(_)), "{err}");
        assert!(
            err.to_string()
                .contains("runs function \"f\" (handler \"echo\")"),
            "{err}"
        );
        assert_eq!(err.error_code(), Some("WrongFunction"));
    }
    assert!(invoker.calls.lock().unwrap().is_empty());
    node.invoke(&c.id, "r".into(), vec![], meta("f", "echo", 128, 0))
        .await
        .unwrap();
    assert_eq!(node.containers().running(), 1, "the container is kept");
}

#[tokio::test]
async fn creates_beyond_the_over_commit_limit_are_refused() {
    // 1000 bytes of node memory, 2000 allowed in limits (the fake identity).
    let (node, runtime, _) = node(FakeInvoker::default());
    let create =
        |memory| node.create_container(validate_spec(meta("f", "hello", memory, 0)).unwrap());
    create(1500).await.unwrap();
    let err = create(501).await.unwrap_err();
    assert_eq!(
        err,
        NodeError::Overcommitted {
            node: "n1".into(),
            asked: 501,
            committed: 1500,
            reserved: 0,
            limit: 2000
        }
    );
    assert!(
        err.to_string()
            .contains("place the container on another node"),
        "{err}"
    );
    assert_eq!(
        *runtime.created.lock().unwrap(),
        1,
        "nothing was started for it"
    );
    create(500).await.unwrap();
    assert_eq!(node.containers().committed_bytes(), 2000);
}

#[tokio::test]
async fn stats_fail_when_the_runtime_cannot_list() {
    let (node, runtime, _) = node(FakeInvoker::default());
    node.create_container(validate_spec(meta("f", "hello", 1, 0)).unwrap())
        .await
        .unwrap();
    *runtime.stats_fail.lock().unwrap() = true;
    let err = node.stats().await.unwrap_err();
    assert_eq!(
        err,
        NodeError::Runtime(RuntimeError::Unavailable("docker: no answer".into()))
    );
    assert_eq!(node.containers().running(), 1, "nothing was taken for dead");
    *runtime.stats_fail.lock().unwrap() = false;
    assert_eq!(node.stats().await.unwrap().containers.len(), 1);
}
