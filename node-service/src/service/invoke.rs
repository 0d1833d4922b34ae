//! Routing an invocation into its container, and telling a container that was gone before
//! the call (an error with a code, the container buried) from one that died during it (a
//! `ContainerExited` / `OutOfMemory` reply).

use super::*;

impl Node {
    /// Runs one invocation in container `id`. A function failure, and a container that
    /// died or went silent during the call, are `Ok` with `failure` set (the latter also
    /// buries it). A call whose event cannot reach the function is an error with an
    /// [`error_code`](NodeError::error_code); a container that cannot be connected to is
    /// buried first.
    pub async fn invoke(
        &self,
        id: &str,
        request_id: String,
        event: Vec<u8>,
        meta: Option<FunctionMeta>,
    ) -> Result<Invocation, NodeError> {
        if id.is_empty() {
            return Err(NodeError::InvalidArgument(
                "container_id must not be empty".into(),
            ));
        }
        let meta = meta.unwrap_or_default();
        validate_invoke_meta(&meta)?;
        let container = self.containers.get(id).ok_or_else(|| self.not_found(id))?;
        if let ContainerState::Dead { reason } = &container.state {
            return Err(NodeError::ContainerDead {
                container: id.to_string(),
                node: self.identity.node_id.clone(),
                reason: reason.clone(),
            });
        }
        check_function(&container, &meta)?;
        let pick = |asked: String, own: &str| {
            if asked.is_empty() {
                own.to_string()
            } else {
                asked
            }
        };
        let mut handler = pick(meta.handler, &container.spec.handler);
        if bundle::is_bundle(&handler) {
            // Checked to be the container's own; its container service takes none.
            handler.clear();
        }
        let call = InvokeCall {
            request_id,
            function_name: pick(meta.function_name, &container.spec.function_name),
            handler,
            event,
            // In range: checked by validate_invoke_meta.
            timeout_ms: u64::try_from(meta.timeout_ms).unwrap_or_default(),
        };
        let effective_ms = [
            call.timeout_ms,
            container.spec.timeout_ms,
            DEFAULT_TIMEOUT_MS,
        ]
        .into_iter()
        .find(|t| *t > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
        let deadline = Duration::from_millis(effective_ms) + ANSWER_GRACE;
        // Counted until this function returns or its future is dropped: burying a container
        // that failed during the call is still part of the call.
        let _running = Running::begin(&container.calls, self.host.as_ref(), &self.activity);
        match self.invoker.invoke(&container, call, deadline).await {
            Ok(invocation) => Ok(invocation),
            Err(InvokeError::InvalidArgument(m)) => Err(NodeError::InvalidArgument(m)),
            Err(InvokeError::WrongFunction(m)) => Err(NodeError::WrongFunction(m)),
            Err(InvokeError::Failed(message)) => Err(NodeError::Invoke {
                container: id.to_string(),
                message,
            }),
            Err(e @ InvokeError::Unreachable(_)) => {
                let (_, reason) = self.diagnose(&container, &e).await;
                self.bury(id, &reason).await;
                Err(NodeError::ContainerUnreachable {
                    container: id.to_string(),
                    node: self.identity.node_id.clone(),
                    reason,
                })
            }
            Err(e @ (InvokeError::Disconnected(_) | InvokeError::NoAnswer(_))) => {
                let (liveness, reason) = self.diagnose(&container, &e).await;
                self.bury(id, &reason).await;
                Ok(if liveness == Liveness::OutOfMemory {
                    Invocation::out_of_memory(&reason)
                } else {
                    Invocation::container_exited(&reason)
                })
            }
        }
    }

    /// Why a call into `container` failed with `e`, from the runtime's view of its process.
    pub(super) async fn diagnose(
        &self,
        container: &Container,
        e: &InvokeError,
    ) -> (Liveness, String) {
        let id = &container.id;
        let liveness = self.runtime.liveness(id).await;
        let reason = match liveness {
            Liveness::Exited => format!("container {id} process exited ({e})"),
            Liveness::OutOfMemory => format!(
                "container {id} was killed for passing its memory limit of {} bytes (out of memory)",
                container.spec.memory_bytes
            ),
            Liveness::Unknown => format!("container {id} is gone from the runtime ({e})"),
            Liveness::Running => format!("container {id} does not answer: {e}"),
        };
        (liveness, reason)
    }

    /// Marks a container dead and reclaims its process; the record stays until removed.
    pub(super) async fn bury(&self, id: &str, reason: &str) {
        if self.containers.mark_dead(id, reason) {
            tracing::warn!(container = id, %reason, "container marked dead");
            self.invoker.forget(id);
            if let Err(e) = self.runtime.remove(id).await {
                tracing::debug!(container = id, error = %e, "dead container already gone");
            }
        }
    }
}
