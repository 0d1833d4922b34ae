//! The memory guard: measures the function's processes and enforces the container's memory
//! limit on them.
//!
//! The rule: the limit is on what the function's processes *use* (resident memory), never on
//! what they map, and passing it stops them; so no `setrlimit(RLIMIT_AS)` (why, with what it
//! did to a Python function: `docs/EXPERIMENTS.md`, "An address-space limit
//! instead of the memory guard"). A cgroup limit would be exact, but the process runtime
//! cannot count on writing one. So the guard does what a cgroup's OOM killer does, from the
//! outside:
//!
//! - every *member* (the process group of an `http` server, or of one `exec` call) is
//!   sampled: the resident memory of its process tree (`VmRSS`), and its peak (`VmHWM`);
//! - the container's memory is the watchdog's own (resident baseline plus live heap, as for
//!   the built-ins) plus every member's resident bytes; past the limit, the largest member's
//!   group is killed and it is marked with the reason, so its calls end `OutOfMemory`;
//! - samples are taken every [`BUSY_INTERVAL`] while any call runs and every
//!   [`IDLE_INTERVAL`] otherwise (an idle `http` server can still grow); a call that starts
//!   brings the next sample forward to [`BUSY_INTERVAL`] from then, never sooner, so a burst
//!   of short calls costs one sample per interval, not one per call.
//!
//! Sampling can miss a spike shorter than the interval; the peak a call reports does not
//! miss it where the kernel kept it: an `exec` call's peak is `wait4`'s `ru_maxrss`, and an
//! `http` call sees its server's `VmHWM` when it rose during the call. The memory limit is
//! only enforced when it is emulated (`--emulate-memory-limit`, the default): in Docker the
//! kernel's cgroup limit acts instead and the guard only measures.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::process::Group;
use super::sys::{Sys, TreeMemory};

/// How often members are sampled while a call runs.
pub const BUSY_INTERVAL: Duration = Duration::from_millis(10);
/// How often members are sampled while no call runs.
pub const IDLE_INTERVAL: Duration = Duration::from_millis(250);

/// The memory of the watchdog itself (resident baseline plus live heap).
pub type OwnBytes = Box<dyn Fn() -> u64 + Send + Sync>;

/// One process group the guard watches.
#[derive(Debug)]
pub struct Member {
    group: Arc<Group>,
    /// The latest sample.
    rss: AtomicU64,
    hwm: AtomicU64,
    peak_hwm: AtomicU64,
    /// The running peaks of the calls in flight on this member (`http`).
    watches: Mutex<Vec<Arc<AtomicU64>>>,
    /// The processes the last walk of its tree found.
    pids: Mutex<Vec<u32>>,
    killed_for: OnceLock<String>,
}

/// A call's view of its member's memory, from [`Member::watch`] to [`Member::finish`].
#[derive(Debug)]
pub struct CallWatch {
    start_hwm: u64,
    peak: Arc<AtomicU64>,
}

impl Member {
    fn new(group: Arc<Group>) -> Member {
        Member {
            group,
            rss: AtomicU64::new(0),
            hwm: AtomicU64::new(0),
            peak_hwm: AtomicU64::new(0),
            watches: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            killed_for: OnceLock::new(),
        }
    }

