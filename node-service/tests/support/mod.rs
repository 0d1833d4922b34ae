//! Shared by the node service's integration tests: the container-service binary they hand to
//! the node, serving a node in-process, and looks at the process tree through `/proc`.
//!
//! Finding the container binary: Cargo builds only this package's binaries for these tests
//! (`CARGO_BIN_EXE_container-service` exists only in the container-service crate's own
//! tests), so [`container_service_bin`] runs `cargo build -p faas-container-service --bin
//! container-service` once per test process (a `OnceLock`) into the same target directory
//! and profile as this test executable, and hands the path to the node through
//! `Config::container_service_bin`. It always builds (a no-op when up to date) instead of
//! trusting `Launcher::find`, which could pick up a stale binary from an older build.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use faas_common::shutdown::{self, Trigger};
use faas_node_service::{Config, run};
use faas_proto::nodeservoceproto as pb;
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use tonic::transport::Channel;

/// A node served in-process on 127.0.0.1:0 with `config` (its container binary set here).
pub struct Served {
    pub client: NodeServiceClient<Channel>,
    /// The client's channel, for raw calls.
    pub channel: Channel,
    pub trigger: Trigger,
    pub task: tokio::task::JoinHandle<Result<(), faas_node_service::Error>>,
}

/// Serves a node with `config` and connects to it (its container binary, unless the test
/// set one, is [`container_service_bin`]).
pub async fn serve(mut config: Config) -> Served {
    if config.container_service_bin.is_none() {
        config.container_service_bin = Some(container_service_bin());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(run(listener, config, shutdown));
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    Served {
        client: NodeServiceClient::new(channel.clone()),
        channel,
        trigger,
        task,
    }
}

/// The `/metrics` text of the endpoint at `addr` (a plain HTTP/1.0 GET).
pub async fn metrics_text(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: node\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// One figure of a `/metrics` text.
pub fn figure(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

impl Served {
    /// Creates a container of `meta`'s function; its id.
    pub async fn create(&self, meta: pb::FunctionMeta) -> Result<String, tonic::Status> {
        let request = pb::CreateContainerRequest {
            request_id: "create".into(),
            name: meta.function_name.clone(),
            function_meta: Some(meta),
        };
        let reply = self.client.clone().create_container(request).await?;
        Ok(reply.into_inner().container_id)
    }

    /// Invokes container `id` with `event` and returns the body; panics on an error or a
    /// failed invocation.
    pub async fn invoke_ok(&self, id: &str, event: &[u8], meta: pb::FunctionMeta) -> Vec<u8> {
        let request = pb::InvokeFunctionRequest {
            request_id: "invoke".into(),
            container_id: id.into(),
            event: event.to_vec(),
            function_meta: Some(meta),
        };
        let reply = self.client.clone().invoke_function(request).await;
        let mut stream = reply.unwrap().into_inner();
        let mut body = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            if let Some(h) = &m.header {
                assert!(h.error.is_empty(), "{}", String::from_utf8_lossy(&h.error));
            }
            body.extend(m.body);
        }
        body
    }

    /// Stops the node and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// A port nothing listens on now (bound and released: the OS hands out another next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn container_service_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args([
                "build",
                "--quiet",
                "-p",
                "faas-container-service",
                "--bin",
                "container-service",
            ])
            .arg("--profile")
            .arg(profile)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build for container-service");
        assert!(status.success(), "cargo build of container-service failed");
        let bin = profile_dir.join("container-service");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Waits until `pid` is dead (every thread gone: a zombie, or reaped), not for a time.
pub async fn until_dead(pid: u32) {
    while exists(pid) && (state(pid) != Some('Z') || threads(pid) > 1) {
        tokio::task::yield_now().await;
    }
}

/// Kills `pid` with SIGKILL and waits until it is dead.
pub async fn kill(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -9 {pid}");
    until_dead(pid).await;
}

/// Pids of `parent`'s children whose command line holds `needle` (NUL-separated arguments).
pub fn children_with(parent: u32, needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of `parent`'s children running the function `function` (started for it).
pub fn children_running(parent: u32, function: &str) -> Vec<u32> {
    children_with(parent, &format!("--function-name\0{function}\0"))
}

/// Pids of `parent`'s children started unbound (warm pool containers, bound or not).
pub fn unbound_children(parent: u32) -> Vec<u32> {
    children_with(parent, "--unbound\0")
}

/// Whether `/proc/PID` exists: gone means killed *and* reaped.
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How many threads the process has.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The process's state letter (`R`, `S`, `Z`...).
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// One row of `/proc/net/tcp`: (local port, remote port, state, inode).
fn tcp_sockets() -> Vec<(u16, u16, u8, u64)> {
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            if let (Some(local), Some(remote), Ok(state), Ok(inode)) = (
                port(f[1]),
                port(f[2]),
                u8::from_str_radix(f[3], 16),
                f[9].parse::<u64>(),
            ) {
                out.push((local, remote, state, inode));
            }
        }
    }
    out
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_CLOSE_WAIT: u8 = 0x08;
const TCP_LISTEN: u8 = 0x0A;

/// The port `pid` listens on (its one listening TCP socket).
pub fn listening_port(pid: u32) -> u16 {
    let inodes: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let link = link.to_str()?;
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let ports: Vec<u16> = tcp_sockets()
        .into_iter()
        .filter(|(_, _, state, inode)| *state == TCP_LISTEN && inodes.contains(inode))
        .map(|(local, ..)| local)
        .collect();
    assert_eq!(ports.len(), 1, "pid {pid} listens on one port: {ports:?}");
    ports[0]
}

/// Local ports of the open client connections to `port` on this machine.
pub fn connections_to(port: u16) -> Vec<u16> {
    tcp_sockets()
        .into_iter()
        .filter(|(_, remote, state, _)| {
            *remote == port && matches!(*state, TCP_ESTABLISHED | TCP_CLOSE_WAIT)
        })
        .map(|(local, ..)| local)
        .collect()
}

/// Waits until none of the client connections `from` (local ports) to `port` is open any
/// more: the client noticed the peer closed them and closed its end.
pub async fn until_closed(port: u16, from: &[u16]) {
    while connections_to(port).iter().any(|p| from.contains(p)) {
        tokio::task::yield_now().await;
    }
}
