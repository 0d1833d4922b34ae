//! The warm pool behind creates: binding, replacing, refilling, retrying, shutting down.

use super::*;

#[tokio::test]
async fn a_create_binds_a_pool_container_and_the_pool_refills() {
    let (node, runtime, invoker) = pooled(FakeInvoker::default(), 2);
    until(&node, |s| s.ready == 2).await;
    let pool_ids = runtime.unbound.lock().unwrap().clone();
    assert_eq!(pool_ids.len(), 2);

    let created = node
        .create_container(validate_spec(meta("f", "hello", 128, 0)).unwrap())
        .await
        .unwrap();
    assert!(created.from_pool);
    let id = created.container.id;
    assert_eq!(id, pool_ids[0], "the oldest pool container is taken");
    assert_eq!(*runtime.assigned.lock().unwrap(), vec![(id.clone(), 128)]);
    assert_eq!(
        *invoker.binds.lock().unwrap(),
        vec![(id.clone(), "f".to_string())]
    );
    assert_eq!(node.containers().committed_bytes(), 128);

    until(&node, |s| s.ready == 2).await;
    let s = node.warm_pool().stats();
    assert_eq!((s.hits, s.misses, s.discarded), (1, 0, 0));
    assert_eq!(runtime.unbound.lock().unwrap().len(), 3, "one refill");

    // Only the created container is a container; the pool counts as the node's own use.
    let r = node.stats().await.unwrap();
    assert_eq!(r.containers.len(), 1);
    assert_eq!(r.containers[0].id, id);
    assert_eq!(r.node.memory_usage_bytes, 50 + 100 + 2 * 100);
    assert_eq!(r.node.committed_memory_bytes, 128);
    assert!(node.containers().get(&pool_ids[1]).is_none());
    node.shutdown().await;
}

#[tokio::test]
async fn a_pool_container_that_does_not_bind_is_replaced_and_the_create_starts_one() {
    let invoker = FakeInvoker {
        bind_error: Some(InvokeError::Unreachable("connection refused".into())),
        ..Default::default()
    };
    let (node, runtime, _) = pooled(invoker, 1);
    until(&node, |s| s.ready == 1).await;
    let pool_id = runtime.unbound.lock().unwrap()[0].clone();
    let created = node
        .create_container(validate_spec(meta("f", "hello", 128, 0)).unwrap())
        .await
        .unwrap();
    assert!(!created.from_pool);
    assert_ne!(created.container.id, pool_id);
    let s = node.warm_pool().stats();
    assert_eq!((s.hits, s.misses, s.discarded), (0, 1, 1));
    until(&node, |s| s.ready == 1).await;
    while !runtime.removed.lock().unwrap().contains(&pool_id) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_function_the_container_refuses_leaves_the_pool_container_in_the_pool() {
    let invoker = FakeInvoker {
        bind_error: Some(InvokeError::InvalidArgument("unknown handler".into())),
        ..Default::default()
    };
    let (node, runtime, _) = pooled(invoker, 1);
    until(&node, |s| s.ready == 1).await;
    let created = node
        .create_container(validate_spec(meta("f", "hello", 1, 0)).unwrap())
        .await
        .unwrap();
    assert!(!created.from_pool, "the normal start decides");
    let s = node.warm_pool().stats();
    assert_eq!((s.ready, s.misses, s.discarded), (1, 1, 0));
    assert!(
        runtime.assigned.lock().unwrap().is_empty(),
        "no limits changed"
    );
    assert_eq!(runtime.unbound.lock().unwrap().len(), 1, "nothing replaced");
    node.shutdown().await;
}

#[tokio::test]
async fn a_pool_container_that_exits_is_replaced() {
    let (node, runtime, _) = pooled(FakeInvoker::default(), 1);
    until(&node, |s| s.ready == 1).await;
    let pool_id = runtime.unbound.lock().unwrap()[0].clone();
    runtime.alive.lock().unwrap().insert(pool_id.clone(), false);
    let r = node.stats().await.unwrap();
    assert!(r.containers.is_empty());
    assert_eq!(node.warm_pool().stats().discarded, 1);
    until(&node, |s| s.ready == 1).await;
    let ids = runtime.unbound.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "a replacement was started: {ids:?}");
    let created = node
        .create_container(validate_spec(meta("f", "hello", 1, 0)).unwrap())
        .await
        .unwrap();
    assert_eq!(created.container.id, ids[1]);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failed_starts_are_retried_after_a_pause() {
    let (node, runtime) = {
        let (node, runtime, _) = node(FakeInvoker::default());
        *runtime.failing_starts.lock().unwrap() = 2;
        (node.with_warm_pool(1), runtime)
    };
    node.warm_pool().fill();
    until(&node, |s| s.ready == 1).await;
    let s = node.warm_pool().stats();
    assert_eq!((s.start_failures, s.starting), (2, 0));
    assert_eq!(runtime.unbound.lock().unwrap().len(), 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_retries_and_leaves_no_pool_container() {
    let (node, runtime) = {
        let (node, runtime, _) = node(FakeInvoker::default());
        *runtime.failing_starts.lock().unwrap() = 1_000;
        (node.with_warm_pool(2), runtime)
    };
    node.warm_pool().fill();
    until(&node, |s| s.start_failures >= 4).await;
    node.shutdown().await;
    let s = node.warm_pool().stats();
    assert_eq!((s.ready, s.starting), (0, 0));
    node.warm_pool().fill();
    assert_eq!(
        node.warm_pool().stats().starting,
        0,
        "no fill after shutdown"
    );
    assert!(runtime.alive.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_a_pool_every_create_starts_a_container() {
    let (node, runtime, invoker) = pooled(FakeInvoker::default(), 0);
    let created = node
        .create_container(validate_spec(meta("f", "hello", 1, 0)).unwrap())
        .await
        .unwrap();
    assert!(!created.from_pool);
    assert!(runtime.unbound.lock().unwrap().is_empty());
    assert!(invoker.binds.lock().unwrap().is_empty());
    assert_eq!(node.warm_pool().stats(), Default::default());
}
