//! The scheduler's recent decisions, each with the policy's reason: a bounded ring for
//! "what happened lately" and a broadcast for followers (`faas.decisions.v1.Decisions`,
//! the dashboard, `faas events --follow`).
//!
//! The driver turns the core's reasons on ([`crate::core::reasons`]) only while the log keeps
//! something ([`DecisionLog::keep`] with more than 0); it then turns each core step's
//! decisions into [`DecisionRecord`]s ([`records`]) while it holds the core's lock (reading
//! the names it needs from the state), and pushes them here after the lock is let go.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

use crate::core::reasons::Note;
use crate::core::{Decision, HealthNote, State};
use crate::model::Text;

/// How many decisions the scheduler keeps when not told (`--decisions-kept`).
pub const DECISIONS_KEPT: usize = 512;

/// How many records a slow follower may lag before it misses some.
const FOLLOW_BUFFER: usize = 1024;

/// One decision, as people read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Its number, from 1, in the order the log took it.
    pub seq: u64,
    /// When, wall-clock ms since the Unix epoch (0 without a wall clock).
    pub at_unix_ms: u64,
    /// What: `grant-warm`, `grant-cold`, `reject`, `queue`, `create`, `remove`,
    /// `reserve-node`, `release-node`, `health`.
    pub kind: &'static str,
    /// The function it is about ("" if none).
    pub function: String,
    /// The node ("" if none or not known yet).
    pub node: String,
    /// The container ("" if none or not known yet).
    pub container: String,
    /// The request ("" if none).
    pub request: String,
    /// Why.
    pub reason: String,
}

/// The ring and the followers.
#[derive(Debug)]
pub struct DecisionLog {
    kept: AtomicUsize,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<DecisionRecord>,
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    records: VecDeque<DecisionRecord>,
}

impl Ring {
    /// The kept records numbered above `after`, the latest `limit` of them, oldest first.
    fn after(&self, after: u64, limit: usize) -> Vec<DecisionRecord> {
        let newer = self.records.iter().filter(|r| r.seq > after).count();
        self.records
            .iter()
            .filter(|r| r.seq > after)
            .skip(newer.saturating_sub(limit))
            .cloned()
            .collect()
    }
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog {
            kept: AtomicUsize::new(0),
            ring: Mutex::new(Ring::default()),
            tx: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }
}

impl DecisionLog {
    /// Keeps the latest `n` decisions (0: none, and reasons are not built).
    pub fn keep(&self, n: usize) {
        self.kept.store(n, Ordering::Relaxed);
        let mut ring = self.lock();
        while ring.records.len() > n {
            ring.records.pop_front();
        }
    }

    /// How many decisions the log keeps.
    pub fn kept(&self) -> usize {
        self.kept.load(Ordering::Relaxed)
    }

