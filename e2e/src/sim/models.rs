//! The simulator's small parts: virtual time, the timed events of the loop and their heap,
//! and the state the models keep (the resource manager's pool, containers, held nodes,
//! each invocation's progress).

use super::*;

/// Virtual time, µs.
pub(super) type Us = u64;

pub(super) fn us(ms: f64) -> Us {
    (ms.max(0.0) * 1000.0).round() as Us
}

/// Something that happens at a virtual time.
pub(super) enum Ev {
    /// Deliver a result event to the policy.
    Deliver(Event),
    /// Deliver an event about a lost node: the policy may refuse it (it forgot the node).
    DeliverLenient(Event),
    /// Strike fault `k` of [`SimOptions::faults`].
    Fault(usize),
    /// Invocation `i` acquires again (its first container was on a lost node).
    Retry(u32),
    /// Invocation `i`'s body ended: return its container.
    Done(u32),
    /// The policy asked to be woken.
    Tick,
    /// The pool has refills or cooling slots due.
    PoolWake,
    /// A refilled node finished starting.
    NodeUp(Text),
    /// A container's removal completed (the node model frees it, then tells the policy).
    Removed(Text),
    /// Every held node reports its usage.
    Stats,
}

pub(super) struct Item {
    pub(super) at: Us,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: the heap pops the earliest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The resource manager's pool rules (mirrors `resource-manager`'s `Pool`).
pub(super) struct PoolModel {
    pub(super) max: usize,
    pub(super) refill_delay: Us,
    pub(super) node_start: Us,
    pub(super) memory: u64,
    pub(super) ready: VecDeque<Text>,
    pub(super) starting: usize,
    pub(super) reserved: usize,
    pub(super) refills: BinaryHeap<Reverse<Us>>,
    pub(super) cooling: BinaryHeap<Reverse<Us>>,
    pub(super) generation: u64,
}

impl PoolModel {
    pub(super) fn occupied(&self) -> usize {
        self.starting + self.ready.len() + self.reserved + self.cooling.len()
    }

    pub(super) fn new_id(&mut self) -> Text {
        self.generation += 1;
        Arc::from(format!("node-{}", self.generation))
    }

    pub(super) fn next_wake(&self) -> Option<Us> {
        let Reverse(due) = *self.refills.peek()?;
        if self.occupied() < self.max {
            Some(due)
        } else {
            self.cooling.peek().map(|Reverse(t)| (*t).max(due))
        }
    }
}

/// A live container in the node model.
pub(super) struct LiveContainer {
    pub(super) lifetime: usize,
    pub(super) node: Text,
    pub(super) memory: u64,
    /// Invocations running in it.
    pub(super) running: Vec<u32>,
    /// CPU time of CPU-bound bodies since the last stats sample, µs.
    pub(super) cpu_us: u64,
}

/// A node held by the policy, in the node model.
pub(super) struct HeldNode {
    pub(super) usage: usize,
    /// What its containers use: their RSS and their running calls' memory, bytes.
    pub(super) used: u64,
}

/// Per-invocation progress.
#[derive(Clone, Copy, Default)]
pub(super) struct ReqState {
    pub(super) granted: Option<Us>,
    pub(super) answered: bool,
    /// Memory the running call holds on its node, bytes.
    pub(super) holds: u64,
    /// It was granted a container on a lost node and acquired again.
    pub(super) retried: bool,
}
