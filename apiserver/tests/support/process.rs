// The `apiserver` binary as a child process (for the SIGKILL tests): on a data directory,
// on 127.0.0.1:0, keyless, with a few more flags.

use std::path::Path;
use std::time::Duration;

use faas_common::launch::{Child, Launcher};

/// The `apiserver` binary on `data_dir` talking to `scheduler`, with `extra` flags; the child
/// and the gRPC address it announced.
pub async fn spawn_apiserver(data_dir: &Path, scheduler: &str, extra: &[&str]) -> (Child, String) {
    let mut cmd = Launcher::new(env!("CARGO_BIN_EXE_apiserver"), vec![]).command();
    cmd.args(["--port", "0", "--allow-anonymous", "--scheduler", scheduler])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FAAS_FUNCTIONS")
        .env("RUST_LOG", "error");
    let (child, addr) = Child::spawn_ready(cmd, Duration::from_secs(30))
        .await
        .unwrap();
    (child, addr.to_string())
}
