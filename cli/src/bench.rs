//! `faas replay` and `faas simulate`: the test bench's commands.
//!
//! - `faas replay` plays a workload (the `contest` scenario or a trace) live, open loop. By
//!   default it starts a fresh local platform per policy (the `baseline` first whenever a
//!   score is asked: `--score` or `--compare`), one platform at a time; with `--apiserver`
//!   (and `--resource-manager` for node-seconds) it measures an already running platform,
//!   whose policy is whatever that platform runs, and no baseline can be run beside it.
//! - `faas simulate` plays the same workloads in virtual time through the scheduler's real
//!   policy core against models of the node services and the resource manager
//!   (`faas_e2e::sim`); the baseline is always simulated too, so every policy is scored.
//!
//! Both print the report's summary table and write `--json` / `--html` when asked.
//!
//! `--faults kill-node@30s,restart-scheduler@60s` makes either a fault bench
//! (`faas_e2e::fault`): `faas replay` strikes the faults into each platform it starts
//! ([`crate::faults`]; it refuses to fault a platform it does not own, `--apiserver`), and
//! reports each fault's figures and what each platform left behind once it stopped;
//! `faas simulate` strikes node loss (`kill-node`) in virtual time.
//!
//! The flags are in `bench_args.rs` (re-exported here), the runs in this file.

use std::time::Duration;

use anyhow::{Context, bail};
use faas_e2e::RunResult;
pub use faas_e2e::fault::parse_duration_ms;
use faas_e2e::fault::{FaultKind, FaultPlan};
use faas_e2e::live::{self, LiveOptions};
use faas_e2e::report::{Report, ReportOptions};
use faas_e2e::sim;

use crate::faults::{PlatformFaults, stop_counting_leaks};
use crate::platform::{LocalPlatform, PlatformOptions};

#[path = "bench_args.rs"]
mod args;
pub use args::*;

fn report(
    runs: Vec<RunResult>,
    workload: (&str, Option<&str>, &[faas_e2e::workload::FunctionProfile]),
    policies: &PolicyArgs,
    output: &OutputArgs,
) -> anyhow::Result<Report> {
    if let Some(path) = &output.runs_json {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(file), &runs)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("raw runs: {}", path.display());
    }
    let baseline = runs
        .iter()
        .any(|r| r.policy == BASELINE)
        .then(|| BASELINE.to_string());
    let report = Report::new(
        runs,
        ReportOptions {
            baseline,
            score: policies.score_config(),
            description: Some(workload.0.to_string()),
            attribution: workload.1.map(str::to_string),
            functions: workload.2.to_vec(),
        },
    )?;
    println!("{}", report.summary());
    if let Some(path) = &output.json {
        report.write_json(path)?;
        println!("JSON report: {}", path.display());
    }
    if let Some(path) = &output.html {
        report.write_html(path)?;
        println!("HTML report: {}", path.display());
    }
    Ok(report)
}

/// `faas simulate`.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let workload = args.workload.build_compact()?;
    let options = args.sim_options();
    // Always scored: the baseline costs little in virtual time.
    let policies = args.policies.policies(true);
    eprintln!(
        "simulating {} ({} functions, {} invocations over {:.1} min) under {}",
        workload.name,
        workload.functions.len(),
        workload.invocations.len(),
        workload.duration_ms as f64 / 60_000.0,
        policies.join(", ")
    );
    let workload = std::sync::Arc::new(workload);
    let mut runs = Vec::new();
    let mut decisions = match &args.decisions {
        Some(path) => Some(crate::events::DecisionFile::create(path)?),
        None => None,
    };
    for policy in &policies {
        let (w, p, o) = (workload.clone(), policy.clone(), options.clone());
        let file = decisions.take();
        let (run, file) = tokio::task::spawn_blocking(move || match file {
            Some(mut file) => {
                let run = sim::simulate_compact_explained(&w, &p, &o, &mut |r| file.write(&p, r));
                (run, Some(file))
            }
            None => (sim::simulate_compact_named(&w, &p, &o), None),
        })
        .await
        .context("the simulation task failed")?;
        let run = run?;
        decisions = file;
        if let Some(file) = &mut decisions {
            file.check()?;
        }
        eprintln!(
            "  {policy}: {} invocations, {} events in {:.2} s ({:.0} invocations/s)",
            run.result.request_count(),
            run.events,
            run.wall.as_secs_f64(),
            run.invocations_per_second()
        );
        runs.push(run.result);
    }
    if let Some(file) = decisions {
        let (path, count) = file.finish()?;
        println!("decisions: {count} written to {}", path.display());
    }
    report(
        runs,
        (
            &workload.description,
            workload.attribution.as_deref(),
            &workload.functions,
        ),
        &args.policies,
        &args.output,
    )?;
    Ok(())
}

