//! A real `nats-server` with JetStream for the tests of the queue on NATS: started as a
//! child process on a free loopback port with its store in a temporary directory, killed
//! when dropped.
//!
//! Without `nats-server` on the machine a test skips loudly, unless CI (`CI` set, or
//! `FAAS_REQUIRE_DOCKER=1`, as for Docker) requires it: then it fails. CI installs Debian's
//! `nats-server` package (`.ci/run`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::docker::docker_required;

/// Where Debian puts `nats-server`, besides `PATH`.
const PLACES: [&str; 2] = ["/usr/sbin/nats-server", "/usr/bin/nats-server"];

/// The largest message the test server takes (NATS's default is 1 MiB).
const MAX_PAYLOAD: &str = "8MB";

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

/// Whether a test must fail rather than skip without `nats-server`.
pub fn nats_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty()) || docker_required()
}

/// The `nats-server` binary, if the machine has one.
pub fn nats_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(PLACES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn spawn(binary: &Path, port: u16, dir: &Path) -> Child {
    let config = dir.join("nats.conf");
    std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n")).expect("write nats.conf");
    let store = dir.join("store");
    let mut child = Command::new(binary)
        .args(["-c"])
        .arg(&config)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..500 {
        if TcpStream::connect(&addr).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("nats-server did not listen on {addr} within 5 s");
}

impl NatsServer {
    /// A new server with an empty store; `None` (after a loud note) when the machine has no
    /// `nats-server` and nothing requires one. Panics when one is required and missing.
    pub fn start() -> Option<NatsServer> {
        let Some(binary) = nats_binary() else {
            if nats_required() {
                panic!(
                    "CI requires nats-server (apt-get install nats-server) and it is not installed"
                );
            }
            eprintln!(
                "\n!!!!! SKIPPED: nats-server is not installed; the NATS queue tests did not run !!!!!\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let child = spawn(&binary, port, dir.path());
        Some(NatsServer {
            child,
            binary,
            port,
            dir,
        })
    }

    /// `host:port`, as `--queue nats://…` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `nats://host:port`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.address())
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.binary, self.port, self.dir.path());
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
