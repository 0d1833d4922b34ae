//! Test support: pin every child process to the freshly built `faas` binary, start the real
//! platform on free loopback ports, and look at the process tree through /proc.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Once;

use faas_cli::client::Api;
use faas_cli::platform::{LocalPlatform, PlatformOptions};

/// Makes node services and container services run from this build's `faas` binary.
pub fn use_built_binary() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any test of this binary starts a child process; nothing
        // else in these tests writes the environment.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("FAAS_BIN", env!("CARGO_BIN_EXE_faas"));
        }
        faas_common::logging::init("warn");
    });
}

/// Options for a small, fast platform: few ready nodes, quick refill.
pub fn small_options() -> PlatformOptions {
    PlatformOptions {
        ready_nodes: 3,
        max_nodes: 12,
        refill_delay_ms: 100,
        ..PlatformOptions::default()
    }
}

/// Starts the platform and connects to its API server.
pub async fn start(options: PlatformOptions) -> (LocalPlatform, Api) {
    use_built_binary();
    let platform = LocalPlatform::start(&options)
        .await
        .expect("platform starts");
    let api = Api::connect(&platform.apiserver.to_string())
        .await
        .expect("api server answers");
    (platform, api)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None; // a zombie is dead already
    }
    fields.next()?.parse().ok()
}

/// Every live (non-zombie) descendant of this process.
pub fn descendants() -> HashSet<u32> {
    let me = std::process::id();
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let parents: Vec<(u32, u32)> = pids
        .iter()
        .filter_map(|&p| parent_of(p).map(|pp| (p, pp)))
        .collect();
    let mut found: HashSet<u32> = HashSet::new();
    let mut frontier = vec![me];
    while let Some(parent) = frontier.pop() {
        for &(pid, pp) in &parents {
            if pp == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether a process with this pid still runs (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}