/// How a replay's platform is set up for its faults, and what is left to clean up.
struct FaultBench {
    /// The scheduler's metrics port (leaks are counted against its figures).
    scheduler_metrics: Option<u16>,
    /// Scratch directories of the platform (API server database, resource manager state).
    scratch: Option<std::path::PathBuf>,
    /// Give the API server a data directory (it is restarted: the deployed functions must
    /// survive).
    apiserver_data: bool,
    /// Give the resource manager a state directory (it is restarted: its nodes must be
    /// taken back).
    resource_manager_state: bool,
}

impl FaultBench {
    fn new(faults: &FaultPlan) -> FaultBench {
        let faulted = !faults.0.is_empty();
        FaultBench {
            scheduler_metrics: faulted.then(faas_e2e::observe::free_port),
            scratch: faulted.then(|| {
                std::env::temp_dir().join(format!("faas-replay-{}", uuid::Uuid::new_v4()))
            }),
            apiserver_data: faults.has(|k| k == FaultKind::RestartApiserver),
            resource_manager_state: faults.has(|k| k == FaultKind::RestartResourceManager),
        }
    }

    /// `options` as the faults need them: restartable, the scheduler's metrics on, and a
    /// data or state directory for a component that is restarted.
    fn platform_options(&self, mut options: PlatformOptions) -> PlatformOptions {
        let (Some(port), Some(scratch)) = (self.scheduler_metrics, &self.scratch) else {
            return options;
        };
        options.restartable = true;
        options
            .scheduler_args
            .extend(["--metrics-port".to_string(), port.to_string()]);
        if self.apiserver_data {
            options.data_dir = Some(scratch.join("apiserver"));
        }
        if self.resource_manager_state {
            options.resource_manager_args.extend([
                "--state-dir".to_string(),
                scratch.join("resource-manager").display().to_string(),
            ]);
        }
        options
    }

    /// Stops the platform; with faults and a run to report (`counted`), counts what it left
    /// behind first (and after); removes the scratch directories.
    async fn stop(
        self,
        platform: LocalPlatform,
        seen: std::collections::HashSet<u32>,
        counted: bool,
    ) -> (Option<faas_e2e::fault::Leaks>, anyhow::Result<()>) {
        let (leaks, stopped) = match self.scheduler_metrics.filter(|_| counted) {
            Some(port) => {
                eprintln!("counting what the platform leaves behind...");
                let (leaks, stopped) = stop_counting_leaks(platform, seen, port).await;
                (Some(leaks), stopped)
            }
            None => (None, platform.stop().await),
        };
        if let Some(dir) = &self.scratch
            && let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {e}", dir.display());
        }
        (leaks, stopped)
    }
}

