//! Functions that change under load (deploys and deletes between attempts) and the store's
//! absence from the invoke path.

use super::*;

/// The scheduler and nodes of a platform whose functions change under load: a container
/// is bound to the definition (handler and description) it was acquired for, but the
/// scheduler sometimes hands out one of an older definition first, which the node refuses
/// with `WrongFunction`, as a node service does. The node answers with the description it
/// ran.
#[derive(Default)]
struct Churn {
    acquires: AtomicU64,
    stale: AtomicU64,
    returns: Mutex<Vec<ReturnRequest>>,
}

impl SchedulerPort for Arc<Churn> {
    async fn acquire(
        &self,
        req: AcquireRequest,
        _: Option<Duration>,
    ) -> Result<Placement, RemoteError> {
        let n = self.acquires.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        // Every third first attempt gets a container of an old definition.
        let stale = n.is_multiple_of(3) && !req.request_id.ends_with(RETRY_SUFFIX);
        if stale {
            self.stale.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Placement {
            node_id: "node-1".into(),
            node_address: "10.0.0.1".into(),
            node_port: 7000,
            container_id: if stale {
                format!("c-{n}/old")
            } else {
                format!("c-{n}/{}", req.handler)
            },
            cold_start: Some(false),
        })
    }

    async fn return_container(&self, req: ReturnRequest) -> Result<(), RemoteError> {
        self.returns.lock().unwrap().push(req);
        Ok(())
    }
}

impl NodePort for Arc<Churn> {
    async fn invoke(
        &self,
        placement: &Placement,
        call: NodeCall<'_>,
    ) -> Result<Execution, NodeError> {
        tokio::task::yield_now().await;
        let bound = placement.container_id.split('/').nth(1);
        if bound != Some(call.function.handler.as_str()) {
            return Err(NodeError::new(
                NodeErrorKind::Refused(Undelivered::WrongFunction),
                RemoteCode::FailedPrecondition,
                "this container runs another definition",
            ));
        }
        Ok(Execution {
            body: call.function.description.clone().into_bytes(),
            ..Execution::default()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_delete_churn_gives_only_documented_statuses_and_never_an_old_body() {
    let churn = Arc::new(Churn::default());
    let registry = Arc::new(Registry::new());
    let invoker = Arc::new(Invoker::new(
        registry.clone(),
        churn.clone(),
        churn.clone(),
        Arc::new(ManualClock::default()),
        1024,
    ));
    // The generation of the last deploy that has returned.
    let deployed = Arc::new(AtomicU64::new(0));
    let deploy = |generation: u64| {
        let spec = FunctionSpec {
            name: "f".into(),
            handler: ["echo", "hello", "sleep"][generation as usize % 3].into(),
            memory_bytes: 128 * MIB,
            timeout_ms: 1000,
            description: generation.to_string(),
            ..Default::default()
        };
        registry.deploy(spec, 0).unwrap();
        deployed.fetch_max(generation, Ordering::SeqCst);
    };
    deploy(1);

    let callers: Vec<_> = (0..4)
        .map(|i| {
            let invoker = invoker.clone();
            let deployed = deployed.clone();
            tokio::spawn(async move {
                let (mut ok, mut not_found) = (0, 0);
                for j in 0..300 {
                    let at_least = deployed.load(Ordering::SeqCst);
                    let req = InvokeRequest {
                        request_id: format!("r-{i}-{j}"),
                        ..request("f", "a", b"")
                    };
                    match invoker.invoke(req).await {
                        Ok(done) => {
                            let generation: u64 =
                                String::from_utf8(done.body).unwrap().parse().unwrap();
                            assert!(
                                generation >= at_least,
                                "an old body (generation {generation}) after generation \
                                 {at_least} was deployed"
                            );
                            ok += 1;
                        }
                        Err(InvokeError::NotFound { .. }) => not_found += 1,
                        Err(InvokeError::Retried { last, .. })
                            if matches!(*last, InvokeError::NotFound { .. }) =>
                        {
                            not_found += 1
                        }
                        Err(e) => panic!("an undocumented status under churn: {e}"),
                    }
                }
                (ok, not_found)
            })
        })
        .collect();

    for generation in 2..200u64 {
        if generation.is_multiple_of(5) {
            registry.delete("f").unwrap();
            let err = invoker.invoke(request("f", "a", b"")).await.unwrap_err();
            assert_eq!(err, InvokeError::NotFound { name: "f".into() });
        }
        deploy(generation);
        tokio::task::yield_now().await;
    }
    let mut ok = 0;
    for caller in callers {
        ok += caller.await.unwrap().0;
    }
    assert!(ok > 0);
    assert!(churn.stale.load(Ordering::SeqCst) > 0);
    // Every container went back, the refused ones as WrongFunction.
    let returns = churn.returns.lock().unwrap();
    assert_eq!(returns.len() as u64, churn.acquires.load(Ordering::SeqCst));
    assert!(returns.iter().any(|r| r.error_code == "WrongFunction"));
}

/// The database's cost on the invoke path is nothing: once the registry is loaded, a call
/// (found or not) reads only its memory. The store panics if anything touches it.
#[tokio::test]
async fn the_invoke_path_never_touches_the_store() {
    use crate::store::fake::FakeDao;
    let dao = Arc::new(FakeDao::default());
    let opened = Registry::open(dao.clone(), vec![], 0).unwrap();
    let (invoker, fakes) = invoker_with(Fakes {
        registry: Arc::new(opened.registry),
        ..Fakes::default()
    });
    // Loaded, and `hello` written through.
    assert_eq!(dao.calls(), 2);
    assert_eq!(dao.rows().len(), 1);
    dao.freeze();
    for i in 0..3 {
        let req = InvokeRequest {
            request_id: format!("r-{i}"),
            ..request("hello", "a", b"{}")
        };
        invoker.invoke(req).await.unwrap();
    }
    let err = invoker.invoke(request("nope", "a", b"")).await.unwrap_err();
    assert_eq!(
        err,
        InvokeError::NotFound {
            name: "nope".into()
        }
    );
    assert_eq!(fakes.returned().len(), 3);
    assert_eq!(dao.calls(), 2);
}
