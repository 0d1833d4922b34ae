//! Functions: what a user deploys and what the registry keeps.
//!
//! A function is identified by its name. `revision` counts deployments of that name;
//! published versions are functions of their own named `NAME:N` (`model::routing`).
//!
//! A [`FunctionSpec`] is what a user sends, unchecked: a built-in `handler`, or a `command` /
//! `image` with its `protocol` and the `code` to keep (see `model::kind`). A [`Function`] is a
//! checked one whose [`HandlerRef`] names what runs; for a bundle function, that includes the
//! hash of the bundle the API server wrote, so a deployed or published function always runs
//! exactly the code it was deployed with.

use crate::model::kind::{CodeFile, HandlerRef};
use std::collections::BTreeMap;

/// One mebibyte, as the model's byte counts (`i64`, the wire's type) take it.
pub const MIB: i64 = faas_common::units::MIB as i64;
/// The longest function name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The least memory a function may ask for.
pub const MIN_MEMORY_BYTES: i64 = 64 * MIB;
/// The most memory a function may ask for: one whole node (the contest's 3072 MiB nodes).
pub const MAX_MEMORY_BYTES: i64 = faas_common::units::CONTEST_NODE_BYTES as i64;
/// The shortest timeout.
pub const MIN_TIMEOUT_MS: i64 = 1;
/// The longest timeout (15 minutes).
pub const MAX_TIMEOUT_MS: i64 = 900_000;

/// The container service's built-in handlers: the platform's one list
/// ([`faas_proto::builtin`]), named as the API server's model always named it.
pub use faas_proto::builtin::Builtin as Handler;
/// The name is not one of the built-in handlers (it keeps the name as given).
pub use faas_proto::builtin::UnknownBuiltin as UnknownHandler;

/// A function as a user describes it (a file entry, an admin request): not yet validated.
/// Exactly one of `handler`, `command` and `image` is given (`service::kind` checks it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: String,
    /// A built-in handler; empty for a command or image function.
    pub handler: String,
    pub memory_bytes: i64,
    pub timeout_ms: i64,
    pub description: String,
    /// The program and its arguments of a command function (optional for an image one).
    pub command: Vec<String>,
    /// `http` or `exec`: what a command or image function's process speaks.
    pub protocol: String,
    /// The local Docker image (`name:tag`) of an image function.
    pub image: String,
    /// How long an `http` process may take to listen; 0: the default.
    pub start_timeout_ms: i64,
    /// Variables added to the process's environment.
    pub env: BTreeMap<String, String>,
    /// A command function's files, as uploaded (empty once deployed: the bundle keeps them).
    pub code: Vec<CodeFile>,
    /// The bundle's hash: set by the server in what it answers; a client may send it instead
    /// of `code` to reuse a bundle the server has.
    pub bundle: String,
}

/// A deployed, valid function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub handler: HandlerRef,
    pub memory_bytes: i64,
    pub timeout_ms: i64,
    pub description: String,
    /// 1 on the first deployment, one more on each deployment that replaces it.
    pub revision: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Function {
    /// The function's definition, as it would be deployed again (a bundle function's by its
    /// `bundle`, without its code).
    pub fn spec(&self) -> FunctionSpec {
        let mut spec = FunctionSpec {
            name: self.name.clone(),
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            description: self.description.clone(),
            ..FunctionSpec::default()
        };
        match &self.handler {
            HandlerRef::Builtin(h) => spec.handler = h.as_str().to_string(),
            HandlerRef::Bundle(b) => {
                let k = &b.kind;
                spec.command = k.command.clone();
                spec.protocol = k.protocol.as_str().to_string();
                spec.image = k.image.clone().unwrap_or_default();
                spec.start_timeout_ms = k.start_timeout_ms.unwrap_or(0);
                spec.env = k.env.clone();
                spec.bundle = b.hash().to_string();
            }
        }
        spec
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
        assert_eq!(
            "Hello".parse::<Handler>(),
            Err(UnknownHandler("Hello".into()))
        );
        assert_eq!("".parse::<Handler>(), Err(UnknownHandler(String::new())));
    }
}
