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
    /// Deliver a result event to the policy (parked in [`Sim::parked`] under this number,
    /// so the heap's items stay small: see `Sim::push_event`).
    Deliver(u32),
    /// Deliver an event about a lost node: the policy may refuse it (it forgot the node).
    DeliverLenient(u32),
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
    /// Its [`ContainerLifetime`] in the result, when the run keeps its records.
    pub(super) lifetime: Option<usize>,
    /// When its create completed, ms.
    pub(super) created_ms: i64,
    /// The time it served calls.
    pub(super) busy: Busy,
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
    /// Its live containers' ids (in the order a stats sample lists them) and their memory
    /// limits, bytes.
    pub(super) containers: std::collections::BTreeMap<Text, u64>,
}

/// A request in progress: from its arrival to its end (an error answered, or its
/// container returned). Only these are kept, keyed by invocation index: the simulator's
/// memory follows the calls in flight, not the calls made.
#[derive(Default)]
pub(super) struct Live {
    pub(super) granted: Option<Us>,
    pub(super) answered: bool,
    /// Memory the running call holds on its node, bytes.
    pub(super) holds: u64,
    /// It was granted a container on a lost node and acquired again.
    pub(super) retried: bool,
    /// The request id and the container it holds, once granted.
    pub(super) holding: Option<(Text, Text)>,
    /// What its record says, once granted.
    pub(super) scheduling_ms: f64,
    pub(super) response_ms: f64,
    pub(super) duration_ms: f64,
    pub(super) cold: bool,
    pub(super) error: Option<String>,
}

/// The time a container served calls: the union of its calls' execution intervals (from
/// the end of scheduling to the end of the body, as [`RunResult::idle_memory_mb_seconds`]
/// takes them from the records), kept as the calls start.
///
/// Calls start in grant order, so a new interval either extends the current run of
/// overlapping intervals or opens the next one. A closed run is added to `settled_ms` once
/// it ends before the current whole millisecond: a container's removal (and the run's end)
/// can only cut it after that, so it will never be clipped. The few others wait in
/// `closed`. Memory: constant per container.
#[derive(Default)]
pub(super) struct Busy {
    pub(super) settled_ms: f64,
    pub(super) closed: Vec<(f64, f64)>,
    pub(super) current: Option<(f64, f64)>,
}

impl Busy {
    /// Adds the interval `[a, b)`, ms; `from` is the container's creation, `settled` the
    /// current whole millisecond.
    pub(super) fn add(&mut self, a: f64, b: f64, from: f64, settled: f64) {
        if b <= a {
            return;
        }
        match &mut self.current {
            Some((ca, cb)) if a <= *cb => {
                *ca = ca.min(a);
                *cb = cb.max(b);
            }
            current => {
                if let Some(run) = current.replace((a, b)) {
                    self.closed.push(run);
                }
                let mut k = 0;
                while k < self.closed.len() {
                    let (ra, rb) = self.closed[k];
                    if rb <= settled {
                        self.settled_ms += (rb - ra.max(from)).max(0.0);
                        self.closed.swap_remove(k);
                    } else {
                        k += 1;
                    }
                }
            }
        }
    }

    /// The busy time within `[from, to)`, ms.
    pub(super) fn within(&self, from: f64, to: f64) -> f64 {
        let clip = |&(a, b): &(f64, f64)| (b.min(to) - a.max(from)).max(0.0);
        self.settled_ms
            + self.closed.iter().map(clip).sum::<f64>()
            + self.current.as_ref().map_or(0.0, clip)
    }
}

/// FxHash (rustc's): a fast, non-keyed hash for the simulator's own ids, which no
/// adversary picks.
#[derive(Clone, Copy, Default)]
pub(super) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map with [`FxHasher`].
pub(super) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
/// A set with [`FxHasher`].
pub(super) type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;
