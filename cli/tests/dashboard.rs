//! The live dashboard in a real browser: headless Chromium (Debian's `chromium`) loads
//! `/ui` from a running platform (with a data directory, so keys are required and the page
//! gets the admin key from its address's fragment), a function is invoked, and the page's
//! DOM must show the new container (on its node), the call (the function's row counts it)
//! and the scheduler's cold-start decision with its reason, within a bounded wait. Skips
//! with its reason when no chromium is installed, unless `FAAS_REQUIRE_BROWSER` is set.
//!
//! `FAAS_DASHBOARD_SCREENSHOT=FILE` also writes a PNG of the page at the end.

mod support;

#[path = "support/browser.rs"]
mod browser;

use std::time::Duration;

use faas_cli::platform::PlatformOptions;

/// How long the page has to show what happened.
const SHOW_WITHIN: Duration = Duration::from_secs(30);

/// Polls `expression` in `page` until it is `true`; panics with `what` and the page's text
/// when it is not within [`SHOW_WITHIN`].
async fn until(b: &mut browser::Browser, page: &browser::Page, expression: &str, what: &str) {
    let started = faas_common::clock::instant();
    loop {
        if b.eval(page, expression).await == Ok(serde_json::Value::Bool(true)) {
            return;
        }
        if started.elapsed() > SHOW_WITHIN {
            let text = b
                .eval(page, "document.body.innerText.slice(0, 3000)")
                .await
                .unwrap_or_default();
            panic!(
                "the dashboard did not show {what} within {} s; the page reads:\n{}",
                SHOW_WITHIN.as_secs(),
                text.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_new_container_and_the_call_in_a_real_browser() {
    let Some(chromium) =
        browser::find_or_skip("the_dashboard_shows_a_new_container_and_the_call_in_a_real_browser")
    else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let http_port = faas_e2e::observe::free_port();
    let (platform, api) = support::start(PlatformOptions {
        data_dir: Some(data.path().to_path_buf()),
        http_port,
        ..support::small_options()
    })
    .await;
    let key = platform
        .api_key()
        .expect("a platform with a data dir needs keys");

    let mut b = browser::Browser::start(&chromium).await;
    // Without the key the page says what it needs.
    let keyless = b.open(&format!("http://127.0.0.1:{http_port}/ui")).await;
    until(
        &mut b,
        &keyless,
        "!document.getElementById('keyform').hidden && /key/.test(document.getElementById('status').textContent)",
        "that it needs the admin key",
    )
    .await;

    let page = b
        .open(&format!("http://127.0.0.1:{http_port}/ui#key={key}"))
        .await;
    until(
        &mut b,
        &page,
        "document.getElementById('status').textContent === 'live' && document.getElementById('keyform').hidden",
        "that it is live",
    )
    .await;
    assert_eq!(
        b.eval(&page, "location.hash").await,
        Ok(serde_json::Value::from("")),
        "the key leaves the address bar once read"
    );

    let outcome = api
        .invoke("dashboard-test", "hello", br#"{"name":"browser"}"#.to_vec())
        .await
        .expect("hello answers");
    let container = outcome.container_id.expect("the reply names its container");
    let node = outcome.node_id.expect("the reply names its node");

    until(
        &mut b,
        &page,
        &format!(
            "!!document.querySelector('[data-node-id=\"{node}\"] [data-container-id=\"{container}\"][data-function=\"hello\"]')"
        ),
        &format!("container {container} of hello inside node {node}"),
    )
    .await;
    until(
        &mut b,
        &page,
        "Number((document.querySelector('#functions tr[data-function=\"hello\"]') || {dataset: {}}).dataset.calls) >= 1",
        "the call in hello's row",
    )
    .await;
    until(
        &mut b,
        &page,
        "[...document.querySelectorAll('#decisions li[data-kind=\"grant-cold\"][data-function=\"hello\"]')].some(li => /cold start/.test(li.textContent))",
        "the cold start decision with its reason",
    )
    .await;
    until(
        &mut b,
        &page,
        "[...document.querySelectorAll('#colds li[data-function=\"hello\"]')].length >= 1",
        "the cold start in the cold-start feed",
    )
    .await;

    if let Some(path) = std::env::var_os("FAAS_DASHBOARD_SCREENSHOT") {
        std::fs::write(&path, b.screenshot(&page).await).unwrap();
    }
    drop(b);
    platform.stop().await.expect("the platform stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faas_events_prints_the_decisions_with_their_reasons_and_follows_them() {
    let (platform, api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    // Followed from before the call: the follower sees it happen.
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_faas"))
        .args([
            "events",
            "--follow",
            "--function",
            "hello",
            "--apiserver",
            &addr,
        ])
        .env_remove("FAAS_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Give the follower a moment to connect; a line it misses is still in the ring, and
    // the check below waits for it either way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.invoke("events-test", "hello", b"{}".to_vec())
        .await
        .expect("hello answers");

    let seen = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(SHOW_WITHIN) {
            let done = line.contains("grant-cold");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("grant-cold") && l.contains("hello") && l.contains("cold start")),
        "faas events --follow printed: {seen:#?}"
    );
    assert!(
        seen.iter().all(|l| l.contains("hello")),
        "--function hello printed others: {seen:#?}"
    );

    let text = support::ok(&addr, &["events"]).await;
    assert!(
        text.lines()
            .any(|l| l.contains("create") && l.contains("hello") && l.contains("created on node-")),
        "{text}"
    );
    let json = support::ok(&addr, &["events", "--json", "-n", "0"]).await;
    let kinds: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .map(|v| v["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "grant-cold"), "{json}");
    platform.stop().await.expect("the platform stops cleanly");
}
