//! The Rust image function example (`examples/functions/rust-image`) on a whole local platform
//! on Docker, the way a user gets it there: its own `build.sh` builds the image (with a tag of
//! this test, removed afterwards), `faas deploy` deploys `deploy/image-functions.toml` (a copy
//! naming that tag), and calls go through the API server to node-service containers (the
//! resource manager's `docker` provider) that run the function in a container of the image,
//! with the static container service (from `deploy/build-images.sh`) mounted as its
//! entrypoint. An image function whose image is not on the machine fails its calls saying
//! which image and how to get it.
//!
//! Without a Docker daemon this test says so loudly and passes; with `FAAS_REQUIRE_DOCKER=1`
//! (CI) it fails instead. It removes its containers, image tag and files even when it fails
//! half-way, and checks after the platform stopped that none of its containers is left.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use faas_cli::client::{Api, InvokeOutcome};
use faas_cli::platform::PlatformOptions;
use serde_json::Value;

const ACCOUNT: &str = "image-test";
/// The image `deploy/image-functions.toml` names, replaced by this test's own tag.
const EXAMPLE_IMAGE: &str = "faas-example/rust-hello:latest";
/// Calls sent at once.
const CONCURRENT: usize = 8;
/// Warm calls timed one after the other.
const WARM: usize = 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `docker ARGS`, its stdout when it succeeds.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output();
    match out {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot run docker: {e}")),
    }
}

/// Runs `bash SCRIPT ARGS` from the repository, which must succeed.
fn script(path: &str, args: &[&str]) {
    let path = repo().join(path);
    let status = Command::new("bash").arg(&path).args(args).status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "{} {args:?}: {status:?}",
        path.display()
    );
}

/// This test's Docker objects and files, removed on drop.
struct Scope {
    instance: String,
    image: String,
    dir: PathBuf,
}

