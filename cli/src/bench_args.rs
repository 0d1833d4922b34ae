//! The flags of `faas replay` and `faas simulate`: the workload (scenario or trace), the
//! policies, the outputs, and how each becomes the options of `faas_e2e`. Parsing only: the
//! runs are in [`super`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use faas_e2e::fault::{FaultPlan, parse_duration_ms, parse_faults};
use faas_e2e::scenario::{self, ScenarioOptions};
use faas_e2e::score::ScoreConfig;
use faas_e2e::sim::SimOptions;
use faas_e2e::trace::{Body, Iat, Selection, Trace, TraceOptions};
use faas_e2e::workload::{CompactWorkload, Percentiles, Workload};

/// The policy every score is relative to.
pub(crate) const BASELINE: &str = "baseline";

/// Parses a latency distribution, ms: `15` (fixed), `8-60` (uniform) or
/// `0:8,0.5:15,0.95:35,1:60` (percentile points).
pub fn parse_distribution(text: &str) -> Result<Percentiles, String> {
    let t = text.trim();
    let num = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number in {text:?}"))
    };
    let p = if t.contains(':') {
        let points = t
            .split(',')
            .map(|pair| {
                let (q, v) = pair
                    .split_once(':')
                    .ok_or_else(|| format!("{pair:?} is not QUANTILE:VALUE"))?;
                Ok((num(q)?, num(v)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Percentiles::new(points)
    } else if let Some((lo, hi)) = t.split_once('-') {
        Percentiles::uniform(num(lo)?, num(hi)?)
    } else {
        let v = num(t)?;
        Percentiles::new([(0.5, v)])
    };
    p.map_err(|e| e.to_string())
}

fn policy_list(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for n in &names {
        if !faas_scheduler::policies::is_policy_name(n) {
            return Err(format!(
                "unknown policy {n:?}; known: {}",
                faas_scheduler::policies::known_policies().join(", ")
            ));
        }
    }
    Ok(names)
}

/// One known policy name (a clap value parser: `faas up`, `demo`, `replay`, `simulate`);
/// the error lists the known ones.
pub fn policy_name(text: &str) -> Result<String, String> {
    let mut v = policy_list(text)?;
    match v.len() {
        1 => Ok(v.remove(0)),
        _ => Err(format!("give one policy name, not {text:?}")),
    }
}

/// How minute counts become arrival times (`--iat`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum IatArg {
    Exponential,
    Uniform,
    Equidistant,
}

/// What a replayed function's body does (`--body`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BodyArg {
    Spin,
    Sleep,
}

/// Which load to play: a built-in scenario or a trace, and how to scale it.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// A built-in scenario: `contest` (the default when no --trace is given), or `canary`
    /// (replay only: a canary release with a latency regression, breaker and rollback).
    #[arg(long, conflicts_with = "trace")]
    pub scenario: Option<String>,
    /// A trace: an Azure 2019 directory (N_inv/N_run/N_mem.csv) or a 2021 CSV file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Length of the run (2m, 90s, 1500ms, 1h); scenario default 2m, trace default: its window.
    #[arg(long, value_parser = parse_duration_ms)]
    pub duration: Option<u64>,
    /// Seed of every random draw (workload and simulator).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenario: multiplies the gaps between bursts.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Scenario: multiplies the burst sizes (default 0.5: the 2-core fit).
    #[arg(long, default_value_t = 0.5)]
    pub size_scale: f64,
    /// Multiplies the functions' durations (scenario default 0.1; trace default 1).
    #[arg(long)]
    pub duration_scale: Option<f64>,
    /// Multiplies the memory a call touches (scenario default 0.25; trace default 1).
    #[arg(long)]
    pub memory_scale: Option<f64>,
    /// Scenario: a quiet time before the first call, ms.
    #[arg(long, default_value_t = 0)]
    pub lead_in_ms: u64,
    /// Trace: the N functions with the most calls in the window.
    #[arg(long, conflicts_with_all = ["sample", "functions"])]
    pub top: Option<usize>,
    /// Trace: N functions picked at random (from the seed).
    #[arg(long, conflicts_with = "functions")]
    pub sample: Option<usize>,
    /// Trace: these functions (hashes or replay names t-...), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub functions: Option<Vec<String>>,
    /// Trace: the first minute replayed (0-based).
    #[arg(long, default_value_t = 0)]
    pub start_minute: u64,
    /// Trace: how many minutes to replay (default: to the end, or what --duration covers).
    #[arg(long)]
    pub minutes: Option<u64>,
    /// Trace: how long one trace minute lasts in the replay, ms (6000 plays 10x faster).
    #[arg(long, default_value_t = 60_000)]
    pub minute_ms: u64,
    /// Trace: scales the number of calls.
    #[arg(long, default_value_t = 1.0)]
    pub invocation_scale: f64,
    /// Trace: how the calls of a minute are spread over it.
    #[arg(long, value_enum, default_value = "exponential")]
    pub iat: IatArg,
    /// Trace: what the replayed bodies do.
    #[arg(long, value_enum, default_value = "spin")]
    pub body: BodyArg,
    /// Trace (Azure 2019): play N copies of its functions, copy k's minutes rotated by
    /// k x minutes / N and its hashes suffixed -c{k} (6 copies of the 200-function sample: a
    /// day of about 9.7 million calls).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub copies: u32,
}

