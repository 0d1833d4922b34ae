//! `NodeAdmin.FunctionLogs` with the `process` runtime: a node served in-process through
//! `run`, its containers real `container-service` processes running a real command function
//! (a shell `exec` bundle that writes one stderr line per call), their lines read back over
//! real gRPC, node → container.

mod support;

use faas_node_service::Config;
use faas_proto::node_admin::node_admin_client::NodeAdminClient;
use faas_proto::node_admin::{ContainerLogs, FunctionLogsRequest, LogLine};
use faas_proto::nodeservoceproto as pb;
use support::{Served, children_with, kill, serve};
use tonic::Code;

/// Says on stderr which event it got, answers "ok".
const MANIFEST: &str = r#"{
    "command": ["sh", "-c", "echo \"got $(cat)\" >&2; printf ok"],
    "protocol": "exec"
}"#;

/// A bundles directory holding the one bundle [`MANIFEST`] (removed on drop).
struct Bundle {
    dir: std::path::PathBuf,
    handler: String,
}

impl Bundle {
    fn write() -> Bundle {
        let dir = std::env::temp_dir().join(format!("faas-logs-{}", uuid::Uuid::new_v4()));
        // The node does not check a bundle's content against its name.
        let hash = "1f".repeat(32);
        std::fs::create_dir_all(dir.join(&hash)).unwrap();
        std::fs::write(dir.join(&hash).join("function.json"), MANIFEST).unwrap();
        Bundle {
            dir,
            handler: format!("bundle:{hash}"),
        }
    }

    /// A node serving this bundle.
    async fn node(&self) -> Served {
        let mut config = Config::local();
        config.node_id = Some("logs-node".into());
        config.bundles_dir = Some(self.dir.clone());
        serve(config).await
    }

    fn meta(&self, function: &str) -> pb::FunctionMeta {
        pb::FunctionMeta {
            function_name: function.into(),
            handler: self.handler.clone(),
            timeout_in_ms: 0,
            memory_in_bytes: 128 << 20,
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn function_logs(node: &Served, function: &str) -> Result<Vec<ContainerLogs>, tonic::Status> {
    let request = FunctionLogsRequest {
        function_name: function.into(),
        ..FunctionLogsRequest::default()
    };
    let reply = NodeAdminClient::new(node.channel.clone())
        .function_logs(request)
        .await?
        .into_inner();
    assert_eq!(reply.node_id, "logs-node");
    Ok(reply.containers)
}

#[tokio::test]
async fn a_functions_lines_come_from_its_containers_and_its_versions_only() {
    let bundle = Bundle::write();
    let node = bundle.node().await;
    let own = node.create(bundle.meta("logfn")).await.unwrap();
    let version = node.create(bundle.meta("logfn:2")).await.unwrap();
    let other = node.create(bundle.meta("logfn-other")).await.unwrap();
    for id in [&own, &other] {
        let body = node.invoke_ok(id, b"hi", bundle.meta("")).await;
        assert_eq!(body, b"ok");
    }

    let logs = function_logs(&node, "logfn").await.unwrap();
    let ids: Vec<&str> = logs.iter().map(|c| c.container_id.as_str()).collect();
    assert_eq!(ids, [own.as_str(), version.as_str()], "not {other}");
    let (mine, versions) = (&logs[0], &logs[1]);
    assert_eq!(
        (mine.function_name.as_str(), mine.state.as_str()),
        ("logfn", "running")
    );
    assert_eq!(mine.error, "");
    let at_ms = mine.lines.first().map_or(0, |l| l.at_ms);
    assert!(at_ms > 0, "read at a wall-clock time");
    let line = LogLine {
        seq: 1,
        at_ms,
        stream: "stderr".into(),
        request_id: "invoke".into(),
        text: "got hi".into(),
    };
    assert_eq!(mine.lines, [line]);
    assert_eq!(versions.function_name, "logfn:2");
    assert!(
        versions.lines.is_empty() && versions.error.is_empty(),
        "{versions:?}"
    );

    assert!(
        function_logs(&node, "nothing-here")
            .await
            .unwrap()
            .is_empty()
    );
    let err = function_logs(&node, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("function_name"), "{}", err.message());
    node.stop().await;
}

#[tokio::test]
async fn a_dead_container_is_listed_dead_with_why_it_has_no_lines() {
    let bundle = Bundle::write();
    let node = bundle.node().await;
    let id = node.create(bundle.meta("doomed")).await.unwrap();
    let started = children_with(
        std::process::id(),
        &format!("--bundle\0{}", bundle.dir.display()),
    );
    assert_eq!(started.len(), 1, "{started:?}");
    kill(started[0]).await;
    // The node learns of the death as the scheduler makes it: by its stats.
    let stats = pb::GetStatsRequest {
        request_id: "s".into(),
    };
    node.client.clone().get_stats(stats).await.unwrap();

    let logs = function_logs(&node, "doomed").await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].container_id.as_str(), logs[0].state.as_str()),
        (id.as_str(), "dead")
    );
    assert!(logs[0].lines.is_empty());
    assert!(
        logs[0].error.starts_with("the container has exited (")
            && logs[0].error.ends_with("its lines went with it"),
        "{}",
        logs[0].error
    );
    node.stop().await;
}