    /// The group this member is.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    fn record(&self, t: TreeMemory) {
        self.rss.store(t.rss_bytes, Ordering::Relaxed);
        self.hwm.store(t.hwm_bytes, Ordering::Relaxed);
        self.peak_hwm.fetch_max(t.hwm_bytes, Ordering::Relaxed);
        for w in self
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            w.fetch_max(t.rss_bytes, Ordering::Relaxed);
        }
    }

    /// Walks the tree and reads its memory.
    fn sample(&self, sys: &dyn Sys) -> TreeMemory {
        if self.group.exit().is_some() {
            return TreeMemory::default();
        }
        let pids = sys.tree(self.group.pid());
        let t = sys.memory(&pids);
        *self.pids.lock().unwrap_or_else(|e| e.into_inner()) = pids;
        self.record(t);
        t
    }

    /// Reads the memory of the processes the last walk found (the root if none yet).
    fn quick_sample(&self, sys: &dyn Sys) -> TreeMemory {
        if self.group.exit().is_some() {
            return TreeMemory::default();
        }
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if pids.is_empty() {
            pids.push(self.group.pid());
        }
        let t = sys.memory(&pids);
        self.record(t);
        t
    }

    /// The highest sum of peaks seen (an `exec` call's peak, with `wait4`'s at its end).
    pub fn peak_hwm(&self) -> u64 {
        self.peak_hwm.load(Ordering::Relaxed)
    }

    /// Why the guard killed this member, if it did.
    pub fn killed_for(&self) -> Option<&str> {
        self.killed_for.get().map(String::as_str)
    }

    /// Kills the member's group for `reason` (kept for its calls' error messages).
    fn kill_for(&self, reason: String) {
        tracing::warn!(
            pid = self.group.pid(),
            "killing the function's processes: {reason}"
        );
        let _ = self.killed_for.set(reason);
        self.group.kill();
    }

    /// Starts watching the peak of one call, from the latest sample (no system call on
    /// the call's path: a sample costs tens of microseconds). A stale sample can only make
    /// the call's peak larger, never smaller.
    pub fn watch(&self) -> CallWatch {
        let peak = Arc::new(AtomicU64::new(self.rss.load(Ordering::Relaxed)));
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(peak.clone());
        CallWatch {
            start_hwm: self.hwm.load(Ordering::Relaxed),
            peak,
        }
    }

    /// Ends a call's watch (reads the memory of the tree the last walk found): the highest
    /// resident bytes sampled during the call, or the tree's peak when that rose during the
    /// call (then the call reached it).
    pub fn finish(&self, watch: CallWatch, sys: &dyn Sys) -> u64 {
        let t = self.quick_sample(sys);
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| !Arc::ptr_eq(w, &watch.peak));
        let sampled = watch.peak.load(Ordering::Relaxed);
        if t.hwm_bytes > watch.start_hwm {
            sampled.max(t.hwm_bytes)
        } else {
            sampled
        }
    }
}

/// Measures the members and enforces the limit (see the module docs).
pub struct MemoryGuard {
    sys: Arc<dyn Sys>,
    limit: Option<u64>,
    own_bytes: OwnBytes,
    members: Mutex<Vec<Arc<Member>>>,
    busy: AtomicUsize,
    wake: Arc<Notify>,
    sampler: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for MemoryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGuard")
            .field("limit", &self.limit)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

/// A member's place in the guard: removed when dropped.
#[derive(Debug)]
pub struct Tracked {
    guard: Arc<MemoryGuard>,
    member: Arc<Member>,
}

impl Tracked {
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.guard
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| !Arc::ptr_eq(m, &self.member));
    }
}

/// A call in flight: samples are frequent while one is alive.
#[derive(Debug)]
pub struct Busy<'a>(&'a MemoryGuard);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MemoryGuard {
    /// A guard of `limit` bytes (`None`: measure only) for a watchdog whose own memory is
    /// `own_bytes()`. Call [`MemoryGuard::start_sampling`] to sample in the background.
    pub fn new(sys: Arc<dyn Sys>, limit: Option<u64>, own_bytes: OwnBytes) -> Arc<MemoryGuard> {
        Arc::new(MemoryGuard {
            sys,
            limit,
            own_bytes,
            members: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            wake: Arc::new(Notify::new()),
            sampler: Mutex::new(None),
        })
    }

    /// The system the guard samples.
    pub fn sys(&self) -> &dyn Sys {
        &*self.sys
    }

    /// The limit it enforces, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// The watchdog's own memory now.
    pub fn own_bytes(&self) -> u64 {
        (self.own_bytes)()
    }

