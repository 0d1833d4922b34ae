//! A block of memory a handler really uses: reserved against the container's limit,
//! allocated, and written on every page so it is resident (not just address space).

use super::{CancelToken, HandlerError};
use crate::memory::budget::MemoryBudget;
use faas_common::units::MIB;

/// Bytes of `mb` MiB, or a `BadEvent` when that does not fit in memory at all.
pub fn mib_to_bytes(mb: u64) -> Result<u64, HandlerError> {
    mb.checked_mul(MIB)
        .filter(|b| usize::try_from(*b).is_ok())
        .ok_or_else(|| HandlerError::BadEvent(format!("field `mb` is too large: {mb} MiB")))
}

/// Allocates `bytes` and writes every page (1 MiB at a time, looking at `cancel` between
/// steps). Refuses with `OutOfMemory` when the container would pass its limit.
pub fn allocate_touched(
    bytes: u64,
    budget: &MemoryBudget,
    cancel: &CancelToken,
) -> Result<Vec<u8>, HandlerError> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let reservation = budget
        .reserve(bytes)
        .map_err(|e| HandlerError::OutOfMemory(format!("out of memory: {e}")))?;
    let len = usize::try_from(bytes)
        .map_err(|_| HandlerError::BadEvent(format!("cannot hold {bytes} bytes")))?;
    let mut block = Vec::new();
    block.try_reserve_exact(len).map_err(|e| {
        HandlerError::OutOfMemory(format!("out of memory: cannot allocate {bytes} bytes: {e}"))
    })?;
    // The block is now counted in the live heap: the reservation has done its job.
    drop(reservation);
    let step = MIB as usize;
    while block.len() < len {
        if cancel.is_cancelled() {
            return Err(HandlerError::Cancelled);
        }
        let next = (block.len() + step).min(len);
        block.resize(next, 0xA5);
    }
    Ok(std::hint::black_box(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_every_byte_and_refuses_over_the_limit() {
        let budget = MemoryBudget::new(u64::MAX, 0, || 0);
        let block = allocate_touched(3 * MIB + 5, &budget, &CancelToken::default()).unwrap();
        assert_eq!(block.len() as u64, 3 * MIB + 5);
        assert!(block.iter().all(|b| *b == 0xA5));

        let small = MemoryBudget::new(MIB, 0, || 0);
        let err = allocate_touched(2 * MIB, &small, &CancelToken::default()).unwrap_err();
        assert_eq!(err.code(), "OutOfMemory");
        assert!(
            err.to_string().contains("memory limit of 1048576 bytes"),
            "{err}"
        );

        let cancel = CancelToken::default();
        cancel.cancel();
        assert_eq!(
            allocate_touched(MIB, &budget, &cancel).unwrap_err(),
            HandlerError::Cancelled
        );
        assert!(mib_to_bytes(u64::MAX).is_err());
    }
}
