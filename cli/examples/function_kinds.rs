//! Cold start and warm latency of the three kinds of function, through the whole platform, in
//! one run: the built-in `hello`, the Python HTTP example (`examples/functions/python-http`)
//! and the shell `exec` example (`examples/functions/shell-exec`).
//!
//! A local platform with a data directory starts (process runtime); `faas deploy` deploys
//! `COLD` copies of each function under their own names (`hello-3`, `py-3`, `sh-3`), so each
//! copy's first call is a cold start. Then:
//!
//! - **cold**: the first call of each copy, the kinds interleaved. `acquire` is the
//!   scheduler's acquire time, which on a cold call is the container's creation: the node
//!   starts a container service and waits until it is ready (for `http`, until the user's
//!   server listens). `call` is what the client saw in all.
//! - **warm**: `WARM` rounds of sequential calls of copy 0 of each kind, interleaved, so the
//!   machine's noise falls on all three alike. `duration` is the function's time as its
//!   container service measured it; `call − duration` is the platform's own share.
//!
//! The watchdog's overhead per call at the container (the reported duration against the
//! function run without the watchdog) is measured by the container service's
//! `watchdog_bench` example.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release -p faas-cli --example function_kinds -- [COLD] [WARM]
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use faas_cli::platform::{LocalPlatform, PlatformOptions};
use faas_common::stats::percentile_or_zero as percentile;

const EVENT: &[u8] = br#"{"name":"bench"}"#;

/// The three kinds: a label, and the `[[function]]` entry of copy `i`.
fn entries(examples: &Path, i: usize) -> [(&'static str, String); 3] {
    let py = examples.join("python-http");
    let sh = examples.join("shell-exec");
    [
        (
            "hello (built-in)",
            format!(
                "[[function]]\nname = \"hello-{i}\"\nhandler = \"hello\"\nmemory_mb = 128\ntimeout_ms = 5000\n"
            ),
        ),
        (
            "python http",
            format!(
                "[[function]]\nname = \"py-{i}\"\ncommand = [\"python3\", \"main.py\"]\n\
                 code = {py:?}\nprotocol = \"http\"\nenv = {{ GREETING = \"Hello\" }}\n\
                 memory_mb = 128\ntimeout_ms = 5000\n"
            ),
        ),
        (
            "shell exec",
            format!(
                "[[function]]\nname = \"sh-{i}\"\ncommand = [\"sh\", \"main.sh\"]\n\
                 code = {sh:?}\nprotocol = \"exec\"\nmemory_mb = 64\ntimeout_ms = 5000\n"
            ),
        ),
    ]
}

fn name(kind: usize, i: usize) -> String {
    format!("{}-{i}", ["hello", "py", "sh"][kind])
}

/// The `faas` binary of this build (`target/release/faas` beside `examples/`).
fn faas_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("faas"))
        .filter(|p| p.is_file())
        .context("no faas binary beside this example: run `cargo build --release --bins` first")?;
    Ok(bin)
}

/// p50 / p99 of `samples`, as "p50 X ms p99 Y ms".
fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "p50 {:8.3} ms  p99 {:8.3} ms",
        percentile(samples, 0.5),
        percentile(samples, 0.99)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    faas_common::logging::init("warn");
    let mut args = std::env::args().skip(1);
    let cold: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let warm: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    anyhow::ensure!(cold >= 1 && warm >= 1, "COLD and WARM must be at least 1");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/functions");
    let examples = examples.canonicalize()?;

    let dir = std::env::temp_dir().join(format!("faas-kinds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let options = PlatformOptions {
        data_dir: Some(dir.join("data")),
        ready_nodes: 2,
        ..PlatformOptions::default()
    };
    let platform = LocalPlatform::start(&options).await?;
    let addr = platform.apiserver.to_string();
    let api = platform.api().await?;

    let file = dir.join("functions.toml");
    let text: String = (0..cold)
        .flat_map(|i| entries(&examples, i).map(|(_, entry)| entry + "\n"))
        .collect();
    std::fs::write(&file, text)?;
    let out = tokio::process::Command::new(faas_bin()?)
        .args(["deploy", file.to_str().context("temp path")?])
        .args(["--apiserver", &addr])
        // Its key: the one the API server made in its data directory.
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "faas deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let labels = entries(&examples, 0).map(|(label, _)| label);
    let mut cold_call: [Vec<f64>; 3] = Default::default();
    let mut cold_acquire: [Vec<f64>; 3] = Default::default();
    for i in 0..cold {
        for kind in 0..3 {
            let sent = faas_common::clock::instant();
            let out = api.invoke("bench", &name(kind, i), EVENT.to_vec()).await?;
            cold_call[kind].push(sent.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(out.cold == Some(true), "{} was not cold", name(kind, i));
            cold_acquire[kind].push(out.acquire_ms.unwrap_or(f64::NAN));
        }
    }
    let mut warm_call: [Vec<f64>; 3] = Default::default();
    let mut warm_duration: [Vec<f64>; 3] = Default::default();
    let mut warm_share: [Vec<f64>; 3] = Default::default();
    for _ in 0..warm {
        for kind in 0..3 {
            let sent = faas_common::clock::instant();
            let out = api.invoke("bench", &name(kind, 0), EVENT.to_vec()).await?;
            let call = sent.elapsed().as_secs_f64() * 1e3;
            let duration = out.duration_ns.map_or(f64::NAN, |ns| ns as f64 / 1e6);
            warm_call[kind].push(call);
            warm_duration[kind].push(duration);
            warm_share[kind].push(call - duration);
        }
    }
    platform.stop().await?;
    std::fs::remove_dir_all(&dir)?;

    println!("{cold} cold starts and {warm} warm calls per kind, interleaved, one run:");
    for kind in 0..3 {
        println!("{}", labels[kind]);
        println!(
            "  cold acquire (create until ready) {}",
            summary(&mut cold_acquire[kind])
        );
        println!(
            "  cold call                         {}",
            summary(&mut cold_call[kind])
        );
        println!(
            "  warm call                         {}",
            summary(&mut warm_call[kind])
        );
        println!(
            "  warm duration (in the container)  {}",
            summary(&mut warm_duration[kind])
        );
        println!(
            "  warm call − duration              {}",
            summary(&mut warm_share[kind])
        );
    }
    Ok(())
}
