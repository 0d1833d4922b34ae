//! The `faas` binary as a person uses it: invoke prints the body, and fails with the
//! server's message.

mod support;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoke_prints_the_body_and_fails_with_the_servers_message() {
    let (platform, _api) = support::start(support::small_options()).await;
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

    let list = run(&["functions"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    for name in ["hello", "echo", "sleep", "cpu", "memory", "spin"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing in {stdout}"
        );
    }

    platform.stop().await.unwrap();
}
