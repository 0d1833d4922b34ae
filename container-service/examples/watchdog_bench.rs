//! Measures command functions against the built-in `hello`, in one run, on the real binary:
//!
//! - **cold start**: spawning `container-service` until its readiness line (for `http`, the
//!   user's process is started and listening by then);
//! - **warm calls**: sequential Invokes over one gRPC connection, client-observed, and the
//!   duration the container service reports (what it measured around the function);
//! - **the watchdog's overhead per call**: the reported duration minus the function's own
//!   time measured without the watchdog (`http`: the same POST sent straight to the
//!   function's port over a kept-alive connection; `exec`: the same command run by this
//!   program, event on stdin, until it exits); and what one memory sample of the function's
//!   process tree costs (the end of each `http` call reads it).
//!
//! ```sh
//! cargo build --release -p faas-container-service
//! cargo run --release -p faas-container-service --example watchdog_bench -- [COLD_RUNS] [WARM_CALLS]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use faas_common::launch::{Child, Launcher};
use faas_common::units::MIB;
use faas_container_service::watchdog::sys::{RealSys, Sys};
use faas_proto::container::InvokeRequest;
use faas_proto::container::container_service_client::ContainerServiceClient;

const EVENT: &[u8] = br#"{"name":"bench"}"#;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/functions")
}

/// The nearest-rank percentile `q` of sorted `ms`, NaN when there is none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    faas_common::stats::percentile(sorted, q).unwrap_or(f64::NAN)
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:8.3} ms  p99 {:8.3} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    )
}

fn p50(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.5)
}

/// What one container runs.
struct Function {
    label: &'static str,
    args: Vec<String>,
}

fn functions() -> Vec<Function> {
    let bundle = |name: &str| {
        vec![
            "--bundle".to_string(),
            examples().join(name).display().to_string(),
        ]
    };
    vec![
        Function {
            label: "hello (built-in)",
            args: vec!["--handler".into(), "hello".into()],
        },
        Function {
            label: "python-http",
            args: bundle("python-http"),
        },
        Function {
            label: "shell-exec",
            args: bundle("shell-exec"),
        },
    ]
}

async fn start(launcher: &Launcher, f: &Function) -> anyhow::Result<(Child, String, Duration)> {
    let mut cmd = launcher.command();
    cmd.args(["--port", "0", "--function-name", "bench"])
        .args(&f.args)
        .env("RUST_LOG", "warn");
    let started = faas_common::clock::instant();
    let (child, addr) = Child::spawn_ready(cmd, Duration::from_secs(30)).await?;
    Ok((child, addr.to_string(), started.elapsed()))
}

/// The processes under `pid` (the function's).
fn children(pid: u32) -> Vec<u32> {
    RealSys.tree(pid).into_iter().skip(1).collect()
}

/// The `PORT` of the http function started by container service `pid`.
fn function_port(pid: u32) -> Option<u16> {
    let child = *children(pid).first()?;
    let environ = std::fs::read(format!("/proc/{child}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"PORT="))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

/// The python-http example started by hand (no watchdog), until its port accepts a
/// connection (polled every millisecond).
fn python_cold_start() -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let t = faas_common::clock::instant();
    let mut child = std::process::Command::new("python3")
        .arg("main.py")
        .current_dir(examples().join("python-http"))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()?;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "python never listened"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t.elapsed().as_secs_f64() * 1e3;
    child.kill()?;
    child.wait()?;
    Ok(took)
}

/// One POST over a kept-alive HTTP/1.1 connection; returns the body length.
fn post(stream: &mut BufReader<TcpStream>, body: &[u8]) -> anyhow::Result<usize> {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let out = stream.get_mut();
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse()?;
        }
    }
    let mut buf = vec![0; length];
    stream.read_exact(&mut buf)?;
    Ok(length)
}