    /// Whether the log keeps anything.
    pub fn on(&self) -> bool {
        self.kept.load(Ordering::Relaxed) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers and keeps `records`, and hands them to the followers.
    pub fn push(&self, records: Vec<DecisionRecord>) {
        let kept = self.kept.load(Ordering::Relaxed);
        if kept == 0 || records.is_empty() {
            return;
        }
        let mut ring = self.lock();
        for mut r in records {
            ring.next_seq += 1;
            r.seq = ring.next_seq;
            if ring.records.len() == kept {
                ring.records.pop_front();
            }
            ring.records.push_back(r.clone());
            // No follower is fine.
            let _ = self.tx.send(r);
        }
    }

    /// The kept decisions with a number above `after`, oldest first, at most `limit` (the
    /// latest ones).
    pub fn recent(&self, after: u64, limit: usize) -> Vec<DecisionRecord> {
        self.lock().after(after, limit)
    }

    /// The kept decisions (as [`DecisionLog::recent`]) and, atomically with them, a receiver
    /// of every later one.
    pub fn follow(
        &self,
        after: u64,
        limit: usize,
    ) -> (Vec<DecisionRecord>, broadcast::Receiver<DecisionRecord>) {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        (ring.after(after, limit), rx)
    }
}

fn text(t: &Text) -> String {
    t.to_string()
}

/// The records of one core step: `decisions` with the `notes` the core gave (by index),
/// names read from `state` (after the step).
pub fn records(
    state: &State,
    decisions: &[Decision],
    notes: Vec<Note>,
    at_unix_ms: u64,
) -> Vec<DecisionRecord> {
    let mut notes = notes.into_iter().peekable();
    let mut out = Vec::with_capacity(decisions.len());
    for (i, d) in decisions.iter().enumerate() {
        let mut reason = None;
        while let Some(n) = notes.next_if(|n| n.at <= i) {
            if n.at == i {
                reason = Some(n.text);
            }
        }
        let mut r = describe(state, d);
        r.at_unix_ms = at_unix_ms;
        if let Some(reason) = reason {
            r.reason = reason;
        }
        out.push(r);
    }
    out
}

/// The name of the function of container `id`, if the state still knows it.
fn function_of(state: &State, id: &str) -> String {
    state
        .store
        .container_by_id(id)
        .and_then(|k| state.store.container(k))
        .and_then(|row| state.store.function(row.function))
        .map(|f| f.spec.name.to_string())
        .unwrap_or_default()
}

fn describe(state: &State, d: &Decision) -> DecisionRecord {
    let mut r = DecisionRecord::default();
    match d {
        Decision::Grant(g) => {
            r.kind = if g.cold { "grant-cold" } else { "grant-warm" };
            r.function = function_of(state, &g.container_id);
            r.node = text(&g.node_id);
            r.container = text(&g.container_id);
            r.request = text(&g.request_id);
            r.reason = if g.cold { "cold start" } else { "warm" }.into();
        }
        Decision::Reject { request_id, error } => {
            r.kind = "reject";
            r.request = text(request_id);
            r.reason = format!("rejected: {}", error.message);
        }
        Decision::ReserveNode { op } => {
            r.kind = "reserve-node";
            r.reason = format!("reserve a node ({op})");
        }
        Decision::CreateContainer { node, function, .. } => {
            r.kind = "create";
            r.function = text(&function.name);
            r.node = text(&node.id);
            r.reason = format!("created on {}", node.id);
        }
        Decision::RemoveContainer { node, container_id } => {
            r.kind = "remove";
            r.function = function_of(state, container_id);
            r.node = text(&node.id);
            r.container = text(container_id);
            r.reason = "removed".into();
        }
        Decision::ReleaseNode { node_id } => {
            r.kind = "release-node";
            r.node = text(node_id);
            r.reason = "released".into();
        }
        Decision::Health(note) => {
            r.kind = "health";
            r.reason = note.to_string();
            match note {
                HealthNote::NodeSuspect { node_id, .. }
                | HealthNote::NodeRecovered { node_id, .. }
                | HealthNote::NodeLost { node_id, .. }
                | HealthNote::NodeAdopted { node_id, .. } => r.node = text(node_id),
                HealthNote::ContainerLost {
                    container_id,
                    node_id,
                    ..
                } => {
                    r.node = text(node_id);
                    r.container = text(container_id);
                }
                HealthNote::LeaseExpired {
                    request_id,
                    container_id,
                    ..
                } => {
                    r.request = text(request_id);
                    r.container = text(container_id);
                }
                HealthNote::DefinitionChanged { function, .. } => r.function = text(function),
            }
        }
    }
    r
}

/// The record of an acquire the policy could not answer at once.
pub fn queued(request: &Text, function: &Text, at_unix_ms: u64, waiting: usize) -> DecisionRecord {
    DecisionRecord {
        kind: "queue",
        function: text(function),
        request: text(request),
        at_unix_ms,
        reason: format!(
            "queued: no idle container of {function} ({waiting} requests waiting in all)"
        ),
        ..DecisionRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &'static str) -> DecisionRecord {
        DecisionRecord {
            kind,
            ..DecisionRecord::default()
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_and_numbers_them() {
        let log = DecisionLog::default();
        log.push(vec![rec("create")]);
        assert!(log.recent(0, 10).is_empty(), "off until told to keep");
        log.keep(3);
        log.push((0..5).map(|_| rec("remove")).collect());
        let seqs: Vec<u64> = log.recent(0, 10).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(log.recent(4, 10).len(), 1);
        assert_eq!(log.recent(0, 2)[0].seq, 4, "a limit keeps the latest");
    }

    #[tokio::test]
    async fn followers_get_what_comes_after_the_past() {
        let log = DecisionLog::default();
        log.keep(10);
        log.push(vec![rec("create")]);
        let (past, mut rx) = log.follow(0, 10);
        assert_eq!(past.len(), 1);
        log.push(vec![rec("grant-cold")]);
        let next = rx.recv().await.expect("a record");
        assert_eq!((next.seq, next.kind), (2, "grant-cold"));
    }
}
