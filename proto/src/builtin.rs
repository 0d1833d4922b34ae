//! The container service's built-in handlers: the platform's one list.
//!
//! It lives in `faas-proto` because a handler's name is wire vocabulary (the contest's
//! `FunctionConfig.handler`) that every component checks ([`crate::limits`] refuses an
//! unknown one before a process starts), and because every crate that names a handler (the
//! container service that runs them, the API server that deploys them, the e2e workloads
//! that call them) already depends on `faas-proto`. What the list needs is small: names, an
//! order, parsing and, for the workload files, serde (the optional `serde` feature, so the
//! components do not pull it in through here). A handler added to [`Builtin`] shows up at
//! every one of them (`cli/src/platform_tests.rs` checks it).

use std::fmt;
use std::str::FromStr;

/// A built-in handler; each reads a JSON event (empty means all defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Builtin {
    /// `{"message":"Hello, <name>!"}`.
    Hello,
    /// The event bytes unchanged.
    Echo,
    /// Sleeps `ms` milliseconds.
    Sleep,
    /// `rounds` of iterated SHA-256.
    Cpu,
    /// Allocates and touches `mb` MiB, holds them `ms` milliseconds.
    Memory,
    /// Busy CPU loop for `ms` milliseconds while holding `mb` MiB.
    Spin,
}

impl Builtin {
    /// Every handler, in the order they are documented.
    pub const ALL: [Builtin; 6] = [
        Builtin::Hello,
        Builtin::Echo,
        Builtin::Sleep,
        Builtin::Cpu,
        Builtin::Memory,
        Builtin::Spin,
    ];

    /// Every handler's name, in the order of [`Builtin::ALL`].
    pub const NAMES: [&'static str; 6] = [
        Builtin::Hello.as_str(),
        Builtin::Echo.as_str(),
        Builtin::Sleep.as_str(),
        Builtin::Cpu.as_str(),
        Builtin::Memory.as_str(),
        Builtin::Spin.as_str(),
    ];

    /// Every handler's name, in the order they are documented ([`Builtin::NAMES`]).
    pub fn names() -> [&'static str; 6] {
        Builtin::NAMES
    }

    /// The handler's name on the wire (`FunctionConfig.handler`) and in files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Builtin::Hello => "hello",
            Builtin::Echo => "echo",
            Builtin::Sleep => "sleep",
            Builtin::Cpu => "cpu",
            Builtin::Memory => "memory",
            Builtin::Spin => "spin",
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name (kept as given) is not one of [`Builtin::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown handler {0:?}")]
pub struct UnknownBuiltin(pub String);

impl FromStr for Builtin {
    type Err = UnknownBuiltin;

    fn from_str(s: &str) -> Result<Builtin, UnknownBuiltin> {
        Builtin::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownBuiltin(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_the_order_of_all() {
        for (h, name) in Builtin::ALL.into_iter().zip(Builtin::NAMES) {
            assert_eq!(h.as_str(), name);
            assert_eq!(name.parse::<Builtin>(), Ok(h));
            assert_eq!(h.to_string(), name);
        }
        assert_eq!(
            "Hello".parse::<Builtin>(),
            Err(UnknownBuiltin("Hello".into()))
        );
        assert_eq!("".parse::<Builtin>(), Err(UnknownBuiltin(String::new())));
    }
}
