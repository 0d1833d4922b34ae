//! The service layer over real gRPC: the admin API's versions, aliases and routes, the
//! routing metadata of `InvokeFunction`, the scheduler told to hold a version an alias left,
//! every validation answered with its code, and all of it kept across a restart.

#![allow(dead_code)]

include!("support/fakes.rs");

fn spec(handler: &str) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: "shop".into(),
        handler: handler.into(),
        memory_in_bytes: 128 * 1024 * 1024,
        timeout_in_ms: 1000,
        description: String::new(),
        ..Default::default()
    }
}

fn weights(w: &[(i64, u32)]) -> Vec<admin::AliasWeight> {
    w.iter()
        .map(|(version, weight)| admin::AliasWeight {
            version: *version,
            weight: *weight,
        })
        .collect()
}

/// `shop` (echo) with versions 1 (echo) and 2 (sleep) and alias `live` at version 2.
async fn shop(p: &mut Platform) {
    p.deploy(spec("echo")).await.unwrap();
    let v1 = p
        .admin
        .publish_version(admin::PublishVersionRequest {
            name: "shop".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v1.version.unwrap().version, 1);
    let v2 = p
        .admin
        .publish_version(admin::PublishVersionRequest {
            name: "shop".into(),
            spec: Some(spec("sleep")),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v2.created);
    assert_eq!(v2.version.unwrap().spec.unwrap().handler, "sleep");
    set_alias(p, &[(2, 100)]).await.unwrap();
}

async fn set_alias(p: &mut Platform, w: &[(i64, u32)]) -> Result<admin::SetAliasReply, Status> {
    p.admin
        .set_alias(admin::SetAliasRequest {
            function: "shop".into(),
            alias: "live".into(),
            targets: weights(w),
        })
        .await
        .map(Response::into_inner)
}

fn acquired(p: &Platform) -> Vec<String> {
    p.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Acquire(a) => Some(a.function_name),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_call_names_a_version_or_alias_and_the_reply_says_which_served() {
    let mut p = start(Setup::default()).await;
    shop(&mut p).await;
    for (name, version, target) in [
        ("shop", "latest", "shop"),
        ("shop:1", "1", "shop:1"),
        ("shop:live", "2", "shop:2"),
    ] {
        let reply = p
            .api
            .invoke_function(invoke(name, "acct", b"{}"))
            .await
            .unwrap();
        assert_eq!(meta_str(&reply, meta::VERSION), version, "{name}");
        assert_eq!(meta_str(&reply, meta::TARGET), target, "{name}");
    }
    // The scheduler saw each version as a function of its own, with its own handler.
    assert_eq!(acquired(&p), ["shop", "shop:1", "shop:2"]);
    let handlers: Vec<_> = p
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Acquire(a) => Some(a.function_config.map(|c| c.handler).unwrap_or_default()),
            _ => None,
        })
        .collect();
    assert_eq!(handlers, ["echo", "echo", "sleep"]);
    // The contest's ListFunctions lists functions, not versions.
    let names: Vec<_> = p
        .list()
        .await
        .functions
        .into_iter()
        .map(|f| f.function_name)
        .collect();
    assert!(names.contains(&"shop".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains(':')), "{names:?}");
    let status = p.invoke_err("shop:9").await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn routing_metadata_picks_the_rule_and_bad_metadata_is_refused() {
    let mut p = start(Setup::default()).await;
    shop(&mut p).await;
    let routes = admin::RoutePolicy {
        default_target: "shop:1".into(),
        rules: vec![admin::RouteRule {
            fields: [("wareHouseId".to_string(), "2001".to_string())].into(),
            target: "shop:live".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    p.admin
        .set_routes(admin::SetRoutesRequest {
            function: "shop".into(),
            routes: Some(routes),
        })
        .await
        .unwrap();
    let mut request = Request::new(invoke("shop", "acct", b"{}"));
    request
        .metadata_mut()
        .append(meta::ROUTE_PARAM, "wareHouseId=2001".parse().unwrap());
    let reply = p.api.invoke_function(request).await.unwrap();
    assert_eq!(meta_str(&reply, meta::TARGET), "shop:2");
    let reply = p
        .api
        .invoke_function(invoke("shop", "acct", b"{}"))
        .await
        .unwrap();
    assert_eq!(meta_str(&reply, meta::TARGET), "shop:1");
    let mut request = Request::new(invoke("shop", "acct", b"{}"));
    request
        .metadata_mut()
        .append(meta::ROUTE_PARAM, "no-equals-sign".parse().unwrap());
    let status = p.api.invoke_function(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("is not key=value"), "{status:?}");
}

#[tokio::test]
async fn a_failed_target_falls_back_and_the_reply_says_so() {
    let mut p = start(Setup::nodes(&[
        NodeBehaviour::FunctionError,
        NodeBehaviour::Succeed,
    ]))
    .await;
    shop(&mut p).await;
    p.admin
        .set_routes(admin::SetRoutesRequest {
            function: "shop".into(),
            routes: Some(admin::RoutePolicy {
                default_target: "shop:live".into(),
                fallback: Some(admin::Fallback {
                    target: "shop:1".into(),
                    on_error: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let reply = p
        .api
        .invoke_function(invoke("shop", "acct", b"{}"))
        .await
        .unwrap();
    assert_eq!(meta_str(&reply, meta::FALLBACK), "shop:2; error");
    assert_eq!(meta_str(&reply, meta::VERSION), "1");
    assert_eq!(acquired(&p), ["shop:2", "shop:1"]);
    let request_ids: Vec<_> = p
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Acquire(a) => Some(a.request_id),
            _ => None,
        })
        .collect();
    assert_eq!(request_ids[1], format!("{}-fallback", request_ids[0]));
    let described = p
        .admin
        .describe_function(admin::DescribeFunctionRequest {
            name: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let canary = described
        .targets
        .iter()
        .find(|t| t.target == "shop:2")
        .unwrap();
    assert_eq!((canary.calls, canary.errors, canary.fallbacks), (1, 1, 1));
    assert_eq!(canary.breaker, "closed");
    assert_eq!(described.routes.unwrap().fallback.unwrap().target, "shop:1");
}

#[tokio::test]
async fn moving_an_alias_holds_the_version_it_left_and_rollback_brings_it_back() {
    let mut p = start(Setup {
        config: Config {
            version_grace_ms: 123_000,
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    shop(&mut p).await;
    set_alias(&mut p, &[(1, 100)]).await.unwrap();
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(5);
    while !p
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Hold(name, 123_000) if name == "shop:2"))
    {
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "no HoldFunction for shop:2: {:?}",
            p.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = p
        .admin
        .rollback_alias(admin::RollbackAliasRequest {
            function: "shop".into(),
            alias: "live".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let alias = back.alias.unwrap();
    assert_eq!(alias.targets, weights(&[(2, 100)]));
    assert_eq!(alias.previous, weights(&[(1, 100)]));
    assert!(back.took_us > 0);
    let reply = p
        .api
        .invoke_function(invoke("shop:live", "acct", b""))
        .await
        .unwrap();
    assert_eq!(meta_str(&reply, meta::VERSION), "2");
}

#[tokio::test]
async fn every_mistake_gets_its_code_and_names_its_field() {
    let mut p = start(Setup::default()).await;
    shop(&mut p).await;
    let status = set_alias(&mut p, &[(1, 90), (2, 20)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("targets.weight: weights must sum to 100"),
        "{status:?}"
    );
    let status = set_alias(&mut p, &[(7, 100)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let set_routes = |routes: admin::RoutePolicy| {
        let mut admin = p.admin.clone();
        async move {
            admin
                .set_routes(admin::SetRoutesRequest {
                    function: "shop".into(),
                    routes: Some(routes),
                })
                .await
                .unwrap_err()
        }
    };
    for (routes, field) in [
        (
            admin::RoutePolicy {
                default_target: "shop:nope".into(),
                ..Default::default()
            },
            "default: alias nope of shop does not exist",
        ),
        (
            admin::RoutePolicy {
                rules: vec![admin::RouteRule {
                    route_id_regex: "([".into(),
                    target: "shop:1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            "rules[0].route_id_regex",
        ),
        (
            admin::RoutePolicy {
                breaker: Some(admin::Breaker {
                    latency_baseline_ms: 50,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "breaker: a breaker needs fallback.target",
        ),
    ] {
        let status = set_routes(routes).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    }
    let status = p
        .admin
        .delete_version(admin::DeleteVersionRequest {
            name: "shop".into(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("alias shop:live"), "{status:?}");
    let status = p
        .admin
        .rollback_alias(admin::RollbackAliasRequest {
            function: "shop".into(),
            alias: "live".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = p
        .admin
        .publish_version(admin::PublishVersionRequest {
            name: "shop".into(),
            spec: Some(spec("cpu")),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("versions are immutable"),
        "{status:?}"
    );
}

#[tokio::test]
async fn versions_aliases_and_routes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        // Keys are tested in auth.rs; these calls go without one.
        allow_anonymous: true,
        ..Config::default()
    };
    let mut p = start(Setup {
        config: config.clone(),
        ..Setup::default()
    })
    .await;
    shop(&mut p).await;
    set_alias(&mut p, &[(1, 100)]).await.unwrap();
    p.admin
        .set_routes(admin::SetRoutesRequest {
            function: "shop".into(),
            routes: Some(admin::RoutePolicy {
                default_target: "shop:live".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let describe = |mut admin: AdminClient<Channel>| async move {
        admin
            .describe_function(admin::DescribeFunctionRequest {
                name: "shop".into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let before = describe(p.admin.clone()).await;
    p.stop().await;
    let p = start(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let after = describe(p.admin.clone()).await;
    // The new server tells the scheduler again to hold the version the alias left.
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(5);
    while !p
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Hold(name, ms) if name == "shop:2" && *ms > 0))
    {
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "no hold after the restart: {:?}",
            p.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(after.versions, before.versions);
    assert_eq!(after.aliases, before.aliases);
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.aliases[0].previous, weights(&[(2, 100)]));
}

#[tokio::test]
async fn deleting_a_version_or_function_ends_its_hold_and_retires_it() {
    let mut p = start(Setup::default()).await;
    shop(&mut p).await;
    set_alias(&mut p, &[(1, 100)]).await.unwrap();
    p.admin
        .delete_version(admin::DeleteVersionRequest {
            name: "shop".into(),
            version: 2,
        })
        .await
        .unwrap();
    p.admin
        .delete_alias(admin::DeleteAliasRequest {
            function: "shop".into(),
            alias: "live".into(),
        })
        .await
        .unwrap();
    p.admin
        .delete_function(admin::DeleteFunctionRequest {
            name: "shop".into(),
        })
        .await
        .unwrap();
    let told = |p: &Platform| -> Vec<String> {
        p.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Hold(name, 0) => Some(format!("end hold {name}")),
                Call::Retire(name) => Some(format!("retire {name}")),
                _ => None,
            })
            .collect()
    };
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(5);
    while told(&p).len() < 6 {
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "{:?}",
            told(&p)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let told = told(&p);
    for name in ["shop:2", "shop", "shop:1"] {
        let end = told.iter().position(|t| *t == format!("end hold {name}"));
        let retire = told.iter().position(|t| *t == format!("retire {name}"));
        assert!(
            end.is_some() && retire.is_some() && end < retire,
            "{name}: {told:?}"
        );
    }
}
