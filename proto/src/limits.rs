//! What a function may be, the same at every component that takes one: the built-in
//! handlers and the largest sizes.
//!
//! The handlers are implemented by the container service, but a node service (and anyone
//! else who starts containers) must refuse an unknown one *before* starting a process, so
//! the list lives here, beside the wire protocol, and the container service's own handler
//! table is checked against it. The sizes are not policy (the API server has its own, much
//! tighter, limits for what a user may deploy); they only keep absurd values (a memory of
//! 1e18 bytes, a negative timeout, a 1 MiB name) from reaching arithmetic, processes and
//! error messages. Each check names the field it was given, so the message says which one
//! to fix: `check_memory("function_meta.memory_in_bytes", m)`.

use faas_common::text::clip;

/// The built-in handlers of the container service, in the order they are documented
/// ([`crate::builtin::Builtin::NAMES`], the one list).
pub const HANDLERS: [&str; 6] = crate::builtin::Builtin::NAMES;

/// The largest memory limit of a function: 1 TiB.
pub const MAX_MEMORY_BYTES: i64 = 1 << 40;

/// The longest function timeout: 24 hours.
pub const MAX_TIMEOUT_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest function name (and any other name a component keeps), in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A value outside what a component accepts; `field` names it as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{field} is {bytes} bytes long; the limit is {MAX_NAME_BYTES} bytes")]
    NameTooLong { field: &'static str, bytes: usize },
    #[error("{field} {handler:?} is not a built-in handler; use one of {}", HANDLERS.join(", "))]
    UnknownHandler {
        field: &'static str,
        /// The handler as given, clipped.
        handler: String,
    },
    #[error("{field} must be between 1 byte and 1 TiB ({MAX_MEMORY_BYTES} bytes), got {bytes}")]
    Memory { field: &'static str, bytes: i64 },
    #[error("{field} must be between 0 and {MAX_TIMEOUT_MS} ms (24 h), got {ms}")]
    Timeout { field: &'static str, ms: i64 },
}

/// Whether `name` is one of [`HANDLERS`].
pub fn is_handler(name: &str) -> bool {
    HANDLERS.contains(&name)
}

/// `name` is at most [`MAX_NAME_BYTES`] long.
pub fn check_name(field: &'static str, name: &str) -> Result<(), LimitError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(LimitError::NameTooLong {
            field,
            bytes: name.len(),
        });
    }
    Ok(())
}

/// `handler` is one of [`HANDLERS`].
pub fn check_handler(field: &'static str, handler: &str) -> Result<(), LimitError> {
    if !is_handler(handler) {
        return Err(LimitError::UnknownHandler {
            field,
            handler: clip(handler).into_owned(),
        });
    }
    Ok(())
}

/// `bytes` is in 1 ..= [`MAX_MEMORY_BYTES`].
pub fn check_memory(field: &'static str, bytes: i64) -> Result<(), LimitError> {
    if !(1..=MAX_MEMORY_BYTES).contains(&bytes) {
        return Err(LimitError::Memory { field, bytes });
    }
    Ok(())
}

/// `ms` is in 0 ..= [`MAX_TIMEOUT_MS`] (0 means "the default" wherever a timeout is taken).
pub fn check_timeout(field: &'static str, ms: i64) -> Result<(), LimitError> {
    if !(0..=MAX_TIMEOUT_MS).contains(&ms) {
        return Err(LimitError::Timeout { field, ms });
    }
    Ok(())
}

/// An unsigned size as the checks take it (a `u64` past `i64::MAX` is absurd anyway).
pub fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_inclusive_and_the_messages_name_the_field() {
        assert!(check_memory("m", 1).is_ok());
        assert!(check_memory("m", MAX_MEMORY_BYTES).is_ok());
        for bad in [0, -1, MAX_MEMORY_BYTES + 1, i64::MAX] {
            let e = check_memory("function_meta.memory_in_bytes", bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("function_meta.memory_in_bytes must be"),
                "{e}"
            );
        }
        assert!(check_timeout("t", 0).is_ok());
        assert!(check_timeout("t", MAX_TIMEOUT_MS).is_ok());
        assert!(check_timeout("t", -1).is_err());
        assert_eq!(
            check_timeout("--timeout-ms", MAX_TIMEOUT_MS + 1)
                .unwrap_err()
                .to_string(),
            "--timeout-ms must be between 0 and 86400000 ms (24 h), got 86400001"
        );
        assert!(check_name("n", &"x".repeat(MAX_NAME_BYTES)).is_ok());
        assert_eq!(
            check_name("name", &"x".repeat(MAX_NAME_BYTES + 1))
                .unwrap_err()
                .to_string(),
            "name is 257 bytes long; the limit is 256 bytes"
        );
        assert_eq!(signed(u64::MAX), i64::MAX);
    }

    #[test]
    fn an_unknown_handler_is_quoted_clipped_with_the_known_ones() {
        for h in HANDLERS {
            assert!(check_handler("handler", h).is_ok());
        }
        let e = check_handler("handler", "python3.9").unwrap_err();
        assert_eq!(
            e.to_string(),
            "handler \"python3.9\" is not a built-in handler; use one of hello, echo, sleep, \
             cpu, memory, spin"
        );
        let long = "h".repeat(1 << 20);
        let message = check_handler("handler", &long).unwrap_err().to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("(1048576 bytes)"), "{message}");
    }
}
