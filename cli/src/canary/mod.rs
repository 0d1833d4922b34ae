//! `faas replay --scenario canary`: a canary release on the service layer (versions, a
//! weighted alias, fallback, a latency breaker and a fast rollback), played live.
//!
//! [`replay`] starts a local platform as `faas replay` does; [`run`] then sets it up through
//! the admin API (`faas.admin.v1.Admin`):
//!
//! - function `shop`: version 1 = `echo` (the stable code), version 2 = `sleep` (the canary);
//! - alias `live`: first `1=100`, then `1=90,2=10`, so what `RollbackAlias` brings it back to
//!   ("what it pointed to before its last change") is `1=100`;
//! - both versions warmed with a few direct calls (`shop:1`, `shop:2`) before any route
//!   exists, so the breaker's first window holds no cold start;
//! - routes: default `shop:live`; fallback `shop:1` on error and timeout; a latency breaker
//!   (baseline 50 ms + margin 100 ms: open above a p99 of 150 ms over a 5 s window of at least
//!   5 calls; 5 s cooldown, then 2 probes).
//!
//! An open-loop load calls `shop` at `--rate` with `{"ms": 5}`. From 1/3 of the run the
//! events are `{"ms": 400}`: only the canary (`sleep`) feels it, the latency regression of
//! its code path, so its breaker should open and its share go to the fallback. At 2/3 the
//! alias is rolled back; the server's time (`took_us`) and the client's round trip are
//! measured. Version 1 was warm all along, so no call after the rollback should start a
//! container.
//!
//! Every call is recorded with what its reply's metadata says (`x-faas-version`,
//! `x-faas-fallback`, `x-faas-cold-start`), and `DescribeFunction` is polled every second for
//! the canary target's (`shop:2`) breaker. The report is a table per time bucket and the
//! totals around the regression and the rollback; `--json` writes it all, calls included.
//!
//! - `setup`: the function, its versions, the alias, the routes, the warm-up.
//! - `drive`: the open-loop load, the breaker poller and the rollback.
//! - [`record`]: what is recorded (calls, polls, the rollback) and the counts of a set of calls.
//! - [`report`]: buckets, phases, the breaker's transitions, the table and the JSON.

mod drive;
pub mod record;
pub mod report;
mod setup;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use faas_proto::admin;

use crate::bench::ReplayArgs;
use crate::platform::LocalPlatform;
use report::CanaryReport;
use setup::{admin_error, publish, routes, warm_up};

/// The scenario's name (`faas replay --scenario canary`).
pub const SCENARIO: &str = "canary";
/// The function released.
pub const FUNCTION: &str = "shop";
/// The alias the load goes through.
pub const ALIAS: &str = "live";
/// The stable version (`echo`) and the canary (`sleep`).
pub const STABLE: i64 = 1;
pub const CANARY: i64 = 2;
/// The canary's share of the alias, percent.
pub const CANARY_WEIGHT: u32 = 10;
/// The events' `ms` before and from the regression.
pub const FAST_MS: u64 = 5;
pub const SLOW_MS: u64 = 400;
/// The run's length when `--duration` is not given, ms.
pub const DEFAULT_DURATION_MS: u64 = 90_000;

/// `faas replay --scenario canary`'s own flags.
#[derive(Args, Clone, Debug)]
pub struct CanaryArgs {
    /// Scenario canary: calls per second on `shop` (open loop); its --duration defaults to
    /// 90s.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
}

/// How a canary run goes.
#[derive(Clone, Debug)]
pub struct CanaryOptions {
    /// Length of the load, ms; the regression comes at 1/3, the rollback at 2/3.
    pub duration_ms: u64,
    /// Calls per second.
    pub rate: f64,
    /// Width of a report row, ms.
    pub bucket_ms: u64,
    /// How often `DescribeFunction` is polled, ms.
    pub poll_ms: u64,
    /// Direct calls to each version before the load.
    pub warmup_calls: u32,
    /// Calls outstanding at most (beyond: recorded as `NOT_SENT`).
    pub max_in_flight: usize,
    /// How long to wait for outstanding replies after the last send, ms.
    pub grace_ms: u64,
    /// A line on stderr at each step.
    pub progress: bool,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        CanaryOptions {
            duration_ms: DEFAULT_DURATION_MS,
            rate: 40.0,
            bucket_ms: 5_000,
            poll_ms: 1_000,
            warmup_calls: 3,
            max_in_flight: 2_000,
            grace_ms: 30_000,
            progress: true,
        }
    }
}

impl CanaryOptions {
    /// When the events turn slow, ms after the load began.
    pub fn regression_at_ms(&self) -> u64 {
        self.duration_ms / 3
    }

    /// When the alias is rolled back, ms after the load began.
    pub fn rollback_at_ms(&self) -> u64 {
        self.duration_ms * 2 / 3
    }

    /// A line on stderr, with `progress`.
    fn say(&self, line: String) {
        if self.progress {
            eprintln!("{line}");
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 10_000.0) {
            bail!(
                "--rate must be above 0 and at most 10000 calls/s, not {}",
                self.rate
            );
        }
        if self.duration_ms < 3_000 {
            bail!(
                "the canary scenario needs at least 3 s (--duration): a third each before the \
                 regression, during it and after the rollback"
            );
        }
        if self.bucket_ms == 0 || self.poll_ms == 0 {
            bail!("the report's bucket and the poll interval must be above 0 ms");
        }
        Ok(())
    }
}

