//! Command functions (`--bundle`), with real processes: the examples in
//! `examples/functions/`, and test bundles written to temporary directories, run through the
//! in-process server (`run`), the `Watchdog` API and the `container-service` binary.
//!
//! python3 must be installed: without it these tests fail with a message, never skip.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use faas_common::launch::{Signal, send_signal};
use faas_container_service::Error;
use faas_container_service::watchdog::logs::Stream;
use faas_container_service::watchdog::sys::{RealSys, Sys, is_alive};
use faas_container_service::watchdog::{Limits, Watchdog};
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{InvokeReply, InvokeRequest, StatusRequest};
use serde_json::json;
use support::{Server, bundle_config, example, json, start};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// A Python HTTP server whose behaviour each call picks with its event: `exit` (the process
/// exits mid-call), `mb` (holds that many MiB), `barrier` (waits until `$BARRIER` calls are
/// in flight at once), `sleep` (seconds), `status` (answers it with the body "bad things").
/// It appends its pid to `$PIDS` when that is set.
const TEST_SERVER: &str = r#"
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
const TEST_EXEC: &str = r#"
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
fn require_python3() {
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
fn bundle(manifest: serde_json::Value, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("function.json"), manifest.to_string()).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The test server as an `http` bundle with `env`.
fn http_bundle(env: serde_json::Value) -> tempfile::TempDir {
    require_python3();
    bundle(
        json!({"command": ["python3", "server.py"], "protocol": "http", "env": env}),
        &[("server.py", TEST_SERVER)],
    )
}

/// The test `exec` function, its pids going to `pids`.
fn exec_bundle(pids: &Path) -> tempfile::TempDir {
    bundle(
        json!({"command": ["sh", "main.sh"], "protocol": "exec", "env": {"PIDS": pids}}),
        &[("main.sh", TEST_EXEC)],
    )
}

fn call(event: &[u8], request_id: &str, timeout_ms: i64) -> InvokeRequest {
    InvokeRequest {
        request_id: request_id.into(),
        function_name: "f".into(),
        handler: String::new(),
        event: event.to_vec(),
        timeout_in_ms: timeout_ms,
    }
}

async fn send(server: &Server, request: InvokeRequest) -> InvokeReply {
    server
        .client
        .clone()
        .invoke(request)
        .await
        .unwrap()
        .into_inner()
}

fn pids_in(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Waits until every process of `pids` is dead (gone, or a zombie waiting for whoever
/// reaps orphans), for at most 10 s each.
async fn assert_all_gone(pids: &[u32]) {
    for pid in pids {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_alive(*pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The processes under process `pid` (its function's).
fn children(pid: u32) -> Vec<u32> {
    RealSys.tree(pid).into_iter().skip(1).collect()
}

/// The `container-service` binary run with `args`, its stderr collected.
struct Binary {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Binary {
    fn spawn(args: &[&str]) -> Binary {
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

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// The address of the readiness line.
    async fn ready(&mut self) -> SocketAddr {
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

    async fn client(&mut self) -> ContainerServiceClient<tonic::transport::Channel> {
        let addr = self.ready().await;
        let channel = faas_common::serve::connect(&addr.to_string())
            .await
            .unwrap();
        ContainerServiceClient::new(channel)
    }

    /// Waits for the exit; returns whether it succeeded, what it printed on stdout after
    /// the lines already read, and its stderr.
    async fn finish(mut self) -> (bool, String, String) {
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

#[tokio::test]
async fn the_python_example_serves_several_calls_at_once() {
    require_python3();
    let server = start(bundle_config(&example("python-http"), 1 << 30)).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut client = server.client.clone();
            tokio::spawn(async move {
                let event = json!({"name": format!("caller-{i}")}).to_string();
                let id = format!("r-{i}");
                client.invoke(call(event.as_bytes(), &id, 0)).await
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let reply = c.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.error_code, "", "{}", reply.error_message);
        let body = json(&reply.body);
        assert_eq!(body["message"], format!("Hello, caller-{i}!"));
        assert_eq!(body["runtime"], "python");
        assert!(reply.duration_in_nanos > 0);
        assert!(
            reply.max_memory_usage_in_bytes > 4 << 20,
            "the Python process's memory is counted: {}",
            reply.max_memory_usage_in_bytes
        );
    }
    let reply = send(&server, call(b"[1]", "r-bad", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert!(
        reply.error_message.starts_with("HTTP 400 Bad Request: ")
            && reply.error_message.contains("must be a JSON object"),
        "{}",
        reply.error_message
    );

    let mut client = server.client.clone();
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.function_name, "f");
    assert_eq!(
        status.handler, "bundle:python-http",
        "bundle:<the directory's name>"
    );
    assert_eq!(status.served, 9);
    assert!(status.rss_bytes > 4 << 20);
    let mut named = call(b"{}", "r-named", 0);
    named.handler = "bundle:python-http".into();
    let reply = client.invoke(named).await.unwrap().into_inner();
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    let mut wrong = call(b"", "r-x", 0);
    wrong.handler = "hello".into();
    let err = client.invoke(wrong).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("command [\"python3\", \"main.py\"]"),
        "{}",
        err.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http_function_gets_its_calls_at_the_same_time() {
    // Each call waits in the server until four are in flight: serialized calls would break
    // the barrier (after 20 s) and fail.
    let dir = http_bundle(json!({"BARRIER": "4"}));
    let server = start(bundle_config(dir.path(), 1 << 30)).await;
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let mut client = server.client.clone();
            tokio::spawn(async move {
                client
                    .invoke(call(br#"{"barrier": true}"#, &format!("call-{i}"), 0))
                    .await
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let reply = c.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.error_code, "", "{}", reply.error_message);
        assert_eq!(json(&reply.body)["id"], format!("call-{i}"), "X-Request-Id");
    }
    let reply = send(&server, call(br#"{"status": 500}"#, "r", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert_eq!(
        reply.error_message,
        "HTTP 500 Internal Server Error: bad things"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_shell_example_answers_from_stdout_and_returns_its_stderr() {
    let server = start(bundle_config(&example("shell-exec"), 1 << 30)).await;
    let reply = send(&server, call(br#"{"name":"Ada"}"#, "req-7", 0)).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert_eq!(
        reply.body,
        br#"{"message":"Hello, Ada!","runtime":"sh","bytes":14}"#
    );
    assert_eq!(reply.function_log, "read 14 bytes of event\n");
    assert!(reply.max_memory_usage_in_bytes > 0);
    let reply = send(&server, call(b"", "req-8", 0)).await;
    assert_eq!(json(&reply.body)["message"], "Hello, world!");
    server.stop().await;
}

#[tokio::test]
async fn exec_stderr_lines_are_kept_with_their_request_id() {
    let limits = Limits {
        memory_bytes: 256 << 20,
        enforce_memory: true,
    };
    let watchdog = Watchdog::start(&example("shell-exec"), limits)
        .await
        .unwrap();
    for (id, event) in [("req-a", r#"{"name":"A"}"#), ("req-b", "{}")] {
        let report = watchdog
            .invoke(id, event.as_bytes().to_vec(), Duration::from_secs(30))
            .await;
        assert!(report.result.is_ok(), "{:?}", report.result);
    }
    let lines = watchdog.logs();
    let kept: Vec<_> = lines
        .iter()
        .map(|l| (l.request_id.as_deref(), l.stream, l.text.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (Some("req-a"), Stream::Stderr, "read 12 bytes of event"),
            (Some("req-b"), Stream::Stderr, "read 2 bytes of event"),
        ]
    );
    assert!(lines[0].at <= lines[1].at);
}

#[tokio::test]
async fn a_failing_exec_call_is_a_function_error_with_its_stderr() {
    let pids = tempfile::tempdir().unwrap();
    let dir = exec_bundle(&pids.path().join("pids"));
    let server = start(bundle_config(dir.path(), 1 << 30)).await;
    let reply = send(&server, call(b"fail", "r", 0)).await;
    assert_eq!(reply.error_code, "FunctionError");
    assert!(
        reply.error_message.contains("exit status: 3")
            && reply.error_message.ends_with("something broke"),
        "{}",
        reply.error_message
    );
    assert_eq!(reply.function_log, "event: fail\nsomething broke\n");
    let reply = send(&server, call(b"hi", "r", 0)).await;
    assert_eq!(reply.body, b"you said hi");
    server.stop().await;
}

#[tokio::test]
async fn an_exec_call_past_its_timeout_is_killed_with_its_children() {
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("pids");
    let dir = exec_bundle(&pid_file);
    let server = start(bundle_config(dir.path(), 1 << 30)).await;
    let reply = send(&server, call(b"sleep", "r", 2_000)).await;
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 2000 ms");
    let started = pids_in(&pid_file);
    assert_eq!(started.len(), 2, "the shell and its sleep: {started:?}");
    assert_all_gone(&started).await;
    let reply = send(&server, call(b"again", "r", 0)).await;
    assert_eq!(reply.body, b"you said again", "{}", reply.error_message);
    server.stop().await;
}

#[tokio::test]
async fn an_http_call_past_its_timeout_is_cancelled_and_the_server_lives_on() {
    let dir = http_bundle(json!({}));
    let server = start(bundle_config(dir.path(), 1 << 30)).await;
    let reply = send(&server, call(br#"{"sleep": 600}"#, "r", 300)).await;
    assert_eq!(reply.error_code, "Timeout");
    assert_eq!(reply.error_message, "function timed out after 300 ms");
    let reply = send(&server, call(b"{}", "r2", 0)).await;
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    assert_eq!(json(&reply.body)["id"], "r2");
    server.stop().await;
}

#[tokio::test]
async fn an_http_function_that_exits_mid_call_takes_the_container_down() {
    let dir = http_bundle(json!({}));
    let mut bin = Binary::spawn(&["--bundle", dir.path().to_str().unwrap()]);
    let mut client = bin.client().await;
    let server_pids = children(bin.pid());
    assert_eq!(server_pids.len(), 1, "one Python server: {server_pids:?}");
    let reply = client
        .invoke(call(br#"{"exit": 3}"#, "r", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "ContainerExited");
    assert!(
        reply.error_message.contains("exit status: 3")
            && reply.error_message.contains("exiting on request")
            && reply.error_message.contains("the container is dead"),
        "{}",
        reply.error_message
    );
    let (ok, _, stderr) = bin.finish().await;
    assert!(!ok, "a container whose function died exits non-zero");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "Error: the function died: the function's process exited (exit status: 3)"
        ),
        "{stderr}"
    );
    assert_all_gone(&server_pids).await;
}

#[tokio::test]
async fn a_function_that_never_listens_fails_the_start_and_is_killed() {
    let dir = bundle(
        json!({
            "command": ["sh", "-c", "echo $$ > pid; echo warming up >&2; exec sleep 600"],
            "protocol": "http",
            "start_timeout_ms": 1500
        }),
        &[],
    );
    let bin = Binary::spawn(&["--bundle", dir.path().to_str().unwrap()]);
    let (ok, stdout, stderr) = bin.finish().await;
    assert!(!ok);
    assert_eq!(stdout, "", "never announced");
    let last = stderr.lines().last().unwrap_or_default();
    for says in [
        "Error: cannot start the function: the function's process did not listen on port",
        "within 1500 ms (start_timeout_ms of ",
        "function.json); it was killed; its last output: warming up",
    ] {
        assert!(last.contains(says), "{last} should say {says}");
    }
    assert_all_gone(&pids_in(&dir.path().join("pid"))).await;

    // Through `run`: the same error, and an exit at start says how.
    let dir = bundle(
        json!({"command": ["sh", "-c", "echo no module named app >&2; exit 2"], "protocol": "http"}),
        &[],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = faas_container_service::run(
        listener,
        bundle_config(dir.path(), 1 << 30),
        faas_common::shutdown::Shutdown::never(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Start(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("exited before it listened on port")
            && err
                .to_string()
                .ends_with("(exit status: 2); its last output: no module named app"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_bundles_are_refused_at_start_in_one_line() {
    let not_executable = bundle(
        json!({"command": ["./run.sh"], "protocol": "exec"}),
        &[("run.sh", "#!/bin/sh\n")],
    );
    let no_manifest = tempfile::tempdir().unwrap();
    let cases: Vec<(tempfile::TempDir, &str)> = vec![
        (
            bundle(json!({"command": ["sh"], "protocol": "grpc"}), &[]),
            "field `protocol` must be \"http\" or \"exec\", got \"grpc\"",
        ),
        (
            bundle(json!({"command": [], "protocol": "exec"}), &[]),
            "field `command` must be a non-empty array of strings",
        ),
        (
            bundle(
                json!({"command": ["no-such-program"], "protocol": "http"}),
                &[],
            ),
            "command[0] \"no-such-program\" is not found on PATH",
        ),
        (not_executable, "command[0] \"./run.sh\" is not executable"),
        (no_manifest, "cannot read "),
    ];
    let mut runs: Vec<(PathBuf, String)> = cases
        .iter()
        .map(|(dir, says)| (dir.path().to_path_buf(), says.to_string()))
        .collect();
    let bad_json = bundle(json!({}), &[]);
    std::fs::write(bad_json.path().join("function.json"), "{\"command\": [").unwrap();
    runs.push((
        bad_json.path().to_path_buf(),
        "function.json is not valid JSON".into(),
    ));
    runs.push((
        "/nonexistent/bundle".into(),
        "the bundle /nonexistent/bundle is not a directory".into(),
    ));
    for (dir, says) in runs {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
            .args(["--function-name", "f", "--bundle"])
            .arg(&dir)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{dir:?} was accepted");
        assert!(out.stdout.is_empty(), "{dir:?}: announced before refusing");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(errors.len(), 1, "one line: {stderr}");
        assert!(
            errors[0].starts_with("Error: cannot start the function: "),
            "{stderr}"
        );
        assert!(
            errors[0].contains(&says),
            "{dir:?}: {stderr} should say {says}"
        );
        if dir.exists() {
            assert!(
                errors[0].contains(&dir.display().to_string()),
                "names the path: {stderr}"
            );
        }
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
        .args([
            "--function-name",
            "f",
            "--handler",
            "hello",
            "--bundle",
            "/tmp",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--bundle") && stderr.contains("--handler"),
        "{stderr}"
    );
}

// The memory tests run the binary: in-process, the watchdog's own memory would be the whole
// test process's (a panicking test's backtrace alone can take a hundred MiB).

/// Runs bundle `dir` in the binary with a 128 MiB memory limit, sends `event`, and checks
/// the call ended `OutOfMemory`; returns the binary, its client, the reply, and the
/// function's processes before the call.
async fn call_over_128_mib(
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

#[tokio::test]
async fn an_http_function_over_its_memory_limit_is_killed_and_the_container_dies() {
    let dir = http_bundle(json!({}));
    let (bin, _, reply, server_pids) =
        call_over_128_mib(dir.path(), br#"{"mb": 400, "sleep": 60}"#).await;
    assert!(
        reply.max_memory_usage_in_bytes > 64 << 20,
        "the peak counts what the server held: {}",
        reply.max_memory_usage_in_bytes
    );
    let (ok, _, stderr) = bin.finish().await;
    assert!(!ok, "the container is dead");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Error: the function died: out of memory: ")
            && last.contains("above its memory limit of 134217728 bytes"),
        "{stderr}"
    );
    assert_all_gone(&server_pids).await;
}

#[tokio::test]
async fn an_exec_call_over_its_memory_limit_is_killed_and_the_container_lives_on() {
    require_python3();
    let pids = tempfile::tempdir().unwrap();
    let dir = exec_bundle(&pids.path().join("pids"));
    let (bin, mut client, _, _) = call_over_128_mib(dir.path(), b"memory").await;
    let reply = client
        .invoke(call(b"ok", "r", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.body, b"you said ok", "{}", reply.error_message);
    assert!(
        children(bin.pid()).is_empty(),
        "no process left between calls"
    );
    send_signal(bin.pid(), Signal::Terminate).unwrap();
    let (ok, _, stderr) = bin.finish().await;
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn sigterm_leaves_no_function_process_behind() {
    require_python3();
    // A warm http server.
    let mut bin = Binary::spawn(&["--bundle", example("python-http").to_str().unwrap()]);
    let mut client = bin.client().await;
    let reply = client
        .invoke(call(b"{}", "r", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error_code, "", "{}", reply.error_message);
    let server_pids = children(bin.pid());
    assert_eq!(server_pids.len(), 1, "{server_pids:?}");
    send_signal(bin.pid(), Signal::Terminate).unwrap();
    let (ok, _, stderr) = bin.finish().await;
    assert!(ok, "a stop asked for is a clean exit: {stderr}");
    assert_all_gone(&server_pids).await;

    // An exec call in flight.
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("pids");
    let dir = exec_bundle(&pid_file);
    let mut bin = Binary::spawn(&["--bundle", dir.path().to_str().unwrap()]);
    let mut client = bin.client().await;
    let call_task = tokio::spawn(async move { client.invoke(call(b"sleep", "r", 0)).await });
    while pids_in(&pid_file).len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_signal(bin.pid(), Signal::Terminate).unwrap();
    let reply = call_task.await.unwrap().unwrap().into_inner();
    assert_eq!(reply.error_code, "ContainerExited");
    assert!(
        reply.error_message.contains("the container is stopping"),
        "{}",
        reply.error_message
    );
    let (ok, _, stderr) = bin.finish().await;
    assert!(ok, "{stderr}");
    assert_all_gone(&pids_in(&pid_file)).await;

    // A function still starting.
    let dir = bundle(
        json!({"command": ["sleep", "600"], "protocol": "http", "start_timeout_ms": 600000}),
        &[],
    );
    let bin = Binary::spawn(&["--bundle", dir.path().to_str().unwrap()]);
    let starting = loop {
        let c = children(bin.pid());
        if !c.is_empty() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    send_signal(bin.pid(), Signal::Terminate).unwrap();
    let (ok, stdout, stderr) = bin.finish().await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "", "never announced");
    assert_all_gone(&starting).await;
}
