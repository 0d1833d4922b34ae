//! The retry table: which failed calls run once more, on a fresh container, within the
//! caller's deadline, and which never do.

use super::*;

/// whether it runs again.
#[tokio::test]
async fn node_failures_follow_the_retry_table() {
    use NodeErrorKind::*;
    use Undelivered::*;
    // (kind, gRPC code, code the container goes back with, outcome, retried)
    let cases = [
        (
            NotConnected,
            RemoteCode::Unavailable,
            "NodeUnavailable",
            "node_unavailable",
            true,
        ),
        (
            Refused(ContainerNotFound),
            RemoteCode::NotFound,
            "ContainerNotFound",
            "node_unavailable",
            true,
        ),
        (
            Refused(ContainerDead),
            RemoteCode::FailedPrecondition,
            "ContainerDead",
            "node_unavailable",
            true,
        ),
        (
            Refused(ContainerUnreachable),
            RemoteCode::Unavailable,
            "ContainerUnreachable",
            "node_unavailable",
            true,
        ),
        (
            Refused(WrongFunction),
            RemoteCode::FailedPrecondition,
            "WrongFunction",
            "node_unavailable",
            true,
        ),
        (
            NoAnswer,
            RemoteCode::DeadlineExceeded,
            "NodeUnavailable",
            "node_no_answer",
            false,
        ),
        (
            Broken,
            RemoteCode::Unavailable,
            "NodeUnavailable",
            "node_unavailable",
            false,
        ),
        (
            Broken,
            RemoteCode::Cancelled,
            "NodeUnavailable",
            "node_unavailable",
            false,
        ),
        (
            Broken,
            RemoteCode::Internal,
            "NodeError",
            "node_error",
            false,
        ),
    ];
    for (kind, code, return_code, outcome, retried) in cases {
        let label = format!("{kind:?} {code:?}");
        let (invoker, fakes) = invoker(vec![Err(node_error(kind, code))]);
        let result = invoker.invoke(request("hello", "a", b"")).await;
        let returned = fakes.returned();
        assert_eq!(returned[0].container_id, "c-1", "{label}");
        assert_eq!(returned[0].error_code, return_code, "{label}");
        assert!(returned[0].error_message.contains("bad luck"), "{label}");
        if retried {
            let done = result.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(done.placement.container_id, "c-2", "{label}");
            assert_eq!(done.retried_after, Some(return_code), "{label}");
            // The failed container went back before the second acquire.
            let seen = fakes.seen();
            assert!(matches!(&seen[2], Seen::Return(r) if r.container_id == "c-1"));
            assert!(matches!(&seen[3], Seen::Acquire(a, _) if a.request_id == "r-1-retry"));
            assert!(
                matches!(&seen[4], Seen::Invoke { request_id, container, .. }
                    if request_id == "r-1-retry" && container == "c-2"),
                "{seen:?}"
            );
            assert_eq!(returned.len(), 2, "{label}");
            assert_eq!(returned[1].request_id, "r-1-retry");
            assert_eq!(returned[1].error_code, "", "{label}");
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.outcome(), outcome, "{label}");
            assert!(err.to_string().ends_with(MAY_HAVE_RUN), "{label}: {err}");
            assert!(err.to_string().contains("bad luck"), "{label}: {err}");
            assert_eq!(fakes.acquired().len(), 1, "{label}");
            assert_eq!(returned.len(), 1, "{label}");
        }
    }
}

#[tokio::test]
async fn a_call_is_retried_only_once() {
    let (invoker, fakes) = invoker(vec![
        refused(Undelivered::ContainerUnreachable),
        refused(Undelivered::ContainerUnreachable),
        Ok(execution(None)),
    ]);
    let err = invoker
        .invoke(request("hello", "a", b""))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Retried { .. }), "{err}");
    assert_eq!(err.outcome(), "node_unavailable");
    let message = err.to_string();
    assert!(message.contains("container c-2"), "{message}");
    assert!(message.contains("after one retry"), "{message}");
    assert!(message.contains("container c-1"), "{message}");
    assert_eq!(
        fakes.acquired(),
        [("r-1".to_string(), None), ("r-1-retry".to_string(), None)]
    );
    let codes: Vec<_> = fakes.returned().into_iter().map(|r| r.error_code).collect();
    assert_eq!(codes, ["ContainerUnreachable", "ContainerUnreachable"]);
}

