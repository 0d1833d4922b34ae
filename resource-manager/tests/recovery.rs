//! Restarts lose nothing: with `--state-dir`, nodes outlive a crashed resource manager (real
//! node-service processes, detached, with an orphan timeout) and the next manager on the
//! same directory takes them back with their ids, addresses, ports, reserve times and
//! owners; a node that died meanwhile is found dead and never handed out; ids are never
//! reused; a clean stop still stops every node and empties the state file; a corrupt state
//! file is refused.
//!
//! A crash is simulated in-process with `run_with`'s detach (the manager stops serving and
//! lets go of its nodes without a word), and for real with the `resource-manager` binary
//! killed by SIGKILL.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faas_common::launch::{Child, Launcher};
use faas_proto::resourcemanagerproto::NodeDesc;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_resource_manager::{Config, Error};
use support::{
    KillNodesOnDrop, Manager, StateDir, all_node_processes, eventually, free_port,
    node_service_bin, process_state, release, reserve, signal, test_config, usage,
};
use tonic::Code;

/// Long enough for a loaded 2-core machine; every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

/// [`test_config`] saving to `dir`.
fn persistent(prefix: &str, ready: usize, max: usize, dir: &StateDir) -> Config {
    Config {
        state_dir: Some(dir.0.clone()),
        ..test_config(prefix, ready, max)
    }
}

/// `config` for the next manager on the same state dir: a metrics port of its own (the one
/// before may have been taken by anything since).
fn again(config: &Config) -> Config {
    Config {
        metrics_port: Some(free_port()),
        ..config.clone()
    }
}

/// The live node processes of `prefix`: node id → pid.
fn pids(prefix: &str) -> BTreeMap<String, u32> {
    all_node_processes(prefix)
        .into_iter()
        .map(|(pid, id)| (id, pid))
        .collect()
}

/// What the usage records say, comparable across managers.
fn records(nodes: &[NodeDesc]) -> Vec<(String, String, i64, i64, i64)> {
    nodes
        .iter()
        .map(|n| {
            (
                n.id.clone(),
                n.address.clone(),
                n.node_service_port,
                n.reserved_time_timestamp_ms,
                n.released_time_timestamp_ms,
            )
        })
        .collect()
}

/// A manager on its own state dir that has handed one node to `acct`, and what ran then.
struct Reserved {
    rm: Manager,
    config: Config,
    dir: StateDir,
    node: NodeDesc,
    /// Its usage records.
    records: Vec<NodeDesc>,
    /// Its node processes: id → pid.
    pids: BTreeMap<String, u32>,
    _leftovers: KillNodesOnDrop,
}

/// Starts a manager saving to a new state dir, with `ready` of at most `max` nodes, and
/// reserves one node.
async fn reserve_one(prefix: &str, ready: usize, max: usize) -> Reserved {
    let leftovers = KillNodesOnDrop(prefix.to_string());
    let dir = StateDir::new(prefix);
    let config = persistent(prefix, ready, max, &dir);
    let rm = Manager::start_with(config.clone()).await;
    rm.wait_serving().await;
    let mut client = rm.client().await;
    let node = reserve(&mut client, "acct").await.unwrap();
    let records = usage(&mut client).await;
    let pids = pids(prefix);
    assert_eq!(pids.len(), ready, "{pids:?}");
    Reserved {
        rm,
        config,
        dir,
        node,
        records,
        pids,
        _leftovers: leftovers,
    }
}

/// The arguments node `pid` was started with.
fn args_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[tokio::test]
async fn a_crashed_manager_is_followed_by_one_that_takes_back_every_node() {
    let prefix = "recover";
    let first = reserve_one(prefix, 2, 4).await;
    let (reserved, running) = (&first.node, &first.pids);
    let pid = running[&reserved.id];
    assert!(
        args_of(pid)
            .windows(2)
            .any(|w| w == ["--orphan-timeout-ms", "60000"]),
        "a detached node gets an orphan timeout: {:?}",
        args_of(pid)
    );

    first.rm.crash().await;
    assert_eq!(pids(prefix), *running, "the nodes outlive the crash");
    let mut saved = first.dir.node_ids();
    saved.sort();
    let mut expected: Vec<String> = running.keys().cloned().collect();
    expected.sort();
    assert_eq!(saved, expected, "the state file lists every node");

    let rm = Manager::start_with(again(&first.config)).await;
    rm.wait_serving().await;
    let mut client = rm.client().await;
    assert_eq!(
        records(&usage(&mut client).await),
        records(&first.records),
        "same ids, addresses, ports and reserve times"
    );
    let now = pids(prefix);
    for (id, pid) in running {
        assert_eq!(
            now.get(id),
            Some(pid),
            "node {id} was taken back, not restarted"
        );
    }
    // The ready node taken back is handed out first; the node started to refill the pool has
    // an id never used before.
    let second = reserve(&mut client, "acct-2").await.unwrap();
    assert!(running.contains_key(&second.id), "{second:?}");
    let third = reserve(&mut client, "acct-2").await.unwrap();
    assert!(!running.contains_key(&third.id), "{third:?} reuses an id");
    assert!(third.id.starts_with("recover-"), "{third:?}");

    // The reserved node is still its owner's, and its release stops the adopted process.
    release(&mut client, &reserved.id).await.unwrap();
    assert!(
        process_state(pid).is_none_or(|state| state == "Z"),
        "the released node's process {pid} still runs"
    );
    rm.stop().await;
    assert!(pids(prefix).is_empty(), "{:?}", pids(prefix));
    assert_eq!(
        first.dir.read()["nodes"],
        serde_json::json!([]),
        "a clean stop empties it"
    );
}