impl Scope {
    fn new() -> Scope {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let dir = std::env::temp_dir().join(format!("faas-image-function-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scope {
            instance: format!("test-img-{id}"),
            image: format!("faas-example/rust-hello:test-{id}"),
            dir,
        }
    }

    /// The ids of this test's containers, running or not; `label` narrows them.
    fn containers(&self, label: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "ps".to_string(),
            "-aq".to_string(),
            format!("--filter=label=minifaas.instance={}", self.instance),
        ];
        args.extend(label.map(|l| format!("--filter=label={l}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
            .expect("docker ps")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// A copy of `deploy/image-functions.toml` naming this test's image, plus `ghost`, whose
    /// image is on no machine (an image function has no `code`, so the copy may live anywhere).
    fn deploy_file(&self, ghost_image: &str) -> PathBuf {
        let shipped = std::fs::read_to_string(repo().join("deploy/image-functions.toml")).unwrap();
        assert!(shipped.contains(EXAMPLE_IMAGE), "{shipped}");
        let text = format!(
            "{}\n[[function]]\nname = \"ghost\"\nimage = \"{ghost_image}\"\n\
             command = [\"/rust-hello\"]\nprotocol = \"http\"\nmemory_mb = 64\ntimeout_ms = 5000\n",
            shipped.replace(EXAMPLE_IMAGE, &self.image)
        );
        let path = self.dir.join("image-functions.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let left = self.containers(None);
        if !left.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["rmi", &self.image]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the daemon answers: skips loudly without one, fails if CI requires Docker.
fn docker_answers() -> bool {
    let answer = docker(&["version", "--format", "{{.Server.Version}}"]);
    if let Err(e) = &answer {
        let required = std::env::var("FAAS_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "FAAS_REQUIRE_DOCKER=1 but the Docker daemon does not answer: {e}"
        );
        eprintln!(
            "\n!!!!! SKIPPED: no Docker daemon answers ({e}); image_function did not run !!!!!\n"
        );
    }
    answer.is_ok()
}

fn greeting(out: &InvokeOutcome) -> (String, String) {
    let body: Value = serde_json::from_slice(&out.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.body)));
    let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    (field("greeting"), field("runtime"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rust_image_example_runs_on_the_docker_runtime() {
    if !docker_answers() {
        return;
    }
    let scope = Scope::new();
    let image = scope.image.clone();
    tokio::task::spawn_blocking(move || {
        // The node image, and the static container service mounted into image functions.
        script("deploy/build-images.sh", &[]);
        script("examples/functions/rust-image/build.sh", &[&image]);
    })
    .await
    .unwrap();
    let static_dir = std::env::var_os("FAAS_STATIC_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target-static"));
    let watchdog = std::path::absolute(static_dir)
        .unwrap()
        .join("x86_64-unknown-linux-gnu/release/container-service");
    let ghost = format!("faas-example/ghost-{}:1", &scope.instance);
    let file = scope.deploy_file(&ghost);

    let options = PlatformOptions {
        provider: "docker".into(),
        docker_instance: Some(scope.instance.clone()),
        ready_nodes: 1,
        max_nodes: 2,
        refill_delay_ms: 100,
        node_warm_pool: Some(0),
        data_dir: Some(scope.dir.join("data")),
        resource_manager_args: vec![
            "--node-docker-watchdog-bin".into(),
            watchdog.display().to_string(),
        ],
        ..PlatformOptions::default()
    };
    let (platform, api) = support::start(options).await;
    let addr = platform.apiserver.to_string();
    let deployed = support::ok(&addr, &["deploy", file.to_str().unwrap()]).await;
    assert!(deployed.contains("rust-hello"), "{deployed}");

    // The first call creates the container: the image's process starts under the watchdog.
    let started = faas_common::clock::instant();
    let cold = api
        .invoke(ACCOUNT, "rust-hello", br#"{"name": "Ada"}"#.to_vec())
        .await
        .unwrap_or_else(|s| panic!("the first call: {s:?}"));
    let cold_ms = ms(started.elapsed());
    assert_eq!(greeting(&cold), ("Hello, Ada!".into(), "rust".into()));
    assert_eq!(cold.cold, Some(true));

    // Several at once: each answered for its own event.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CONCURRENT {
        let api: Api = api.clone();
        calls.spawn(async move {
            let event = format!(r#"{{"name": "caller-{i}"}}"#);
            (
                i,
                api.invoke(ACCOUNT, "rust-hello", event.into_bytes()).await,
            )
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (i, out) = joined.unwrap();
        let out = out.unwrap_or_else(|s| panic!("concurrent call {i}: {s:?}"));
        assert_eq!(greeting(&out).0, format!("Hello, caller-{i}!"));
    }

    let mut warm = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let started = faas_common::clock::instant();
        let out = api
            .invoke(ACCOUNT, "rust-hello", b"{}".to_vec())
            .await
            .unwrap();
        warm.push(ms(started.elapsed()));
        assert_eq!(greeting(&out).0, "Hello, world!");
    }
    warm.sort_by(f64::total_cmp);
    eprintln!(
        "rust-hello on Docker (debug build of the platform): cold call {cold_ms:.1} ms \
         (acquire {:.1} ms), warm call p50 {:.2} ms, max {:.2} ms over {WARM}",
        cold.acquire_ms.unwrap_or(f64::NAN),
        warm[WARM / 2],
        warm[WARM - 1],
    );

    // A bad event is the function's error, with its message.
    let bad = api
        .invoke(ACCOUNT, "rust-hello", b"[1]".to_vec())
        .await
        .expect_err("a bad event fails");
    assert!(
        bad.message().contains("HTTP 400") && bad.message().contains("must be a JSON object"),
        "{bad:?}"
    );

    // Its containers are this platform's, made of the example's image.
    let made = scope.containers(Some("minifaas.function=rust-hello"));
    assert!(!made.is_empty());
    for id in &made {
        let of = docker(&["inspect", "--format", "{{.Config.Image}}", id]).unwrap();
        assert_eq!(of.trim(), scope.image);
    }

    // An image that is not on this machine: the call says which and what to do.
    let err = api
        .invoke(ACCOUNT, "ghost", b"{}".to_vec())
        .await
        .expect_err("an absent image fails the call");
    assert!(
        err.message().contains(&ghost) && err.message().contains("docker build it first"),
        "{err:?}"
    );
    eprintln!("absent image: {:?}: {}", err.code(), err.message());

    platform.stop().await.expect("platform stops cleanly");
    let left = scope.containers(None);
    assert!(left.is_empty(), "containers of the test remain: {left:?}");
}
