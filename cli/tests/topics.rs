//! `faas subscribe`, `faas emit`, `faas topics`, `faas unsubscribe` and `faas chain` against a
//! real platform (the `faas` binary as a subprocess, real node and function processes): an
//! emit reaches each subscriber whose filter matches, as an asynchronous call whose result
//! `faas result` fetches; bad input exits with the code of its kind, naming the field.

mod support;

use faas_cli::exit;
use support::{fails_with, ok};

/// The `FUNCTION INVOCATION_ID` lines of `faas emit`, sorted by function.
fn deliveries(out: &str) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let f = parts.next().unwrap_or_default().to_string();
            (f, parts.next().unwrap_or_default().to_string())
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emit_reaches_the_subscribers_whose_filter_matches() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    let out = ok(
        addr,
        &["subscribe", "hello", "greet", "--filter", "kind=person"],
    )
    .await;
    assert!(
        out.contains("hello subscribed to greet: events with kind=person"),
        "{out}"
    );
    ok(addr, &["subscribe", "echo", "greet"]).await;

    let out = ok(
        addr,
        &[
            "emit",
            "greet",
            "--event",
            r#"{"kind":"robot","name":"r2"}"#,
        ],
    )
    .await;
    let got = deliveries(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(got[0].0, "echo");
    let body = ok(addr, &["result", &got[0].1, "--wait", "60"]).await;
    assert!(body.contains("r2"), "echo returns the event: {body}");

    let out = ok(
        addr,
        &[
            "emit",
            "greet",
            "--event",
            r#"{"kind":"person","name":"Ada"}"#,
        ],
    )
    .await;
    let got = deliveries(&out);
    assert_eq!(
        got.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        ["echo", "hello"],
        "{out}"
    );
    let body = ok(addr, &["result", &got[1].1, "--wait", "60"]).await;
    assert!(body.contains("Hello, Ada!"), "{body}");

    let listed = ok(addr, &["topics"]).await;
    assert!(listed.contains("kind=person"), "{listed}");
    assert_eq!(
        listed.lines().count(),
        3,
        "a header and two subscriptions: {listed}"
    );

    // Nobody listens: OK, nothing printed.
    assert_eq!(ok(addr, &["emit", "quiet", "--event", "{}"]).await, "");

    // Bad input, each naming its field.
    let line = fails_with(
        addr,
        &["subscribe", "ghost", "greet"],
        exit::NOT_FOUND.into(),
    )
    .await;
    assert!(
        line.contains("function: function ghost is not deployed"),
        "{line}"
    );
    let line = fails_with(
        addr,
        &["subscribe", "hello", "greet", "--filter", "kind"],
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("filter[0]"), "{line}");
    let line = fails_with(
        addr,
        &["emit", "a/b", "--event", "{}"],
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("topic: "), "{line}");

    // Chains: a target must exist, a cycle is refused and named.
    let out = ok(addr, &["chain", "hello", "--on-success", "echo"]).await;
    assert!(
        out.contains("hello: on success -> echo, on failure -> -"),
        "{out}"
    );
    let line = fails_with(
        addr,
        &["chain", "echo", "--on-failure", "hello"],
        exit::OTHER.into(),
    )
    .await;
    assert!(line.contains("echo -> hello -> echo"), "{line}");
    let line = fails_with(
        addr,
        &["chain", "hello", "--on-failure", "ghost"],
        exit::NOT_FOUND.into(),
    )
    .await;
    assert!(line.contains("on_failure"), "{line}");
    let out = ok(addr, &["chain", "hello"]).await;
    assert!(out.contains("on success -> echo"), "{out}");
    let described = ok(addr, &["describe", "hello"]).await;
    assert!(
        described.contains("subscribed to greet as hello: kind=person"),
        "{described}"
    );
    assert!(
        described.contains("chain: on success -> echo, on failure -> -"),
        "{described}"
    );

    ok(addr, &["unsubscribe", "hello", "greet"]).await;
    fails_with(
        addr,
        &["unsubscribe", "hello", "greet"],
        exit::NOT_FOUND.into(),
    )
    .await;
    platform.stop().await.unwrap();
}

/// Two functions of a deploy file, `first` declared before `second`, with `first`'s
/// `[function.chain]` table as `chain` (none: no table) and `second`'s as `second_chain`.
fn chained_file(dir: &std::path::Path, chain: Option<&str>, second_chain: Option<&str>) -> String {
    let table = |t: Option<&str>| t.map_or(String::new(), |t| format!("[function.chain]\n{t}\n"));
    let text = format!(
        "[[function]]\nname = \"first\"\nhandler = \"echo\"\nmemory_mb = 128\ntimeout_ms = 5000\n{}\
         [[function]]\nname = \"second\"\nhandler = \"hello\"\nmemory_mb = 128\ntimeout_ms = 5000\n{}",
        table(chain),
        table(second_chain),
    );
    let path = dir.join("chained.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_file_sets_a_chain_once_clears_it_and_refuses_a_cycle() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    let dir = tempfile::tempdir().unwrap();

    // A chain may name a function declared after it: chains are applied last.
    let file = chained_file(dir.path(), Some("on_success = \"second\""), None);
    let out = ok(addr, &["deploy", &file]).await;
    assert!(
        out.contains("first: chain set (on success -> second, on failure -> -; was on success -> -, on failure -> -)"),
        "{out}"
    );
    let out = ok(addr, &["chain", "first"]).await;
    assert!(
        out.contains("first: on success -> second, on failure -> -"),
        "{out}"
    );
    // Applied again: nothing changes.
    let out = ok(addr, &["deploy", &file]).await;
    assert!(
        out.contains("first: chain unchanged (on success -> second, on failure -> -)"),
        "{out}"
    );
    // No table: the chain is left as it is.
    let file = chained_file(dir.path(), None, None);
    let out = ok(addr, &["deploy", &file]).await;
    assert!(!out.contains("chain"), "{out}");
    let out = ok(addr, &["chain", "first"]).await;
    assert!(out.contains("on success -> second"), "{out}");

    // A cycle through the file is refused, named, and changes nothing.
    let file = chained_file(
        dir.path(),
        Some("on_success = \"second\""),
        Some("on_failure = \"first\""),
    );
    let line = fails_with(addr, &["deploy", &file], exit::OTHER.into()).await;
    assert!(line.contains("second -> first -> second"), "{line}");
    let out = ok(addr, &["chain", "second"]).await;
    assert!(
        out.contains("second: on success -> -, on failure -> -"),
        "{out}"
    );

    // An empty table clears the chain.
    let file = chained_file(dir.path(), Some(""), None);
    let out = ok(addr, &["deploy", &file]).await;
    assert!(
        out.contains("first: chain set (on success -> -, on failure -> -; was on success -> second, on failure -> -)"),
        "{out}"
    );
    platform.stop().await.unwrap();
}
