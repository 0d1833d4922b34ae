//! What a function runs: one of the container service's built-in handlers, or the user's own
//! code kept as a *bundle*.
//!
//! A function is exactly one of three kinds:
//!
//! | kind | definition | runs |
//! |---|---|---|
//! | built-in | `handler = "hello"` | the container service's handler |
//! | command | `command = ["python3", "main.py"]`, `protocol`, optional `code` directory | the user's process, watched by the container service |
//! | image | `image = "name:tag"`, `protocol`, `command` | a local Docker image (Docker runtime) |
//!
//! Command and image functions are *bundle* functions. A bundle is an immutable,
//! content-addressed directory `BUNDLES/<sha256>/` holding `function.json` (what
//! [`BundleKind`] says, see `model::bundle`) and `code/` (the user's files). On the wire, in
//! the contest's `function_config.handler`, a bundle function's handler is `bundle:<sha256>`
//! ([`HandlerRef::as_str`]), so every component between the API server and the node passes it
//! through as an opaque string, and a changed bundle is a changed handler (the scheduler
//! retires the old containers).

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Handler;

/// The prefix of a bundle function's wire handler: `bundle:<64 lowercase hex>`.
pub const BUNDLE_PREFIX: &str = "bundle:";
/// The length of a bundle hash in hex digits (SHA-256).
pub const BUNDLE_HASH_LEN: usize = 64;
/// The longest `start_timeout_ms` (10 minutes), as the container service takes it.
pub const MAX_START_TIMEOUT_MS: i64 = 600_000;
/// The most bytes of code one function may upload (all files together).
pub const MAX_CODE_BYTES: u64 = 32 * 1024 * 1024;
/// The most files one function may upload.
pub const MAX_CODE_FILES: usize = 10_000;
/// The longest path of an uploaded file, in bytes.
pub const MAX_CODE_PATH_BYTES: usize = 1024;
/// The most arguments of a command, and the longest one in bytes.
pub const MAX_COMMAND_ARGS: usize = 256;
pub const MAX_ARG_BYTES: usize = 4096;
/// The most environment variables, and the longest value in bytes.
pub const MAX_ENV_VARS: usize = 256;
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;

/// Whether `s` is a bundle hash: 64 lowercase hex digits.
pub fn is_bundle_hash(s: &str) -> bool {
    s.len() == BUNDLE_HASH_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a bundle function's process speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// One long-lived process serving `POST /` on `$PORT`; several calls at once.
    Http,
    /// One process per call: the event on stdin, the result on stdout.
    Exec,
}

impl Protocol {
    /// Every protocol's name.
    pub const NAMES: [&'static str; 2] = ["http", "exec"];

    /// The name in files, `function.json` and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Exec => "exec",
        }
    }

    /// The protocol named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Protocol> {
        match name {
            "http" => Some(Protocol::Http),
            "exec" => Some(Protocol::Exec),
            _ => None,
        }
    }
}

/// A bundle function's definition: exactly what its `function.json` says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BundleKind {
    /// The program and its arguments (never run through a shell); empty for an image
    /// function that runs its image's own command.
    pub command: Vec<String>,
    pub protocol: Protocol,
    /// The local Docker image (`name:tag`), for an image function.
    pub image: Option<String>,
    /// How long an `http` process may take to listen; `None`: the container service's default.
    pub start_timeout_ms: Option<i64>,
    /// Variables added to the process's environment.
    pub env: BTreeMap<String, String>,
}

impl BundleKind {
    /// `python3 main.py (http)`, `image faas/hello:1 (http)`: what people read in lists.
    pub fn summary(&self) -> String {
        let what = match (&self.image, self.command.is_empty()) {
            (Some(image), true) => format!("image {image}"),
            (Some(image), false) => format!("image {image}: {}", self.command.join(" ")),
            (None, _) => self.command.join(" "),
        };
        format!("{what} ({})", self.protocol.as_str())
    }
}

/// A bundle function's handler: the bundle's hash and its definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BundleRef {
    /// `bundle:<hash>`, kept whole so [`HandlerRef::as_str`] borrows it.
    wire: String,
    pub kind: BundleKind,
}

