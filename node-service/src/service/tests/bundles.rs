//! The node's rules for functions made of bundles, against the fake runtime and invoker of
//! the parent module: a bundle is looked up before anything starts, its container is started
//! for it (never taken from the warm pool), and its invocations reach the container with an
//! empty handler.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::model::bundle::Bundle;

#[derive(Default)]
struct FakeBundles(HashMap<String, Bundle>);

impl Bundles for FakeBundles {
    fn find(&self, hash: &str) -> Result<Bundle, BundleError> {
        self.0
            .get(hash)
            .cloned()
            .ok_or_else(|| BundleError::NotHere {
                hash: hash.to_string(),
                dir: "/data/bundles".into(),
            })
    }
}

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

fn bundle(c: char) -> Bundle {
    Bundle {
        hash: hash(c),
        dir: format!("/data/bundles/{}", hash(c)).into(),
        start_timeout: Duration::from_secs(2),
        image: None,
    }
}

fn handler(c: char) -> String {
    format!("bundle:{}", hash(c))
}

/// A node with a warm pool of one (ready) and the bundle `a` in its bundles.
async fn node_with_bundles() -> (Node, Arc<FakeRuntime>, Arc<FakeInvoker>) {
    let (node, runtime, invoker) = pooled(FakeInvoker::default(), 1);
    let bundles = FakeBundles(HashMap::from([(hash('a'), bundle('a'))]));
    let node = node.with_bundles(Arc::new(bundles));
    until(&node, |s| s.ready == 1).await;
    (node, runtime, invoker)
}

#[tokio::test]
async fn a_bundle_function_is_started_for_its_create_never_taken_from_the_pool() {
    let (node, runtime, invoker) = node_with_bundles().await;
    let spec = validate_spec(meta("f", &handler('a'), 128, 0)).unwrap();
    let created = node.create_container(spec).await.unwrap();
    assert!(!created.from_pool);
    assert_eq!(*runtime.bundles.lock().unwrap(), vec![Some(bundle('a'))]);
    let s = node.warm_pool().stats();
    assert_eq!(
        (s.ready, s.hits, s.misses),
        (1, 0, 0),
        "the pool was not asked"
    );
    assert!(invoker.binds.lock().unwrap().is_empty());

    // A built-in function still takes the pool's container.
    let spec = validate_spec(meta("g", "hello", 128, 0)).unwrap();
    assert!(node.create_container(spec).await.unwrap().from_pool);
    node.shutdown().await;
}

#[tokio::test]
async fn a_bundle_call_reaches_its_container_without_a_handler() {
    let (node, _, invoker) = node_with_bundles().await;
    let spec = validate_spec(meta("f", &handler('a'), 128, 0)).unwrap();
    let c = node.create_container(spec).await.unwrap().container;
    node.invoke(&c.id, "r1".into(), vec![], meta("f", &handler('a'), 128, 0))
        .await
        .unwrap();
    node.invoke(&c.id, "r2".into(), vec![], None).await.unwrap();
    let calls = invoker.calls.lock().unwrap().clone();
    assert_eq!(
        calls
            .iter()
            .map(|(c, _)| (c.function_name.as_str(), c.handler.as_str()))
            .collect::<Vec<_>>(),
        vec![("f", ""), ("f", "")]
    );
    // Another bundle (or a malformed one) is refused before the container is called.
    let err = node
        .invoke(&c.id, "r3".into(), vec![], meta("f", &handler('b'), 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::WrongFunction(_)), "{err}");
    let err = node
        .invoke(&c.id, "r4".into(), vec![], meta("f", "bundle:x", 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::InvalidArgument(_)), "{err}");
    assert_eq!(invoker.calls.lock().unwrap().len(), 2);
    node.shutdown().await;
}

#[tokio::test]
async fn bundles_the_node_cannot_serve_are_refused_before_anything_starts() {
    let (node, runtime, _) = node_with_bundles().await;
    let spec = validate_spec(meta("f", &handler('b'), 128, 0)).unwrap();
    let err = node.create_container(spec).await.unwrap_err();
    assert!(
        matches!(err, NodeError::Bundle(BundleError::NotHere { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is --bundles-dir the API server's DATA_DIR/bundles?"),
        "{err}"
    );

    let (plain, plain_runtime, _) = pooled(FakeInvoker::default(), 0);
    let spec = validate_spec(meta("f", &handler('a'), 128, 0)).unwrap();
    let err = plain.create_container(spec).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "function \"f\" is made of bundle {}, but node n1 serves no bundles: start it with \
             --bundles-dir (the API server's DATA_DIR/bundles)",
            hash('a')
        )
    );

    let err = validate_spec(meta("f", "bundle:ABC", 128, 0)).unwrap_err();
    assert!(matches!(err, NodeError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");

    assert_eq!(*runtime.created.lock().unwrap(), 0);
    assert_eq!(*plain_runtime.created.lock().unwrap(), 0);
    assert_eq!(
        node.containers().committed_bytes(),
        0,
        "the memory is given back"
    );
    node.shutdown().await;
}
