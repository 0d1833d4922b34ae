//! `faas replay --scenario canary` on the real local platform (node services and containers as
//! child processes), short and slow: the behaviour of the service layer, not its speed.
//!
//! Before the regression the weighted alias sends calls to both versions; the canary's latency
//! regression opens its breaker and the fallback serves its share; after the rollback every
//! call is served by version 1, which was warm, so none of them starts a container.
//!
//! Margins for a loaded 2-core machine and a debug build: 20 calls/s put about 2 calls a
//! second on the canary (10 in its 5 s breaker window, twice the 5 it needs to judge); each
//! phase lasts 8 s; nothing is asserted on latency or wall-clock speed.

mod support;

use std::time::Duration;

use faas_cli::canary::{self, CANARY, CanaryOptions, STABLE};

/// The longest the test body may run (a hang fails the test instead of blocking the suite).
const TEST_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_canary_regression_opens_the_breaker_and_the_rollback_serves_only_warm_version_1() {
    let (platform, _api) = support::start(support::small_options()).await;
    let options = CanaryOptions {
        duration_ms: 24_000,
        rate: 20.0,
        bucket_ms: 4_000,
        progress: false,
        ..CanaryOptions::default()
    };
    let apiserver = platform.apiserver.to_string();
    let outcome = tokio::time::timeout(
        TEST_LIMIT,
        canary::run(&apiserver, platform.api_key(), &options),
    )
    .await;
    platform.stop().await.expect("the platform stops");
    let report = outcome
        .expect("the scenario ends within the test's limit")
        .expect("the scenario runs");
    let table = report.table();
    println!("{table}");

    let p = &report.phases;
    assert!(
        p.before_regression.v1 > 0 && p.before_regression.v2 > 0,
        "before the regression both versions serve calls:\n{table}"
    );
    let regression_at = report.regression_at_ms as f64;
    assert!(
        report.breaker.opened_after(regression_at),
        "the canary's breaker opens after the regression:\n{table}\n{:#?}",
        report.breaker.samples
    );
    assert!(
        report.totals.fallback > 0 && report.fallback_by_reason.contains_key("breaker_open"),
        "the fallback serves calls meant for the canary while its breaker is open:\n{table}"
    );

    let rollback = &report.rollback;
    assert_eq!(rollback.error, None, "the rollback succeeds:\n{table}");
    assert_eq!(
        rollback.alias_now.as_deref(),
        Some(format!("{STABLE}=100").as_str()),
        "the rollback goes back to what the alias pointed to before"
    );
    assert!(rollback.took_us.is_some_and(|t| t >= 0));
    let after: Vec<_> = report
        .calls
        .iter()
        .filter(|c| c.start_ms >= rollback.done_at_ms)
        .collect();
    assert!(after.len() > 20, "calls after the rollback:\n{table}");
    for c in &after {
        if c.ok() {
            assert!(
                c.served_by(STABLE) && !c.served_by(CANARY) && !c.by_fallback(),
                "after the rollback version 1 serves every call directly: {c:?}\n{table}"
            );
        }
    }
    assert!(
        after.iter().filter(|c| c.ok()).count() * 10 >= after.len() * 9,
        "nearly every call after the rollback succeeds:\n{table}"
    );
    // Version 1 was warm: the calls right after the rollback find its containers. (Later a
    // loaded machine may overlap calls enough for the policy to add a container: a cold
    // start of scale-up, not of the rollback, so only the first calls are checked.)
    let first: Vec<_> = after.iter().take(5).collect();
    assert!(
        first.iter().all(|c| !c.is_cold()),
        "version 1 was warm: the first calls after the rollback were not cold starts: {first:?}\n{table}"
    );
}
