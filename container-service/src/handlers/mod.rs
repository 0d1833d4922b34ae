//! The built-in handlers a container can run, chosen by the function's `handler` name.
//!
//! Each handler lives in its own module and takes the event (a JSON object; empty means all
//! defaults) and a [`Context`] (memory budget, cancellation). Handlers run concurrently: there
//! is no lock around them. CPU-bound work runs on tokio's blocking pool and polls the
//! cancellation flag, so a timeout really stops it.

pub mod block;
pub mod cancel;
pub mod cpu;
pub mod echo;
pub mod event;
pub mod hello;
pub mod memory;
pub mod sleep;
pub mod spin;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::memory::budget::MemoryBudget;
pub use cancel::CancelToken;

/// The built-in handlers: the platform's one list ([`faas_proto::builtin`], whose names
/// node services check before they start a container); [`invoke`] runs each, and its `match`
/// makes a handler added to the list fail to compile here until it is implemented.
pub use faas_proto::builtin::Builtin as HandlerKind;
/// The name is not one of [`HandlerKind::NAMES`].
pub use faas_proto::builtin::UnknownBuiltin as UnknownHandler;

/// How a handler failed. The code is what travels in `InvokeReply.error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    BadEvent(String),
    #[error("{0}")]
    OutOfMemory(String),
    #[error("{0}")]
    Function(String),
    #[error("the invocation was cancelled")]
    Cancelled,
}

impl HandlerError {
    /// The `error_code` of the reply.
    pub fn code(&self) -> &'static str {
        match self {
            HandlerError::BadEvent(_) => "BadEvent",
            HandlerError::OutOfMemory(_) => "OutOfMemory",
            HandlerError::Function(_) => "FunctionError",
            HandlerError::Cancelled => "Cancelled",
        }
    }
}

/// Counts handler jobs running on the blocking pool (they outlive a timed-out request until
/// they notice the cancellation).
#[derive(Clone, Debug, Default)]
pub struct BlockingJobs(Arc<AtomicI64>);

impl BlockingJobs {
    /// Jobs running right now.
    pub fn running(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a handler may use besides its event.
#[derive(Clone, Debug)]
pub struct Context {
    pub budget: Arc<MemoryBudget>,
    pub cancel: CancelToken,
    pub jobs: BlockingJobs,
}

impl Context {
    /// Runs `work` on the blocking pool, counted in [`Context::jobs`].
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HandlerError> + Send + 'static,
    ) -> Result<T, HandlerError> {
        let jobs = self.jobs.0.clone();
        jobs.fetch_add(1, Ordering::Relaxed);
        let task = tokio::task::spawn_blocking(move || {
            struct Done(Arc<AtomicI64>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::Relaxed);
                }
            }
            let _done = Done(jobs);
            work()
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(HandlerError::Function(format!("the handler failed: {e}"))),
        }
    }
}

/// Runs handler `kind` on `event`.
pub async fn invoke(
    kind: HandlerKind,
    event: Vec<u8>,
    ctx: &Context,
) -> Result<Vec<u8>, HandlerError> {
    match kind {
        HandlerKind::Echo => Ok(echo::run(event)),
        HandlerKind::Hello => hello::run(&event::Event::parse(&event)?),
        HandlerKind::Sleep => sleep::run(&event::Event::parse(&event)?).await,
        HandlerKind::Cpu => cpu::run(&event::Event::parse(&event)?, ctx).await,
        HandlerKind::Memory => memory::run(&event::Event::parse(&event)?, ctx).await,
        HandlerKind::Spin => spin::run(&event::Event::parse(&event)?, ctx).await,
    }
}

/// Serializes a handler's JSON body.
pub(crate) fn json_body(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A context with a generous budget and no heap accounting.
    pub fn context(limit: u64) -> Context {
        Context {
            budget: Arc::new(MemoryBudget::new(limit, 0, || {
                crate::memory::alloc::live_bytes() as u64
            })),
            cancel: CancelToken::default(),
            jobs: BlockingJobs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in HandlerKind::NAMES {
            assert_eq!(name.parse::<HandlerKind>().unwrap().as_str(), name);
        }
        assert_eq!(
            "python3.9".parse::<HandlerKind>(),
            Err(UnknownHandler("python3.9".into()))
        );
    }
}
