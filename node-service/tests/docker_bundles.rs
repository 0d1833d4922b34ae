//! Image functions on the `docker` runtime, against the real Docker daemon: the node service
//! served in-process (on the Docker host) with `--runtime docker`, its function containers
//! real containers of a user image built here.
//!
//! The user image is `FROM scratch` with one static program (`/fn`, compiled by `rustc` from
//! a few lines: an `exec` function that answers `from the image: <event>`), built with
//! `docker build` (no registry is reachable, so no base image). The watchdog mounted into it
//! is the static container service: `FAAS_DOCKER_WATCHDOG_BIN` when set (any static build),
//! else the one `deploy/build-images.sh` builds (run once per test process, as the other
//! docker tests do).
//!
//! Without a Docker daemon these tests say so loudly and pass; with `FAAS_REQUIRE_DOCKER=1`
//! (CI) they fail instead. Each test has its own instance label, node id and network, and
//! removes its containers, network and image even when it fails half-way.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use faas_node_service::{Config, RuntimeKind};
use faas_proto::nodeservoceproto as pb;
use faas_testkit::docker::{docker_available, docker_cli};
use support::serve;
use tonic::Code;

/// The static container service mounted into image functions (see the module docs).
fn watchdog_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FAAS_DOCKER_WATCHDOG_BIN").filter(|v| !v.is_empty()) {
            return PathBuf::from(bin);
        }
        // Canonical: the node mounts the binary by its canonical path, and the test compares.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .unwrap();
        let script = repo.join("deploy/build-images.sh");
        let status = Command::new("bash").arg(&script).status().unwrap();
        assert!(status.success(), "{} failed: {status}", script.display());
        let target = std::env::var_os("FAAS_STATIC_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target-static"));
        target.join("x86_64-unknown-linux-gnu/release/container-service")
    })
    .clone()
}

/// One test's Docker things and temporary files, removed on drop.
struct Scope {
    id: String,
    dir: PathBuf,
    image: Option<String>,
}

impl Scope {
    fn new() -> Scope {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let dir = std::env::temp_dir().join(format!("faas-docker-bundles-{id}"));
        std::fs::create_dir_all(dir.join("bundles")).unwrap();
        Scope {
            id,
            dir,
            image: None,
        }
    }

    fn instance(&self) -> String {
        format!("test-{}", self.id)
    }

    fn network(&self) -> String {
        format!("minifaas-test-{}", self.id)
    }

    /// A node on the docker runtime serving this scope's bundles.
    fn config(&self, watchdog: Option<PathBuf>) -> Config {
        let mut config = Config::local();
        config.runtime = RuntimeKind::Docker;
        config.node_id = Some(format!("node-{}", self.id));
        config.warm_pool = 0;
        config.docker_instance = self.instance();
        config.docker_network = self.network();
        config.bundles_dir = Some(self.dir.join("bundles"));
        config.docker_watchdog_bin = watchdog;
        config
    }