#[tokio::test]
async fn an_unavailable_acquire_is_retried_once_and_other_acquire_errors_are_not() {
    let unavailable = || {
        Err(RemoteError::new(
            RemoteCode::Unavailable,
            "node node-3 was lost",
        ))
    };
    // Once: the retry succeeds.
    let (invoker, fakes) = invoker_with(Fakes {
        acquires: Mutex::new([unavailable()].into()),
        ..Fakes::default()
    });
    let done = invoker.invoke(request("hello", "a", b"")).await.unwrap();
    assert_eq!(done.retried_after, Some(RETRY_ACQUIRE_UNAVAILABLE));
    assert_eq!(fakes.acquired().len(), 2);
    // Nothing was acquired the first time, so only the retry's container goes back.
    assert_eq!(fakes.returned().len(), 1);

    // Twice: the second failure is the answer.
    let (invoker, fakes) = invoker_with(Fakes {
        acquires: Mutex::new([unavailable(), unavailable()].into()),
        ..Fakes::default()
    });
    let err = invoker
        .invoke(request("hello", "a", b""))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), "acquire_failed");
    assert_eq!(fakes.acquired().len(), 2);
    assert!(fakes.returned().is_empty());

    for code in [
        RemoteCode::ResourceExhausted,
        RemoteCode::DeadlineExceeded,
        // A node refused to create the function's container: not retried.
        RemoteCode::FailedPrecondition,
        RemoteCode::NotFound,
        RemoteCode::Cancelled,
    ] {
        let (invoker, fakes) = invoker_with(Fakes {
            acquires: Mutex::new([Err(RemoteError::new(code, "no"))].into()),
            ..Fakes::default()
        });
        let err = invoker
            .invoke(request("hello", "a", b""))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            InvokeError::Acquire {
                function: "hello".into(),
                code,
                message: "no".into(),
            }
        );
        assert_eq!(fakes.acquired().len(), 1, "{code:?}");
    }
}

#[tokio::test]
async fn acquire_errors_pass_through_with_context_and_return_nothing() {
    let (invoker, fakes) = invoker_with(Fakes {
        acquires: Mutex::new(
            [Err(RemoteError::new(
                RemoteCode::ResourceExhausted,
                "no available node can be reserved",
            ))]
            .into(),
        ),
        ..Fakes::default()
    });
    let err = invoker
        .invoke(request("hello", "a", b""))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "acquire container for hello: no available node can be reserved"
    );
    assert!(fakes.returned().is_empty());
}

#[tokio::test]
async fn the_retry_runs_within_what_is_left_of_the_callers_deadline() {
    let with_deadline = |ms| InvokeRequest {
        deadline: Some(Duration::from_millis(ms)),
        ..request("hello", "a", b"")
    };
    // The node call took 400 ms of the caller's 1000.
    let (invoker, fakes) = invoker_with(Fakes {
        invokes: Mutex::new([refused(Undelivered::ContainerDead)].into()),
        invoke_takes: Duration::from_millis(400),
        ..Fakes::default()
    });
    invoker.invoke(with_deadline(1000)).await.unwrap();
    assert_eq!(
        fakes.acquired(),
        [
            ("r-1".to_string(), Some(Duration::from_millis(1000))),
            ("r-1-retry".to_string(), Some(Duration::from_millis(600))),
        ]
    );

    // It took all of it: the caller has stopped waiting, so no retry.
    let (invoker, fakes) = invoker_with(Fakes {
        invokes: Mutex::new([refused(Undelivered::ContainerDead)].into()),
        invoke_takes: Duration::from_millis(1000),
        ..Fakes::default()
    });
    let err = invoker.invoke(with_deadline(1000)).await.unwrap_err();
    assert!(
        matches!(err, InvokeError::ContainerUnusable { .. }),
        "{err:?}"
    );
    assert_eq!(fakes.acquired().len(), 1);
    assert_eq!(fakes.returned()[0].error_code, "ContainerDead");
}

#[tokio::test]
async fn the_retry_runs_the_definition_deployed_now() {
    // Redeployed with another handler between the attempts.
    let (invoker, fakes) = invoker_with(Fakes {
        invokes: Mutex::new([refused(Undelivered::WrongFunction)].into()),
        during_first_invoke: Mutex::new(Some(Box::new(|registry: &Registry| {
            let echo = FunctionSpec {
                handler: "echo".into(),
                ..hello_spec()
            };
            registry.deploy(echo, 1).unwrap();
        }))),
        ..Fakes::default()
    });
    let done = invoker.invoke(request("hello", "a", b"")).await.unwrap();
    assert_eq!(done.function.handler.as_str(), "echo");
    assert_eq!(done.function.revision, 2);
    let handlers: Vec<_> = fakes.invoked().into_iter().map(|(h, _)| h).collect();
    assert_eq!(handlers, ["hello", "echo"]);

    // Deleted between the attempts: NOT_FOUND, as for any deleted function.
    let (invoker, fakes) = invoker_with(Fakes {
        invokes: Mutex::new([refused(Undelivered::WrongFunction)].into()),
        during_first_invoke: Mutex::new(Some(Box::new(|registry: &Registry| {
            registry.delete("hello").unwrap();
        }))),
        ..Fakes::default()
    });
    let err = invoker
        .invoke(request("hello", "a", b""))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), "not_found", "{err}");
    assert_eq!(fakes.acquired().len(), 1);
    assert_eq!(fakes.returned()[0].error_code, "WrongFunction");
}
