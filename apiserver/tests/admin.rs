//! The real API server on 127.0.0.1:0 with the fakes of `support/fakes.rs`: the admin API
//! (deploy, list, redeploy, delete, absurd specs, large lists), health, and what the server
//! refuses at start. The invoke path is in `api.rs`.

// Not every test binary uses every fake.
#![allow(dead_code)]

include!("support/fakes.rs");

#[tokio::test]
async fn admin_deploy_list_redeploy_delete() {
    let mut p = start(Setup::default()).await;
    let spec = admin::FunctionSpec {
        name: "greeter".into(),
        handler: "echo".into(),
        memory_in_bytes: 256 * 1024 * 1024,
        timeout_in_ms: 1500,
        description: "echoes".into(),
        ..Default::default()
    };
    let deployed = p
        .admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deployed.created);
    let record = deployed.function.unwrap();
    assert_eq!(record.revision, 1);
    assert_eq!(record.spec.unwrap(), spec);

    let listed = p.list().await;
    assert!(!listed.request_id.is_empty());
    let names: Vec<_> = listed
        .functions
        .iter()
        .map(|f| f.function_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["cpu", "echo", "greeter", "hello", "memory", "sleep", "spin"]
    );
    let greeter = listed
        .functions
        .iter()
        .find(|f| f.function_name == "greeter")
        .unwrap();
    assert_eq!(
        *greeter,
        apiserverproto::FunctionConfig {
            function_name: "greeter".into(),
            timeout_in_ms: 1500,
            memory_in_bytes: 256 * 1024 * 1024,
            handler: "echo".into(),
        }
    );

    let again = p
        .admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(admin::FunctionSpec {
                timeout_in_ms: 3000,
                ..spec.clone()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.function.unwrap().revision, 2);
    let got = p
        .admin
        .get_function(admin::GetFunctionRequest {
            name: "greeter".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .function
        .unwrap();
    assert_eq!(got.revision, 2);
    assert_eq!(got.spec.unwrap().timeout_in_ms, 3000);

    // It runs with its own configuration.
    p.api
        .invoke_function(invoke("greeter", "acct", b"hi"))
        .await
        .unwrap();
    let Call::Acquire(acquire) = &p.calls()[0] else {
        panic!("no acquire")
    };
    assert_eq!(acquire.function_config.clone().unwrap().timeout_in_ms, 3000);

    p.admin
        .delete_function(admin::DeleteFunctionRequest {
            name: "greeter".into(),
        })
        .await
        .unwrap();
    let status = p
        .api
        .invoke_function(invoke("greeter", "acct", b"hi"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "function greeter not found");
    assert_eq!(p.acquires(), 1);
    // The scheduler is told, so the function's containers drain.
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(10);
    while !p
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Retire(name) if name == "greeter"))
    {
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "no RetireFunction"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let status = p
        .admin
        .delete_function(admin::DeleteFunctionRequest {
            name: "greeter".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = p
        .admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(admin::FunctionSpec {
                memory_in_bytes: 4096 * 1024 * 1024,
                ..spec
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("out of range"), "{status:?}");

    let status = p
        .admin
        .deploy_function(admin::DeployFunctionRequest { function: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    p.stop().await;
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let p = start(Setup::default()).await;
    let channel = faas_common::serve::connect(&p.addr).await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "apiserverproto.APIServer", "faas.admin.v1.Admin"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn a_bad_functions_file_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("faas-apiserver-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[function]]\nname = \"x\"\nhandler = \"perl\"\nmemory_mb = 128\ntimeout_ms = 5\n",
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        functions: Some(path.clone()),
        ..Config::default()
    };
    let err = faas_apiserver::run(listener, config, shutdown::Shutdown::never())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("\"x\""), "{message}");
    assert!(message.contains("\"perl\""), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_huge_function_name_is_not_found_with_a_clipped_message() {
    let mut p = start(Setup::default()).await;
    let name = "n".repeat(1 << 20);
    let status = p.invoke_err(&name).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().len() < 300, "{}", status.message().len());
    assert!(status.message().contains("(1048576 bytes)"), "{status:?}");
    let status = p
        .admin
        .get_function(admin::GetFunctionRequest { name })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().len() < 300, "{}", status.message().len());
    assert_eq!(p.acquires(), 0);
    p.stop().await;
}

#[tokio::test]
async fn absurd_deploys_are_invalid_arguments() {
    let mut p = start(Setup::default()).await;
    let good = admin_spec("f", "echo", 1000);
    let cases = [
        admin::FunctionSpec {
            memory_in_bytes: 0,
            ..good.clone()
        },
        admin::FunctionSpec {
            memory_in_bytes: -1,
            ..good.clone()
        },
        admin::FunctionSpec {
            memory_in_bytes: 1_000_000_000_000_000_000,
            ..good.clone()
        },
        admin::FunctionSpec {
            memory_in_bytes: (1 << 40) + 1,
            ..good.clone()
        },
        admin::FunctionSpec {
            timeout_in_ms: -1,
            ..good.clone()
        },
        admin::FunctionSpec {
            timeout_in_ms: 24 * 3_600_000 + 1,
            ..good.clone()
        },
        admin::FunctionSpec {
            name: "x".repeat(257),
            ..good.clone()
        },
        admin::FunctionSpec {
            name: "x".repeat(1 << 20),
            ..good.clone()
        },
        admin::FunctionSpec {
            handler: "python3".into(),
            ..good.clone()
        },
        admin::FunctionSpec {
            handler: "h".repeat(1 << 20),
            ..good.clone()
        },
    ];
    for spec in cases {
        let status = p.deploy(spec).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().len() < 400, "{}", status.message().len());
    }
    // Nothing of it was deployed, and a sane one still is.
    assert!(
        p.admin
            .get_function(admin::GetFunctionRequest { name: "f".into() })
            .await
            .is_err()
    );
    p.deploy(good).await.unwrap();
    p.stop().await;
}

#[tokio::test]
async fn large_function_lists_are_served_whole() {
    let mut p = start(Setup::default()).await;
    // 1 MiB descriptions and thousands of functions: the admin list is over 8 MiB (the
    // platform's message limit, twice tonic's default) in all.
    for i in 0..9 {
        let big = admin::FunctionSpec {
            description: "d".repeat(1 << 20),
            ..admin_spec(&format!("big-{i}"), "echo", 1000)
        };
        p.deploy(big).await.unwrap();
    }
    for i in 0..2000 {
        p.deploy(admin_spec(&format!("f-{i}"), "echo", 1000))
            .await
            .unwrap();
    }
    let listed = p.list().await;
    assert_eq!(listed.functions.len(), 2015);
    let mut admin = p.admin.clone().max_decoding_message_size(64 << 20);
    let records = admin
        .list_functions(admin::ListFunctionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .functions;
    assert_eq!(records.len(), 2015);
    let big = records
        .iter()
        .filter(|r| r.spec.as_ref().unwrap().description.len() == 1 << 20)
        .count();
    assert_eq!(big, 9);
    p.stop().await;
}