    /// Writes a bundle whose `function.json` is `manifest`; returns its handler.
    fn bundle(&self, manifest: &str) -> String {
        let hash = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let dir = self.dir.join("bundles").join(&hash);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("function.json"), manifest).unwrap();
        format!("bundle:{hash}")
    }

    /// Builds the user image (see the module docs); returns its name.
    fn build_image(&mut self) -> String {
        let ctx = self.dir.join("image");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("fn.rs"),
            "use std::io::{Read, Write};\n\
             fn main() {\n\
                 let mut event = Vec::new();\n\
                 std::io::stdin().read_to_end(&mut event).unwrap();\n\
                 let mut out = std::io::stdout();\n\
                 out.write_all(b\"from the image: \").unwrap();\n\
                 out.write_all(&event).unwrap();\n\
             }\n",
        )
        .unwrap();
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let status = Command::new(rustc)
            .args(["-C", "target-feature=+crt-static", "-o"])
            .arg(ctx.join("fn"))
            .arg(ctx.join("fn.rs"))
            .status()
            .unwrap();
        assert!(status.success(), "rustc of the user program failed");
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY fn /fn\n").unwrap();
        let image = format!("minifaas-test/fn-{}:latest", self.id);
        docker_cli(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]).unwrap();
        self.image = Some(image.clone());
        image
    }

    /// The platform's containers of this scope (running or not).
    fn containers(&self) -> Vec<String> {
        let filter = format!("label=minifaas.instance={}", self.instance());
        docker_cli(&["ps", "-aq", "--filter", &filter])
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let left = self.containers();
        if !left.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = docker_cli(&args);
        }
        let _ = docker_cli(&["network", "rm", &self.network()]);
        if let Some(image) = &self.image {
            let _ = docker_cli(&["rmi", "-f", image]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn meta(function: &str, handler: &str) -> pb::FunctionMeta {
    pb::FunctionMeta {
        function_name: function.into(),
        handler: handler.into(),
        timeout_in_ms: 0,
        memory_in_bytes: 64 << 20,
    }
}

#[tokio::test]
async fn bundles_docker_cannot_run_are_refused_with_what_to_do() {
    if !docker_available() {
        return;
    }
    let scope = Scope::new();
    let served = serve(scope.config(None)).await;
    let absent = format!("minifaas-test/absent-{}:1", scope.id);
    let cases = [
        (
            scope.bundle(&format!(
                r#"{{"command": ["/fn"], "protocol": "exec", "image": "{absent}"}}"#
            )),
            format!(
                "image \"{absent}\" is not on this machine (docker build it first; no registry \
                 is reachable)"
            ),
        ),
        (
            scope.bundle(r#"{"command": ["/bin/cat"], "protocol": "exec"}"#),
            "command functions run on the process runtime; give an image for Docker".into(),
        ),
    ];
    for (handler, says) in cases {
        let err = served.create(meta("fn", &handler)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains(&says), "{}", err.message());
    }
    assert!(scope.containers().is_empty(), "nothing was created");
    served.stop().await;
}

#[tokio::test]
async fn an_image_function_runs_its_command_under_the_mounted_watchdog() {
    if !docker_available() {
        return;
    }
    let mut scope = Scope::new();
    let image = scope.build_image();
    let watchdog = tokio::task::spawn_blocking(watchdog_bin).await.unwrap();
    let served = serve(scope.config(Some(watchdog.clone()))).await;

    // A command that is not in the image: the watchdog exits, the create says why.
    let broken = scope.bundle(&format!(
        r#"{{"command": ["/nope"], "protocol": "exec", "image": "{image}"}}"#
    ));
    let err = served.create(meta("fn", &broken)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("exited with code") && err.message().contains("\"/nope\""),
        "{}",
        err.message()
    );
    assert!(
        scope.containers().is_empty(),
        "the failed container is removed"
    );

    let handler = scope.bundle(&format!(
        r#"{{"command": ["/fn"], "protocol": "exec", "image": "{image}"}}"#
    ));
    let id = served.create(meta("fn", &handler)).await.unwrap();
    let made = scope.containers();
    assert_eq!(made.len(), 1, "{made:?}");
    let inspect = docker_cli(&[
        "inspect",
        "-f",
        "{{.Config.Image}}|{{json .Config.Entrypoint}}|{{range .Mounts}}{{.Source}}>{{.Destination}}:{{.RW}} {{end}}|{{index .Config.Labels \"minifaas.function\"}}|{{.HostConfig.Memory}}",
        &made[0],
    ])
    .unwrap();
    let bundle_dir = scope.dir.join("bundles").join(&handler["bundle:".len()..]);
    let fields: Vec<&str> = inspect.split('|').collect();
    // Docker lists the mounts in no particular order.
    let mut mounts: Vec<&str> = fields[2].split_whitespace().collect();
    mounts.sort();
    let (bundle_mount, watchdog_mount) = (
        format!("{}>/faas/bundle:false", bundle_dir.display()),
        format!("{}>/faas/container-service:false", watchdog.display()),
    );
    let mut expected_mounts = vec![bundle_mount.as_str(), watchdog_mount.as_str()];
    expected_mounts.sort();
    assert_eq!(mounts, expected_mounts, "read-only binds");
    let memory = (64u64 << 20).to_string();
    assert_eq!(
        [fields[0], fields[1], fields[3], fields[4]],
        [
            image.as_str(),
            r#"["/faas/container-service"]"#,
            "fn",
            memory.as_str()
        ],
        "the user's image, the watchdog as entrypoint, the labels and limits as usual"
    );

    let body = served.invoke_ok(&id, b"hi", meta("fn", &handler)).await;
    assert_eq!(String::from_utf8_lossy(&body), "from the image: hi");
    served.stop().await;
    assert!(
        scope.containers().is_empty(),
        "the node removed its container"
    );
}

/// Nodes starting together each find the network missing and create one (Docker keeps
/// network names unique only on a best-effort basis, and not under a race): they settle on
/// one, the oldest, remove the others, and join it by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_settle_on_one_network() {
    use faas_node_service::api::docker::ensure_network;
    if !docker_available() {
        return;
    }
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let name = format!("faas-test-net-{}", uuid::Uuid::new_v4().simple());
    let starts = (0..8).map(|_| ensure_network(&docker, &name, "faas-test-net"));
    let chosen: Vec<String> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.expect("network ensured").0)
        .collect();
    let filter = format!("name=^{name}$");
    let left = docker_cli(&["network", "ls", "-q", "--no-trunc", "--filter", &filter]).unwrap();
    let left: Vec<&str> = left.split_whitespace().collect();
    for id in &left {
        let _ = docker_cli(&["network", "rm", id]);
    }
    assert!(
        chosen.iter().all(|id| *id == chosen[0]),
        "every node joins the same network: {chosen:?}"
    );
    assert_eq!(
        left,
        [chosen[0].as_str()],
        "one network of the name is left"
    );
}