/// `faas replay --scenario canary`: starts a local platform, runs the scenario on it, stops
/// it, prints the table and writes `--json`.
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let refuse = |flag: &str, why: &str| -> anyhow::Result<()> {
        bail!("--scenario canary does not take {flag}: {why}")
    };
    if args.apiserver.is_some() {
        refuse(
            "--apiserver (or FAAS_APISERVER)",
            "it deploys `shop`, moves its alias and rolls it back, so it runs on a fresh local \
             platform of its own",
        )?;
    }
    if args.faults.is_some() {
        refuse("--faults", "its fault is the canary's latency regression")?;
    }
    if args.policies.score || !args.policies.compare.is_empty() {
        refuse(
            "--score or --compare",
            "it measures one platform, with --policy",
        )?;
    }
    if args.output.html.is_some() || args.output.runs_json.is_some() {
        refuse(
            "--html or --runs-json",
            "its report is the table and --json",
        )?;
    }
    let options = CanaryOptions {
        duration_ms: args.workload.duration.unwrap_or(DEFAULT_DURATION_MS),
        rate: args.canary.rate,
        max_in_flight: args.max_in_flight,
        grace_ms: args.grace_ms.min(60_000),
        progress: !args.no_progress,
        ..CanaryOptions::default()
    };
    options.check()?;
    let policy = &args.policies.policy;
    eprintln!("starting a local platform with policy {policy}...");
    let platform = LocalPlatform::start(&args.platform_options(policy)).await?;
    let apiserver = platform.apiserver.to_string();
    let outcome = tokio::select! {
        r = async {
            tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
            run(&apiserver, platform.api_key(), &options).await
        } => r,
        _ = faas_common::shutdown::os_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    eprintln!("stopping the platform...");
    let stopped = platform.stop().await;
    let report = outcome?;
    stopped.context("the platform did not stop cleanly")?;
    println!("{}", report.table());
    if let Some(path) = &args.output.json {
        report.write_json(path)?;
        println!("JSON report: {}", path.display());
    }
    Ok(())
}

/// Runs the scenario against the API server at `apiserver` (a platform that serves the
/// built-in handlers; `shop` is deployed, or replaced, there) and returns its report.
pub async fn run(
    apiserver: &str,
    key: Option<&str>,
    options: &CanaryOptions,
) -> anyhow::Result<CanaryReport> {
    options.check()?;
    let api = crate::client::connect_with_key(apiserver, key)
        .await
        .with_context(|| format!("cannot connect to the API server at {apiserver}"))?;
    let mut admin = api.admin();
    publish(&mut admin).await?;
    options.say(
        "shop: version 1 echo, version 2 sleep; alias live 1=100, then 1=90,2=10; warming up..."
            .into(),
    );
    let warmup = warm_up(&api, options.warmup_calls).await?;
    admin
        .set_routes(admin::SetRoutesRequest {
            function: FUNCTION.to_string(),
            routes: Some(routes()),
        })
        .await
        .map_err(admin_error("set the routes of shop"))?;
    let regression_at = options.regression_at_ms();
    let rollback_at = options.rollback_at_ms();
    options.say(format!(
        "load: {} calls/s on shop for {:.0} s; the canary slows down at {:.1} s, the alias is \
         rolled back at {:.1} s",
        options.rate,
        options.duration_ms as f64 / 1e3,
        regression_at as f64 / 1e3,
        rollback_at as f64 / 1e3
    ));

    let (rollback, samples, calls) = drive::drive(&api, options).await?;
    Ok(CanaryReport::new(options, warmup, rollback, samples, calls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Replay {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn replay_args(argv: &[&str]) -> ReplayArgs {
        let argv = ["x", "--scenario", SCENARIO].iter().chain(argv);
        Replay::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn the_rate_is_a_replay_flag_and_the_phases_split_the_run_in_thirds() {
        assert_eq!(replay_args(&[]).canary.rate, 40.0);
        assert_eq!(replay_args(&["--rate", "12.5"]).canary.rate, 12.5);
        let o = CanaryOptions {
            duration_ms: 90_000,
            ..CanaryOptions::default()
        };
        assert_eq!((o.regression_at_ms(), o.rollback_at_ms()), (30_000, 60_000));
        assert!(o.check().is_ok());
        for bad in [
            CanaryOptions {
                rate: 0.0,
                ..o.clone()
            },
            CanaryOptions {
                duration_ms: 2_000,
                ..o.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn replay_refuses_what_the_scenario_does_not_take_before_starting_anything() {
        for (argv, flag) in [
            (&["--apiserver", "127.0.0.1:1"][..], "--apiserver"),
            (&["--html", "x.html"][..], "--html"),
            (&["--compare", "baseline"][..], "--compare"),
            (&["--faults", "kill-node@5s"][..], "--faults"),
            (&["--rate=0"][..], "--rate"),
        ] {
            let e = replay(&replay_args(argv)).await.unwrap_err().to_string();
            assert!(e.contains(flag), "{argv:?}: {e}");
        }
    }
}
