//! Test support: pin every child process to the freshly built `faas` binary, start the real
//! platform on free loopback ports, and look at the process tree through /proc ([`procs`]),
//! at what the platform reports ([`observe`]) and at a recorded load ([`load`]).
#![allow(dead_code)]

/// The Docker suites' helpers (`tests/docker.rs`, `tests/swarm.rs`).
pub mod docker;
/// The self-healing tests' harness (`tests/self_healing_*.rs`).
pub mod healing;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use faas_cli::load;
#[allow(unused_imports)]
pub use faas_e2e::{observe, procs};

// The process helpers the older tests call as `support::...`.
#[allow(unused_imports)]
pub use procs::{alive, cmdline, descendants};

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use faas_cli::client::Api;
use faas_cli::platform::{LocalPlatform, PlatformOptions};

/// Makes node services and container services run from this build's `faas` binary.
pub fn use_built_binary() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any test of this binary starts a child process; nothing
        // else in these tests writes the environment.
        // The in-process resource manager finds the node binary through `Launcher::find`,
        // which reads FAAS_BIN; it takes no binary as an argument, so a test sets it here.
        #[allow(unsafe_code, clippy::disallowed_methods)]
        unsafe {
            std::env::set_var("FAAS_BIN", env!("CARGO_BIN_EXE_faas"));
        }
        faas_common::logging::init("warn");
    });
}

/// Options for a small, fast platform: few ready nodes, quick refill.
pub fn small_options() -> PlatformOptions {
    PlatformOptions {
        ready_nodes: 3,
        max_nodes: 12,
        refill_delay_ms: 100,
        ..PlatformOptions::default()
    }
}

/// Starts the platform and connects to its API server.
pub async fn start(options: PlatformOptions) -> (LocalPlatform, Api) {
    use_built_binary();
    let platform = LocalPlatform::start(&options)
        .await
        .expect("platform starts");
    let api = platform.api().await.expect("api server answers");
    remember_key(&platform.apiserver.to_string(), platform.api_key());
    (platform, api)
}

/// The API key of each API server a test started, by address: [`faas`] passes it.
static KEYS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Makes [`faas`] pass `key` (as `FAAS_API_KEY`) to the API server at `addr`.
pub fn remember_key(addr: &str, key: Option<&str>) {
    let mut keys = KEYS.lock().unwrap();
    let keys = keys.get_or_insert_with(HashMap::new);
    match key {
        Some(key) => keys.insert(addr.to_string(), key.to_string()),
        None => keys.remove(addr),
    };
}

/// The key [`remember_key`] was told for `addr`.
pub fn key_of(addr: &str) -> Option<String> {
    KEYS.lock().unwrap().as_ref()?.get(addr).cloned()
}

/// `faas ARGS --apiserver ADDR`, run from this build's binary (never `FAAS_APISERVER`), with
/// the API server's key when a test started it ([`remember_key`]).
pub async fn faas(addr: &str, args: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--apiserver".to_string(), addr.to_string()]);
    let key = key_of(addr);
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_faas"));
        command.args(&args).env_remove("FAAS_APISERVER");
        match key {
            Some(key) => command.env("FAAS_API_KEY", key),
            None => command.env_remove("FAAS_API_KEY"),
        };
        command.output().unwrap()
    })
    .await
    .unwrap()
}

/// stdout of `faas ARGS --apiserver ADDR`, which must succeed.
pub async fn ok(addr: &str, args: &[&str]) -> String {
    let out = faas(addr, args).await;
    assert!(out.status.success(), "faas {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `faas ARGS` exactly as given (no `--apiserver`, no key, nothing from `FAAS_*`), from this
/// build's binary: for commands that need no API server, or name their own.
pub async fn faas_alone(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_faas"))
            .args(&args)
            .env_remove("FAAS_APISERVER")
            .env_remove("FAAS_API_KEY")
            .env_remove("FAAS_DATA_DIR")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `faas ARGS` exactly as given, from this build's binary, with the variables `unset` taken out
/// of its environment; its output. For a command that should end by itself (most often
/// fail at once): one that runs on (a platform that started anyway) is killed after a
/// minute and fails the test.
pub async fn faas_within_a_minute(args: &[&str], unset: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_faas"));
    command.args(args);
    for name in unset {
        command.env_remove(name);
    }
    let child = command
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("faas {args:?} still runs after a minute"))
        .unwrap()
}

/// The one line of a failed command's stderr, checked to be one readable line: no debug
/// dump of an error (`Os {`, `kind:`, tonic's `Transport` / `ConnectError`, a backtrace).
pub fn one_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    let line = lines[0].to_string();
    for debug in [
        "Os {",
        "kind:",
        "Error {",
        "backtrace",
        "Transport",
        "ConnectError",
    ] {
        assert!(!line.contains(debug), "a debug dump: {line}");
    }
    line
}

/// The one error line of `faas ARGS --apiserver ADDR`, which must fail with exit `code`.
pub async fn fails_with(addr: &str, args: &[&str], code: i32) -> String {
    let out = faas(addr, args).await;
    assert_eq!(out.status.code(), Some(code), "faas {args:?}: {out:?}");
    one_error_line(&out)
}