impl WorkloadArgs {
    /// Builds the workload the flags describe.
    pub fn build(&self) -> anyhow::Result<Workload> {
        match &self.trace {
            Some(path) => self.trace_workload(path),
            None => {
                let name = self.scenario.as_deref().unwrap_or("contest");
                let defaults = ScenarioOptions::default();
                let o = ScenarioOptions {
                    duration_ms: self.duration.unwrap_or(defaults.duration_ms),
                    time_scale: self.time_scale,
                    size_scale: self.size_scale,
                    duration_scale: self.duration_scale.unwrap_or(defaults.duration_scale),
                    memory_scale: self.memory_scale.unwrap_or(defaults.memory_scale),
                    lead_in_ms: self.lead_in_ms,
                    seed: self.seed,
                    ..defaults
                };
                Ok(scenario::build(name, &o)?)
            }
        }
    }

    /// The workload compactly, as the simulator plays it: a 2019 trace is drawn straight into
    /// compact calls (a big day never exists as full invocations).
    pub fn build_compact(&self) -> anyhow::Result<CompactWorkload> {
        match &self.trace {
            Some(path) => {
                let (trace, o) = self.trace_and_options(path)?;
                let mut w = trace.to_compact(&o)?;
                if let Some(d) = self.duration {
                    w.truncate(d);
                }
                Ok(w)
            }
            None => Ok((&self.build()?).into()),
        }
    }

    fn trace_workload(&self, path: &std::path::Path) -> anyhow::Result<Workload> {
        let (trace, o) = self.trace_and_options(path)?;
        let mut w = trace.to_workload(&o)?;
        if let Some(d) = self.duration {
            truncate(&mut w, d);
        }
        Ok(w)
    }

    fn trace_and_options(&self, path: &std::path::Path) -> anyhow::Result<(Trace, TraceOptions)> {
        let trace = match Trace::open(path)? {
            Trace::Azure2019(t) if self.copies > 1 => {
                Trace::Azure2019(t.copies(self.copies as usize))
            }
            Trace::Azure2021(_) if self.copies > 1 => {
                anyhow::bail!("--copies needs a 2019 (per-minute) trace")
            }
            t => t,
        };
        let selection = if let Some(n) = self.top {
            Selection::Top(n)
        } else if let Some(n) = self.sample {
            Selection::Sample(n)
        } else if let Some(v) = &self.functions {
            Selection::Functions(v.clone())
        } else {
            Selection::All
        };
        let defaults = TraceOptions::default();
        let minutes = self.minutes.or_else(|| {
            self.duration
                .map(|d| d.div_ceil(self.minute_ms.max(1)).max(1))
        });
        let o = TraceOptions {
            selection,
            start_minute: self.start_minute,
            minutes,
            minute_ms: self.minute_ms,
            iat: match self.iat {
                IatArg::Exponential => Iat::Exponential,
                IatArg::Uniform => Iat::Uniform,
                IatArg::Equidistant => Iat::Equidistant,
            },
            invocation_scale: self.invocation_scale,
            duration_scale: self.duration_scale.unwrap_or(defaults.duration_scale),
            memory_scale: self.memory_scale.unwrap_or(defaults.memory_scale),
            body: match self.body {
                BodyArg::Spin => Body::Spin,
                BodyArg::Sleep => Body::Sleep,
            },
            seed: self.seed,
            ..defaults
        };
        Ok((trace, o))
    }
}

