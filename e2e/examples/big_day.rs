//! The simulator's throughput on the big day (issue 17): one policy, nothing else in the
//! process, so `/usr/bin/time -v` measures that policy's CPU time and peak RSS alone.
//!
//! ```text
//! cargo build --release -p faas-e2e --example big_day
//! /usr/bin/time -v target/release/examples/big_day POLICY [TRACE_DIR]
//! ```
//!
//! The day is what `faas simulate --trace TRACE_DIR --copies 6 --duration-scale 0.05
//! --memory-scale 0.1 --node-memory-mib 8192 --max-nodes 200 --ready-nodes 100
//! --stats-interval-ms 10000 --policy POLICY` plays (9,718,326 calls on the 200-function
//! sample); `TRACE_DIR` defaults to `../shared/traces/azure2019-sampled-200fn`. It prints
//! the calls, the loop's wall time and invocations per wall second, and the run's summary
//! figures (the same for the same policy on every build: decisions do not depend on speed).
//! The table and how it was measured: `docs/EXPERIMENTS.md`, "The simulator on the big day".

use faas_e2e::sim::{SimOptions, simulate_compact_named};
use faas_e2e::trace::{Trace, TraceOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let policy = args.next().unwrap_or_else(|| "baseline".to_string());
    let dir = args
        .next()
        .unwrap_or_else(|| "../shared/traces/azure2019-sampled-200fn".to_string());
    let trace = match Trace::open(std::path::Path::new(&dir))? {
        Trace::Azure2019(t) => Trace::Azure2019(t.copies(6)),
        _ => return Err(format!("{dir}: not a 2019 (per-minute) trace").into()),
    };
    let workload = trace.to_compact(&TraceOptions {
        duration_scale: 0.05,
        memory_scale: 0.1,
        ..TraceOptions::default()
    })?;
    let options = SimOptions {
        node_memory_bytes: 8192 * faas_common::units::MIB,
        max_nodes: 200,
        ready_nodes: 100,
        stats_interval_ms: 10_000,
        ..SimOptions::default()
    };
    let run = simulate_compact_named(&workload, &policy, &options)?;
    let r = &run.result;
    println!(
        "{policy}: {} calls, {} events in {:.2} s wall ({:.0} invocations/s)",
        r.request_count(),
        run.events,
        run.wall.as_secs_f64(),
        run.invocations_per_second()
    );
    println!(
        "{policy}: cold starts {}, errors {}, node-seconds {:.3}, idle memory-time {:.0} MB·s",
        r.cold_starts(),
        r.errors(),
        r.node_seconds(),
        r.idle_memory_mb_seconds().unwrap_or(f64::NAN)
    );
    Ok(())
}
