//! A lease held past its function's timeout is reclaimed by the scheduler (real local
//! platform).
//!
//! The harness (platform, load, shared checks) is `support/healing.rs`; the other kinds of
//! fault are in the other `self_healing_*.rs` files (`docs/CONVENTIONS.md`, "Self-healing").

mod support;

use support::healing::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_held_past_its_timeout_is_reclaimed() {
    on_platform("baseline", |env| async move {
        env.deploy("leased", "hello", 500).await;
        let mut scheduler = env.scheduler().await;
        // Acquired like an API server that crashes before it returns the container.
        let mut acquire = Request::new(AcquireContainerRequest {
            request_id: "held-lease".into(),
            account_id: ACCOUNT.into(),
            function_name: "leased".into(),
            function_config: Some(FunctionConfig {
                timeout_in_ms: 500,
                memory_in_bytes: 128 * MIB,
                handler: "hello".into(),
            }),
        });
        acquire.set_timeout(Duration::from_secs(10));
        let held = scheduler
            .acquire_container(acquire)
            .await
            .expect("acquire for the held lease")
            .into_inner();
        let leases = env.metric("faas_scheduler_leases").await;
        assert_eq!(
            leases,
            Some(1.0),
            "the scheduler's leases gauge while the lease is held"
        );

        // Reclaimed after the timeout (500 ms) plus the grace (500 ms).
        let reclaimed = observe::poll(RECOVERY, || async {
            env.metric("faas_scheduler_leases")
                .await
                .filter(|&n| n == 0.0)
        })
        .await;
        assert!(
            reclaimed.is_some(),
            "the lease was still held {RECOVERY:?} after its timeout: faas_scheduler_leases {:?}",
            env.metric("faas_scheduler_leases").await
        );

        // The container is usable again (one request per container: reused warm), or removed.
        let next = env
            .invoke("leased", b"{}")
            .await
            .expect("the call after the lease expired");
        let reused = next.container_id.as_deref() == Some(held.container_id.as_str())
            && next.cold == Some(false);
        if !reused {
            let node = format!("{}:{}", held.node_address, held.node_service_port);
            let stats = observe::node_stats(&node, &env.auth)
                .await
                .expect("the held container's node answers");
            assert!(
                !stats
                    .container_stats_list
                    .iter()
                    .any(|c| c.container_id == held.container_id),
                "container {} of the expired lease was neither reused warm ({next:?}) nor removed",
                held.container_id
            );
        }

        let late = scheduler
            .return_container(ReturnContainerRequest {
                request_id: "held-lease".into(),
                container_id: held.container_id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            late.as_ref().err().map(Status::code),
            Some(Code::FailedPrecondition),
            "a late return of a reclaimed lease: {late:?}"
        );
    })
    .await;
}
