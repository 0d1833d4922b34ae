//! The scenario's setup through the admin API: `shop`'s two versions, the alias `live`, the
//! routes (fallback and breaker), and the warm-up calls.

use std::time::Duration;

use anyhow::bail;
use faas_proto::admin::{self, AliasWeight};

use crate::client::{AdminApi, Api};

use super::drive::ACCOUNT;
use super::record::Warmup;
use super::{ALIAS, CANARY, CANARY_WEIGHT, FAST_MS, FUNCTION, STABLE};

const MIB: i64 = faas_common::units::MIB as i64;
const WARMUP_ATTEMPTS: u32 = 5;

/// `{"ms": MS}`.
pub fn event(ms: u64) -> Vec<u8> {
    format!(r#"{{"ms": {ms}}}"#).into_bytes()
}

fn version_spec(handler: &str, description: &str) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: FUNCTION.to_string(),
        handler: handler.to_string(),
        memory_in_bytes: 128 * MIB,
        timeout_in_ms: 5_000,
        description: description.to_string(),
        // A built-in handler: no command, image or code.
        ..admin::FunctionSpec::default()
    }
}

fn weights(pairs: &[(i64, u32)]) -> Vec<AliasWeight> {
    pairs
        .iter()
        .map(|&(version, weight)| AliasWeight { version, weight })
        .collect()
}

/// `1=90,2=10`.
pub fn show_weights(w: &[AliasWeight]) -> String {
    let parts: Vec<String> = w
        .iter()
        .map(|w| format!("{}={}", w.version, w.weight))
        .collect();
    parts.join(",")
}

/// The route policy of the scenario: default `shop:live`, fallback `shop:1` on error and
/// timeout, the latency breaker.
pub fn routes() -> admin::RoutePolicy {
    admin::RoutePolicy {
        default_target: format!("{FUNCTION}:{ALIAS}"),
        rules: Vec::new(),
        fallback: Some(admin::Fallback {
            target: format!("{FUNCTION}:{STABLE}"),
            on_not_found: false,
            on_error: true,
            on_timeout: true,
            share_percent: 0.0,
        }),
        breaker: Some(admin::Breaker {
            latency_baseline_ms: 50,
            margin_ms: 100,
            max_error_percent: 0.0,
            window_ms: 5_000,
            min_calls: 5,
            cooldown_ms: 5_000,
            probe_calls: 2,
        }),
    }
}

pub fn admin_error(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| anyhow::anyhow!("{what}: {}", crate::client::describe(&s))
}

/// Deploys `shop`, publishes its two versions and points `live` at `1=100`, then `1=90,2=10`.
pub async fn publish(admin: &mut AdminApi) -> anyhow::Result<()> {
    admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(version_spec("echo", "canary scenario: the stable code")),
        })
        .await
        .map_err(admin_error("deploy shop"))?;
    for (version, handler, description) in [
        (STABLE, "echo", "canary scenario: the stable code"),
        (CANARY, "sleep", "canary scenario: the canary"),
    ] {
        admin
            .publish_version(admin::PublishVersionRequest {
                name: FUNCTION.to_string(),
                spec: Some(version_spec(handler, description)),
                version,
            })
            .await
            .map_err(admin_error("publish a version of shop"))?;
    }
    for targets in [
        weights(&[(STABLE, 100)]),
        weights(&[(STABLE, 100 - CANARY_WEIGHT), (CANARY, CANARY_WEIGHT)]),
    ] {
        admin
            .set_alias(admin::SetAliasRequest {
                function: FUNCTION.to_string(),
                alias: ALIAS.to_string(),
                targets,
            })
            .await
            .map_err(admin_error("set alias shop:live"))?;
    }
    Ok(())
}

/// Calls each version directly `calls` times (retrying a failure while the node pool starts).
pub async fn warm_up(api: &Api, calls: u32) -> anyhow::Result<Warmup> {
    let mut warmup = Warmup::default();
    for version in [STABLE, CANARY] {
        let target = format!("{FUNCTION}:{version}");
        for _ in 0..calls {
            let mut attempt = 0;
            loop {
                attempt += 1;
                warmup.calls += 1;
                match api.invoke(ACCOUNT, &target, event(FAST_MS)).await {
                    Ok(out) => {
                        warmup.cold_starts += usize::from(out.cold == Some(true));
                        break;
                    }
                    Err(status) if attempt < WARMUP_ATTEMPTS => {
                        warmup.errors += 1;
                        let status = crate::client::describe(&status);
                        tracing::warn!(%target, %status, "a warm-up call failed; again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(status) => {
                        bail!("warming {target} up: {}", crate::client::describe(&status))
                    }
                }
            }
        }
    }
    Ok(warmup)
}

/// The route policy as the report's JSON.
pub fn routes_json() -> serde_json::Value {
    let r = routes();
    let (f, b) = (
        r.fallback.unwrap_or_default(),
        r.breaker.unwrap_or_default(),
    );
    serde_json::json!({
        "default_target": r.default_target,
        "fallback": {"target": f.target, "on_error": f.on_error, "on_timeout": f.on_timeout},
        "breaker": {
            "latency_baseline_ms": b.latency_baseline_ms, "margin_ms": b.margin_ms,
            "window_ms": b.window_ms, "min_calls": b.min_calls,
            "cooldown_ms": b.cooldown_ms, "probe_calls": b.probe_calls,
        },
    })
}
