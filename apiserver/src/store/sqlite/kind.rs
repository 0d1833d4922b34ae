//! A function's kind in its row (schema 3, see [`super::schema`]): the `handler` column holds
//! the wire handler (`hello`, or `bundle:<sha256>`), and five nullable columns hold a bundle
//! function's definition. A built-in's five are NULL, which is what a row written before
//! schema 3 has, so old rows read as the built-ins they are.
//!
//! | column | built-in | command or image function |
//! |---|---|---|
//! | `command` | NULL | JSON array of strings (`[]`: an image's own command) |
//! | `protocol` | NULL | `http` or `exec` |
//! | `image` | NULL | `name:tag`, or NULL |
//! | `start_timeout_ms` | NULL | ms, or NULL for the default |
//! | `env` | NULL | JSON object of strings |

use std::collections::BTreeMap;

use faas_common::text::clip;
use rusqlite::Row;

use crate::model::Handler;
use crate::model::kind::{
    BUNDLE_PREFIX, BundleKind, BundleRef, HandlerRef, Protocol, is_bundle_hash,
};

/// The kind columns, in the order [`KindColumns`] binds and [`decode`] reads them.
pub const KIND_COLUMNS: &str = "command, protocol, image, start_timeout_ms, env";

/// A handler's kind columns, ready to bind.
pub struct KindColumns {
    pub command: Option<String>,
    pub protocol: Option<&'static str>,
    pub image: Option<String>,
    pub start_timeout_ms: Option<i64>,
    pub env: Option<String>,
}

impl KindColumns {
    pub fn of(handler: &HandlerRef) -> KindColumns {
        match handler.bundle() {
            None => KindColumns {
                command: None,
                protocol: None,
                image: None,
                start_timeout_ms: None,
                env: None,
            },
            Some(b) => {
                let k = &b.kind;
                KindColumns {
                    // Strings and string maps always encode.
                    command: Some(serde_json::to_string(&k.command).unwrap_or_default()),
                    protocol: Some(k.protocol.as_str()),
                    image: k.image.clone(),
                    start_timeout_ms: k.start_timeout_ms,
                    env: Some(serde_json::to_string(&k.env).unwrap_or_default()),
                }
            }
        }
    }
}

/// Reads the handler of a row: `handler` (the wire handler) and the kind columns starting
/// at column `first`. `Ok(Err(reason))`: a row this binary cannot read; the reason follows
/// the row's description (`function "f"`).
pub fn decode(
    row: &Row<'_>,
    handler: &str,
    first: usize,
) -> rusqlite::Result<Result<HandlerRef, String>> {
    let command: Option<String> = row.get(first)?;
    let protocol: Option<String> = row.get(first + 1)?;
    let image: Option<String> = row.get(first + 2)?;
    let start_timeout_ms: Option<i64> = row.get(first + 3)?;
    let env: Option<String> = row.get(first + 4)?;
    let Some(hash) = handler.strip_prefix(BUNDLE_PREFIX) else {
        return Ok(match handler.parse::<Handler>() {
            Ok(h) if command.is_none() && protocol.is_none() && image.is_none() => {
                Ok(HandlerRef::Builtin(h))
            }
            Ok(h) => Err(format!(
                "has the built-in handler {h} and a command, protocol or image"
            )),
            Err(_) => Err(unknown_handler(handler)),
        });
    };
    let decoded = || -> Result<HandlerRef, String> {
        if !is_bundle_hash(hash) {
            return Err(format!(
                "has handler {:?}, whose bundle hash is not 64 lowercase hex digits",
                clip(handler)
            ));
        }
        let protocol = match protocol.as_deref() {
            None => return Err("has a bundle handler but no protocol".into()),
            Some(p) => Protocol::parse(p)
                .ok_or_else(|| format!("has protocol {:?}, not http or exec", clip(p)))?,
        };
        let command: Vec<String> = serde_json::from_str(command.as_deref().unwrap_or("[]"))
            .map_err(|e| format!("has a command that is not a JSON array of strings: {e}"))?;
        let env: BTreeMap<String, String> = serde_json::from_str(env.as_deref().unwrap_or("{}"))
            .map_err(|e| format!("has an env that is not a JSON object of strings: {e}"))?;
        let kind = BundleKind {
            command,
            protocol,
            image,
            start_timeout_ms,
            env,
        };
        Ok(HandlerRef::Bundle(Box::new(BundleRef::new(hash, kind))))
    };
    Ok(decoded())
}

/// Why a stored handler name cannot be read, after the row's name.
pub fn unknown_handler(handler: &str) -> String {
    format!(
        "has handler {:?}, which is not one of {} (or bundle:<sha256>)",
        clip(handler),
        Handler::names().join(", ")
    )
}
