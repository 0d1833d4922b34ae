//! The `faas` binary as a person uses it: invoke prints the body, and fails with the
//! server's message; bad configuration fails at once with one line that says what to fix.

mod support;

use std::process::{Command, Output};

use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};

/// Runs the `faas` binary with `args` (no policy or functions from the environment) and its
/// output, failing the test if it runs for a minute.
async fn faas(args: &[&str]) -> Output {
    support::faas_within_a_minute(args, &["SCHEDULER_POLICY", "FAAS_FUNCTIONS"]).await
}

/// The one line of a failed command's stderr, checked to be one readable line.
fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    let line = lines[0].to_string();
    for debug in ["Os {", "kind:", "Error {", "backtrace"] {
        assert!(!line.contains(debug), "a debug dump: {line}");
    }
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoke_prints_the_body_and_fails_with_the_servers_message() {
    let (platform, api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let faas = env!("CARGO_BIN_EXE_faas");

    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(faas)
                .args(&args)
                .args(["--apiserver", &addr])
                .output()
                .unwrap()
        })
    };

    let ok = run(&["invoke", "hello", "--event", r#"{"name":"cli"}"#])
        .await
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("Hello, cli!"),
        "{ok:?}"
    );

    let missing = run(&["invoke", "nope"]).await.unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("nope"),
        "{stderr}"
    );

    // A 1 MiB description: the list is over tonic's default 4 MiB only in sum, but the
    // description alone is large, and the table shows it clipped.
    api.admin()
        .deploy_function(DeployFunctionRequest {
            function: Some(FunctionSpec {
                name: "verbose".into(),
                handler: "echo".into(),
                memory_in_bytes: 128 << 20,
                timeout_in_ms: 1000,
                description: "d".repeat(1 << 20),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let list = run(&["functions"]).await.unwrap();
    assert!(list.status.success(), "{:?}", list.stderr);
    let stdout = String::from_utf8_lossy(&list.stdout);
    for name in ["hello", "echo", "sleep", "cpu", "memory", "spin", "verbose"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing in {}",
            faas_common::text::clip(&stdout)
        );
    }
    let verbose = stdout.lines().find(|l| l.starts_with("verbose")).unwrap();
    assert!(
        verbose.ends_with("…(1048576 bytes)"),
        "{}",
        faas_common::text::clip(verbose)
    );

    platform.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_policy_fails_at_once_and_lists_the_known_ones() {
    let commands: [&[&str]; 5] = [
        &["up", "--policy", "nosuch"],
        &["demo", "--policy", "nosuch"],
        &["replay", "--policy", "nosuch"],
        &["replay", "--compare", "baseline,nosuch"],
        &["simulate", "--scenario", "contest", "--policy", "nosuch"],
    ];
    for args in commands {
        let out = faas(args).await;
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("is up"), "{args:?} started: {stdout}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("\"nosuch\""), "{args:?}: {stderr}");
        for known in faas_scheduler::policies::POLICY_NAMES {
            assert!(
                stderr.contains(known),
                "{args:?} does not list {known}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn faas_up_fails_with_the_message_of_the_component_that_cannot_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = faas(&[
        "up",
        "--apiserver-port",
        &port,
        "--scheduler-port",
        "0",
        "--resource-manager-port",
        "0",
        "--ready-nodes",
        "1",
    ])
    .await;
    let line = one_error_line(&out);
    assert!(line.starts_with("error: apiserver cannot start"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert_eq!(line.matches("in use").count(), 1, "{line}");

    let dir = std::env::temp_dir().join(format!("faas-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let functions = dir.join("bad.toml");
    std::fs::write(
        &functions,
        "[[function]]\nname = \"x\"\nhandler = \"perl\"\nmemory_mb = 128\ntimeout_ms = 5\n",
    )
    .unwrap();
    let out = faas(&[
        "up",
        "--apiserver-port",
        "0",
        "--scheduler-port",
        "0",
        "--resource-manager-port",
        "0",
        "--functions",
        functions.to_str().unwrap(),
    ])
    .await;
    let line = one_error_line(&out);
    assert!(line.starts_with("error: apiserver cannot start"), "{line}");
    assert!(line.contains("\"perl\""), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A component that fails only once it runs (its metrics port is taken) fails the start
/// with its own message, and so do bad extra flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_stops_as_it_starts_fails_the_platform_start() {
    support::use_built_binary();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let options = || PlatformOptions {
        ready_nodes: 1,
        ..support::small_options()
    };
    let cases = [
        (
            PlatformOptions {
                scheduler_args: vec!["--metrics-port".into(), port.clone()],
                ..options()
            },
            "scheduler cannot start: cannot listen on",
        ),
        (
            PlatformOptions {
                resource_manager_args: vec!["--metrics-port".into(), port.clone()],
                ..options()
            },
            "resource-manager cannot start: cannot listen on",
        ),
        (
            PlatformOptions {
                scheduler_args: vec!["--no-such-flag".into()],
                ..options()
            },
            "scheduler: bad flags: unexpected argument '--no-such-flag'",
        ),
    ];
    for (options, want) in cases {
        let err = match LocalPlatform::start(&options).await {
            Ok(platform) => {
                platform.stop().await.unwrap();
                panic!("started with {:?}", options.scheduler_args);
            }
            Err(e) => faas_cli::errors::one_line(&e),
        };
        assert!(err.starts_with(want), "{err}");
    }

    // The extra flags reach the components: a free metrics port is served.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_port = free.local_addr().unwrap().port();
    drop(free);
    let platform = LocalPlatform::start(&PlatformOptions {
        scheduler_args: vec!["--metrics-port".into(), metrics_port.to_string()],
        ..options()
    })
    .await
    .unwrap();
    let served = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await;
    platform.stop().await.unwrap();
    served.expect("the scheduler serves metrics on the port from scheduler_args");
}
