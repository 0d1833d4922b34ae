//! A real `nats-server` with JetStream for the tests of the queue on NATS: started as a
//! child process on a free loopback port with its store in a temporary directory, killed
//! when dropped.
//!
//! Without `nats-server` on the machine a test skips loudly, unless CI (`CI` set, or
//! `FAAS_REQUIRE_DOCKER=1`, as for Docker) requires it: then it fails. CI installs Debian's
//! `nats-server` package (`.ci/run`).

use std::net::TcpStream;
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

/// The port a server started with `-p -1` took, from the ports file it writes.
fn port_of(dir: &Path, pid: u32) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join(format!("nats-server_{pid}.ports"))).ok()?;
    let rest = &text[text.find("nats://127.0.0.1:")? + "nats://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Starts the server on `port`, or (`None`) on a free port it picks itself, so parallel
/// tests never race for one; answers the child and its port once it listens.
fn spawn(binary: &Path, port: Option<u16>, dir: &Path) -> (Child, u16) {
    let config = dir.join("nats.conf");
    std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n")).expect("write nats.conf");
    let store = dir.join("store");
    let mut child = Command::new(binary)
        .args(["-c"])
        .arg(&config)
        .args(["-js", "-a", "127.0.0.1", "-p"])
        .arg(port.map_or("-1".to_string(), |p| p.to_string()))
        .arg("-sd")
        .arg(&store)
        .arg("--ports_file_dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    for _ in 0..500 {
        if let Some(port) = port.or_else(|| port_of(dir, child.id()))
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let addr = port.map_or("a free port".to_string(), |p| format!("127.0.0.1:{p}"));
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
        let (child, port) = spawn(&binary, None, dir.path());
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
        self.child = spawn(&self.binary, Some(self.port), self.dir.path()).0;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
