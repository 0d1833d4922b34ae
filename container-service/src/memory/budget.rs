//! The container's memory limit, emulated for the process runtime (which has no cgroup).
//!
//! Before a handler allocates a large block it asks for a [`Reservation`]; the request is
//! refused when `resident baseline + live heap + other reservations + the block` would pass
//! the limit. The reservation is given back once the block is allocated (the block is then
//! counted in the live heap). Under Docker the emulation is turned off
//! (`--emulate-memory-limit false`) and the kernel's OOM killer enforces the real limit.

use std::sync::atomic::{AtomicU64, Ordering};

/// Refusal of an allocation that would pass the container's memory limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "allocating {requested} bytes would take the container to {projected} bytes, above its memory limit of {limit} bytes"
)]
pub struct OverLimit {
    pub requested: u64,
    pub projected: u64,
    pub limit: u64,
}

/// The memory limit and the outstanding reservations of one container.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    baseline: u64,
    reserved: AtomicU64,
    live: fn() -> u64,
}

/// Bytes promised to a handler that is about to allocate them; given back on drop.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, of which `baseline` are resident outside the heap and
    /// `live()` are the live heap bytes.
    pub fn new(limit: u64, baseline: u64, live: fn() -> u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            baseline,
            reserved: AtomicU64::new(0),
            live,
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Reserves `bytes`, or refuses if the container would pass its limit.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation<'_>, OverLimit> {
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            let projected = self
                .baseline
                .saturating_add((self.live)())
                .saturating_add(reserved)
                .saturating_add(bytes);
            if projected > self.limit {
                return Err(OverLimit {
                    requested: bytes,
                    projected,
                    limit: self.limit,
                });
            }
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        budget: self,
                        bytes,
                    });
                }
                Err(now) => reserved = now,
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_heap() -> u64 {
        0
    }

    #[test]
    fn reservations_count_against_the_limit_until_dropped() {
        let budget = MemoryBudget::new(100, 10, no_heap);
        let a = budget.reserve(50).unwrap();
        let err = budget.reserve(41).unwrap_err();
        assert_eq!(err.projected, 101);
        assert_eq!(err.limit, 100);
        let b = budget.reserve(40).unwrap();
        drop(a);
        drop(b);
        assert!(budget.reserve(90).is_ok());
        assert!(budget.reserve(u64::MAX).is_err());
    }
}