    /// Samples in a runtime task until the guard is dropped.
    pub fn start_sampling(self: &Arc<MemoryGuard>) {
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        let task = tokio::spawn(async move {
            let mut next = faas_common::clock::tokio_instant();
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = wake.notified() => {
                        next = next.min(faas_common::clock::tokio_instant() + BUSY_INTERVAL);
                        continue;
                    }
                }
                let Some(guard) = weak.upgrade() else {
                    return;
                };
                guard.sample();
                let busy = guard.busy.load(Ordering::Relaxed) > 0;
                drop(guard);
                next = faas_common::clock::tokio_instant()
                    + if busy { BUSY_INTERVAL } else { IDLE_INTERVAL };
            }
        });
        *self.sampler.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
    }

    /// Watches `group` until the returned place is dropped.
    pub fn track(self: &Arc<MemoryGuard>, group: Arc<Group>) -> Tracked {
        let member = Arc::new(Member::new(group));
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(member.clone());
        Tracked {
            guard: self.clone(),
            member,
        }
    }

    /// Marks a call in flight (sampling speeds up at once).
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        Busy(self)
    }

    fn members(&self) -> Vec<Arc<Member>> {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Samples every member; past the limit, kills the largest one.
    pub fn sample(&self) {
        let members = self.members();
        if members.is_empty() {
            return;
        }
        let mut total = self.own_bytes();
        let mut largest: Option<(&Arc<Member>, u64)> = None;
        for m in &members {
            let rss = m.sample(&*self.sys).rss_bytes;
            total = total.saturating_add(rss);
            if rss > 0 && largest.is_none_or(|(_, most)| rss > most) {
                largest = Some((m, rss));
            }
        }
        if let (Some(limit), Some((victim, _))) = (self.limit, largest)
            && total > limit
        {
            victim.kill_for(format!(
                "the function used {total} bytes (its processes and the watchdog), \
                 above its memory limit of {limit} bytes"
            ));
        }
    }

    /// Resident bytes of every member now (fresh samples).
    pub fn rss_bytes(&self) -> u64 {
        self.members()
            .iter()
            .map(|m| m.sample(&*self.sys).rss_bytes)
            .sum()
    }

    /// The pids leading the members' groups.
    pub fn pids(&self) -> Vec<u32> {
        self.members().iter().map(|m| m.group.pid()).collect()
    }

    /// Kills every member's group (the container is stopping).
    pub fn kill_all(&self) {
        for m in self.members() {
            m.group.kill();
        }
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        if let Some(task) = self
            .sampler
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::sys_fake::FakeSys;

    fn guard(sys: &Arc<FakeSys>, limit: Option<u64>) -> Arc<MemoryGuard> {
        MemoryGuard::new(sys.clone(), limit, Box::new(|| 10))
    }

    #[test]
    fn past_the_limit_the_largest_member_is_killed_with_its_reason() {
        let sys = Arc::new(FakeSys::default());
        let g = guard(&sys, Some(100));
        let small = g.track(Group::new(5, sys.clone()));
        let big = g.track(Group::new(6, sys.clone()));
        sys.set_memory(5, 40, 40);
        sys.set_memory(6, 45, 45);
        g.sample();
        assert!(sys.kills().is_empty(), "10 + 40 + 45 = 95 fits");
        sys.set_memory(6, 60, 60);
        g.sample();
        assert_eq!(sys.kills(), vec![6]);
        let why = big.member().killed_for().unwrap();
        assert!(
            why.contains("used 110 bytes") && why.contains("memory limit of 100 bytes"),
            "{why}"
        );
        assert_eq!(small.member().killed_for(), None);
        assert_eq!(big.member().peak_hwm(), 60);
        drop(small);
        assert_eq!(g.members().len(), 1, "a dropped place leaves the guard");
    }

    #[test]
    fn without_a_limit_the_guard_only_measures() {
        let sys = Arc::new(FakeSys::default());
        let g = guard(&sys, None);
        let _m = g.track(Group::new(5, sys.clone()));
        sys.set_memory(5, 1 << 40, 1 << 40);
        g.sample();
        assert!(sys.kills().is_empty());
        assert_eq!(g.rss_bytes(), 1 << 40);
        g.kill_all();
        assert_eq!(sys.kills(), vec![5]);
    }

    #[test]
    fn a_call_sees_the_highest_sample_or_the_peak_that_rose_during_it() {
        let sys = Arc::new(FakeSys::default());
        let g = guard(&sys, None);
        let m = g.track(Group::new(5, sys.clone()));
        let m = m.member();
        sys.set_memory(5, 20, 100);
        let w = m.watch();
        assert_eq!(
            m.finish(w, g.sys()),
            100,
            "never sampled before the call: its peak may be the call's (an upper bound)"
        );
        let w = m.watch();
        sys.set_memory(5, 50, 100);
        g.sample();
        sys.set_memory(5, 30, 100);
        assert_eq!(
            m.finish(w, g.sys()),
            50,
            "the peak of 100 was before the call"
        );

        let w = m.watch();
        sys.set_memory(5, 30, 140);
        assert_eq!(m.finish(w, g.sys()), 140, "the peak rose during the call");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_runs_in_the_background_until_the_guard_goes() {
        let sys = Arc::new(FakeSys::default());
        let g = guard(&sys, Some(100));
        g.start_sampling();
        let m = g.track(Group::new(9, sys.clone()));
        sys.set_memory(9, 500, 500);
        let busy = g.busy();
        tokio::time::sleep(BUSY_INTERVAL * 3).await;
        drop(busy);
        assert_eq!(sys.kills(), vec![9]);
        assert!(m.member().killed_for().is_some());
        drop(m);
        drop(g);
        tokio::time::sleep(IDLE_INTERVAL * 2).await;
    }
}
