//! One trace per call (issue 18): the request id the API server gives a call travels as
//! `x-request-id` metadata through every hop, and each hop's log lines about the call carry
//! it. A real platform (`faas up`, its stderr captured: the in-process API server, scheduler
//! and resource manager, and the node and container services it starts as children, all
//! write there) serves one cold call; the scheduler's lines (the acquire, the container it
//! created for the call, the return) and the node service's (the create, the invocation)
//! name the call's id. With span export on (`FAAS_OTLP_ENDPOINT`), the same call is one
//! OpenTelemetry trace across the processes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `faas up` as a child with its stdout and stderr lines collected; stopped with SIGINT
/// (its clean stop) when dropped.
struct Up {
    child: std::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

/// Collects the lines of `from` into `into`, on a thread of its own.
fn collect(from: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(plain(&line));
        }
    });
}

/// `line` without ANSI colour codes (`ESC [ ... m`), should a component colour its lines.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Up {
    fn start(log_filter: &str) -> Up {
        Up::start_with(log_filter, &[])
    }

    /// [`Up::start`] with more environment variables for `faas up` (and so its children).
    fn start_with(log_filter: &str, env: &[(&str, &str)]) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_faas"))
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .args([
                "--apiserver-port",
                "0",
                "--scheduler-port",
                "0",
                "--resource-manager-port",
                "0",
                "--http-port",
                "0",
                "--ready-nodes",
                "1",
                "--max-nodes",
                "2",
            ])
            .env("RUST_LOG", log_filter)
            .env("FAAS_BIN", env!("CARGO_BIN_EXE_faas"))
            .env_remove("FAAS_API_KEY")
            .env_remove("FAAS_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("faas up starts");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout));
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        Up {
            child,
            stdout,
            stderr,
            dir,
        }
    }

    /// The API server's address, once `faas up` says it is up (within 60 s).
    async fn apiserver(&mut self) -> String {
        let since = faas_common::clock::instant();
        loop {
            let found = self.stdout.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("apiserver")
                    .map(|addr| addr.trim().to_string())
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("faas up exited ({status}): {}", self.stderr_text());
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "faas up did not come up: {}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls `hello` once through the API server (once it is up) and returns the request id
    /// the API server gave the call.
    async fn call_hello(&mut self) -> String {
        let addr = self.apiserver().await;
        let key = faas_cli::client::find_key(&addr, None, Some(self.dir.path())).unwrap();
        let api = faas_cli::client::connect_with_key(&addr, key.as_deref())
            .await
            .unwrap();
        let out = api
            .invoke("acct", "hello", br#"{"name":"trace"}"#.to_vec())
            .await
            .expect("the call succeeds");
        assert!(!out.request_id.is_empty());
        out.request_id
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The stderr lines holding every one of `words`.
    fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .cloned()
            .collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGINT: the platform stops its nodes and their containers, then exits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_and_the_node_log_the_api_servers_request_id() {
    let mut up = Up::start("info,faas_scheduler=debug,faas_node_service=debug");
    let id = up.call_hello().await;

    // What each hop must have logged about the call, with its id (a return is logged once
    // the scheduler has it: it goes back after the reply).
    let want: [(&str, &[&str]); 5] = [
        (
            "the scheduler's acquire",
            &["acquire", "container acquired"],
        ),
        (
            "the scheduler's create for the call",
            &["container created", "op="],
        ),
        ("the scheduler's return", &["return", "container returned"]),
        (
            "the node service's create",
            &["create_container", "container created"],
        ),
        (
            "the node service's invocation",
            &["invoke", "invocation finished"],
        ),
    ];
    let since = faas_common::clock::instant();
    let missing = loop {
        let missing: Vec<_> = want
            .iter()
            .filter(|(_, words)| up.lines_with(words).iter().all(|l| !l.contains(&id)))
            .map(|(what, _)| *what)
            .collect();
        if missing.is_empty() || since.elapsed() > Duration::from_secs(20) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "no line of {missing:?} names the request id {id}:\n{}",
        up.stderr_text()
    );
    // The scheduler is told the call's id, not an id of its own: every acquire line names it.
    for line in up.lines_with(&["container acquired"]) {
        assert!(line.contains(&id), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_span_export_on_one_call_is_one_trace_across_the_processes() {
    let collector = faas_testkit::otlp::Collector::start().await;
    let endpoint = collector.endpoint();
    let mut up = Up::start_with(
        "info",
        &[
            ("FAAS_OTLP_ENDPOINT", endpoint.as_str()),
            // Batches leave every 200 ms instead of 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let id = up.call_hello().await;

    // The call's spans in each process: `faas up`'s (API server and scheduler in one
    // process), the node service's and the container service's.
    let want = [
        ("faas", "invoke"),
        ("faas", "acquire"),
        ("faas-node-service", "invoke"),
        ("faas-container-service", "invoke"),
    ];
    let ours =
        |spans: &[faas_testkit::otlp::CollectedSpan]| -> Vec<faas_testkit::otlp::CollectedSpan> {
            spans
                .iter()
                .filter(|s| s.request_id.as_deref() == Some(id.as_str()))
                .cloned()
                .collect()
        };
    let spans = collector
        .wait_for(Duration::from_secs(30), |spans| {
            let ours = ours(spans);
            want.iter().all(|(service, name)| {
                ours.iter()
                    .any(|s| s.service == *service && s.name == *name)
            })
        })
        .await;
    let ours = ours(&spans);
    for (service, name) in want {
        assert!(
            ours.iter().any(|s| s.service == service && s.name == name),
            "no {name} span of {service} for {id}: {ours:#?}"
        );
    }
    let root = ours
        .iter()
        .find(|s| s.service == "faas" && s.name == "invoke")
        .unwrap();
    assert_eq!(root.parent_span_id, "", "the API server's span is the root");
    for span in &ours {
        assert_eq!(span.trace_id, root.trace_id, "one trace: {ours:#?}");
        if span.span_id != root.span_id {
            assert!(
                spans.iter().any(|p| p.span_id == span.parent_span_id),
                "{} of {} has a parent that was never exported: {ours:#?}",
                span.name,
                span.service
            );
        }
    }
}
