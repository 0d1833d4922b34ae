//! Checking requests before anything starts, as pure rules (no I/O): a create's name,
//! function and sizes ([`validate_create`], [`validate_spec`]), an invocation's optional
//! function fields ([`validate_invoke_meta`]) and whether a call is meant for its
//! container's function ([`check_function`]).

use faas_common::text::clip;
use faas_proto::limits;

use crate::error::NodeError;
use crate::model::bundle;
use crate::model::{Container, ContainerSpec, FunctionMeta};

/// Checks a `CreateContainer` request (its container name and its function) and turns
/// it into a spec.
pub fn validate_create(name: &str, meta: Option<FunctionMeta>) -> Result<ContainerSpec, NodeError> {
    limits::check_name("name", name)?;
    validate_spec(meta)
}

/// Checks a `CreateContainer` request's function and turns it into a spec: a name, a
/// built-in handler or a well-formed `bundle:<sha256>`, a memory of 1 byte to 1 TiB, a
/// timeout of 0 (the default) to 24 h.
pub fn validate_spec(meta: Option<FunctionMeta>) -> Result<ContainerSpec, NodeError> {
    let meta = meta.ok_or_else(|| {
        NodeError::InvalidArgument("function_meta is required to create a container".into())
    })?;
    if meta.function_name.trim().is_empty() {
        return Err(NodeError::InvalidArgument(
            "function_meta.function_name must not be empty".into(),
        ));
    }
    limits::check_name("function_meta.function_name", &meta.function_name)?;
    if meta.handler.trim().is_empty() {
        return Err(NodeError::InvalidArgument(
            "function_meta.handler must not be empty".into(),
        ));
    }
    check_handler(&meta.handler)?;
    limits::check_memory("function_meta.memory_in_bytes", meta.memory_bytes)?;
    limits::check_timeout("function_meta.timeout_in_ms", meta.timeout_ms)?;
    // Both are in range (checked just above), so neither conversion can fail.
    Ok(ContainerSpec {
        function_name: meta.function_name,
        handler: meta.handler,
        memory_bytes: u64::try_from(meta.memory_bytes).unwrap_or_default(),
        timeout_ms: u64::try_from(meta.timeout_ms).unwrap_or_default(),
    })
}

/// A built-in handler, or a well-formed `bundle:<sha256>`.
pub fn check_handler(handler: &str) -> Result<(), NodeError> {
    match bundle::parse_handler("function_meta.handler", handler) {
        None => Ok(limits::check_handler("function_meta.handler", handler)?),
        Some(Ok(_)) => Ok(()),
        Some(Err(message)) => Err(NodeError::InvalidArgument(message)),
    }
}

/// Checks the optional function fields of an `InvokeFunction` request: empty or 0 means
/// "the container's"; anything given must be sane (a name of at most 256 bytes, a
/// built-in handler or a well-formed bundle, a memory of up to 1 TiB, a timeout of up to
/// 24 h).
pub fn validate_invoke_meta(meta: &FunctionMeta) -> Result<(), NodeError> {
    limits::check_name("function_meta.function_name", &meta.function_name)?;
    if !meta.handler.is_empty() {
        check_handler(&meta.handler)?;
    }
    if meta.memory_bytes != 0 {
        limits::check_memory("function_meta.memory_in_bytes", meta.memory_bytes)?;
    }
    limits::check_timeout("function_meta.timeout_in_ms", meta.timeout_ms)?;
    Ok(())
}

/// Refuses a call meant for another function than `container`'s (empty fields match).
pub fn check_function(container: &Container, meta: &FunctionMeta) -> Result<(), NodeError> {
    let spec = &container.spec;
    let name_ok = meta.function_name.is_empty() || meta.function_name == spec.function_name;
    let handler_ok = meta.handler.is_empty() || meta.handler == spec.handler;
    if name_ok && handler_ok {
        return Ok(());
    }
    Err(NodeError::WrongFunction(format!(
        "container {} runs function {:?} (handler {:?}), not function {:?} (handler {:?}); \
         invoke a container of that function instead",
        container.id,
        spec.function_name,
        spec.handler,
        clip(&meta.function_name),
        clip(&meta.handler)
    )))
}
