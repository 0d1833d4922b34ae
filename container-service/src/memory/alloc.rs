//! A global allocator that counts live heap bytes and lets requests watch their peak.
//!
//! Costs on the allocation path: one atomic add, one load of the watcher mask, and for each
//! request currently watching (at most [`SLOTS`]) a load and, only when a new high is
//! reached, a `fetch_max`. Freeing is one atomic subtract. Requests beyond [`SLOTS`] at once
//! fall back to the process-lifetime peak (an upper bound, never an underestimate).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many requests can watch their own peak at once.
pub const SLOTS: usize = 64;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PROCESS_PEAK: AtomicUsize = AtomicUsize::new(0);
static ACTIVE: AtomicU64 = AtomicU64::new(0);
static PEAKS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// The system allocator with live-byte counting (installed as `#[global_allocator]` in lib.rs).
pub struct CountingAlloc;

#[inline]
fn raise(slot: &AtomicUsize, now: usize) {
    if now > slot.load(Relaxed) {
        slot.fetch_max(now, Relaxed);
    }
}

#[inline]
fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    raise(&PROCESS_PEAK, now);
    let mut mask = ACTIVE.load(Relaxed);
    while mask != 0 {
        raise(&PEAKS[mask.trailing_zeros() as usize], now);
        mask &= mask - 1;
    }
}

#[inline]
fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Relaxed);
}

// SAFETY: every method forwards to `System` unchanged and only updates counters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let old = layout.size();
            if new_size >= old {
                grew(new_size - old);
            } else {
                shrank(old - new_size);
            }
        }
        p
    }
}

/// Heap bytes live right now (0 when the counting allocator is not installed).
pub fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// The highest live heap seen since the process started.
pub fn process_peak_bytes() -> usize {
    PROCESS_PEAK.load(Relaxed)
}

/// Watches the live-heap high-water mark from its creation until it is dropped.
#[derive(Debug)]
pub struct PeakWatch {
    slot: Option<usize>,
}

impl PeakWatch {
    /// Starts watching (takes a free slot, or falls back to the process peak).
    pub fn start() -> PeakWatch {
        let mut mask = ACTIVE.load(Relaxed);
        loop {
            let free = !mask;
            if free == 0 {
                return PeakWatch { slot: None };
            }
            let i = free.trailing_zeros() as usize;
            match ACTIVE.compare_exchange_weak(mask, mask | (1 << i), Relaxed, Relaxed) {
                Ok(_) => {
                    PEAKS[i].store(LIVE.load(Relaxed), Relaxed);
                    return PeakWatch { slot: Some(i) };
                }
                Err(now) => mask = now,
            }
        }
    }

    /// The highest live heap seen since [`PeakWatch::start`] (at least the live heap now).
    pub fn peak(&self) -> usize {
        let now = LIVE.load(Relaxed);
        match self.slot {
            Some(i) => PEAKS[i].load(Relaxed).max(now),
            None => PROCESS_PEAK.load(Relaxed).max(now),
        }
    }
}

impl Drop for PeakWatch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            ACTIVE.fetch_and(!(1 << i), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_sees_an_allocation_that_is_already_freed() {
        let watch = PeakWatch::start();
        let block = vec![1u8; 8 << 20];
        std::hint::black_box(&block);
        let live_while_held = live_bytes();
        drop(block);
        assert!(live_while_held >= 8 << 20);
        // Every rise of the live counter raises the watching slots, so the peak cannot be
        // below any live figure read while the watch ran (even with other tests allocating).
        assert!(watch.peak() >= live_while_held, "peak {}", watch.peak());
        assert!(process_peak_bytes() >= live_while_held);
    }

    #[test]
    fn slots_are_given_back() {
        let watches: Vec<PeakWatch> = (0..SLOTS + 2).map(|_| PeakWatch::start()).collect();
        assert!(watches.iter().any(|w| w.slot.is_none()));
        drop(watches);
        let w = PeakWatch::start();
        assert!(w.slot.is_some());
    }
}
