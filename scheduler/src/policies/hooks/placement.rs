//! Placement and failure rules shared by the hooked policies: first fit (the contest
//! baseline's), and what a failed reserve or create does to the requests waiting for it.

use crate::core::{AcquireError, AcquireErrorCode, CoreError, CreateOp, Decision, State};
use crate::model::{MIB, Millis, OpId, Text};
use crate::store::FunctionKey;

/// Finds room for a waiting request the way the baseline does: a create on the first node
/// with room, else the reserve in flight that will still have room, else a new reserve. A
/// function larger than a node is rejected with `RESOURCE_EXHAUSTED`.
pub(super) fn place_first_fit(
    state: &mut State,
    now: Millis,
    request_id: Text,
    function: FunctionKey,
    out: &mut Vec<Decision>,
) {
    let Some(f) = state.store.function(function) else {
        return;
    };
    let memory = f.spec.memory_bytes;
    if let Some(node) = state.first_fit(memory) {
        state.start_create(now, node, function, Some(request_id), out);
        return;
    }
    let expected = state.expected_node_bytes();
    if memory > expected {
        let error = AcquireError {
            code: AcquireErrorCode::ResourceExhausted,
            message: format!(
                "function {} needs {} MiB per container, more than a node offers ({} MiB)",
                f.spec.name,
                memory / MIB,
                expected / MIB
            ),
        };
        state.reject(request_id, error, out);
        return;
    }
    wait_for_node(state, now, &request_id, memory, out);
}

/// Binds a waiting request to the reserve in flight that will still have `memory` free, or
/// to a new reserve.
pub(super) fn wait_for_node(
    state: &mut State,
    now: Millis,
    request_id: &Text,
    memory: u64,
    out: &mut Vec<Decision>,
) {
    let pending = state
        .reserves()
        .find(|(_, r)| r.expected_bytes.saturating_sub(r.planned_bytes) >= memory)
        .map(|(op, _)| op);
    let op = match pending {
        Some(op) => op,
        None => state.start_reserve(now, out),
    };
    state.bind_to_reserve(request_id, op);
}

/// Rejects the requests that waited for a failed reserve (`RESOURCE_EXHAUSTED` from the
/// resource manager passes through, anything else is `UNAVAILABLE`).
pub(super) fn reject_reserve_waiters(
    state: &mut State,
    waiters: Vec<Text>,
    exhausted: bool,
    message: String,
    out: &mut Vec<Decision>,
) {
    let error = if exhausted {
        AcquireError {
            code: AcquireErrorCode::ResourceExhausted,
            message,
        }
    } else {
        AcquireError {
            code: AcquireErrorCode::Unavailable,
            message: format!("cannot reserve a node: {message}"),
        }
    };
    for request_id in waiters {
        state.reject(request_id, error.clone(), out);
    }
}

/// Applies a failed create and rejects the request it was meant for at once (`UNAVAILABLE`,
/// or `FAILED_PRECONDITION` when the node `refused` it; naming function and node).
pub(super) fn create_failed(
    state: &mut State,
    op: OpId,
    message: &str,
    refused: bool,
    out: &mut Vec<Decision>,
) -> Result<CreateOp, CoreError> {
    let (create, request) = state.create_failed(op)?;
    if let Some(request_id) = request {
        let error = state.create_failed_error(&create, message, refused);
        state.reject(request_id, error, out);
    }
    Ok(create)
}
