//! Which function the container runs, fixed once: either by the start-up flags or by one
//! `Bind` call on a container started `--unbound` (the node service's warm pool). Both go
//! through [`FunctionConfig::check`] and [`Binding::bind`], so a Bind is refused exactly where
//! the flags would be and a bound container behaves the same whichever way it was bound.
//!
//! A command function (`--bundle`) is bound at start-up only ([`Binding::bound`], once its
//! watchdog has started): `Bind` carries a handler and no bundle, so a warm-pool container
//! can only become a built-in function.

use std::sync::{Arc, OnceLock};

use faas_proto::limits::{self, LimitError};

use crate::exec::{Executor, FunctionKind, FunctionSpec};
use crate::handlers::HandlerKind;

/// The function timeout when neither the flags nor a Bind set one.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// A function as the flags or a Bind call describe it, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    pub function_name: String,
    pub handler: String,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
}

/// Why a function configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// An unknown handler or an absurd size (see [`faas_proto::limits`]).
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("the function name must not be empty")]
    EmptyName,
    #[error("the timeout must be > 0 ms")]
    NoTimeout,
}

impl FunctionConfig {
    /// Checks the configuration and turns it into the spec an executor runs: a known
    /// handler, a name of at most [`limits::MAX_NAME_BYTES`], a memory limit of 1 byte to
    /// 1 TiB, a timeout of 1 ms to 24 h.
    pub fn check(&self) -> Result<FunctionSpec, SpecError> {
        // The handlers this binary implements are the shared list (`HandlerKind::NAMES`).
        let handler: HandlerKind =
            self.handler
                .parse()
                .map_err(|_| LimitError::UnknownHandler {
                    field: "the handler",
                    handler: faas_common::text::clip(&self.handler).into_owned(),
                })?;
        self.check_limits()?;
        Ok(FunctionSpec {
            function_name: self.function_name.clone(),
            kind: FunctionKind::Builtin(handler),
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
        })
    }

    /// Checks everything but the handler (what a command function has too): a name of at
    /// most [`limits::MAX_NAME_BYTES`], a memory limit of 1 byte to 1 TiB, a timeout of 1 ms
    /// to 24 h.
    pub fn check_limits(&self) -> Result<(), SpecError> {
        limits::check_name("the function name", &self.function_name)?;
        if self.function_name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        limits::check_memory("the memory limit", limits::signed(self.memory_bytes))?;
        limits::check_timeout("the timeout", limits::signed(self.timeout_ms))?;
        if self.timeout_ms == 0 {
            return Err(SpecError::NoTimeout);
        }
        Ok(())
    }
}

/// Why a Bind was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error(
        "this container is already bound to function {function:?} (handler {handler:?}); a container is bound once"
    )]
    AlreadyBound { function: String, handler: String },
}

/// The container's function: unset until bound, then fixed for the container's life.
#[derive(Debug)]
pub struct Binding {
    exec: OnceLock<Arc<Executor>>,
    emulate_memory_limit: bool,
}

impl Binding {
    /// A container bound to nothing yet; `emulate_memory_limit` is passed to the executor
    /// made at binding (see [`Executor::with_emulation`]).
    pub fn unbound(emulate_memory_limit: bool) -> Binding {
        Binding {
            exec: OnceLock::new(),
            emulate_memory_limit,
        }
    }

    /// A container bound right away to `function` (the start-up flags), or unbound when
    /// `None`: the flags are an immediate bind.
    pub fn start(
        function: Option<&FunctionConfig>,
        emulate_memory_limit: bool,
    ) -> Result<Binding, SpecError> {
        let binding = Binding::unbound(emulate_memory_limit);
        if let Some(function) = function {
            // A new binding is unbound: this cannot lose a race.
            let _ = binding.install(function.check()?);
        }
        Ok(binding)
    }

    /// A container bound for good to `exec`'s function (a command function, whose watchdog
    /// is already running).
    pub fn bound(exec: Executor) -> Binding {
        let binding = Binding::unbound(exec.emulates_memory_limit());
        // A new binding is unbound: this cannot fail.
        let _ = binding.exec.set(Arc::new(exec));
        binding
    }

    /// Binds the container to `config`'s function, once. The executor (and with it the
    /// memory baseline the limit emulation and the peak measurement use) is made now.
    pub fn bind(&self, config: &FunctionConfig) -> Result<Arc<Executor>, BindError> {
        if let Some(exec) = self.exec.get() {
            return Err(already_bound(exec));
        }
        self.install(config.check()?)
    }

