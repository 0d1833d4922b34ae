//! The `faas` command as a script uses it, against a real platform (the `faas` binary as a
//! subprocess): every exit code tells its kind of failure apart, `-o json` parses back,
//! `faas nodes` and `faas ps` show the container a call started, completion scripts name
//! the subcommands, and an API server that is not there is one plain line.

mod support;

use faas_cli::exit;
use faas_proto::admin::{DeployFunctionRequest, FunctionSpec};
use support::{faas, faas_alone, fails_with, ok, one_error_line};

/// A function of `handler` with a memory limit of `memory_mb` and a timeout of `timeout_ms`.
fn spec(name: &str, handler: &str, memory_mb: i64, timeout_ms: i64) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_in_bytes: memory_mb << 20,
        timeout_in_ms: timeout_ms,
        ..FunctionSpec::default()
    }
}

/// A command function (POSIX sh, `exec`) that writes to stderr and exits 3.
const FAILING: &str = r#"
[[function]]
name = "sh-fail"
command = ["sh", "main.sh"]
code = "fail"
protocol = "exec"
memory_mb = 64
timeout_ms = 5000
"#;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_failure_has_its_exit_code() {
    let data = tempfile::tempdir().unwrap();
    let options = faas_cli::platform::PlatformOptions {
        data_dir: Some(data.path().join("data")),
        ..support::small_options()
    };
    let (platform, api) = support::start(options).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    for f in [
        spec("nap", "sleep", 128, 300),
        spec("small", "memory", 64, 5000),
    ] {
        api.admin()
            .deploy_function(DeployFunctionRequest { function: Some(f) })
            .await
            .unwrap();
    }
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("fail")).unwrap();
    std::fs::write(
        project.path().join("fail/main.sh"),
        "cat >/dev/null\necho 'no such order' >&2\nexit 3\n",
    )
    .unwrap();
    let file = project.path().join("functions.toml");
    std::fs::write(&file, FAILING).unwrap();
    ok(addr, &["deploy", file.to_str().unwrap()]).await;

    // Success.
    let out = ok(addr, &["invoke", "hello", "--event", r#"{"name":"x"}"#]).await;
    assert!(out.contains("Hello, x!"), "{out}");

    // 2: usage (clap), before anything runs.
    let out = faas(addr, &["functions", "--no-such-flag"]).await;
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)), "{out:?}");

    // 3: not found.
    let line = fails_with(addr, &["invoke", "nope"], exit::NOT_FOUND.into()).await;
    assert!(line.contains("NotFound") && line.contains("nope"), "{line}");
    fails_with(addr, &["describe", "nope"], exit::NOT_FOUND.into()).await;

    // 4: bad input: the server refuses it, or the command does before sending.
    let line = fails_with(
        addr,
        &["alias", "set", "hello", "live", "1=90,2=20"],
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("InvalidArgument"), "{line}");
    let line = fails_with(
        addr,
        &["invoke", "hello", "--route-id", "vïp"],
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("--route-id"), "{line}");

    // 6: the function failed: its own error, and past its memory.
    let line = fails_with(addr, &["invoke", "sh-fail"], exit::FUNCTION_ERROR.into()).await;
    assert!(line.contains("no such order"), "{line}");
    let line = fails_with(
        addr,
        &["invoke", "small", "--event", r#"{"mb":200,"ms":1}"#],
        exit::FUNCTION_ERROR.into(),
    )
    .await;
    assert!(line.contains("ran out of memory"), "{line}");

    // 7: timeout.
    let line = fails_with(
        addr,
        &["invoke", "nap", "--event", r#"{"ms":5000}"#],
        exit::TIMEOUT.into(),
    )
    .await;
    assert!(line.contains("DeadlineExceeded"), "{line}");

    // 8: a wrong key (the flag wins over the right key in the environment).
    let line = fails_with(
        addr,
        &["functions", "--api-key", "not-the-key"],
        exit::AUTH.into(),
    )
    .await;
    assert!(line.contains("Unauthenticated"), "{line}");

    platform.stop().await.unwrap();

    // 5: nothing listens (the platform is gone).
    let line = fails_with(addr, &["functions"], exit::UNAVAILABLE.into()).await;
    assert!(
        line.starts_with("error: cannot reach the API server at"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_print_json_and_nodes_and_ps_show_the_container_a_call_started() {
    let (platform, api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    let out = api
        .invoke("acct", "hello", br#"{"name":"ps"}"#.to_vec())
        .await
        .unwrap();
    let container = out.container_id.expect("the reply names its container");
    let node = out.node_id.expect("the reply names its node");

    // functions: an array, both spellings.
    for flag in [&["-o", "json"][..], &["--json"][..]] {
        let mut args = vec!["functions"];
        args.extend_from_slice(flag);
        let list = json(&ok(addr, &args).await);
        let hello = list
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "hello")
            .unwrap_or_else(|| panic!("no hello in {list}"));
        assert_eq!(hello["handler"], "hello");
        assert_eq!(hello["memory_mb"], 128);
    }
    // describe: an object.
    let described = json(&ok(addr, &["describe", "hello", "-o", "json"]).await);
    assert_eq!(described["name"], "hello");
    assert!(described["versions"].is_array(), "{described}");
    // versions and aliases: arrays (empty here).
    assert_eq!(
        json(&ok(addr, &["versions", "hello", "-o", "json"]).await),
        serde_json::json!([])
    );
    assert_eq!(
        json(&ok(addr, &["alias", "list", "hello", "-o", "json"]).await),
        serde_json::json!([])
    );

    // nodes: the node that served the call, with its container.
    let nodes = json(&ok(addr, &["nodes", "-o", "json"]).await);
    let nodes = nodes.as_array().unwrap();
    assert!(!nodes.is_empty());
    let served = nodes
        .iter()
        .find(|n| n["node_id"] == node.as_str())
        .unwrap_or_else(|| panic!("no node {node} in {nodes:?}"));
    assert_eq!(served["state"], "ready", "{served}");
    assert!(served["containers"].as_u64().unwrap() >= 1, "{served}");
    assert!(
        served["memory_total_bytes"].as_i64().unwrap() > 0,
        "{served}"
    );
    assert!(
        served["memory_committed_bytes"].as_i64().unwrap() >= 128 << 20,
        "{served}"
    );
    let table = ok(addr, &["nodes"]).await;
    let line = table
        .lines()
        .find(|l| l.starts_with(node.as_str()))
        .unwrap_or_else(|| panic!("no {node} in {table}"));
    assert!(line.contains("ready"), "{line}");

    // ps: the container, whole and filtered by function.
    for args in [
        &["ps", "-o", "json"][..],
        &["ps", "hello", "-o", "json"][..],
    ] {
        let list = json(&ok(addr, args).await);
        let c = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["container_id"] == container.as_str())
            .unwrap_or_else(|| panic!("{args:?}: no container {container} in {list}"));
        assert_eq!(c["function"], "hello");
        assert_eq!(c["node_id"], node.as_str());
        assert_eq!(c["memory_limit_bytes"], 128 << 20);
        assert_eq!(c["in_flight"], 0);
    }
    let others = json(&ok(addr, &["ps", "echo", "-o", "json"]).await);
    assert!(
        others
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["function"] == "echo"),
        "{others}"
    );
    let table = ok(addr, &["ps", "hello"]).await;
    assert!(table.starts_with("function"), "{table}");
    let short: String = container.chars().take(8).collect();
    let line = table
        .lines()
        .find(|l| l.contains(&short))
        .unwrap_or_else(|| panic!("no {short} in {table}"));
    assert!(
        line.starts_with("hello") && line.contains("running"),
        "{line}"
    );
    platform.stop().await.unwrap();
}

#[tokio::test]
async fn completion_scripts_name_the_subcommands() {
    let out = faas_alone(&["completion", "bash"]).await;
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8(out.stdout).unwrap();
    for command in [
        "invoke",
        "functions",
        "nodes",
        "ps",
        "result",
        "logs",
        "completion",
    ] {
        assert!(script.contains(command), "bash completion misses {command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faas.bash");
    std::fs::write(&path, &script).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(checked.status.success(), "bash -n: {checked:?}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = faas_alone(&["completion", shell]).await;
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("nodes"),
            "{shell}"
        );
    }
    let out = faas_alone(&["completion", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(i32::from(exit::USAGE)), "{out:?}");
    // The table of exit codes is in the help.
    let help = faas_alone(&["--help"]).await;
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("Exit codes:") && help.contains("8  auth"),
        "{help}"
    );
}

#[tokio::test]
async fn an_api_server_that_is_not_there_is_one_plain_line() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let want = format!(
        "error: cannot reach the API server at {addr}: connection refused (is `faas up` \
         running? --apiserver or FAAS_APISERVER names another)"
    );
    let commands: [&[&str]; 6] = [
        &["functions"],
        &["invoke", "hello"],
        &["nodes", "-o", "json"],
        &["ps"],
        &["result", "some-id"],
        &["logs", "hello"],
    ];
    for args in commands {
        let mut all = args.to_vec();
        all.extend(["--apiserver", addr.as_str()]);
        let out = faas_alone(&all).await;
        assert_eq!(
            out.status.code(),
            Some(i32::from(exit::UNAVAILABLE)),
            "{args:?}: {out:?}"
        );
        assert_eq!(one_error_line(&out), want, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    // A bad address is the user's input.
    let out = faas_alone(&["functions", "--apiserver", "exa mple:1"]).await;
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::BAD_INPUT)),
        "{out:?}"
    );
    one_error_line(&out);
}
