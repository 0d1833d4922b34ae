//! The dashboard's routes on the real gateway (fake scheduler and nodes): the page and its
//! assets need no key and come from the binary, the data needs the admin scope (as
//! `/metrics` and `faas.admin.v1.Admin`), and a state says what it could not read instead of
//! failing. The page itself is tested in a real browser by `cli/tests/dashboard.rs`.

#![allow(dead_code, unused_imports)]

include!("support/fakes.rs");

#[path = "support/http.rs"]
mod http;

#[path = "support/keys.rs"]
mod keys;

use http::get;
use keys::{ADMIN_KEY, INVOKE_KEY};

#[tokio::test]
async fn the_page_is_open_and_its_data_needs_the_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(Setup {
        http: true,
        config: Config {
            keys_file: Some(keys::admin_and_invoke(dir.path())),
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    let addr = p.http.clone().unwrap();
    for (path, kind, needle) in [
        ("/ui", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/ui/events"),
        ("/ui/app.css", "text/css", ".node"),
    ] {
        let reply = get(&addr, path, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(
            reply.must("content-type").starts_with(kind),
            "{path}: {reply:?}"
        );
        assert!(reply.text().contains(needle), "{path}");
        assert!(
            !reply.text().contains("https://"),
            "{path}: nothing is loaded from elsewhere"
        );
    }
    let invoke_key = format!("Bearer {INVOKE_KEY}");
    let admin_key = format!("Bearer {ADMIN_KEY}");
    for path in ["/ui/events", "/ui/state"] {
        let reply = get(&addr, path, &[]).await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
        assert_eq!(reply.must("www-authenticate"), "Bearer");
        let reply = get(&addr, path, &[("authorization", &invoke_key)]).await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        assert!(reply.error_message().contains("admin"), "{reply:?}");
    }
    let reply = get(&addr, "/ui/state", &[("authorization", &admin_key)]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let state = reply.json();
    assert!(
        state["deployed"].as_array().is_some_and(|d| !d.is_empty()),
        "{state}"
    );
    assert!(state["nodes"].is_array(), "{state}");
    assert_eq!(state["problems"], serde_json::json!([]), "{state}");
    // A call shows in the figures read from this server's metrics (their names are read in
    // one place, `ui::figures::names`: a rename that forgets it fails here).
    let call = http::post(
        &addr,
        "/function/hello",
        &[("authorization", &invoke_key)],
        b"",
    )
    .await;
    assert_eq!(call.status, 200, "{call:?}");
    let state = get(&addr, "/ui/state", &[("authorization", &admin_key)])
        .await
        .json();
    let hello = state["functions"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == "hello"))
        .unwrap_or_else(|| panic!("no hello in {state}"));
    assert_eq!(hello["calls"], 1.0, "{state}");
    assert_eq!(hello["cold_starts"], 1.0, "{state}");
    assert!(hello["latency_ms"].as_f64().unwrap() > 0.0, "{state}");
    assert_eq!(state["targets"][0]["target"], "hello", "{state}");
}
