//! The live driver: replays a [`Workload`] against a running platform, open loop, and records
//! what happened as a [`RunResult`].
//!
//! - The workload's functions are deployed through the admin API (`DeployFunction`) first
//!   (unless [`LiveOptions::deploy`] is off).
//! - Each invocation is sent at its time by its own task (tokio timers); a send never waits for
//!   an earlier reply (open loop), so an overloaded platform shows as latency and errors, not
//!   as fewer requests. At most [`LiveOptions::max_in_flight`] requests are outstanding; an
//!   invocation due beyond that is recorded as a client-side error instead of being sent.
//! - Per request: the response time the client measured, the scheduling latency and function
//!   duration from the API server's reply metadata (`faas_proto::meta`), cold or warm, the
//!   node and container, or the error (`Code: message`).
//! - With a resource manager address: every [`LiveOptions::stats_interval_ms`] the driver
//!   lists the reserved nodes (`GetNodesUsage`) and asks each node service for its containers
//!   (`GetStats`); a container's life runs from its first sighting (or its first grant, when
//!   earlier) to the midpoint between its last sighting and the first poll without it (or its
//!   node's release). At the end the node-seconds come from `GetNodesUsage`.
//! - The run stops by itself: after the last send it waits for the outstanding replies at most
//!   [`LiveOptions::grace_ms`]; what is still outstanding then is recorded as an error.
//! - A progress bar (sent / answered / errors) is drawn on stderr when it is a terminal and
//!   [`LiveOptions::progress`] is on.
//! - [`run_with_faults`] also strikes a fault plan while the load runs, through a
//!   [`FaultInjector`] that owns the platform (see [`crate::fault`]).

pub mod async_call;
pub mod client;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faas_common::token::{AuthChannel, ClusterAuth, ClusterToken};
use faas_proto::nodeservoceproto::node_service_client::NodeServiceClient;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::fault::{FaultInjector, FaultPlan, InjectedFault, NoFaults};
use crate::record::{ContainerLifetime, NodeUsage, RequestRecord, RunResult};
use crate::workload::Workload;
use async_call::failed;
use client::{PlatformClient, describe};

/// How to drive a live run.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveOptions {
    /// The API server, `host:port`.
    pub apiserver: String,
    /// The resource manager, `host:port`: node-seconds and container lifetimes come from it
    /// (without it the run has neither, and no score can be computed).
    pub resource_manager: Option<String>,
    /// The name the run is reported under (the platform's scheduling policy).
    pub policy: String,
    /// The account invocations are made for.
    pub account: String,
    /// Deploy the workload's functions before the run.
    pub deploy: bool,
    /// Requests outstanding at most; beyond that an invocation is recorded as an error.
    pub max_in_flight: usize,
    /// How long to wait for outstanding replies after the last send, ms.
    pub grace_ms: u64,
    /// How often node services are polled for their containers, ms (0: never).
    pub stats_interval_ms: u64,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// The platform was started for this run: node time before the first send counts (a
    /// scheduler warming up). Off: node time before the run is not counted.
    pub fresh_platform: bool,
    /// The platform's cluster token, sent to the resource manager and the nodes (see
    /// `faas_common::token`; `faas up`'s is in DATA_DIR/cluster-token).
    pub cluster_token: Option<ClusterToken>,
    /// The API server's key (`authorization: Bearer KEY` on every call); `None` for a
    /// server without keys or in the contest mode (`--allow-anonymous-invoke`), where the
    /// invocations need none (deploying the workload still needs an admin key).
    pub api_key: Option<String>,
    /// Send every invocation through the durable queue (`InvokeAsync`, then
    /// `GetInvocation` until it finishes) and record its end-to-end delay beside the call's
    /// own latency (see [`async_call`]).
    pub asynchronous: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            apiserver: "127.0.0.1:10500".to_string(),
            resource_manager: None,
            policy: "baseline".to_string(),
            account: "faas-e2e".to_string(),
            deploy: true,
            max_in_flight: 2000,
            grace_ms: 90_000,
            stats_interval_ms: 500,
            progress: true,
            fresh_platform: true,
            cluster_token: None,
            api_key: None,
            asynchronous: false,
        }
    }
}

/// Why a live run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot reach the {what} at {addr}: {source}")]
    Connect {
        what: &'static str,
        addr: String,
        #[source]
        source: faas_common::serve::ServeError,
    },
    #[error("cannot deploy function {function}: {status}")]
    Deploy { function: String, status: String },
    #[error("cannot read node usage from the resource manager at {addr}: {status}")]
    NodesUsage { addr: String, status: String },
    #[error("invalid live option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
}

