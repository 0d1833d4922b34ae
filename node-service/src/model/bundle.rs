//! Bundles: the user's own code, as a node sees it.
//!
//! A function made of a bundle travels with the handler `bundle:<sha256>` (64 lowercase hex
//! digits) where a built-in function has `hello`, `echo`, …: the contest's messages do not
//! change, and a contest scheduler passes the handler through. The API server writes each
//! bundle once, content-addressed and immutable, as `BUNDLES/<sha256>/` holding
//! `function.json` (and optionally `code/`); a node started with `--bundles-dir BUNDLES`
//! finds it there and starts the container service with `--bundle BUNDLES/<sha256>`
//! instead of `--handler`.
//!
//! Of `function.json` the node reads only what decides *how* to start the container:
//! `start_timeout_ms` (how long the user's process may take to become ready: the create
//! waits that long on top of the node's own readiness timeout) and `image` (a Docker image
//! the container is made of, Docker runtime only). The container service reads the rest
//! (`command`, `protocol`, `env`) and refuses what it cannot run.

use std::path::PathBuf;
use std::time::Duration;

use faas_common::text::clip;

/// What a handler naming a bundle starts with.
pub const HANDLER_PREFIX: &str = "bundle:";
/// How many hex digits name a bundle (a sha256).
pub const HASH_LEN: usize = 64;
/// The description file inside a bundle.
pub const MANIFEST: &str = "function.json";
/// How long the user's process may take to become ready when `function.json` does not
/// say (the container service's default).
pub const DEFAULT_START_TIMEOUT_MS: u64 = 10_000;
/// The longest `start_timeout_ms` (the container service's limit).
pub const MAX_START_TIMEOUT_MS: u64 = 600_000;

/// Whether `handler` names a bundle (`bundle:…`, well formed or not).
pub fn is_bundle(handler: &str) -> bool {
    handler.starts_with(HANDLER_PREFIX)
}

/// The hash of a handler naming a bundle: `None` for a built-in handler, else the 64
/// lowercase hex digits after `bundle:`, or why they are not (`field` names the handler
/// in the message).
pub fn parse_handler<'a>(field: &str, handler: &'a str) -> Option<Result<&'a str, String>> {
    let hash = handler.strip_prefix(HANDLER_PREFIX)?;
    let well_formed = hash.len() == HASH_LEN
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    Some(if well_formed {
        Ok(hash)
    } else {
        Err(format!(
            "{field} {:?} must be {HANDLER_PREFIX}<the bundle's sha256 as {HASH_LEN} lowercase \
             hex digits>, got {} characters after {HANDLER_PREFIX:?}",
            clip(handler),
            hash.chars().count()
        ))
    })
}

/// A bundle this node holds, as far as starting its container is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The 64 hex digits.
    pub hash: String,
    /// `BUNDLES/<hash>`, absolute: what the container service gets as `--bundle` (and the
    /// Docker runtime bind-mounts).
    pub dir: PathBuf,
    /// `start_timeout_ms` of `function.json` (or its default).
    pub start_timeout: Duration,
    /// `image` of `function.json`: the Docker image its container is made of.
    pub image: Option<String>,
}

impl Bundle {
    /// How long a container of this bundle may take to announce itself, when a container
    /// of a built-in handler gets `base`: the user's process starts before the container
    /// service announces anything, so its start time comes on top.
    pub fn ready_within(&self, base: Duration) -> Duration {
        base + self.start_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_handler_is_sixty_four_lowercase_hex_digits() {
        let hash = "0123456789abcdef".repeat(4);
        let handler = format!("bundle:{hash}");
        assert_eq!(parse_handler("h", &handler), Some(Ok(hash.as_str())));
        assert_eq!(parse_handler("h", "hello"), None);
        assert!(is_bundle("bundle:") && !is_bundle("hello"));
        for (bad, len) in [
            ("bundle:".to_string(), 0),
            (format!("bundle:{}", &hash[1..]), 63),
            (format!("bundle:{hash}0"), 65),
            (format!("bundle:{}", hash.to_uppercase()), 64),
            (format!("bundle:{}g", &hash[1..]), 64),
            (format!("bundle:../{}", &hash[3..]), 64),
        ] {
            let err = parse_handler("function_meta.handler", &bad)
                .unwrap()
                .unwrap_err();
            assert!(
                err.starts_with("function_meta.handler \"bundle:")
                    && err.contains("64 lowercase hex digits")
                    && err.ends_with(&format!("got {len} characters after \"bundle:\"")),
                "{err}"
            );
        }
        let huge = format!("bundle:{}", "x".repeat(1 << 20));
        let err = parse_handler("h", &huge).unwrap().unwrap_err();
        assert!(err.len() < 400, "clipped: {} bytes", err.len());
    }

    #[test]
    fn a_bundle_container_gets_its_start_time_on_top() {
        let b = Bundle {
            hash: "a".repeat(64),
            dir: "/b".into(),
            start_timeout: Duration::from_secs(3),
            image: None,
        };
        assert_eq!(
            b.ready_within(Duration::from_secs(10)),
            Duration::from_secs(13)
        );
    }
}
