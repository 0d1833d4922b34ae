//! `faas schedule add|pause|resume|rm` and `faas schedules` against a real platform (the
//! `faas` binary as a subprocess): a schedule of every second fires, its firings succeed and
//! are listed with their outcome, `faas describe` shows it (text and `-o json`), and bad
//! input names its field with the exit code of its kind.

mod support;

use faas_cli::exit;
use support::{fails_with, ok};

/// `faas schedules NAME -o json`: one object per line-delimited document.
async fn listed(addr: &str, name: &str) -> Vec<serde_json::Value> {
    let out = ok(addr, &["schedules", name, "-o", "json"]).await;
    serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_fires_is_listed_and_removed_from_the_command_line() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();

    let id = ok(
        addr,
        &[
            "schedule",
            "add",
            "hello",
            "--cron",
            "*/1 * * * * *",
            "--tz",
            "Europe/Paris",
            "--event",
            r#"{"name":"cron"}"#,
            "--catch-up",
            "once",
        ],
    )
    .await
    .trim()
    .to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{id:?}"
    );

    // It fires, and the firing's call succeeds (the count of firings, not a time, is waited
    // for).
    let schedule = loop {
        let all = listed(addr, "hello").await;
        let s = all
            .into_iter()
            .find(|s| s["id"] == id.as_str())
            .expect("listed");
        let fired = s["firings"].as_array().unwrap();
        if fired.iter().any(|f| f["outcome"] == "succeeded") {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(schedule["cron"], "*/1 * * * * *");
    assert_eq!(schedule["tz"], "Europe/Paris");
    assert_eq!(schedule["catch_up"], "once");
    assert!(schedule["next_fire_ms"].as_i64().unwrap() > 0);
    let firing = schedule["firings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["outcome"] == "succeeded")
        .unwrap();
    assert!(
        !firing["request_id"].as_str().unwrap().is_empty(),
        "{firing}"
    );
    let table = ok(addr, &["schedules"]).await;
    assert!(
        table.contains(&id) && table.contains("NEXT FIRE"),
        "{table}"
    );
    let described = ok(addr, &["describe", "hello"]).await;
    assert!(
        described.contains("Schedules:") && described.contains(&id),
        "{described}"
    );
    // `-o json` carries them too, as `faas schedules -o json` prints them.
    let described: serde_json::Value =
        serde_json::from_str(&ok(addr, &["describe", "hello", "-o", "json"]).await).unwrap();
    let in_describe = &described["schedules"][0];
    assert_eq!(in_describe["id"], id.as_str(), "{described}");
    assert_eq!(in_describe["cron"], "*/1 * * * * *");
    assert!(
        in_describe["firings"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{described}"
    );

    // Paused, resumed, removed; a second rm is NOT_FOUND.
    ok(addr, &["schedule", "pause", &id]).await;
    let table = ok(addr, &["schedules", "hello"]).await;
    assert!(table.contains("paused"), "{table}");
    ok(addr, &["schedule", "resume", &id]).await;
    ok(addr, &["schedule", "rm", &id]).await;
    assert!(listed(addr, "hello").await.is_empty());
    let line = fails_with(addr, &["schedule", "rm", &id], exit::NOT_FOUND.into()).await;
    assert!(line.contains(&id), "{line}");

    // Bad input names its field.
    let add = |cron: &'static str, tz: &'static str, function: &'static str| {
        ["schedule", "add", function, "--cron", cron, "--tz", tz]
    };
    let line = fails_with(
        addr,
        &add("* * * * *", "UTC", "hello"),
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("cron: "), "{line}");
    let line = fails_with(
        addr,
        &add("* * * * * *", "Moon/Base", "hello"),
        exit::BAD_INPUT.into(),
    )
    .await;
    assert!(line.contains("tz: "), "{line}");
    let line = fails_with(
        addr,
        &add("* * * * * *", "UTC", "nosuch"),
        exit::NOT_FOUND.into(),
    )
    .await;
    assert!(line.contains("nosuch"), "{line}");
    platform.stop().await.unwrap();
}
