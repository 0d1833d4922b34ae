//! The resource manager hands its nodes the bundles directory (`--node-bundles-dir` →
//! each node's `--bundles-dir`), so a function made of a bundle runs on any node it gives
//! out: real node-service processes (the harness is in `support`) running a real `exec`
//! function (`/bin/cat`) through the real container service.

mod support;

use std::path::PathBuf;

use faas_proto::nodeservoceproto as pb;
use pb::node_service_client::NodeServiceClient;
use support::{Manager, node_processes, reserve, test_config};

/// A temporary bundles directory holding one `cat` bundle, removed on drop.
struct Bundles {
    dir: PathBuf,
    hash: String,
}

impl Bundles {
    fn new() -> Bundles {
        let dir = std::env::temp_dir().join(format!("faas-rm-bundles-{}", uuid::Uuid::new_v4()));
        let hash = "5e".repeat(32);
        std::fs::create_dir_all(dir.join(&hash)).unwrap();
        std::fs::write(
            dir.join(&hash).join("function.json"),
            r#"{"command": ["/bin/cat"], "protocol": "exec"}"#,
        )
        .unwrap();
        Bundles { dir, hash }
    }
}

impl Drop for Bundles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn every_node_gets_the_bundles_dir_and_runs_its_bundles() {
    let bundles = Bundles::new();
    let rm = Manager::start_with(faas_resource_manager::Config {
        node_bundles_dir: Some(bundles.dir.clone()),
        ..test_config("bundles", 1, 1)
    })
    .await;
    let node = reserve(&mut rm.client().await, "acct").await.unwrap();
    let (pid, _) = node_processes("bundles")[0].clone();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let flag = format!("--bundles-dir\0{}\0", bundles.dir.display());
    assert!(
        String::from_utf8_lossy(&cmdline).contains(&flag),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );

    let channel =
        faas_common::serve::connect(&format!("{}:{}", node.address, node.node_service_port))
            .await
            .unwrap();
    let mut client = NodeServiceClient::new(channel);
    let handler = format!("bundle:{}", bundles.hash);
    let meta = pb::FunctionMeta {
        function_name: "cat".into(),
        handler: handler.clone(),
        timeout_in_ms: 0,
        memory_in_bytes: 64 << 20,
    };
    let id = client
        .create_container(pb::CreateContainerRequest {
            request_id: "c".into(),
            name: "cat".into(),
            function_meta: Some(meta.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let mut stream = client
        .invoke_function(pb::InvokeFunctionRequest {
            request_id: "i".into(),
            container_id: id,
            event: b"meow".to_vec(),
            function_meta: Some(meta),
        })
        .await
        .unwrap()
        .into_inner();
    let mut body = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        body.extend(m.body);
    }
    assert_eq!(body, b"meow");
    rm.stop().await;
}

#[tokio::test]
async fn a_bundles_dir_that_is_not_there_stops_the_manager_before_any_node_starts() {
    let config = faas_resource_manager::Config {
        node_bundles_dir: Some(std::env::temp_dir().join(format!("no-{}", uuid::Uuid::new_v4()))),
        ..test_config("nobundles", 1, 1)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_trigger, shutdown) = faas_common::shutdown::channel();
    let err = faas_resource_manager::run(listener, config, shutdown)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("--node-bundles-dir")
            && err.to_string().contains("is not a directory"),
        "{err}"
    );
    assert!(node_processes("nobundles").is_empty());
}
