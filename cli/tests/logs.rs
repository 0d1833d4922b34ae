//! `faas logs` on a whole local platform with a data directory: the example functions of
//! `deploy/user-functions.toml` are deployed and called, then their lines are read back
//! through the API server (which asks every node the scheduler holds): the shell function's
//! stderr line with its call's request id, the Python server's start line and the line it
//! prints per call; `--json`, `--since`, `--follow` (each line printed once, stopped by
//! Ctrl-C), and a one-line error for a function that does not exist.

mod support;

use support::{faas, ok};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A temporary data directory, removed on drop.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// stdout of `faas logs ARGS` once it holds `want` (lines are read by the nodes' watchdogs
/// as the processes write them), within 30 s.
async fn logs_holding(addr: &str, args: &[&str], want: &str) -> String {
    let since = faas_common::clock::instant();
    loop {
        let out = ok(addr, args).await;
        if out.contains(want) {
            return out;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "faas {args:?} never showed {want:?}: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The line of `out` holding `want`.
fn line_with<'a>(out: &'a str, want: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(want))
        .unwrap_or_else(|| panic!("no line with {want:?} in {out}"))
}

/// `faas logs ARGS --follow` as a child whose stdout lines are collected.
struct Follow {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follow {
    fn start(addr: &str, args: &[&str]) -> Follow {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faas"))
            .args(args)
            .args(["--follow", "--apiserver", addr])
            .env_remove("FAAS_APISERVER")
            .envs(support::key_of(addr).map(|key| ("FAAS_API_KEY", key)))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Follow { child, lines }
    }

    fn count(&self, want: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(want)).count()
    }

    /// Ctrl-C: it stops cleanly.
    fn interrupt(mut self) {
        // SAFETY: signals the child this test started, by its id.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "faas logs --follow after Ctrl-C: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_show_what_the_example_functions_wrote() {
    let data = DataDir(std::env::temp_dir().join(format!("faas-logs-{}", uuid::Uuid::new_v4())));
    let options = faas_cli::platform::PlatformOptions {
        data_dir: Some(data.0.clone()),
        ..support::small_options()
    };
    let (platform, api) = support::start(options).await;
    let addr = platform.apiserver.to_string();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/user-functions.toml");
    ok(&addr, &["deploy", file.to_str().unwrap()]).await;

    let event = br#"{"name": "Ada"}"#;
    let sh = api
        .invoke("acct", "sh-hello", event.to_vec())
        .await
        .unwrap();
    let py = api
        .invoke("acct", "py-hello", br#"{"name": "Grace"}"#.to_vec())
        .await
        .unwrap();

    // The shell function's stderr line carries its call's request id.
    let out = logs_holding(&addr, &["logs", "sh-hello"], &sh.request_id).await;
    eprintln!("faas logs sh-hello:\n{out}");
    let line = line_with(&out, &sh.request_id);
    let want = format!(
        "  sh-hello  {}  stderr  [{}]  read {} bytes of event",
        &sh.container_id.as_deref().unwrap()[..8],
        sh.request_id,
        event.len()
    );
    assert!(line.ends_with(&want), "{line:?} does not end with {want:?}");
    // TIME: `2025-01-31 12:00:00.123`.
    let time = &line[..23];
    assert!(
        time.as_bytes()[19] == b'.' && time[20..].bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );

    // The Python server: its start line, then the line it prints per call (with the id the
    // watchdog sends as X-Request-Id in its text; the request id column is for exec calls).
    let out = logs_holding(&addr, &["logs", "py-hello"], "greeting 'Grace'").await;
    eprintln!("faas logs py-hello:\n{out}");
    let listening = out
        .lines()
        .position(|l| l.contains("listening on 127.0.0.1:"));
    let greeting = out.lines().position(|l| l.contains("greeting 'Grace'"));
    assert!(listening.unwrap() < greeting.unwrap(), "{out}");
    let short = &py.container_id.as_deref().unwrap()[..8];
    let line = line_with(&out, "greeting 'Grace'");
    assert!(
        line.contains(&format!("  py-hello  {short}  stdout  ")),
        "{line}"
    );
    assert!(
        !out.contains("bytes of event"),
        "only py-hello's lines: {out}"
    );

    // --json: one object per line.
    let json = ok(&addr, &["logs", "sh-hello", "--json"]).await;
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let object = objects
        .iter()
        .find(|o| o["request_id"] == sh.request_id.as_str())
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(object["function"], "sh-hello");
    assert_eq!(object["stream"], "stderr");
    assert_eq!(object["container_id"], sh.container_id.as_deref().unwrap());
    assert_eq!(object["node_id"], sh.node_id.as_deref().unwrap());
    assert!(object["at_ms"].as_i64().unwrap() > 0);

    // --since: the last hour holds the line; from now on, nothing yet; --limit 1 the newest.
    assert!(
        ok(&addr, &["logs", "sh-hello", "--since", "1h"])
            .await
            .contains(&sh.request_id)
    );
    assert_eq!(ok(&addr, &["logs", "sh-hello", "--since", "0s"]).await, "");
    let newest = ok(&addr, &["logs", "py-hello", "--limit", "1"]).await;
    assert_eq!(newest.lines().count(), 1, "{newest}");

    // --follow prints a new call's line once, and stops on Ctrl-C.
    let follow = Follow::start(&addr, &["logs", "sh-hello", "--since", "0s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = api
        .invoke("acct", "sh-hello", event.to_vec())
        .await
        .unwrap();
    let since = faas_common::clock::instant();
    while follow.count(&again.request_id) == 0 {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "--follow never printed {}",
            again.request_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more polls see the line again: it is not printed again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(follow.count(&again.request_id), 1);
    assert_eq!(follow.count(&sh.request_id), 0, "older than --since 0s");
    follow.interrupt();

    // A function that does not exist: one line saying so.
    let out = faas(&addr, &["logs", "nope"]).await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: logs nope: NotFound: function nope not found\n"
    );
    platform.stop().await.unwrap();
}
