//! What a function on the `process` runtime cannot do to the host, with a real node service
//! (a child process, as in production) running real command functions written to a
//! temporary bundles directory:
//!
//! - it runs as `nobody` (uid 65534) with no_new_privs, no core dumps and 1024 open files,
//!   in a private directory of its own (its `HOME`, removed with the container), and cannot
//!   write outside it (`/etc`, the node's bundles);
//! - it does not see the node's environment (a secret set there);
//! - a fork bomb stops at its container's pids limit while the node serves other containers;
//! - a call the kernel kills for its container's memory cgroup ends `OutOfMemory`, naming
//!   the limit;
//! - a function whose name or handler looks like an option cannot pass options to its
//!   container service.
//!
//! Switching users and making cgroups needs root: where the tests are not root (or the host
//! has no writable cgroups), those tests are skipped with the reason printed, unless
//! `FAAS_REQUIRE_ISOLATION=1`, which makes that a failure.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faas_common::launch::{Child, Signal, send_signal};
use faas_proto::nodeservoceproto as pb;
use futures::TryStreamExt;
use pb::node_service_client::NodeServiceClient;
use support::{children_running, container_service_bin};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(30);

/// Whether a test that needs `what` runs here: it does as root; otherwise it is skipped
/// (saying why), or fails with `FAAS_REQUIRE_ISOLATION=1`.
fn can_isolate(test: &str, what: &str) -> bool {
    if faas_node_service::api::isolation::is_root() {
        return true;
    }
    assert!(
        std::env::var("FAAS_REQUIRE_ISOLATION").as_deref() != Ok("1"),
        "FAAS_REQUIRE_ISOLATION=1, but {test} needs root for {what}"
    );
    eprintln!("{test}: skipped, {what} needs root; set FAAS_REQUIRE_ISOLATION=1 to fail instead");
    false
}

/// A temporary bundles directory, removed on drop.
struct Bundles(PathBuf);