impl BundleRef {
    /// The bundle `hash` (64 lowercase hex digits; the caller checked it) defining `kind`.
    pub fn new(hash: &str, kind: BundleKind) -> BundleRef {
        debug_assert!(is_bundle_hash(hash), "{hash}");
        BundleRef {
            wire: format!("{BUNDLE_PREFIX}{hash}"),
            kind,
        }
    }

    /// The bundle's hash: its directory's name.
    pub fn hash(&self) -> &str {
        &self.wire[BUNDLE_PREFIX.len()..]
    }
}

/// What a deployed function runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HandlerRef {
    Builtin(Handler),
    Bundle(Box<BundleRef>),
}

impl HandlerRef {
    /// The handler on the wire (the contest's `handler` fields): `hello`, or `bundle:<hash>`.
    pub fn as_str(&self) -> &str {
        match self {
            HandlerRef::Builtin(h) => h.as_str(),
            HandlerRef::Bundle(b) => &b.wire,
        }
    }

    /// The built-in handler, if it is one.
    pub fn builtin(&self) -> Option<Handler> {
        match self {
            HandlerRef::Builtin(h) => Some(*h),
            HandlerRef::Bundle(_) => None,
        }
    }

    /// The bundle, if it is one.
    pub fn bundle(&self) -> Option<&BundleRef> {
        match self {
            HandlerRef::Builtin(_) => None,
            HandlerRef::Bundle(b) => Some(b),
        }
    }

    /// `hello`, or `python3 main.py (http)`: what people read in lists.
    pub fn summary(&self) -> String {
        match self {
            HandlerRef::Builtin(h) => h.as_str().to_string(),
            HandlerRef::Bundle(b) => b.kind.summary(),
        }
    }
}

impl From<Handler> for HandlerRef {
    fn from(h: Handler) -> HandlerRef {
        HandlerRef::Builtin(h)
    }
}

impl PartialEq<Handler> for HandlerRef {
    fn eq(&self, other: &Handler) -> bool {
        self.builtin() == Some(*other)
    }
}

impl fmt::Display for HandlerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a command function's code, as uploaded: its path inside the code directory
/// (`/`-separated, relative), its bytes, and whether it is executable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeFile {
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

impl fmt::Debug for CodeFile {
    // The content can be megabytes: its size says enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeFile")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("executable", &self.executable)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind() -> BundleKind {
        BundleKind {
            command: vec!["python3".into(), "main.py".into()],
            protocol: Protocol::Http,
            image: None,
            start_timeout_ms: None,
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn the_wire_handler_is_the_builtin_or_the_bundle_hash() {
        let hash = "ab".repeat(32);
        let bundle = HandlerRef::Bundle(Box::new(BundleRef::new(&hash, kind())));
        assert_eq!(bundle.as_str(), format!("bundle:{hash}"));
        assert_eq!(bundle.bundle().unwrap().hash(), hash);
        assert_eq!(bundle.summary(), "python3 main.py (http)");
        assert_eq!(bundle.builtin(), None);
        let hello = HandlerRef::from(Handler::Hello);
        assert_eq!(hello.as_str(), "hello");
        assert_eq!(hello, Handler::Hello);
        assert_eq!(hello.to_string(), "hello");
    }

    #[test]
    fn summaries_say_what_runs() {
        let mut image = kind();
        image.command.clear();
        image.image = Some("faas/hello:1".into());
        image.protocol = Protocol::Exec;
        assert_eq!(image.summary(), "image faas/hello:1 (exec)");
        image.command = vec!["/app".into(), "-v".into()];
        assert_eq!(image.summary(), "image faas/hello:1: /app -v (exec)");
    }

    #[test]
    fn hashes_are_64_lowercase_hex_digits() {
        assert!(is_bundle_hash(&"0f".repeat(32)));
        assert!(!is_bundle_hash(&"0F".repeat(32)));
        assert!(!is_bundle_hash(&"0f".repeat(31)));
        assert!(!is_bundle_hash(&format!("{}g", "0".repeat(63))));
        assert!(!is_bundle_hash(""));
        assert_eq!(Protocol::parse("http"), Some(Protocol::Http));
        assert_eq!(Protocol::parse("HTTP"), None);
    }
}