/// One container as the poller saw it, ms from the start of the run.
#[derive(Clone, Debug)]
struct Seen {
    node_id: String,
    limit: u64,
    first_ms: i64,
    last_ms: i64,
    gone_ms: Option<i64>,
}

/// Replays `workload` against the platform (see the module documentation).
pub async fn run(workload: &Workload, options: &LiveOptions) -> Result<RunResult, LiveError> {
    run_with_faults(workload, options, &FaultPlan::default(), &mut NoFaults).await
}

/// [`run`], striking each fault of `faults` with `injector` at its time (ms from the first
/// send) while the load runs. Each strike (or why it failed) is recorded in
/// [`RunResult::faults`]; a fault must fall within the workload's duration.
pub async fn run_with_faults<I: FaultInjector>(
    workload: &Workload,
    options: &LiveOptions,
    faults: &FaultPlan,
    injector: &mut I,
) -> Result<RunResult, LiveError> {
    faults
        .check_within(workload.duration_ms)
        .map_err(|reason| LiveError::InvalidOption {
            name: "faults",
            reason,
        })?;
    if options.max_in_flight == 0 {
        return Err(LiveError::InvalidOption {
            name: "max_in_flight",
            reason: "at least one request must be allowed in flight".into(),
        });
    }
    let channel = faas_common::serve::connect(&options.apiserver)
        .await
        .map_err(|source| LiveError::Connect {
            what: "API server",
            addr: options.apiserver.clone(),
            source,
        })?;
    let api = PlatformClient::new(channel).with_key(options.api_key.as_deref())?;
    let auth = ClusterAuth::new(options.cluster_token.as_ref());
    let rm = match &options.resource_manager {
        Some(addr) => Some(ResourceManagerClient::new(
            auth.channel(faas_common::serve::connect(addr).await.map_err(|source| {
                LiveError::Connect {
                    what: "resource manager",
                    addr: addr.clone(),
                    source,
                }
            })?),
        )),
        None => None,
    };
    if options.deploy {
        for f in &workload.functions {
            api.deploy(f).await.map_err(|s| LiveError::Deploy {
                function: f.name.clone(),
                status: describe(&s),
            })?;
        }
    }

    let n = workload.invocations.len();
    let bar = progress_bar(n as u64, options.progress);
    let start = faas_common::clock::tokio_instant();
    let start_epoch_ms = faas_common::clock::now_ms();

    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = match (&rm, options.stats_interval_ms) {
        (Some(rm), interval) if interval > 0 => Some(tokio::spawn(poll_containers(
            rm.clone(),
            auth.clone(),
            start,
            start_epoch_ms,
            Duration::from_millis(interval),
            stop_rx,
        ))),
        _ => None,
    };

    // The sender: one task per invocation, at its time.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, async_call::Called)>();
    let shared = Arc::new(workload.clone());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    let sender = {
        let tasks = tasks.clone();
        let shared = shared.clone();
        let api = api.clone();
        let tx = tx.clone();
        let in_flight = in_flight.clone();
        let account: Arc<str> = Arc::from(options.account.as_str());
        let max_in_flight = options.max_in_flight;
        let asynchronous = options.asynchronous;
        tokio::spawn(async move {
            for i in 0..shared.invocations.len() {
                let at = start + Duration::from_millis(shared.invocations[i].at_ms);
                tokio::time::sleep_until(at).await;
                let sent_ms = start.elapsed().as_millis() as u64;
                let inv = &shared.invocations[i];
                let f = &shared.functions[inv.function];
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    let _ = tx.send((
                        i,
                        async_call::Called {
                            record: failed(
                                &f.name,
                                sent_ms,
                                0.0,
                                format!(
                                    "Client: not sent, {max_in_flight} requests already in flight (the driver's bound)"
                                ),
                            ),
                            end_to_end_ms: None,
                        },
                    ));
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let timeout = Duration::from_millis(f.timeout_ms + 35_000);
                let (api, tx, in_flight, account) =
                    (api.clone(), tx.clone(), in_flight.clone(), account.clone());
                let name = f.name.clone();
                let event = inv.event.clone();
                let task = tokio::spawn(async move {
                    let called = async_call::call(
                        &api,
                        &account,
                        &name,
                        event,
                        timeout,
                        asynchronous,
                        sent_ms,
                    )
                    .await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send((i, called));
                });
                if let Ok(mut t) = tasks.lock() {
                    t.push(task.abort_handle());
                }
            }
        })
    };
    drop(tx);

    // Collect until every invocation is answered, or the grace after the last send is over;
    // strike the faults meanwhile.
    let deadline = start
        + Duration::from_millis(workload.duration_ms)
        + Duration::from_millis(options.grace_ms);
    let collect = async {
        let mut records: Vec<Option<RequestRecord>> = vec![None; n];
        let mut answered = 0usize;
        let mut errors = 0usize;
        let mut last_reply_ms = 0i64;
        let mut end_to_end_ms = Vec::new();
        while answered < n {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some((i, called)) = next else { break };
            let record = called.record;
            if records[i].is_none() {
                end_to_end_ms.extend(called.end_to_end_ms);
                answered += 1;
                errors += usize::from(record.error.is_some());
                last_reply_ms = last_reply_ms.max(start.elapsed().as_millis() as i64);
                records[i] = Some(record);
                bar.set_position(answered as u64);
                bar.set_message(format!("{errors} errors"));
            }
        }
        (records, answered, last_reply_ms, end_to_end_ms)
    };
    let ((records, answered, last_reply_ms, end_to_end_ms), struck) =
        tokio::join!(collect, strike(faults, injector, start));
    let end_ms = if answered < n {
        start.elapsed().as_millis() as i64
    } else {
        last_reply_ms
    }
    .max(workload.duration_ms as i64);
    // Stop whatever is still outstanding.
    sender.abort();
    let _ = sender.await;
    if let Ok(mut t) = tasks.lock() {
        for task in t.drain(..) {
            task.abort();
        }
    }
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    let seen = match poller {
        Some(p) => p.await.unwrap_or_default(),
        None => HashMap::new(),
    };

    let mut result = RunResult::new(options.policy.clone(), workload.name.clone());
    result.notes.push(format!(
        "live against {} (open loop, {} invocations)",
        options.apiserver, n
    ));
    if options.asynchronous {
        result.notes.push(
            "asynchronous: each call through the durable queue; its latency and RT are its last attempt's (server clock), its end-to-end delay submit to result"
                .to_string(),
        );
    }
    result.end_to_end_ms = end_to_end_ms;
    let unanswered = n - answered;
    if unanswered > 0 {
        result.notes.push(format!(
            "{unanswered} requests got no reply within {} ms after the last send",
            options.grace_ms
        ));
    }
    let requests: Vec<RequestRecord> = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                // Never answered: aborted at the end of the run (or never sent).
                let inv = &workload.invocations[i];
                failed(
                    &workload.functions[inv.function].name,
                    inv.at_ms,
                    (end_ms - inv.at_ms as i64).max(0) as f64,
                    "Client: no reply before the run ended".to_string(),
                )
            })
        })
        .collect();
    result.end_ms = end_ms;
    result.faults = struck;
    result.containers = lifetimes(seen, &requests, workload);
    result.requests = requests;

    if let (Some(mut rm), Some(addr)) = (rm, &options.resource_manager) {
        let nodes = client::nodes_usage(&mut rm, format!("e2e-usage-{start_epoch_ms}"))
            .await
            .map_err(|s| LiveError::NodesUsage {
                addr: addr.clone(),
                status: describe(&s),
            })?;
        result.nodes = node_usage(&nodes, start_epoch_ms, options.fresh_platform);
        if !options.fresh_platform {
            result
                .notes
                .push("node time before the run's first send is not counted".to_string());
        }
    } else {
        result
            .notes
            .push("no resource manager address: node-seconds unknown".to_string());
    }
    if result.containers.is_empty() {
        result
            .notes
            .push("container lifetimes unknown: idle memory-time not measured".to_string());
    }
    Ok(result)
}

