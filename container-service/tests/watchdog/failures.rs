//! A function that dies, never starts, is malformed, passes its memory limit, or is left
//! behind by a stop.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{bundle_config, example};
use faas_common::launch::{Signal, send_signal};
use faas_common::units::GIB;
use faas_container_service::Error;
use serde_json::json;

use crate::fixtures::*;

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
        bundle_config(dir.path(), GIB),
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
