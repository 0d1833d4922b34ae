//! The real API server on 127.0.0.1:0, with fake Scheduler and NodeService servers that record
//! every call they get.
//! This file holds the invoke path; the admin API and the server's start are in `admin.rs`.

// Not every test binary uses every fake.
#![allow(dead_code)]

include!("support/fakes.rs");

#[tokio::test]
async fn invoke_hello_acquires_invokes_and_returns_in_order() {
    let mut p = start(Setup::default()).await;
    let response = p
        .api
        .invoke_function(invoke("hello", "acct-1", b"{\"x\":1}"))
        .await
        .unwrap();
    assert_eq!(meta_str(&response, meta::DURATION_NS), "4242");
    assert_eq!(meta_str(&response, meta::MAX_MEMORY_BYTES), "777");
    assert_eq!(meta_str(&response, meta::CONTAINER_ID), "container-42");
    assert_eq!(meta_str(&response, meta::NODE_ID), "node-7");
    assert_eq!(meta_str(&response, meta::COLD_START), "true");
    let acquire_ms: f64 = meta_str(&response, meta::ACQUIRE_MS).parse().unwrap();
    assert!(acquire_ms >= 0.0, "{acquire_ms}");
    let reply = response.into_inner();
    assert_eq!(reply.body, b"hello world");
    assert!(reply.server_side_latency_in_ms >= 0);
    uuid::Uuid::parse_str(&reply.request_id).unwrap();

    let calls = p.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let Call::Acquire(acquire) = &calls[0] else {
        panic!("first call is not an acquire: {calls:?}")
    };
    let Call::Invoke(invoked) = &calls[1] else {
        panic!("second call is not an invoke: {calls:?}")
    };
    let Call::Return(returned) = &calls[2] else {
        panic!("third call is not a return: {calls:?}")
    };
    assert_eq!(acquire.request_id, reply.request_id);
    assert_eq!(acquire.account_id, "acct-1");
    assert_eq!(acquire.function_name, "hello");
    let config = acquire.function_config.clone().unwrap();
    assert_eq!(config.handler, "hello");
    assert_eq!(config.memory_in_bytes, 128 * 1024 * 1024);
    assert_eq!(config.timeout_in_ms, 60_000);

    assert_eq!(invoked.request_id, reply.request_id);
    assert_eq!(invoked.container_id, "container-42");
    assert_eq!(invoked.event, b"{\"x\":1}");
    assert_eq!(invoked.function_meta.clone().unwrap().handler, "hello");

    assert_eq!(
        *returned,
        ReturnContainerRequest {
            request_id: reply.request_id.clone(),
            container_id: "container-42".into(),
            duration_in_nanos: 4242,
            max_memory_usage_in_bytes: 777,
            error_code: String::new(),
            error_message: String::new(),
        }
    );
    p.stop().await;
}

