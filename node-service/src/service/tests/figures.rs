//! The node's figures: stats add the node and its containers; the description tells who the
//! node is, who reserved it and its containers.

use super::*;

#[tokio::test]
async fn stats_add_the_node_and_its_containers() {
    let (node, runtime, _) = node(FakeInvoker::default());
    node.reserve("acct").unwrap();
    assert!(node.reserve("").is_err());
    for _ in 0..2 {
        node.create_container(validate_spec(meta("f", "hello", 600, 0)).unwrap())
            .await
            .unwrap();
    }
    let r = node.stats().await.unwrap();
    assert_eq!(r.containers.len(), 2);
    assert_eq!(r.node.memory_usage_bytes, 250);
    assert_eq!(r.node.available_memory_bytes, 750);
    assert!((r.node.cpu_pct - 51.5).abs() < 1e-9);
    assert_eq!(
        r.node.committed_memory_bytes, 1200,
        "over-commit is allowed"
    );
    assert_eq!(r.node.disk.avail_bytes, 5);
    assert_eq!(
        (r.live_id.as_str(), r.owner_account_id.as_str()),
        ("live", "acct")
    );

    // A container whose process died is dropped from the figures and marked dead.
    runtime.alive.lock().unwrap().insert("c1".into(), false);
    let r = node.stats().await.unwrap();
    assert_eq!(r.containers.len(), 1);
    assert_eq!(node.containers().running(), 1);
    node.shutdown().await;
    assert!(node.containers().all().is_empty());
}

#[tokio::test]
async fn describe_tells_who_the_node_is_who_reserved_it_and_its_containers() {
    let (node, runtime, _) = pooled(FakeInvoker::default(), 1);
    until(&node, |s| s.ready == 1).await;
    let d = node.describe().await.unwrap();
    assert_eq!(
        (d.node_id.as_str(), d.live_id.as_str(), d.total_memory_bytes),
        ("n1", "live", 1000)
    );
    assert_eq!((d.owner_account_id.as_str(), d.reserved_at_ms), ("", 0));
    assert!(
        d.containers.is_empty(),
        "pool containers are not the node's"
    );

    node.reserve("acct-1").unwrap();
    let first = node.describe().await.unwrap().reserved_at_ms;
    assert!(first > 0);
    node.reserve("acct-1").unwrap();
    let err = node.reserve("acct-2").unwrap_err();
    assert!(matches!(err, NodeError::AlreadyReserved { .. }), "{err}");
    assert!(err.to_string().contains("\"acct-1\""), "{err}");
    let d = node.describe().await.unwrap();
    assert_eq!(
        (d.owner_account_id.as_str(), d.reserved_at_ms),
        ("acct-1", first),
        "one reservation: a retried Reserve changes nothing, another account none"
    );

    let a = node
        .create_container(validate_spec(meta("a", "hello", 128, 300)).unwrap())
        .await
        .unwrap()
        .container;
    let b = node
        .create_container(validate_spec(meta("b", "sleep", 256, 0)).unwrap())
        .await
        .unwrap()
        .container;
    runtime.alive.lock().unwrap().insert(b.id.clone(), false);
    let d = node.describe().await.unwrap();
    assert_eq!(
        d.containers,
        vec![
            ContainerDescription {
                id: a.id.clone(),
                address: a.address.clone(),
                spec: a.spec.clone(),
                dead: false,
                in_flight: 0,
                created_at_ms: a.created_at_ms,
                last_used_at_ms: a.created_at_ms,
            },
            ContainerDescription {
                id: b.id.clone(),
                address: b.address.clone(),
                spec: b.spec.clone(),
                dead: true,
                in_flight: 0,
                created_at_ms: b.created_at_ms,
                last_used_at_ms: b.created_at_ms,
            },
        ],
        "oldest first; the exited one reads dead"
    );
    assert!(a.created_at_ms > d.reserved_at_ms && b.created_at_ms > a.created_at_ms);

    *runtime.stats_fail.lock().unwrap() = true;
    assert_eq!(
        node.describe().await.unwrap_err(),
        NodeError::Runtime(RuntimeError::Unavailable("docker: no answer".into())),
        "no guess when the runtime cannot tell"
    );
    node.shutdown().await;
}
