//! What the watchdog tests share: test bundles (a Python HTTP server and an exec script whose
//! behaviour each call picks), calls, process checks, and the `container-service` binary run
//! as a child.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::Server;
use faas_container_service::watchdog::sys::{RealSys, Sys, is_alive};
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{InvokeReply, InvokeRequest};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A Python HTTP server whose behaviour each call picks with its event: `exit` (the process
/// exits mid-call), `mb` (holds that many MiB), `barrier` (waits until `$BARRIER` calls are
/// in flight at once), `sleep` (seconds), `status` (answers it with the body "bad things").
/// It appends its pid to `$PIDS` when that is set.
pub(crate) const TEST_SERVER: &str = r#"
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("PIDS"):
    with open(os.environ["PIDS"], "a") as f:
        f.write(f"{os.getpid()}\n")
barrier = threading.Barrier(int(os.environ.get("BARRIER", "1")), timeout=20)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        e = json.loads(raw or b"{}")
        if "exit" in e:
            print("exiting on request", file=sys.stderr, flush=True)
            os._exit(e["exit"])
        hold = b"x" * (e.get("mb", 0) << 20)
        if e.get("barrier"):
            barrier.wait()
        time.sleep(e.get("sleep", 0))
        status = e.get("status", 200)
        if status == 200:
            body = json.dumps({"id": self.headers.get("X-Request-Id"), "held": len(hold)}).encode()
        else:
            body = b"bad things"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A shell `exec` function whose behaviour the event picks: `fail`, `sleep` (a shell and a
/// forked sleep, their pids appended to `$PIDS`), `memory` (Python holding 400 MiB), or
/// anything else (echoed back).
pub(crate) const TEST_EXEC: &str = r#"
event=$(cat)
echo "event: $event" >&2
case "$event" in
fail) echo "something broke" >&2; exit 3 ;;
sleep) echo $$ >> "$PIDS"; sleep 600 & echo $! >> "$PIDS"; wait ;;
memory) exec python3 -c 'import time; x = b"x" * (400 << 20); time.sleep(60)' ;;
*) printf 'you said %s' "$event" ;;
esac
"#;

/// Fails (never skips) without python3.
pub(crate) fn require_python3() {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "python3 is not on PATH: these tests run Python functions; install python3 \
         (the tests fail rather than skip without it)"
    );
}

/// A bundle in a temporary directory: `function.json` and files beside it.
pub(crate) fn bundle(manifest: serde_json::Value, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("function.json"), manifest.to_string()).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The test server as an `http` bundle with `env`.
pub(crate) fn http_bundle(env: serde_json::Value) -> tempfile::TempDir {
    require_python3();
    bundle(
        json!({"command": ["python3", "server.py"], "protocol": "http", "env": env}),
        &[("server.py", TEST_SERVER)],
    )
}

/// The test `exec` function, its pids going to `pids`.
pub(crate) fn exec_bundle(pids: &Path) -> tempfile::TempDir {
    bundle(
        json!({"command": ["sh", "main.sh"], "protocol": "exec", "env": {"PIDS": pids}}),
        &[("main.sh", TEST_EXEC)],
    )
}

pub(crate) fn call(event: &[u8], request_id: &str, timeout_ms: i64) -> InvokeRequest {
    InvokeRequest {
        request_id: request_id.into(),
        function_name: "f".into(),
        handler: String::new(),
        event: event.to_vec(),
        timeout_in_ms: timeout_ms,
    }
}

pub(crate) async fn send(server: &Server, request: InvokeRequest) -> InvokeReply {
    server
        .client
        .clone()
        .invoke(request)
        .await
        .unwrap()
        .into_inner()
}

pub(crate) fn pids_in(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Waits until every process of `pids` is dead (gone, or a zombie waiting for whoever
/// reaps orphans), for at most 10 s each.
pub(crate) async fn assert_all_gone(pids: &[u32]) {
    for pid in pids {
        let deadline = faas_common::clock::instant() + Duration::from_secs(10);
        while is_alive(*pid) {
            assert!(
                faas_common::clock::instant() < deadline,
                "process {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The processes under process `pid` (its function's).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    RealSys.tree(pid).into_iter().skip(1).collect()
}

/// The `container-service` binary run with `args`, its stderr collected.
pub(crate) struct Binary {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Binary {
    pub(crate) fn spawn(args: &[&str]) -> Binary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
            .args(["--port", "0", "--function-name", "f"])
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Binary {
            child,
            stdout,
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// The address of the readiness line.
    pub(crate) async fn ready(&mut self) -> SocketAddr {
        let wait = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                if let Some(addr) = faas_common::serve::parse_announce(&line) {
                    return addr;
                }
            }
            panic!("the binary exited without its readiness line");
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("ready within 30 s")
    }

    pub(crate) async fn client(&mut self) -> ContainerServiceClient<tonic::transport::Channel> {
        let addr = self.ready().await;
        let channel = faas_common::serve::connect(&addr.to_string())
            .await
            .unwrap();
        ContainerServiceClient::new(channel)
    }

    /// Waits for the exit; returns whether it succeeded, what it printed on stdout after
    /// the lines already read, and its stderr.
    pub(crate) async fn finish(mut self) -> (bool, String, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s")
            .unwrap();
        let mut stdout = String::new();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            stdout.push_str(&line);
        }
        (status.success(), stdout, self.stderr.await.unwrap())
    }
}

// The memory tests run the binary: in-process, the watchdog's own memory would be the whole
// test process's (a panicking test's backtrace alone can take a hundred MiB).

/// Runs bundle `dir` in the binary with a 128 MiB memory limit, sends `event`, and checks
/// the call ended `OutOfMemory`; returns the binary, its client, the reply, and the
/// function's processes before the call.
pub(crate) async fn call_over_128_mib(
    dir: &Path,
    event: &[u8],
) -> (
    Binary,
    ContainerServiceClient<tonic::transport::Channel>,
    InvokeReply,
    Vec<u32>,
) {
    let mut bin = Binary::spawn(&[
        "--bundle",
        dir.to_str().unwrap(),
        "--memory-bytes",
        "134217728",
    ]);
    let mut client = bin.client().await;
    let before = children(bin.pid());
    let reply = client
        .invoke(call(event, "r", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "OutOfMemory", "{}", reply.error_message);
    assert!(
        reply
            .error_message
            .contains("above its memory limit of 134217728 bytes"),
        "{}",
        reply.error_message
    );
    (bin, client, reply, before)
}