#[tokio::test]
async fn a_function_error_is_unknown_and_the_container_still_goes_back() {
    let mut p = start(Setup::node(NodeBehaviour::FunctionError)).await;
    let status = p
        .api
        .invoke_function(invoke("echo", "acct", b"x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert_eq!(status.message(), "function echo failed: division by zero");
    let returns = p.returns();
    assert_eq!(returns.len(), 1);
    assert_eq!(returns[0].container_id, "container-42");
    assert_eq!(returns[0].error_code, "FunctionError");
    assert_eq!(returns[0].error_message, "division by zero");
    assert_eq!(returns[0].duration_in_nanos, 4242);
    p.stop().await;
}

#[tokio::test]
async fn a_timeout_is_deadline_exceeded() {
    let mut p = start(Setup::node(NodeBehaviour::Timeout)).await;
    let status = p.invoke_err("spin").await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().starts_with("function spin timed out"),
        "{status:?}"
    );
    assert!(
        status
            .message()
            .ends_with(": ran past its 10000 ms timeout"),
        "{status:?}"
    );
    let returns = p.returns();
    assert_eq!(returns[0].error_code, "Timeout");
    assert_eq!(returns[0].error_message, "ran past its 10000 ms timeout");
    p.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_once_on_another_container() {
    let mut p = start(Setup::nodes(&[NodeBehaviour::Down, NodeBehaviour::Succeed])).await;
    let reply = p
        .api
        .invoke_function(invoke("hello", "acct", b""))
        .await
        .unwrap();
    assert_eq!(meta_str(&reply, meta::CONTAINER_ID), "container-43");
    let reply = reply.into_inner();
    assert_eq!(reply.body, b"hello world");
    let calls = p.calls();
    let ids: Vec<_> = calls
        .iter()
        .map(|c| match c {
            Call::Acquire(a) => format!("acquire {}", a.request_id),
            Call::Invoke(i) => format!("invoke {} on {}", i.request_id, i.container_id),
            Call::Return(r) => format!("return {} {}", r.container_id, r.error_code),
            Call::Retire(name) => format!("retire {name}"),
            Call::Hold(name, ms) => format!("hold {name} {ms}"),
        })
        .collect();
    let id = &reply.request_id;
    assert_eq!(
        ids,
        [
            format!("acquire {id}"),
            "return container-42 NodeUnavailable".to_string(),
            format!("acquire {id}-retry"),
            format!("invoke {id}-retry on container-43"),
            "return container-43 ".to_string(),
        ]
    );
    let first = &p.returns()[0];
    assert!(
        first.error_message.contains("node-7") && first.error_message.contains("refused"),
        "{first:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn an_unreachable_node_is_unavailable_after_one_retry_and_both_containers_go_back() {
    let mut p = start(Setup::node(NodeBehaviour::Down)).await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The same container twice: the message says so once.
    assert_eq!(status.message().matches("node-7").count(), 1, "{status:?}");
    assert!(
        status.message().ends_with("(the same on one retry)"),
        "{status:?}"
    );
    assert_eq!(p.acquires(), 2);
    let returns = p.returns();
    assert_eq!(returns.len(), 2, "{:?}", p.calls());
    for r in &returns {
        assert_eq!(r.container_id, "container-42");
        assert_eq!(r.error_code, "NodeUnavailable");
        assert!(!r.error_message.is_empty());
    }
    p.stop().await;
}

#[tokio::test]
async fn a_node_that_refuses_before_delivery_is_retried_with_its_code() {
    let refusals = [
        (Code::NotFound, "ContainerNotFound"),
        (Code::FailedPrecondition, "ContainerDead"),
        (Code::Unavailable, "ContainerUnreachable"),
        (Code::FailedPrecondition, "WrongFunction"),
    ];
    for (code, error_code) in refusals {
        let mut p = start(Setup::nodes(&[
            NodeBehaviour::Refuse(code, error_code),
            NodeBehaviour::Succeed,
        ]))
        .await;
        let reply = p
            .api
            .invoke_function(invoke("hello", "acct", b""))
            .await
            .unwrap_or_else(|s| panic!("{error_code}: {s:?}"))
            .into_inner();
        assert_eq!(reply.body, b"hello world");
        let returns = p.returns();
        assert_eq!(returns.len(), 2, "{error_code}");
        assert_eq!(returns[0].error_code, error_code);
        assert_eq!(returns[1].error_code, "");
        assert_eq!(returns[1].request_id, format!("{}-retry", reply.request_id));
        p.stop().await;
    }

    // Refused twice: UNAVAILABLE, never INTERNAL.
    let mut p = start(Setup::node(NodeBehaviour::Refuse(
        Code::FailedPrecondition,
        "WrongFunction",
    )))
    .await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("another definition"),
        "{status:?}"
    );
    assert_eq!(p.acquires(), 2);
    p.stop().await;
}

#[tokio::test]
async fn a_container_that_exits_mid_call_is_not_retried_and_says_so() {
    let mut p = start(Setup::nodes(&[
        NodeBehaviour::Exited,
        NodeBehaviour::Succeed,
    ]))
    .await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .ends_with("the function may have run; not retried"),
        "{status:?}"
    );
    assert_eq!(p.acquires(), 1);
    assert_eq!(p.returns()[0].error_code, "ContainerExited");
    p.stop().await;
}

/// A function whose node calls end 1 ms after they start (`node_call_grace_ms` 0).
async fn deploy_quick(p: &mut Platform) {
    p.deploy(admin_spec("quick", "hello", 1)).await.unwrap();
}

#[tokio::test]
async fn a_node_that_stops_answering_fails_the_call_by_its_deadline() {
    for behaviour in [NodeBehaviour::Hang, NodeBehaviour::HangAfterHeader] {
        let mut p = start(Setup {
            config: Config {
                node_call_grace_ms: 0,
                ..Config::default()
            },
            ..Setup::node(behaviour)
        })
        .await;
        deploy_quick(&mut p).await;
        let status = p.invoke_err("quick").await;
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        let message = status.message();
        assert!(message.contains("node-7"), "{message}");
        assert!(message.contains("did not answer within 1 ms"), "{message}");
        assert!(
            message.ends_with("the function may have run; not retried"),
            "{message}"
        );
        assert_eq!(p.acquires(), 1);
        let returns = p.returns();
        assert_eq!(returns.len(), 1);
        assert_eq!(returns[0].error_code, "NodeUnavailable");
        p.stop().await;
    }
}

#[tokio::test]
async fn the_schedulers_timeouts_are_deadline_exceeded() {
    // The scheduler's own expiry, as a tonic server sends it.
    let mut p = start(Setup::refuse(Code::Cancelled, "Timeout expired")).await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    p.stop().await;

    // The API server's own deadline on the acquire (tonic's client-side "Timeout expired").
    let mut p = start(Setup {
        hang_acquire: true,
        config: Config {
            scheduler_timeout_ms: 50,
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("within 50 ms"), "{status:?}");
    assert_eq!(p.acquires(), 1);
    assert!(p.returns().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn the_acquire_and_its_retry_end_by_the_callers_deadline() {
    let mut p = start(Setup::nodes(&[NodeBehaviour::Down, NodeBehaviour::Succeed])).await;
    let mut request = Request::new(invoke("hello", "acct", b""));
    request.set_timeout(Duration::from_secs(20));
    p.api.invoke_function(request).await.unwrap();
    let timeouts: Vec<Duration> = p
        .acquire_timeouts
        .lock()
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.as_deref().expect("every acquire has a deadline");
            faas_common::serve::parse_grpc_timeout(t).unwrap()
        })
        .collect();
    assert_eq!(timeouts.len(), 2);
    // Under the caller's 20 s (not the scheduler deadline's 30 s), the retry's under the first's.
    assert!(timeouts[0] <= Duration::from_secs(20), "{timeouts:?}");
    assert!(timeouts[1] <= timeouts[0], "{timeouts:?}");
    p.stop().await;
}

#[tokio::test]
async fn acquire_errors_pass_through_with_context() {
    let mut p = start(Setup::refuse(
        Code::ResourceExhausted,
        "no available node can be reserved",
    ))
    .await;
    let status = p.invoke_err("hello").await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "acquire container for hello: no available node can be reserved"
    );
    assert_eq!(p.acquires(), 1);
    assert!(p.returns().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn an_unknown_function_is_not_found_without_acquiring() {
    let mut p = start(Setup::default()).await;
    let status = p.invoke_err("nope").await;
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "function nope not found");

    let status = p.invoke_err("").await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(p.acquires(), 0);
    p.stop().await;
}

#[tokio::test]
async fn an_event_a_little_over_the_default_limit_gets_a_clear_message() {
    let mut p = start(Setup::default()).await;
    let limit = faas_apiserver::config::DEFAULT_MAX_EVENT_BYTES;
    let status = p
        .api
        .invoke_function(invoke("echo", "acct", &vec![b'a'; limit + 1]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "event is {} bytes, over the limit of {limit} bytes",
            limit + 1
        )
    );
    assert_eq!(p.acquires(), 0);
    p.stop().await;
}

#[tokio::test]
async fn the_event_limit_is_configurable() {
    let mut p = start(Setup {
        config: Config {
            max_event_bytes: 10,
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    let status = p
        .api
        .invoke_function(invoke("echo", "acct", &[0; 11]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "event is 11 bytes, over the limit of 10 bytes"
    );
    assert_eq!(p.acquires(), 0);
    p.api
        .invoke_function(invoke("echo", "acct", &[0; 10]))
        .await
        .unwrap();
    assert_eq!(p.acquires(), 1);
    p.stop().await;
}

#[tokio::test]
async fn an_empty_account_is_invalid_without_acquiring() {
    let mut p = start(Setup::default()).await;
    let status = p
        .api
        .invoke_function(invoke("hello", "", b""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "account ID cannot be empty");
    assert_eq!(p.acquires(), 0);
    p.stop().await;
}
