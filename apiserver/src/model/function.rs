//! Functions: what a user deploys and what the registry keeps.
//!
//! A function is identified by its name. `revision` counts deployments of that name; it is the
//! seam for versions and aliases later (an alias would map a name to a revision), which the
//! platform does not have yet.

use std::fmt;
use std::str::FromStr;

/// One mebibyte.
pub const MIB: i64 = 1024 * 1024;
/// The longest function name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The least memory a function may ask for.
pub const MIN_MEMORY_BYTES: i64 = 64 * MIB;
/// The most memory a function may ask for: one whole node (the contest's 3072 MiB nodes).
pub const MAX_MEMORY_BYTES: i64 = 3072 * MIB;
/// The shortest timeout.
pub const MIN_TIMEOUT_MS: i64 = 1;
/// The longest timeout (15 minutes).
pub const MAX_TIMEOUT_MS: i64 = 900_000;

/// The container service's built-in handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    Hello,
    Echo,
    Sleep,
    Cpu,
    Memory,
    Spin,
}

impl Handler {
    /// Every handler, in the order they are documented.
    pub const ALL: [Handler; 6] = [
        Handler::Hello,
        Handler::Echo,
        Handler::Sleep,
        Handler::Cpu,
        Handler::Memory,
        Handler::Spin,
    ];

    /// Every handler's name, in the order they are documented.
    pub fn names() -> [&'static str; 6] {
        Handler::ALL.map(Handler::as_str)
    }

    /// The handler's name on the wire and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Hello => "hello",
            Handler::Echo => "echo",
            Handler::Sleep => "sleep",
            Handler::Cpu => "cpu",
            Handler::Memory => "memory",
            Handler::Spin => "spin",
        }
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the built-in handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownHandler;

impl FromStr for Handler {
    type Err = UnknownHandler;

    fn from_str(s: &str) -> Result<Handler, UnknownHandler> {
        Handler::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or(UnknownHandler)
    }
}

/// A function as a user describes it (a file entry, an admin request): not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: String,
    pub handler: String,
    pub memory_bytes: i64,
    pub timeout_ms: i64,
    pub description: String,
}

/// A deployed, valid function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub handler: Handler,
    pub memory_bytes: i64,
    pub timeout_ms: i64,
    pub description: String,
    /// 1 on the first deployment, one more on each deployment that replaces it.
    pub revision: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Function {
    /// The function's definition, as it would be deployed again.
    pub fn spec(&self) -> FunctionSpec {
        FunctionSpec {
            name: self.name.clone(),
            handler: self.handler.as_str().to_string(),
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            description: self.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_round_trip_through_their_names() {
        for h in Handler::ALL {
            assert_eq!(h.as_str().parse::<Handler>(), Ok(h));
        }
        assert_eq!("Hello".parse::<Handler>(), Err(UnknownHandler));
        assert_eq!("".parse::<Handler>(), Err(UnknownHandler));
    }
}
