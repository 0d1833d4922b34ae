//! The binary as an operator meets it: its log lines name the component, carry no colour
//! when stderr is no terminal, are JSON objects with `--log-format json`; `--metrics-port`
//! serves its `faas_container_service_*` figures.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Runs the binary unbound with `args`, waits for its readiness line and for its "ready"
/// log line (logged just after the readiness line: killing it before would race the log),
/// gives `look` the chance to reach it, stops it, and returns its stderr lines.
async fn run(args: &[&str], look: impl AsyncFnOnce()) -> Vec<String> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_container-service"))
        .args(["--port", "0", "--unbound"])
        .args(args)
        .env_remove("FAAS_LOG_FORMAT")
        .env_remove("FAAS_OTLP_ENDPOINT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), stdout.next_line()).await;
    assert!(matches!(ready, Ok(Ok(Some(_)))), "no readiness line");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let logged_ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            let ready = line.contains("container service ready");
            lines.push(line);
            if ready {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(logged_ready, Ok(true)),
        "no \"ready\" log line: {lines:?}"
    );
    look().await;
    child.start_kill().unwrap();
    while let Ok(Some(line)) = stderr.next_line().await {
        lines.push(line);
    }
    child.wait().await.unwrap();
    lines
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn text_lines_name_the_component_without_colour() {
    let lines = run(&[], async || {}).await;
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.contains(" container-service: "), "{line}");
        assert!(!line.contains('\x1b'), "colour in a pipe: {line:?}");
    }
}

#[tokio::test]
async fn json_lines_and_the_metrics_port() {
    let port = free_port();
    let mut text = String::new();
    let lines = run(
        &["--log-format", "json", "--metrics-port", &port.to_string()],
        async || {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            stream.read_to_string(&mut text).await.unwrap();
        },
    )
    .await;
    assert!(
        lines.iter().any(|l| l.contains("container service ready")),
        "{lines:?}"
    );
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(json["component"], "container-service", "{line}");
    }
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let families = faas_common::metrics::exposition::parse(body).unwrap();
    let names: Vec<String> = families
        .iter()
        .map(faas_common::metrics::exposition::Family::query_name)
        .collect();
    for name in [
        "faas_container_service_bound",
        "faas_container_service_invocations_total",
        "faas_container_service_resident_memory_bytes",
    ] {
        assert!(names.iter().any(|n| n == name), "no {name} in {body}");
    }
}
