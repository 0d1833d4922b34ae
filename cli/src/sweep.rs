//! `faas sweep`: the keep-alive Pareto curve of a workload in the simulator.
//!
//! Runs `keepalive-<N>` for each `--windows` entry, then `--policy` and each `--compare`
//! policy, over one workload (a trace or a scenario, the flags of `faas simulate`), and
//! prints each run's cold starts and idle memory-time with whether it lies on the fixed
//! curve's frontier, and for each named policy how many fewer cold starts it has than the
//! fixed windows that use no more idle memory. `--out` writes the plot (SVG), `--json` the
//! points. The logic is `faas_e2e::pareto`; this file is the command.
//!
//! ```text
//! faas sweep --trace DIR --windows 1m,5m,10m,30m,60m --policy adaptive \
//!     --max-nodes 200 --ready-nodes 200 --out pareto.svg --json pareto.json
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use faas_e2e::pareto;

use crate::bench::SimulateArgs;

/// `faas sweep`'s flags: those of `faas simulate` (workload, nodes, latencies; `--policy`
/// and `--compare` name the policies placed on the curve's plot), the windows and the plot.
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub sim: SimulateArgs,
    /// The fixed keep-alive windows, comma-separated (90s, 10m, 2h).
    #[arg(long, default_value = "1m,5m,10m,20m,30m,60m,120m")]
    pub windows: String,
    /// Write the plot here (SVG).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The cold-start reduction each named policy should reach against the fixed windows
    /// using no more idle memory, percent (reported, not enforced).
    #[arg(long, default_value_t = 30.0)]
    pub target_pct: f64,
    /// Run nothing: read the points of an earlier `--json` and print and plot them again.
    #[arg(long)]
    pub from_json: Option<PathBuf>,
}

/// `faas sweep`.
pub async fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    if args.sim.output.html.is_some() || args.sim.output.runs_json.is_some() {
        bail!(
            "faas sweep writes --out (SVG) and --json; --html and --runs-json are faas simulate's"
        );
    }
    if let Some(path) = &args.from_json {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let sweep: pareto::Sweep = serde_json::from_str(&text)
            .with_context(|| format!("{} is not the JSON of faas sweep", path.display()))?;
        return finish(&args, &sweep);
    }
    let windows = pareto::parse_windows(&args.windows).map_err(anyhow::Error::msg)?;
    let workload = args.sim.workload.build()?;
    let options = args.sim.sim_options();
    let policies = args.sim.policies.policies(false);
    eprintln!(
        "sweeping {} ({} functions, {} invocations over {:.1} min): {} windows, then {}; {} nodes ready, {} at most, {} MiB each",
        workload.name,
        workload.functions.len(),
        workload.invocations.len(),
        workload.duration_ms as f64 / 60_000.0,
        windows.len(),
        policies.join(", "),
        options.ready_nodes,
        options.max_nodes,
        options.node_memory_bytes / faas_common::units::MIB
    );
    let sweep = tokio::task::spawn_blocking(move || {
        pareto::run(&workload, &windows, &policies, &options, |p, run| {
            eprintln!(
                "  {}: {} cold starts, {:.0} GiB·s idle ({:.1} s)",
                p.policy,
                p.cold_starts,
                p.idle_gib_s,
                run.wall.as_secs_f64()
            );
        })
    })
    .await
    .context("the sweep task failed")??;
    finish(&args, &sweep)
}

/// Prints the table and the verdicts, writes the plot and the JSON.
fn finish(args: &SweepArgs, sweep: &pareto::Sweep) -> anyhow::Result<()> {
    print!("{}", sweep.table());
    for p in &sweep.named {
        let verdict = match pareto::reduction_vs_fixed(p, &sweep.fixed) {
            Some(r) if r * 100.0 >= args.target_pct => format!(
                "{:.1}% fewer cold starts than any fixed window using no more idle memory: meets {:.0}%",
                r * 100.0,
                args.target_pct
            ),
            Some(r) => format!(
                "{:.1}% fewer cold starts than the fixed windows using no more idle memory: short of {:.0}%",
                r * 100.0,
                args.target_pct
            ),
            None => "uses less idle memory than every fixed window".to_string(),
        };
        println!("{}: {verdict}", p.policy);
    }
    if let Some(path) = &args.out {
        // The workload's first clause (its name and size); the rest is in the JSON.
        let workload = sweep.description.split(';').next().unwrap_or_default();
        let title = format!("Keep-alive: cold starts vs idle memory — {workload}");
        let title: String = title.chars().take(110).collect();
        std::fs::write(path, sweep.svg(&title))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("plot: {}", path.display());
    }
    if let Some(path) = &args.sim.output.json {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), sweep)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    fn args(extra: &[&str]) -> SweepArgs {
        let mut argv = vec!["faas-sweep"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().sweep
    }

    #[tokio::test]
    async fn a_sweep_writes_its_points_and_plot_and_replots_them() {
        let dir = std::env::temp_dir().join(format!("faas-cli-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (svg, json) = (dir.join("p.svg"), dir.join("p.json"));
        let (svg_s, json_s) = (svg.display().to_string(), json.display().to_string());
        let a = args(&[
            "--scenario",
            "contest",
            "--duration",
            "20s",
            "--windows",
            "10m,1m",
            "--policy",
            "adaptive",
            "--out",
            &svg_s,
            "--json",
            &json_s,
        ]);
        sweep(a).await.unwrap();
        let text = std::fs::read_to_string(&json).unwrap();
        let points: pareto::Sweep = serde_json::from_str(&text).unwrap();
        let fixed: Vec<&str> = points.fixed.iter().map(|p| p.policy.as_str()).collect();
        assert_eq!(fixed, ["keepalive-1m", "keepalive-10m"]);
        assert_eq!(points.named.len(), 1);
        assert_eq!(points.named[0].policy, "adaptive");
        assert!(
            std::fs::read_to_string(&svg)
                .unwrap()
                .contains(">adaptive</text>")
        );
        std::fs::remove_file(&svg).unwrap();
        sweep(args(&["--from-json", &json_s, "--out", &svg_s]))
            .await
            .unwrap();
        assert!(svg.exists(), "replotted from the JSON");
        let bad = sweep(args(&["--scenario", "contest", "--windows", "0x"])).await;
        assert!(bad.unwrap_err().to_string().contains("\"0x\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