    fn install(&self, spec: FunctionSpec) -> Result<Arc<Executor>, BindError> {
        let mut made_now = false;
        let exec = self.exec.get_or_init(|| {
            made_now = true;
            Arc::new(Executor::with_emulation(spec, self.emulate_memory_limit))
        });
        if made_now {
            Ok(exec.clone())
        } else {
            // Another Bind won the race.
            Err(already_bound(exec))
        }
    }

    /// The executor of the bound function; `None` while unbound.
    pub fn executor(&self) -> Option<&Arc<Executor>> {
        self.exec.get()
    }

    /// Whether the memory limit is (or will be, once bound) emulated.
    pub fn emulates_memory_limit(&self) -> bool {
        self.emulate_memory_limit
    }
}

fn already_bound(exec: &Executor) -> BindError {
    BindError::AlreadyBound {
        function: exec.spec().function_name.clone(),
        handler: exec.spec().handler_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_common::units::MIB;

    fn config(name: &str, handler: &str, memory_bytes: u64, timeout_ms: u64) -> FunctionConfig {
        FunctionConfig {
            function_name: name.into(),
            handler: handler.into(),
            memory_bytes,
            timeout_ms,
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(matches!(
            config("f", "python3.9", 1, 1).check(),
            Err(SpecError::Limit(LimitError::UnknownHandler { .. }))
        ));
        assert_eq!(
            config(" ", "hello", 1, 1).check().unwrap_err(),
            SpecError::EmptyName
        );
        assert_eq!(
            config("f", "hello", 1, 0).check().unwrap_err(),
            SpecError::NoTimeout
        );
        for (bad, says) in [
            (
                config("f", "hello", 0, 1),
                "the memory limit must be between",
            ),
            (
                config("f", "hello", 1 << 41, 1),
                "the memory limit must be between",
            ),
            (
                config("f", "hello", u64::MAX, 1),
                "the memory limit must be between",
            ),
            (
                config("f", "hello", 1, 86_400_001),
                "the timeout must be between",
            ),
            (
                config(&"f".repeat(257), "hello", 1, 1),
                "the function name is 257 bytes",
            ),
            (config("f", &"h".repeat(1 << 20), 1, 1), "(1048576 bytes)"),
        ] {
            let e = bad.check().unwrap_err().to_string();
            assert!(e.contains(says), "{e} should say {says}");
            assert!(e.len() < 300, "the message quotes at most a clip: {e}");
        }
        assert!(
            config(&"f".repeat(256), "hello", 1 << 40, 86_400_000)
                .check()
                .is_ok()
        );
        let spec = config("f", "sleep", 64, 300).check().unwrap();
        assert!(matches!(
            spec.kind,
            FunctionKind::Builtin(HandlerKind::Sleep)
        ));
        assert_eq!((spec.memory_bytes, spec.timeout_ms), (64, 300));
    }

    #[test]
    fn a_container_binds_once() {
        let binding = Binding::unbound(true);
        assert!(binding.executor().is_none());
        let err = binding.bind(&config("", "hello", MIB, 1)).unwrap_err();
        assert_eq!(err, BindError::Invalid(SpecError::EmptyName));
        assert!(binding.executor().is_none(), "a refused Bind binds nothing");

        let exec = binding.bind(&config("f", "hello", MIB, 1)).unwrap();
        assert_eq!(exec.spec().function_name, "f");
        assert!(exec.emulates_memory_limit());
        let err = binding.bind(&config("g", "echo", MIB, 1)).unwrap_err();
        assert_eq!(
            err,
            BindError::AlreadyBound {
                function: "f".into(),
                handler: "hello".into()
            }
        );
        assert_eq!(binding.executor().unwrap().spec().function_name, "f");
    }

    #[test]
    fn the_start_up_flags_bind_right_away() {
        let bound = Binding::start(Some(&config("f", "echo", MIB, 5)), true).unwrap();
        assert_eq!(bound.executor().unwrap().spec().timeout_ms, 5);
        assert!(matches!(
            bound.bind(&config("g", "echo", 1, 1)),
            Err(BindError::AlreadyBound { .. })
        ));
        assert!(Binding::start(None, true).unwrap().executor().is_none());
        assert!(matches!(
            Binding::start(Some(&config("f", "echo", 0, 5)), true).unwrap_err(),
            SpecError::Limit(LimitError::Memory { bytes: 0, .. })
        ));
    }

    #[test]
    fn without_emulation_the_bound_executor_has_no_limit() {
        let binding = Binding::unbound(false);
        let exec = binding.bind(&config("f", "memory", MIB, 1)).unwrap();
        assert!(!exec.emulates_memory_limit());
    }
}