/// Strikes each fault at its time from `start`; what each strike hit, or why it failed.
async fn strike<I: FaultInjector>(
    faults: &FaultPlan,
    injector: &mut I,
    start: Instant,
) -> Vec<InjectedFault> {
    let mut struck = Vec::with_capacity(faults.0.len());
    for fault in &faults.0 {
        tokio::time::sleep_until(start + Duration::from_millis(fault.at_ms)).await;
        let tried_ms = start.elapsed().as_millis() as u64;
        let record = match injector.inject(fault.kind).await {
            Ok(s) => InjectedFault {
                fault: fault.to_string(),
                at_ms: Instant::from_std(s.at)
                    .saturating_duration_since(start)
                    .as_millis() as u64,
                target: s.target,
                in_flight: s.in_flight,
                error: None,
            },
            Err(error) => {
                tracing::warn!(%fault, %error, "the fault could not strike");
                InjectedFault {
                    fault: fault.to_string(),
                    at_ms: tried_ms,
                    target: String::new(),
                    in_flight: None,
                    error: Some(error),
                }
            }
        };
        struck.push(record);
    }
    struck
}

fn progress_bar(len: u64, wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} answered, {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// `GetNodesUsage` entries as the run's node usage.
pub fn node_usage(
    nodes: &[faas_proto::resourcemanagerproto::NodeDesc],
    start_epoch_ms: i64,
    fresh_platform: bool,
) -> Vec<NodeUsage> {
    nodes
        .iter()
        .filter(|n| n.reserved_time_timestamp_ms > 0)
        .filter(|n| {
            fresh_platform
                || n.released_time_timestamp_ms == 0
                || n.released_time_timestamp_ms > start_epoch_ms
        })
        .map(|n| {
            let mut u = NodeUsage::from_epoch_ms(
                n.id.clone(),
                n.reserved_time_timestamp_ms,
                n.released_time_timestamp_ms,
                start_epoch_ms,
            );
            if !fresh_platform {
                u.reserved_ms = u.reserved_ms.max(0);
            }
            u
        })
        .collect()
}

/// Polls the reserved nodes' containers until `stop` turns true.
async fn poll_containers(
    mut rm: ResourceManagerClient<AuthChannel>,
    auth: ClusterAuth,
    start: Instant,
    start_epoch_ms: i64,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> HashMap<String, Seen> {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut clients: HashMap<String, NodeServiceClient<AuthChannel>> = HashMap::new();
    let mut round = 0u64;
    let timeout = interval.min(Duration::from_secs(2));
    loop {
        round += 1;
        let now_ms = start.elapsed().as_millis() as i64;
        if let Ok(nodes) = client::nodes_usage(&mut rm, format!("e2e-poll-{round}")).await {
            for node in nodes {
                if node.reserved_time_timestamp_ms <= 0 {
                    continue;
                }
                if node.released_time_timestamp_ms > 0 {
                    let released = node.released_time_timestamp_ms - start_epoch_ms;
                    for s in seen.values_mut() {
                        if s.node_id == node.id && s.gone_ms.is_none() {
                            s.gone_ms = Some(released.max(s.last_ms));
                        }
                    }
                    clients.remove(&node.id);
                    continue;
                }
                let client = match clients.get_mut(&node.id) {
                    Some(c) => c,
                    None => {
                        let addr = format!("{}:{}", node.address, node.node_service_port);
                        let Ok(channel) = faas_common::serve::connect_lazy(&addr) else {
                            continue;
                        };
                        clients
                            .entry(node.id.clone())
                            .or_insert(NodeServiceClient::new(auth.channel(channel)))
                    }
                };
                let Ok(containers) =
                    client::node_containers(client, format!("e2e-stats-{round}"), timeout).await
                else {
                    continue;
                };
                let polled_ms = start.elapsed().as_millis() as i64;
                for (id, limit) in &containers {
                    let s = seen.entry(id.clone()).or_insert_with(|| Seen {
                        node_id: node.id.clone(),
                        limit: *limit,
                        first_ms: now_ms,
                        last_ms: now_ms,
                        gone_ms: None,
                    });
                    s.last_ms = polled_ms;
                    s.gone_ms = None;
                }
                for (id, s) in seen.iter_mut() {
                    if s.node_id == node.id
                        && s.gone_ms.is_none()
                        && !containers.iter().any(|(c, _)| c == id)
                    {
                        s.gone_ms = Some((s.last_ms + polled_ms) / 2);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    seen
}

/// Container lifetimes from the poller's sightings, refined by the grants in the records.
fn lifetimes(
    seen: HashMap<String, Seen>,
    requests: &[RequestRecord],
    workload: &Workload,
) -> Vec<ContainerLifetime> {
    let mut first_grant: HashMap<&str, (f64, &str)> = HashMap::new();
    for r in requests {
        if let Some(c) = r.container_id.as_deref() {
            let t = r.at_ms as f64 + r.scheduling_ms;
            let e = first_grant.entry(c).or_insert((t, r.function.as_str()));
            if t < e.0 {
                *e = (t, r.function.as_str());
            }
        }
    }
    let mut out: Vec<ContainerLifetime> = seen
        .into_iter()
        .map(|(id, s)| {
            let grant = first_grant.get(id.as_str());
            let function = grant.map_or("?", |g| g.1).to_string();
            let created_ms = grant.map_or(s.first_ms, |g| (g.0.floor() as i64).min(s.first_ms));
            let limit = if s.limit > 0 {
                s.limit
            } else {
                workload
                    .function_index(&function)
                    .map_or(0, |i| workload.functions[i].memory_bytes)
            };
            ContainerLifetime {
                id,
                node_id: s.node_id,
                function,
                memory_bytes: limit,
                created_ms,
                removed_ms: s.gone_ms,
            }
        })
        .collect();
    out.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests;