/// `faas replay`.
impl ReplayArgs {
    /// The local platform a replay starts for `policy`, sized by the flags.
    pub fn platform_options(&self, policy: &str) -> PlatformOptions {
        PlatformOptions {
            policy: policy.to_string(),
            ready_nodes: self.ready_nodes,
            max_nodes: self.max_nodes,
            refill_delay_ms: self.refill_delay_ms,
            ..PlatformOptions::default()
        }
    }
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    if args.workload.scenario.as_deref() == Some(crate::canary::SCENARIO) {
        return crate::canary::replay(&args).await;
    }
    let workload = args.workload.build()?;
    if workload.invocations.is_empty() {
        bail!("the workload has no invocations: nothing to replay");
    }
    let live_options =
        |apiserver: String, resource_manager: Option<String>, policy: &str| LiveOptions {
            apiserver,
            resource_manager,
            policy: policy.to_string(),
            grace_ms: args.grace_ms,
            max_in_flight: args.max_in_flight,
            stats_interval_ms: args.stats_interval_ms,
            progress: !args.no_progress,
            asynchronous: args.asynchronous,
            ..LiveOptions::default()
        };
    eprintln!(
        "replaying {} ({} functions, {} invocations over {:.1} min)",
        workload.name,
        workload.functions.len(),
        workload.invocations.len(),
        workload.duration_ms as f64 / 60_000.0
    );
    let faults = args.faults.clone().unwrap_or_default();
    faults
        .check_within(workload.duration_ms)
        .map_err(anyhow::Error::msg)?;
    let mut runs = Vec::new();
    if let Some(apiserver) = &args.apiserver {
        if !faults.0.is_empty() {
            bail!(
                "--faults strikes only a platform this command starts and owns; drop \
                 --apiserver (or FAAS_APISERVER) to replay against a fresh local platform"
            );
        }
        if args.policies.wants_score() {
            eprintln!(
                "note: against a running platform only its own policy is measured; no baseline \
                 can be run beside it, so there is no score (--compare and --score are ignored)"
            );
        }
        if args.resource_manager.is_none() {
            eprintln!(
                "note: without --resource-manager there are no node-seconds or container lifetimes"
            );
        }
        let options = live_options(
            apiserver.clone(),
            args.resource_manager.clone(),
            &args.policies.policy,
        );
        let options = LiveOptions {
            fresh_platform: false,
            cluster_token: args.cluster.token().cloned(),
            api_key: crate::client::find_key(
                apiserver,
                args.api_key.as_deref(),
                crate::platform::data_dir_here().as_deref(),
            )?,
            ..options
        };
        let run = tokio::select! {
            r = live::run(&workload, &options) => r?,
            _ = faas_common::shutdown::os_signal() => bail!("interrupted"),
        };
        runs.push(run);
    } else {
        for policy in args.policies.policies(args.policies.wants_score()) {
            eprintln!("starting a local platform with policy {policy}...");
            let bench = FaultBench::new(&faults);
            let mut platform =
                LocalPlatform::start(&bench.platform_options(args.platform_options(&policy)))
                    .await?;
            let options = LiveOptions {
                cluster_token: platform.cluster_token.clone(),
                api_key: platform.api_key().map(str::to_string),
                ..live_options(
                    platform.apiserver.to_string(),
                    Some(platform.resource_manager.to_string()),
                    &policy,
                )
            };
            if !faults.0.is_empty() {
                eprintln!("faults: {faults}");
            }
            let mut injector = PlatformFaults::new(&mut platform);
            let outcome = tokio::select! {
                r = async {
                    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
                    live::run_with_faults(&workload, &options, &faults, &mut injector).await
                } => r.map_err(anyhow::Error::from),
                _ = faas_common::shutdown::os_signal() => Err(anyhow::anyhow!("interrupted")),
            };
            let seen = injector.finish().await;
            eprintln!("stopping the platform...");
            let (leaks, stopped) = bench.stop(platform, seen, outcome.is_ok()).await;
            let mut run = outcome?;
            stopped.context("the platform did not stop cleanly")?;
            run.leaks = leaks;
            eprintln!(
                "  {policy}: {} requests, {} errors, {} cold starts",
                run.requests.len(),
                run.errors(),
                run.cold_starts()
            );
            runs.push(run);
        }
    }
    report(
        runs,
        (
            &workload.description,
            workload.attribution.as_deref(),
            &workload.functions,
        ),
        &args.policies,
        &args.output,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "bench_tests.rs"]
mod tests;
