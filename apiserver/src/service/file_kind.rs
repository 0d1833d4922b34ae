//! What a deploy file entry runs (`service::file` documents the format): the fields of a
//! `[[function]]` or `[[function.version]]` entry that say which kind of function it is, and
//! the declared versions.
//!
//! ```toml
//! handler = "hello"                    # a built-in, or:
//! command = ["python3", "main.py"]     # your program (never run through a shell)
//! code = "functions/hello"             # its files: a directory, relative to this file
//! protocol = "http"                    # or "exec"
//! start_timeout_ms = 10000             # optional: how long an http process may take to listen
//! env = { GREETING = "Hello" }         # optional
//! # or: image = "faas/hello:1" with protocol and command: a local Docker image
//! ```
//!
//! A file names its code directories; it does not read them (parsing is pure). Whoever
//! deploys the file reads them (`store::code_dir::load_setup_code`): `faas deploy FILE`, and
//! the API server for its start-up file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::FunctionSpec;
use crate::service::registry::{RegistryError, validate_spec};

use super::{VersionSpec, mib_to_bytes};

/// An entry's kind fields, as the file gives them.
#[derive(Default)]
pub(super) struct KindFields {
    pub handler: Option<String>,
    pub command: Option<Vec<String>>,
    pub protocol: Option<String>,
    pub image: Option<String>,
    pub start_timeout_ms: Option<i64>,
    pub env: Option<BTreeMap<String, String>>,
    pub code: Option<String>,
}

impl KindFields {
    /// Whether the entry says what runs (a handler, a command or an image).
    pub fn given(&self) -> bool {
        self.handler.is_some() || self.command.is_some() || self.image.is_some()
    }

    /// Sets `spec`'s kind fields; returns the code directory as written. `code` goes with a
    /// command only (an image's files are in its image, a built-in takes none).
    pub fn apply(self, spec: &mut FunctionSpec) -> Result<Option<PathBuf>, RegistryError> {
        let code = match self.code {
            None => None,
            Some(_) if self.command.is_none() || self.image.is_some() => {
                return Err(RegistryError::BadKind {
                    name: spec.name.clone(),
                    field: "code".into(),
                    problem: "code goes with command (your program): an image's files are in its image, and a built-in handler takes none".into(),
                });
            }
            Some(dir) if dir.is_empty() => {
                return Err(RegistryError::BadKind {
                    name: spec.name.clone(),
                    field: "code".into(),
                    problem: "give the directory of your files, relative to this file".into(),
                });
            }
            Some(dir) => Some(PathBuf::from(dir)),
        };
        if self.command.as_ref().is_some_and(Vec::is_empty) && self.image.is_none() {
            return Err(RegistryError::BadKind {
                name: spec.name.clone(),
                field: "command".into(),
                problem: "give at least the program: [\"python3\", \"main.py\"]".into(),
            });
        }
        spec.handler = self.handler.unwrap_or_default();
        spec.command = self.command.unwrap_or_default();
        spec.protocol = self.protocol.unwrap_or_default();
        spec.image = self.image.unwrap_or_default();
        spec.start_timeout_ms = self.start_timeout_ms.unwrap_or(0);
        spec.env = self.env.unwrap_or_default();
        Ok(code)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionEntry {
    version: Option<i64>,
    handler: Option<String>,
    command: Option<Vec<String>>,
    protocol: Option<String>,
    image: Option<String>,
    start_timeout_ms: Option<i64>,
    env: Option<BTreeMap<String, String>>,
    code: Option<String>,
    memory_mb: Option<i64>,
    timeout_ms: Option<i64>,
    description: Option<String>,
}

fn bad(function: &str, field: impl Into<String>, problem: impl Into<String>) -> RegistryError {
    RegistryError::BadRouting {
        function: function.to_string(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// The declared versions of `function`: numbered 1 or more, in increasing order, each a valid
/// definition. A version states what it runs (handler, command or image, with their fields);
/// the memory, timeout and description it leaves out are the function entry's.
pub(super) fn versions(
    function: &FunctionSpec,
    entries: Vec<VersionEntry>,
) -> Result<Vec<VersionSpec>, RegistryError> {
    let name = function.name.as_str();
    let mut out: Vec<VersionSpec> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let field = format!("version[{i}]");
        let version = e.version.ok_or_else(|| {
            bad(
                name,
                format!("{field}.version"),
                "give the version's number (1, 2, 3…)",
            )
        })?;
        if version < 1 {
            return Err(bad(
                name,
                format!("{field}.version"),
                format!("give 1 or more, got {version}"),
            ));
        }
        if let Some(last) = out.last().filter(|last| last.version >= version) {
            return Err(bad(
                name,
                format!("{field}.version"),
                format!(
                    "{version} after {}: list versions in increasing order, each once",
                    last.version
                ),
            ));
        }
        let kind = KindFields {
            handler: e.handler,
            command: e.command,
            protocol: e.protocol,
            image: e.image,
            start_timeout_ms: e.start_timeout_ms,
            env: e.env,
            code: e.code,
        };
        if !kind.given() {
            return Err(bad(
                name,
                format!("{field}.handler"),
                "give the version's handler (or its command or image)",
            ));
        }
        let mut spec = FunctionSpec {
            name: name.to_string(),
            memory_bytes: e.memory_mb.map_or(function.memory_bytes, mib_to_bytes),
            timeout_ms: e.timeout_ms.unwrap_or(function.timeout_ms),
            description: e
                .description
                .unwrap_or_else(|| function.description.clone()),
            ..FunctionSpec::default()
        };
        // The entry already names the function.
        let in_version = |problem: RegistryError| {
            let text = problem.to_string();
            let prefix = format!("function {name:?}: ");
            bad(name, &field, text.strip_prefix(&prefix).unwrap_or(&text))
        };
        let code = kind.apply(&mut spec).map_err(in_version)?;
        validate_spec(&spec).map_err(in_version)?;
        out.push(VersionSpec {
            version,
            spec,
            code,
        });
    }
    Ok(out)
}