#[tokio::test]
async fn a_node_killed_while_the_manager_is_down_is_found_dead_and_never_handed_out() {
    let prefix = "deadwhiledown";
    let first = reserve_one(prefix, 2, 3).await;
    let (reserved, running) = (&first.node, &first.pids);
    first.rm.crash().await;

    for pid in running.values() {
        signal(*pid, "KILL");
    }
    eventually("the killed nodes gone", PATIENCE, || async {
        match pids(prefix) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("{left:?}")),
        }
    })
    .await;

    let rm = Manager::start_with(again(&first.config)).await;
    rm.wait_serving().await;
    rm.wait_metric(
        "faas_resource_manager_node_failures_total{reason=\"exited\"}",
        2.0,
        PATIENCE,
    )
    .await;
    assert_eq!(
        rm.metric("faas_resource_manager_nodes{state=\"failed\"}")
            .await,
        1.0,
        "the dead reserved node stays its owner's"
    );
    let mut client = rm.client().await;
    let records = usage(&mut client).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, reserved.id);
    assert_eq!(
        records[0].reserved_time_timestamp_ms,
        reserved.reserved_time_timestamp_ms
    );
    assert_eq!(records[0].released_time_timestamp_ms, 0);

    // Neither dead node is handed out: two new ones were started in their place (the failed
    // node keeps its slot: 1 + 2 = --max-nodes).
    let mut handed = Vec::new();
    for _ in 0..2 {
        handed.push(reserve(&mut client, "acct").await.unwrap().id);
    }
    for id in &handed {
        assert!(!running.contains_key(id), "{id} was handed out again");
    }
    let err = reserve(&mut client, "acct").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    release(&mut client, &reserved.id)
        .await
        .expect("the owner releases its dead node");
    rm.stop().await;
}

#[tokio::test]
async fn a_clean_stop_stops_every_node_and_ids_are_never_reused_after_it() {
    let prefix = "cleanstop";
    let first = reserve_one(prefix, 1, 2).await;
    assert_eq!(first.node.id, "cleanstop-1");
    first.rm.stop().await;
    assert!(pids(prefix).is_empty(), "{:?}", pids(prefix));
    let state = first.dir.read();
    assert_eq!(state["nodes"], serde_json::json!([]));
    assert_eq!(state["next_generation"], 2);

    let rm = Manager::start_with(again(&first.config)).await;
    let mut client = rm.client().await;
    assert!(usage(&mut client).await.is_empty());
    let next = reserve(&mut client, "acct").await.unwrap();
    assert_eq!(
        next.id, "cleanstop-2",
        "the id of the earlier run is not reused"
    );
    rm.stop().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_refused_and_left_as_it_is() {
    let prefix = "corrupt";
    let _leftovers = KillNodesOnDrop(prefix.to_string());
    let dir = StateDir::new(prefix);
    std::fs::create_dir_all(&dir.0).unwrap();
    let garbage = "{\"format\": \"faas-resource-manager-state\", \"version\": 1, \"nod";
    std::fs::write(dir.file(), garbage).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    node_service_bin();
    let err = faas_resource_manager::run(
        listener,
        persistent(prefix, 1, 1, &dir),
        faas_common::shutdown::Shutdown::never(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("resource-manager.json is corrupt") && message.contains("move it away"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(dir.file()).unwrap(), garbage);
    assert!(pids(prefix).is_empty(), "no node was started");
}

/// Starts the `resource-manager` binary on a free port; returns it and a client.
async fn start_binary(
    prefix: &str,
    dir: &StateDir,
) -> (
    Child,
    ResourceManagerClient<faas_common::token::AuthChannel>,
) {
    let mut cmd = Launcher::new(env!("CARGO_BIN_EXE_resource-manager"), vec![]).command();
    cmd.args(["--port", "0", "--node-id-prefix", prefix])
        .args(["--ready-nodes", "1", "--max-nodes", "2"])
        .args(["--refill-delay-ms", "3600000", "--node-warm-pool", "0"])
        .arg("--state-dir")
        .arg(&dir.0)
        .env("FAAS_NODE_SERVICE_BIN", node_service_bin())
        .env("RUST_LOG", "warn");
    let (child, addr) = Child::spawn_ready(cmd, PATIENCE).await.unwrap();
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    let no_token = faas_common::token::ClusterAuth::default();
    (child, ResourceManagerClient::new(no_token.channel(channel)))
}

#[tokio::test]
async fn a_resource_manager_killed_with_sigkill_leaves_its_nodes_to_the_next_one() {
    let prefix = "sigkilled";
    let _leftovers = KillNodesOnDrop(prefix.to_string());
    let dir = StateDir::new(prefix);

    let (mut first, mut client) = start_binary(prefix, &dir).await;
    let node = reserve(&mut client, "acct").await.unwrap();
    let before = usage(&mut client).await;
    let running = pids(prefix);
    assert_eq!(running.len(), 1, "{running:?}");

    first.kill().await;
    assert_eq!(pids(prefix), running, "the node outlives a SIGKILL");

    let (mut second, mut client) = start_binary(prefix, &dir).await;
    assert_eq!(records(&usage(&mut client).await), records(&before));
    eventually("the refill started", PATIENCE, || async {
        match pids(prefix) {
            now if now.len() == 2 => Ok(()),
            now => Err(format!("{now:?}")),
        }
    })
    .await;
    assert_eq!(
        pids(prefix)[&node.id],
        running[&node.id],
        "the same process"
    );
    let next = reserve(&mut client, "acct").await.unwrap();
    assert_ne!(next.id, node.id);

    // SIGTERM: a clean stop, adopted node included.
    second.stop(PATIENCE).await;
    assert!(pids(prefix).is_empty(), "{:?}", pids(prefix));
    assert_eq!(dir.read()["nodes"], serde_json::json!([]));
}