/// The function's own time per call, without the watchdog.
fn direct(label: &str, pid: u32, calls: usize) -> anyhow::Result<Option<Vec<f64>>> {
    match label {
        "python-http" => {
            let server = *children(pid).first().unwrap_or(&0);
            let micros = |f: &dyn Fn()| {
                let t = faas_common::clock::instant();
                for _ in 0..1000 {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / 1000.0
            };
            let walk = micros(&|| {
                std::hint::black_box(RealSys.tree_memory(server));
            });
            let tree = RealSys.tree(server);
            let read = micros(&|| {
                std::hint::black_box(RealSys.memory(&tree));
            });
            println!(
                "  {:18} memory of the server's tree: {walk:.1} µs walked and read (background \
                 samples), {read:.1} µs read (the end of each call)",
                ""
            );
            let port = function_port(pid).ok_or_else(|| anyhow::anyhow!("no function port"))?;
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_nodelay(true)?;
            let mut stream = BufReader::new(stream);
            for _ in 0..10 {
                post(&mut stream, EVENT)?;
            }
            let mut ms = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = faas_common::clock::instant();
                post(&mut stream, EVENT)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(Some(ms))
        }
        "shell-exec" => {
            let dir = examples().join("shell-exec");
            let mut ms = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = faas_common::clock::instant();
                let mut child = std::process::Command::new("sh")
                    .arg("main.sh")
                    .current_dir(&dir)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()?;
                child.stdin.take().unwrap().write_all(EVENT)?;
                child.wait_with_output()?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(Some(ms))
        }
        _ => Ok(None),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let cold_runs: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let calls: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let launcher = Launcher::find("container-service")?;
    println!("binary: {}", launcher.program().display());
    println!("cold start: spawn until the readiness line, {cold_runs} runs each");
    for f in functions() {
        let mut ms = Vec::new();
        for _ in 0..cold_runs {
            let (mut child, _, took) = start(&launcher, &f).await?;
            ms.push(took.as_secs_f64() * 1e3);
            child.stop(Duration::from_secs(5)).await;
        }
        println!("  {:18} {}", f.label, summary(ms));
    }
    let mut ms = Vec::new();
    for _ in 0..cold_runs {
        ms.push(python_cold_start()?);
    }
    println!(
        "  {:18} {} (python3 main.py alone: spawn until its port accepts)",
        "",
        summary(ms)
    );

    println!("warm calls: {calls} sequential Invokes after 20 warm-up calls");
    for f in functions() {
        let (mut child, addr, _) = start(&launcher, &f).await?;
        let pid = child.id().unwrap_or(0);
        let channel = faas_common::serve::connect(&addr).await?;
        let mut client = ContainerServiceClient::new(channel);
        let request = InvokeRequest {
            request_id: "bench".into(),
            function_name: "bench".into(),
            event: EVENT.to_vec(),
            ..InvokeRequest::default()
        };
        let first = faas_common::clock::instant();
        let reply = client.invoke(request.clone()).await?.into_inner();
        let first_ms = first.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            reply.error_code.is_empty(),
            "{}: {}",
            reply.error_code,
            reply.error_message
        );
        for _ in 0..19 {
            client.invoke(request.clone()).await?;
        }
        let (mut client_ms, mut inside_ms) = (Vec::new(), Vec::new());
        let mut max_memory = 0;
        for _ in 0..calls {
            let t = faas_common::clock::instant();
            let reply = client.invoke(request.clone()).await?.into_inner();
            client_ms.push(t.elapsed().as_secs_f64() * 1e3);
            inside_ms.push(reply.duration_in_nanos as f64 / 1e6);
            max_memory = max_memory.max(reply.max_memory_usage_in_bytes);
        }
        let direct_ms = direct(f.label, pid, calls)?;
        child.stop(Duration::from_secs(5)).await;
        println!(
            "  {:18} first call {first_ms:7.3} ms | client {} | reported duration {} | max memory {:.1} MiB",
            f.label,
            summary(client_ms.clone()),
            summary(inside_ms.clone()),
            max_memory as f64 / MIB as f64
        );
        if let Some(direct_ms) = direct_ms {
            let own = p50(direct_ms.clone());
            println!(
                "  {:18} without the watchdog {} | watchdog overhead per call (p50 reported - p50 direct) {:.3} ms",
                "",
                summary(direct_ms),
                p50(inside_ms) - own
            );
        }
    }
    Ok(())
}
