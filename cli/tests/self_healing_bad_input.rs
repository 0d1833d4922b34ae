//! Bad input gets the documented status at every component of the real local platform:
//! undecodable bodies and absurd sizes are `INVALID_ARGUMENT` at the API server, the
//! scheduler, the nodes and the containers.
//!
//! The harness (platform, load, shared checks) is `support/healing.rs`; the other kinds of
//! fault are in the other `self_healing_*.rs` files (`docs/CONVENTIONS.md`, "Self-healing").

mod support;

use support::healing::*;

/// Sends `body` as the request message of gRPC method `path` at `addr` (5 s at most).
/// The call carries the cluster token, `auth`.
async fn raw_call(
    auth: &ClusterAuth,
    addr: &str,
    path: &'static str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let channel = auth.channel(connect(addr).await);
    let call = faas_proto::codec::call_raw(channel, path, body.to_vec());
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("test: no answer within 5 s")))
}

/// Records `what` in `wrong` unless `result` failed with INVALID_ARGUMENT.
fn expect_invalid<T: std::fmt::Debug>(
    wrong: &mut Vec<String>,
    what: String,
    result: Result<T, Status>,
) {
    expect_code(wrong, &what, result, Code::InvalidArgument);
}

/// Records `what` in `wrong` unless `result` failed with `code`.
fn expect_code<T: std::fmt::Debug>(
    wrong: &mut Vec<String>,
    what: &str,
    result: Result<T, Status>,
    code: Code,
) {
    match result {
        Err(s) if s.code() == code => {}
        Err(s) => wrong.push(format!(
            "{what}: {:?} {}",
            s.code(),
            faas_common::text::clip(s.message())
        )),
        Ok(v) => {
            let shown = format!("{v:?}");
            wrong.push(format!(
                "{what}: succeeded ({})",
                faas_common::text::clip(&shown)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_documented_status_at_every_component() {
    on_platform("adaptive", |env| async move {
        let mut wrong = Vec::new();
        let absurd = 1_000_000_000_000_000_000_i64;

        let err = env.invoke("no-such-function", b"{}").await;
        expect_code(&mut wrong, "an unknown function", err, Code::NotFound);

        // NOT_FOUND, or INVALID_ARGUMENT for a name over 256 bytes (the contract's size rule);
        // either way the message quotes at most a clipped name.
        let long_name = "n".repeat(1 << 20);
        match env.invoke(&long_name, b"{}").await {
            Err(s)
                if matches!(s.code(), Code::NotFound | Code::InvalidArgument)
                    && s.message().len() < 1024 => {}
            other => wrong.push(format!(
                "a 1 MiB function name: {:?}",
                other.map(|_| ()).map_err(|s| (s.code(), s.message().len()))
            )),
        }

        // A 6 MiB event (the documented limit) passes every hop and comes back unchanged.
        let pad = 6 * 1024 * 1024 - r#"{"pad":""}"#.len();
        let event = format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)).into_bytes();
        let mut client = ApiServerClient::new(connect(&env.apiserver).await)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let echoed = client
            .invoke_function(InvokeFunctionRequest {
                account_id: ACCOUNT.into(),
                function_name: "echo".into(),
                event: event.clone(),
            })
            .await;
        match echoed {
            Ok(reply) if reply.get_ref().body == event => {}
            Ok(reply) => wrong.push(format!(
                "a 6 MiB echo: body of {} bytes differs",
                reply.get_ref().body.len()
            )),
            Err(s) => wrong.push(format!(
                "a 6 MiB echo: {:?} {}",
                s.code(),
                faas_common::text::clip(s.message())
            )),
        }

        // Undecodable request bodies, at every component: a string field that is not UTF-8,
        // and a message cut short.
        env.invoke("hello", b"{}")
            .await
            .expect("hello, to have a reserved node");
        let nodes = observe::reserved_nodes(&env.resource_manager, &env.auth)
            .await
            .expect("GetNodesUsage");
        let node = observe::node_addr(nodes.first().expect("a reserved node"));
        let truncated: &[u8] = &[0x0A, 0x05, 0x41];
        let cases: [(&str, &'static str, &[u8]); 5] = [
            (
                &env.apiserver,
                "/apiserverproto.APIServer/InvokeFunction",
                &[0x12, 0x02, 0xC3, 0x28],
            ),
            (
                &env.apiserver,
                "/faas.admin.v1.Admin/DeployFunction",
                &[0x0A, 0x04, 0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &env.scheduler,
                "/schedulerproto.Scheduler/AcquireContainer",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &env.resource_manager,
                "/resourcemanagerproto.ResourceManager/GetNodesUsage",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
            (
                &node,
                "/nodeservoceproto.NodeService/CreateContainer",
                &[0x0A, 0x02, 0xC3, 0x28],
            ),
        ];
        for (addr, path, not_utf8) in cases {
            for (what, body) in [("not UTF-8", not_utf8), ("cut short", truncated)] {
                let result = raw_call(&env.auth, addr, path, body).await;
                expect_invalid(&mut wrong, format!("{path} with a body {what}"), result);
            }
        }

        // Absurd definitions at the admin API.
        let long = "f".repeat(300);
        for (what, bad) in [
            ("memory 1e18", spec("absurd", "hello", absurd, 1000)),
            ("negative memory", spec("absurd", "hello", -MIB, 1000)),
            (
                "an unknown handler",
                spec("absurd", "no-such-handler", 128 * MIB, 1000),
            ),
            ("a negative timeout", spec("absurd", "hello", 128 * MIB, -1)),
            ("a 300-byte name", spec(&long, "hello", 128 * MIB, 1000)),
        ] {
            let result = deploy_spec(&env.api, bad).await;
            expect_invalid(&mut wrong, format!("deploy with {what}"), result);
        }

        // Absurd sizes at the scheduler, a node service and a container service.
        let mut scheduler = env.scheduler().await;
        let mut node_client = NodeServiceClient::new(env.auth.channel(connect(&node).await));
        for (what, memory, handler) in [
            ("memory 1e18", absurd, "hello"),
            ("negative memory", -MIB, "hello"),
        ] {
            let mut acquire = Request::new(AcquireContainerRequest {
                request_id: format!("absurd-{what}"),
                account_id: ACCOUNT.into(),
                function_name: "absurd".into(),
                function_config: Some(FunctionConfig {
                    timeout_in_ms: 1000,
                    memory_in_bytes: memory,
                    handler: handler.into(),
                }),
            });
            acquire.set_timeout(Duration::from_secs(5));
            let result = scheduler.acquire_container(acquire).await;
            expect_invalid(&mut wrong, format!("AcquireContainer with {what}"), result);
        }
        for (what, memory, handler) in [
            ("memory 1e18", absurd, "hello"),
            ("negative memory", -MIB, "hello"),
            ("an unknown handler", 128 * MIB, "no-such-handler"),
        ] {
            let mut create = Request::new(CreateContainerRequest {
                request_id: format!("absurd-{what}"),
                name: "absurd".into(),
                function_meta: Some(FunctionMeta {
                    function_name: "absurd".into(),
                    handler: handler.into(),
                    timeout_in_ms: 1000,
                    memory_in_bytes: memory,
                }),
            });
            create.set_timeout(Duration::from_secs(5));
            let result = node_client.create_container(create).await;
            expect_invalid(&mut wrong, format!("CreateContainer with {what}"), result);
        }
        let unbound = observe::poll(Duration::from_secs(5), || async {
            observe::live_containers()
                .await
                .into_iter()
                .find(|c| c.status.function_name.is_empty())
        })
        .await
        .expect("an unbound warm-pool container");
        let mut container =
            ContainerServiceClient::new(connect(&format!("127.0.0.1:{}", unbound.port)).await);
        for (what, memory) in [("memory 1e18", absurd), ("negative memory", -MIB)] {
            let result = container
                .bind(BindRequest {
                    function_name: "absurd".into(),
                    handler: "hello".into(),
                    memory_in_bytes: memory,
                    timeout_in_ms: 1000,
                })
                .await;
            expect_invalid(&mut wrong, format!("container Bind with {what}"), result);
        }

        assert!(
            wrong.is_empty(),
            "statuses other than the documented ones: {wrong:#?}"
        );
    })
    .await;
}