impl Bundles {
    fn new() -> Bundles {
        let dir = std::env::temp_dir().join(format!("faas-isolation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Bundles(dir)
    }

    /// Writes an `exec` bundle running `command`; its handler.
    fn exec(&self, command: &[&str]) -> String {
        let hash = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let manifest = serde_json::json!({"command": command, "protocol": "exec"});
        std::fs::create_dir(self.0.join(&hash)).unwrap();
        std::fs::write(
            self.0.join(&hash).join("function.json"),
            manifest.to_string(),
        )
        .unwrap();
        format!("bundle:{hash}")
    }
}

impl Drop for Bundles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `node-service` child process on the process runtime (no warm pool), serving
/// `bundles`: a process of its own, so that its environment is its own.
struct Node {
    child: Child,
    channel: Channel,
}

impl Node {
    /// Starts a node with `flags` on top of the above, and the variables `env`.
    async fn start(bundles: &Bundles, flags: &[&str], env: &[(&str, &str)]) -> Node {
        let binary = container_service_bin().display().to_string();
        let dir = bundles.0.display().to_string();
        let base = [
            ("FAAS_CONTAINER_SERVICE_BIN", binary.as_str()),
            ("RUST_LOG", "warn"),
        ];
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_node-service"));
        cmd.args(["--port=0", "--warm-pool=0", "--bundles-dir", &dir])
            .args(flags)
            .envs(base.iter().chain(env).copied());
        let (child, addr) = Child::spawn_ready(cmd, PATIENCE).await.expect("node ready");
        let url = format!("http://{addr}");
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        Node { child, channel }
    }

    fn client(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel.clone())
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    async fn create(&self, meta: &pb::FunctionMeta) -> Result<String, tonic::Status> {
        let name = meta.function_name.clone();
        let function_meta = Some(meta.clone());
        let request_id = "create".to_string();
        let request = pb::CreateContainerRequest {
            request_id,
            name,
            function_meta,
        };
        Ok(self
            .client()
            .create_container(request)
            .await?
            .into_inner()
            .container_id)
    }

    /// Invokes container `id`: the body and the error ("" on success).
    async fn invoke(&self, id: &str, meta: &pb::FunctionMeta) -> (String, String) {
        let request = pb::InvokeFunctionRequest {
            request_id: "invoke".into(),
            container_id: id.into(),
            event: b"{}".to_vec(),
            function_meta: Some(meta.clone()),
        };
        let replies: Vec<pb::InvokeFunctionReply> = self
            .client()
            .invoke_function(request)
            .await
            .unwrap()
            .into_inner()
            .try_collect()
            .await
            .unwrap();
        let body: Vec<u8> = replies.iter().flat_map(|m| m.body.clone()).collect();
        let error = replies
            .iter()
            .find_map(|m| m.footer.as_ref().map(|f| f.error.clone()));
        (
            String::from_utf8_lossy(&body).into_owned(),
            error.unwrap_or_default(),
        )
    }

    async fn remove(&self, id: &str) {
        let (request_id, container_id) = ("remove".to_string(), id.to_string());
        let request = pb::RemoveContainerRequest {
            request_id,
            container_id,
        };
        self.client().remove_container(request).await.unwrap();
    }

    /// Stops the node (it has answered calls, so it listens for SIGTERM); it must stop
    /// cleanly.
    async fn stop(mut self) {
        send_signal(self.pid(), Signal::Terminate).unwrap();
        let waited = tokio::time::timeout(PATIENCE, self.child.wait()).await;
        let status = waited.expect("the node stopped in time").unwrap();
        assert!(status.success(), "the node stopped cleanly: {status}");
    }
}

fn function(name: &str, handler: &str, mib: i64) -> pb::FunctionMeta {
    let (function_name, handler) = (name.to_string(), handler.to_string());
    let memory_in_bytes = mib << 20;
    pb::FunctionMeta {
        function_name,
        handler,
        memory_in_bytes,
        ..Default::default()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// What the function below prints, one `key=value` a line.
const PROBE: &str = r#"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "pwd=$(pwd) home=$HOME tmp=$TMPDIR"
if touch "/etc/$MARK" 2>/dev/null; then echo etc=written; else echo etc=refused; fi
if touch "$BUNDLES/$MARK" 2>/dev/null; then echo bundles=written; else echo bundles=refused; fi
if touch "$HOME/mine" 2>/dev/null; then echo home=written; else echo home=refused; fi
echo "nnp=$(awk '/NoNewPrivs/ {print $2}' /proc/self/status)"
echo "nofile=$(ulimit -n) core=$(ulimit -c)"
echo "env-start"; env; echo "env-end"
"#;

#[tokio::test]
async fn a_function_runs_unprivileged_in_a_private_directory_without_the_nodes_environment() {
    let test = "a_function_runs_unprivileged_in_a_private_directory";
    if !can_isolate(test, "switching to nobody") {
        return;
    }
    let bundles = Bundles::new();
    let mark = unique("faas-test");
    let secret = unique("secret-value");
    let script = PROBE
        .replace("$MARK", &mark)
        .replace("$BUNDLES", &bundles.0.display().to_string());
    let handler = bundles.exec(&["sh", "-c", &script]);
    let node = Node::start(&bundles, &[], &[("ISOLATION_TEST_SECRET", &secret)]).await;
    let meta = function(&unique("probe"), &handler, 128);
    let id = node.create(&meta).await.unwrap();
    let (out, error) = node.invoke(&id, &meta).await;
    assert_eq!(error, "", "{out}");
    let has = |line: &str| out.lines().any(|l| l == line);

    assert!(has("uid=65534 gid=65534 groups=65534"), "{out}");
    assert!(has("etc=refused") && has("bundles=refused"), "{out}");
    assert!(!Path::new("/etc").join(&mark).exists());
    assert!(
        has("home=written"),
        "its private directory is its own: {out}"
    );
    assert!(has("nnp=1") && has("nofile=1024 core=0"), "{out}");
    let home = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("home="))
        .unwrap()
        .to_string();
    assert!(
        home.ends_with(&id),
        "the private directory is the container's: {home}"
    );
    let bundle = bundles.0.join(handler.trim_start_matches("bundle:"));
    let dirs = format!("pwd={} home={home} tmp={home}", bundle.display());
    assert!(
        has(&dirs),
        "it runs in its bundle, its HOME and TMPDIR private: {out}"
    );
    assert!(!out.contains(&secret), "the node's secret leaked: {out}");
    assert!(!out.contains("ISOLATION_TEST_SECRET"), "{out}");

    node.remove(&id).await;
    assert!(
        !Path::new(&home).exists(),
        "the private directory went with the container"
    );
    node.stop().await;
}

/// The `pids.max` of process `pid`'s pids group (v1 `pids` hierarchy, else its v2 group),
/// if it has one.
fn pids_max(pid: u32) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let dir = match cgroups.lines().find_map(|l| l.split_once(":pids:")) {
        Some((_, path)) => Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')),
        None => {
            let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
            Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
        }
    };
    let max = std::fs::read_to_string(dir.join("pids.max")).ok()?;
    Some(max.trim().to_string())
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit_while_the_node_serves_on() {
    let test = "a_fork_bomb_stops_at_the_pids_limit";
    if !can_isolate(test, "a pids cgroup") {
        return;
    }
    let bundles = Bundles::new();
    // Bounded: at most 300 sleeps, each gone with the call.
    let bomb = "i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); done; echo forked $i";
    let handler = bundles.exec(&["sh", "-c", bomb]);
    let node = Node::start(&bundles, &["--container-pids-max", "64"], &[]).await;
    let bomb_meta = function(&unique("bomb"), &handler, 128);
    let id = node.create(&bomb_meta).await.unwrap();
    let pids = children_running(node.pid(), &bomb_meta.function_name);
    assert_eq!(pids.len(), 1, "{pids:?}");
    match pids_max(pids[0]) {
        Some(max) => assert_eq!(max, "64"),
        None => {
            assert!(
                std::env::var("FAAS_REQUIRE_ISOLATION").as_deref() != Ok("1"),
                "FAAS_REQUIRE_ISOLATION=1, but the container has no pids group"
            );
            eprintln!("{test}: skipped, this host gave the container no pids group");
            node.stop().await;
            return;
        }
    }
    let (out, error) = node.invoke(&id, &bomb_meta).await;
    assert!(
        !out.contains("forked 300"),
        "the bomb was not stopped: {out} {error}"
    );
    assert!(
        error.to_lowercase().contains("fork"),
        "the shell said it could not fork: {out} {error}"
    );

    // Meanwhile and after, the node serves other containers.
    let other = function(&unique("hello"), "hello", 64);
    let other_id = node.create(&other).await.unwrap();
    let (body, error) = node.invoke(&other_id, &other).await;
    assert_eq!(error, "");
    assert!(body.contains("Hello"), "{body}");
    node.stop().await;
}

#[tokio::test]
async fn a_name_or_handler_that_looks_like_an_option_stays_a_value() {
    let bundles = Bundles::new();
    let node = Node::start(&bundles, &["--container-user", "off"], &[]).await;
    let named = function("--help", "hello", 64);
    let id = node.create(&named).await.unwrap();
    let (body, error) = node.invoke(&id, &named).await;
    assert_eq!(error, "");
    assert!(body.contains("Hello"), "{body}");

    let e = node
        .create(&function(&unique("f"), "--version", 64))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("--version") && !e.message().contains("container-service 0."),
        "refused as an unknown handler, not run as an option: {e:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_exec_call_the_kernel_kills_for_its_memory_ends_out_of_memory() {
    let test = "an_exec_call_the_kernel_kills_for_its_memory";
    if !can_isolate(test, "a memory cgroup") {
        return;
    }
    // A python3 the container's user can run (not one under /root).
    let Some(python) = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("{test}: skipped, no system python3");
        return;
    };
    let bundles = Bundles::new();
    let script = "import sys; sys.stdin.read(); block = b'x' * (300 << 20); print(len(block))";
    let handler = bundles.exec(&[python, "-c", script]);
    // Only the kernel stops it: the container service's own guard is off, as in Docker.
    let env = [("FAAS_EMULATE_MEMORY_LIMIT", "false")];
    let node = Node::start(&bundles, &[], &env).await;
    let meta = function(&unique("hog"), &handler, 64);
    let id = node.create(&meta).await.unwrap();
    let (out, error) = node.invoke(&id, &meta).await;
    assert!(
        error.starts_with("OutOfMemory: ")
            && error.contains("the kernel killed the call's process")
            && error.contains("limit of 67108864 bytes"),
        "{error} {out}"
    );
    node.stop().await;
}

/// The first line a node service that refuses to start prints, given `args`.
fn refusal(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_node-service"))
        .args(["--port", "0"])
        .args(args)
        .env("FAAS_CONTAINER_SERVICE_BIN", container_service_bin())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the node refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_container_user_that_cannot_work_is_refused_at_start() {
    let e = refusal(&["--container-user", "no-such-user-here"]);
    assert!(e.contains("is not a user of this system"), "{e}");
    if !can_isolate("a_container_user_that_cannot_work", "switching users") {
        return;
    }
    // Bundles below a directory only root may enter.
    let bundles = Bundles::new();
    let hidden = bundles.0.join("private");
    std::fs::create_dir(&hidden).unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(hidden.join("bundles")).unwrap();
    let dir = hidden.join("bundles").display().to_string();
    let e = refusal(&["--bundles-dir", &dir]);
    assert!(
        e.contains("cannot reach the bundles of --bundles-dir") && e.contains("is mode 700"),
        "{e}"
    );
}
