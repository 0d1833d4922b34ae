//! The policy `docs/WRITING_A_POLICY.md` writes from an empty file
//! (`scheduler/src/policies/size_aware.rs`), measured: this example runs the contest scenario
//! in virtual time under `baseline` (the reference of the score), `keepalive-10m` and
//! `size-aware`, with the simulator `faas simulate` uses, and prints the contest's score
//! (lower is better):
//!
//! ```text
//! cargo run --release -p faas-scheduler --example size_aware            # 20 minutes
//! cargo run --release -p faas-scheduler --example size_aware -- 5       # 5 minutes
//! ```

use faas_e2e::scenario::{self, ScenarioOptions};
use faas_e2e::score::{ScoreConfig, score};
use faas_e2e::sim::{SimOptions, simulate};
use faas_scheduler::core::{Policy, PolicyOptions};
use faas_scheduler::policies::policy_by_name;
use faas_scheduler::policies::size_aware::SizeAware;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minutes: u64 = match std::env::args().nth(1) {
        Some(m) => m
            .parse()
            .map_err(|_| format!("minutes must be a number, got {m:?}"))?,
        None => 20,
    };
    let workload = scenario::contest(&ScenarioOptions {
        duration_ms: minutes * 60_000,
        ..ScenarioOptions::full()
    })?;
    let options = SimOptions::default();
    let policy_options = PolicyOptions {
        expected_node_bytes: options.node_memory_bytes,
        ..PolicyOptions::default()
    };
    let policies: Vec<Box<dyn Policy>> = vec![
        policy_by_name("baseline", &policy_options)?,
        policy_by_name("keepalive-10m", &policy_options)?,
        // Built directly (not by name): a policy of your own runs here before it is
        // registered.
        Box::new(SizeAware::policy(policy_options.clone())),
    ];
    println!(
        "contest scenario, {minutes} min, {} calls of {} functions (virtual time)",
        workload.invocations.len(),
        workload.functions.len()
    );
    println!(
        "{:<14} {:>8} {:>8} {:>7} {:>12}",
        "policy", "score", "cold", "errors", "node-seconds"
    );
    let mut reference = None;
    for policy in policies {
        let run = simulate(&workload, policy, &options)?.result;
        let totals = run.totals();
        let reference = reference.get_or_insert_with(|| totals.clone());
        let value = score(&totals, reference, &ScoreConfig::default())?.value;
        println!(
            "{:<14} {:>8.4} {:>8} {:>7} {:>12.1}",
            run.policy,
            value,
            run.cold_starts(),
            run.errors(),
            run.node_seconds()
        );
    }
    Ok(())
}
