//! The scenario's load: the open-loop calls on `shop`, the breaker poller and the rollback,
//! each call recorded with what its reply's metadata says.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use faas_proto::admin;
use tokio::sync::watch;

use crate::client::{AdminApi, Api};

use super::record::{BreakerSample, CallRecord, RollbackRecord};
use super::setup::{event, show_weights};
use super::{ALIAS, CANARY, CanaryOptions, FAST_MS, FUNCTION, SLOW_MS};

/// The account the load calls as.
pub const ACCOUNT: &str = "canary";

/// Polls `DescribeFunction(shop)` every `every` until `stop` changes, and once more then.
async fn poll_breaker(
    mut admin: AdminApi,
    origin: Instant,
    origin_unix_ms: i64,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Vec<BreakerSample> {
    let canary = format!("{FUNCTION}:{CANARY}");
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        let at_ms = origin.elapsed().as_secs_f64() * 1e3;
        let reply = admin
            .describe_function(admin::DescribeFunctionRequest {
                name: FUNCTION.to_string(),
            })
            .await;
        match reply {
            Ok(reply) => {
                let status = reply
                    .into_inner()
                    .targets
                    .into_iter()
                    .find(|t| t.target == canary);
                samples.push(BreakerSample::new(at_ms, origin_unix_ms, status));
            }
            Err(s) => {
                tracing::warn!(status = %crate::client::describe(&s), "DescribeFunction failed")
            }
        }
        if last {
            return samples;
        }
    }
}

/// Rolls `live` back at `at` and measures it.
async fn roll_back(
    mut admin: AdminApi,
    origin: Instant,
    at: Duration,
    progress: bool,
) -> RollbackRecord {
    tokio::time::sleep_until((origin + at).into()).await;
    let sent = faas_common::clock::instant();
    let reply = admin
        .rollback_alias(admin::RollbackAliasRequest {
            function: FUNCTION.to_string(),
            alias: ALIAS.to_string(),
        })
        .await;
    let done = faas_common::clock::instant();
    let ms = |t: Instant| t.duration_since(origin).as_secs_f64() * 1e3;
    let (took_us, alias_now, error) = match reply {
        Ok(r) => {
            let r = r.into_inner();
            let now = r
                .alias
                .map(|a| show_weights(&a.targets))
                .unwrap_or_default();
            (Some(r.took_us), Some(now), None)
        }
        Err(s) => (None, None, Some(crate::client::describe(&s))),
    };
    let record = RollbackRecord {
        sent_at_ms: ms(sent),
        done_at_ms: ms(done),
        round_trip_ms: done.duration_since(sent).as_secs_f64() * 1e3,
        took_us,
        alias_now,
        error,
    };
    if progress {
        eprintln!("{}", record.line());
    }
    record
}

/// One call of the load, recorded.
async fn one_call(api: Api, start_ms: f64, slow: bool) -> CallRecord {
    let started = faas_common::clock::instant();
    let ms = if slow { SLOW_MS } else { FAST_MS };
    let result = api.invoke(ACCOUNT, FUNCTION, event(ms)).await;
    let mut record = CallRecord::unanswered(start_ms, slow);
    record.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    match result {
        Ok(out) => {
            let route = *out.route;
            record.error = None;
            record.version = route.version;
            record.target = route.target;
            if let Some(fb) = route.fallback {
                record.fallback_for = Some(fb.meant_for);
                record.fallback_reason = Some(fb.reason);
            }
            record.cold = out.cold;
        }
        Err(status) => record.error = Some(crate::load::code_name(status.code())),
    }
    record
}

/// Drives the load for `options.duration_ms`, the regression at 1/3 and the rollback at 2/3,
/// polling the canary's breaker; returns the rollback, the polls and every call by send time.
pub async fn drive(
    api: &Api,
    options: &CanaryOptions,
) -> anyhow::Result<(RollbackRecord, Vec<BreakerSample>, Vec<CallRecord>)> {
    let admin = api.admin();
    let regression_at = options.regression_at_ms();
    let rollback_at = options.rollback_at_ms();
    let origin = faas_common::clock::instant();
    let origin_unix_ms = faas_common::clock::now_ms();
    let (stop, stopped) = watch::channel(false);
    let poller = tokio::spawn(poll_breaker(
        admin.clone(),
        origin,
        origin_unix_ms,
        Duration::from_millis(options.poll_ms),
        stopped,
    ));
    let rollback = tokio::spawn(roll_back(
        admin.clone(),
        origin,
        Duration::from_millis(rollback_at),
        options.progress,
    ));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let period_ms = 1e3 / options.rate;
    let mut sent: Vec<(f64, bool, tokio::task::JoinHandle<CallRecord>)> = Vec::new();
    let mut not_sent = Vec::new();
    let mut announced = false;
    for n in 0u64.. {
        let start_ms = n as f64 * period_ms;
        if start_ms >= options.duration_ms as f64 {
            break;
        }
        tokio::time::sleep_until((origin + Duration::from_secs_f64(start_ms / 1e3)).into()).await;
        let slow = start_ms >= regression_at as f64;
        if slow && !announced {
            announced = true;
            options.say(format!(
                "{:.1} s: the canary's events are now {{\"ms\": {SLOW_MS}}}",
                start_ms / 1e3
            ));
        }
        if in_flight.load(Ordering::Acquire) >= options.max_in_flight {
            let mut record = CallRecord::unanswered(start_ms, slow);
            record.error = Some("NOT_SENT".to_string());
            not_sent.push(record);
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (api, in_flight) = (api.clone(), in_flight.clone());
        let task = tokio::spawn(async move {
            let record = one_call(api, start_ms, slow).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            record
        });
        sent.push((start_ms, slow, task));
    }

    let deadline = faas_common::clock::tokio_instant() + Duration::from_millis(options.grace_ms);
    let mut calls = not_sent;
    for (start_ms, slow, mut task) in sent {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(record)) => calls.push(record),
            Ok(Err(e)) => bail!("a call's task failed: {e}"),
            Err(_) => {
                task.abort();
                calls.push(CallRecord::unanswered(start_ms, slow));
            }
        }
    }
    let rollback = rollback.await.context("the rollback task failed")?;
    let _ = stop.send(true);
    let samples = poller.await.context("the breaker poller failed")?;
    calls.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    Ok((rollback, samples, calls))
}