/// Cuts a workload to its first `duration_ms`.
pub fn truncate(w: &mut Workload, duration_ms: u64) {
    w.invocations.retain(|i| i.at_ms < duration_ms);
    w.duration_ms = duration_ms;
    w.description
        .push_str(&format!("; cut to the first {duration_ms} ms"));
}

/// Which policies to run and how to score them.
#[derive(Args, Clone, Debug)]
pub struct PolicyArgs {
    /// The scheduling policy measured.
    #[arg(long, default_value = faas_scheduler::policies::DEFAULT_POLICY, value_parser = policy_name)]
    pub policy: String,
    /// More policies to compare, comma-separated (implies --score).
    #[arg(long, value_delimiter = ',', value_parser = policy_name)]
    pub compare: Vec<String>,
    /// Score against the baseline (which is then run too).
    #[arg(long)]
    pub score: bool,
    /// Weight of the response-time term of the score.
    #[arg(long, default_value_t = 0.5)]
    pub w1: f64,
    /// Weight of the node-time term of the score.
    #[arg(long, default_value_t = 0.5)]
    pub w2: f64,
}

impl PolicyArgs {
    /// The policies to run, in order: the baseline first when scoring, then --policy, then
    /// --compare, each once.
    pub fn policies(&self, scoring: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if scoring {
            out.push(BASELINE.to_string());
        }
        out.push(self.policy.clone());
        out.extend(self.compare.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }

    pub(crate) fn wants_score(&self) -> bool {
        self.score || !self.compare.is_empty()
    }

    pub(crate) fn score_config(&self) -> ScoreConfig {
        ScoreConfig {
            w1: self.w1,
            w2: self.w2,
            ..ScoreConfig::default()
        }
    }
}

/// Where to write the report.
#[derive(Args, Clone, Debug)]
pub struct OutputArgs {
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as one HTML page with plots here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Write every run's raw records (requests, nodes, container lifetimes) as JSON here.
    #[arg(long)]
    pub runs_json: Option<PathBuf>,
}

/// `faas replay`: play a workload live.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Measure this running platform's API server instead of starting one (its own policy).
    #[arg(long, env = "FAAS_APISERVER")]
    pub apiserver: Option<String>,
    /// The running platform's resource manager (node-seconds and container lifetimes).
    #[arg(long, requires = "apiserver")]
    pub resource_manager: Option<String>,
    /// The running platform's API key (`authorization: Bearer KEY`); unset: for an API
    /// server on this machine, the admin key `faas up` wrote to DATA_DIR/keys. A contest
    /// API server (`--allow-anonymous-invoke`) needs none for the invocations, and an admin
    /// key only to deploy the workload's functions.
    #[arg(long, env = "FAAS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The running platform's cluster token, for its resource manager and nodes.
    #[command(flatten)]
    pub cluster: faas_common::token::TokenArgs,
    /// Started platforms: nodes ready at start.
    #[arg(long, default_value_t = 10)]
    pub ready_nodes: u32,
    /// Started platforms: nodes at most.
    #[arg(long, default_value_t = 20)]
    pub max_nodes: u32,
    /// Started platforms: delay before the node pool refills, ms.
    #[arg(long, default_value_t = 10_000)]
    pub refill_delay_ms: u64,
    /// Started platforms: time given to the node pool to start before the load begins, ms.
    #[arg(long, default_value_t = 3_000)]
    pub settle_ms: u64,
    /// How long to wait for outstanding replies after the last send, ms.
    #[arg(long, default_value_t = 90_000)]
    pub grace_ms: u64,
    /// Requests outstanding at most (beyond: recorded as client errors, not sent).
    #[arg(long, default_value_t = 2_000)]
    pub max_in_flight: usize,
    /// How often node services are polled for their containers, ms (0: never).
    #[arg(long, default_value_t = 500)]
    pub stats_interval_ms: u64,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Send every call through the durable queue (`InvokeAsync`, then `GetInvocation` until
    /// it finishes) and report its end-to-end delay, submit to result, beside the call's
    /// latency (which is then its last attempt's, on the server's clock).
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Faults to strike into each started platform, comma-separated FAULT@TIME (time from
    /// the first send): kill-node, kill-containers:N, pause-node:DURATION,
    /// restart-scheduler, restart-resource-manager, restart-apiserver; e.g.
    /// kill-node@30s,restart-scheduler@60s. Not with --apiserver.
    #[arg(long, value_parser = parse_faults, value_name = "SPEC")]
    pub faults: Option<FaultPlan>,
    #[command(flatten)]
    pub canary: crate::canary::CanaryArgs,
}

/// `faas simulate`: play a workload in virtual time.
#[derive(Args, Clone, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Nodes ready at start.
    #[arg(long, default_value_t = 10)]
    pub ready_nodes: usize,
    /// Nodes at most.
    #[arg(long, default_value_t = 20)]
    pub max_nodes: usize,
    /// Delay of a refill after a reserve (and of a released slot's reuse), ms.
    #[arg(long, default_value_t = 10_000)]
    pub refill_delay_ms: u64,
    /// Memory each node offers, MiB.
    #[arg(long, default_value_t = faas_common::units::CONTEST_NODE_MIB)]
    pub node_memory_mib: u64,
    /// Container start latency, ms: `15`, `8-60` or `0:8,0.5:15,0.95:35,1:60`
    /// (default: fitted to the local process runtime).
    #[arg(long, value_parser = parse_distribution)]
    pub container_start_ms: Option<Percentiles>,
    /// Time a refilled node takes to become ready, ms.
    #[arg(long)]
    pub node_start_ms: Option<f64>,
    /// Added to every scheduling latency (API server to scheduler and back), ms.
    #[arg(long)]
    pub acquire_overhead_ms: Option<f64>,
    /// Between a grant and the return, beyond the body (invoke path), ms.
    #[arg(long)]
    pub invoke_overhead_ms: Option<f64>,
    /// How often the nodes' usage (`GetStats`) reaches the policy, ms; 0: never.
    #[arg(long, default_value_t = 1000)]
    pub stats_interval_ms: u64,
    /// Node losses to strike, comma-separated kill-node@TIME (the simulated node holding
    /// the most containers stops answering), e.g. kill-node@30s,kill-node@90s.
    #[arg(long, value_parser = parse_faults, value_name = "SPEC")]
    pub faults: Option<FaultPlan>,
    /// Write every decision of each policy, with its reason, to FILE as JSON lines
    /// (`{"policy","seq","at_ms","kind","function","node","container","request","reason"}`;
    /// `at_ms` is the run's virtual time).
    #[arg(long, value_name = "FILE")]
    pub decisions: Option<std::path::PathBuf>,
}

impl SimulateArgs {
    /// The simulator's options from the flags.
    pub fn sim_options(&self) -> SimOptions {
        let d = SimOptions::default();
        SimOptions {
            seed: self.workload.seed,
            ready_nodes: self.ready_nodes,
            max_nodes: self.max_nodes,
            refill_delay_ms: self.refill_delay_ms,
            node_memory_bytes: self.node_memory_mib * faas_common::units::MIB,
            node_start_ms: self.node_start_ms.unwrap_or(d.node_start_ms),
            container_start_ms: self
                .container_start_ms
                .clone()
                .unwrap_or(d.container_start_ms.clone()),
            acquire_overhead_ms: self.acquire_overhead_ms.unwrap_or(d.acquire_overhead_ms),
            invoke_overhead_ms: self.invoke_overhead_ms.unwrap_or(d.invoke_overhead_ms),
            stats_interval_ms: self.stats_interval_ms,
            faults: self.faults.clone().unwrap_or_default(),
            // Raw records only when they are written out: a big day's would not fit.
            keep_records: self.output.runs_json.is_some(),
            ..d
        }
    }
}
