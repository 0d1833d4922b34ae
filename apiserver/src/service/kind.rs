//! The rules of a function's kind (`model::kind`): exactly one of a built-in `handler`, a
//! `command` or an `image`, with the fields that go with it, and the code files a command
//! function uploads. Pure: what is stored where is `service::bundles`' job.
//!
//! Every mistake is a [`RegistryError::BadKind`] naming the field as the admin API and the
//! TOML file spell it (`protocol`, `command[1]`, `env.MY VAR`, `code[3].path`), which the api
//! layer answers with `INVALID_ARGUMENT`:
//!
//! | mistake | field |
//! |---|---|
//! | a handler and a command or image | `handler` |
//! | neither | (the function: give handler, command or image) |
//! | an empty or NUL-holding argument, too many or too long ones | `command[i]`, `command` |
//! | a protocol missing (command and image functions need one) or not `http`/`exec` | `protocol` |
//! | protocol, env, start_timeout_ms, code or bundle beside a built-in handler | that field |
//! | a start timeout outside 1 to 600000 ms (0: the default) | `start_timeout_ms` |
//! | a variable name that is not `[A-Za-z_][A-Za-z0-9_]*`, `PORT`, a value with NUL | `env.NAME` |
//! | an image name with spaces or other characters; code beside an image | `image`, `code` |
//! | a path that is empty, absolute, holds `.`/`..`/empty parts or NUL, twice, or both a file and a directory; more than 10000 files or 32 MiB | `code[i].path`, `code` |
//! | a bundle that is not 64 lowercase hex digits | `bundle` |

use std::collections::{BTreeMap, HashSet};

use faas_common::text::clip;

use crate::model::kind::{
    BundleKind, CodeFile, MAX_ARG_BYTES, MAX_CODE_BYTES, MAX_CODE_FILES, MAX_CODE_PATH_BYTES,
    MAX_COMMAND_ARGS, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_START_TIMEOUT_MS, Protocol,
    is_bundle_hash,
};
use crate::model::{FunctionSpec, Handler};
use crate::service::registry::RegistryError;

/// The longest image reference, in bytes.
const MAX_IMAGE_BYTES: usize = 256;
/// The longest environment variable name, in bytes.
const MAX_ENV_NAME_BYTES: usize = 256;

/// What a valid spec runs, before any bundle is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Builtin(Handler),
    /// A command or image function: its definition (the bundle's `function.json`).
    Bundle(BundleKind),
    /// Only a bundle's hash: the definition is the stored bundle's (a republish that does
    /// not send the code again).
    Stored(String),
}

fn bad(spec: &FunctionSpec, field: impl Into<String>, problem: impl Into<String>) -> RegistryError {
    RegistryError::BadKind {
        name: spec.name.clone(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks the kind fields of `spec` (its name, memory and timeout are the registry's).
pub fn validate_kind(spec: &FunctionSpec) -> Result<Kind, RegistryError> {
    let has_handler = !spec.handler.is_empty();
    let has_code_kind = !spec.command.is_empty() || !spec.image.is_empty();
    if has_handler && has_code_kind {
        let other = if spec.command.is_empty() {
            "image"
        } else {
            "command"
        };
        return Err(bad(
            spec,
            "handler",
            format!("give either handler (a built-in) or {other} (your code), not both"),
        ));
    }
    if has_handler {
        return builtin(spec);
    }
    if !spec.bundle.is_empty() && !is_bundle_hash(&spec.bundle) {
        return Err(bad(
            spec,
            "bundle",
            format!(
                "{:?} is not a bundle hash (64 lowercase hex digits)",
                clip(&spec.bundle)
            ),
        ));
    }
    if !has_code_kind {
        let only_bundle = spec.protocol.is_empty()
            && spec.env.is_empty()
            && spec.start_timeout_ms == 0
            && spec.code.is_empty();
        if !spec.bundle.is_empty() && only_bundle {
            return Ok(Kind::Stored(spec.bundle.clone()));
        }
        if spec.protocol.is_empty() && spec.code.is_empty() && spec.bundle.is_empty() {
            return Err(RegistryError::NoKind {
                name: spec.name.clone(),
            });
        }
        return Err(bad(
            spec,
            "command",
            "give the command that runs your code (e.g. [\"python3\", \"main.py\"]), or an image",
        ));
    }
    bundle_kind(spec).map(Kind::Bundle)
}

fn builtin(spec: &FunctionSpec) -> Result<Kind, RegistryError> {
    let handler = spec
        .handler
        .parse::<Handler>()
        .map_err(|_| RegistryError::UnknownHandler {
            name: spec.name.clone(),
            handler: spec.handler.clone(),
        })?;
    let extra = [
        ("protocol", !spec.protocol.is_empty()),
        ("start_timeout_ms", spec.start_timeout_ms != 0),
        ("env", !spec.env.is_empty()),
        ("code", !spec.code.is_empty()),
        ("bundle", !spec.bundle.is_empty()),
    ];
    if let Some((field, _)) = extra.iter().find(|(_, given)| *given) {
        return Err(bad(
            spec,
            *field,
            format!(
                "a built-in handler ({handler}) takes no {field}: it is for command and image functions"
            ),
        ));
    }
    Ok(Kind::Builtin(handler))
}

fn bundle_kind(spec: &FunctionSpec) -> Result<BundleKind, RegistryError> {
    check_command(spec)?;
    if spec.command.is_empty() {
        // The container service starts the command under its watchdog; it never sees the
        // image's own CMD.
        return Err(bad(
            spec,
            "command",
            "an image function needs its command too (e.g. [\"/rust-hello\"]): the platform's watchdog starts it and cannot read the image's CMD",
        ));
    }
    let image = if spec.image.is_empty() {
        None
    } else {
        check_image(spec)?;
        if !spec.code.is_empty() {
            return Err(bad(
                spec,
                "code",
                "an image function's files are in its image: give code only with a command",
            ));
        }
        Some(spec.image.clone())
    };
    let protocol = match spec.protocol.as_str() {
        "" => {
            return Err(bad(
                spec,
                "protocol",
                "give the protocol your process speaks: http (a server on $PORT) or exec (one process per call)",
            ));
        }
        p => Protocol::parse(p).ok_or_else(|| {
            bad(
                spec,
                "protocol",
                format!("{:?} is not one of {}", clip(p), Protocol::NAMES.join(", ")),
            )
        })?,
    };
    let start_timeout_ms = match spec.start_timeout_ms {
        0 => None,
        ms if (1..=MAX_START_TIMEOUT_MS).contains(&ms) => Some(ms),
        ms => {
            return Err(bad(
                spec,
                "start_timeout_ms",
                format!(
                    "{ms} ms is out of range: give 1 to {MAX_START_TIMEOUT_MS} ms (or leave it out for the default)"
                ),
            ));
        }
    };
    check_env(spec, &spec.env)?;
    check_code(spec, &spec.code)?;
    Ok(BundleKind {
        command: spec.command.clone(),
        protocol,
        image,
        start_timeout_ms,
        env: spec.env.clone(),
    })
}

fn check_command(spec: &FunctionSpec) -> Result<(), RegistryError> {
    if spec.command.len() > MAX_COMMAND_ARGS {
        return Err(bad(
            spec,
            "command",
            format!(
                "{} arguments, over the limit of {MAX_COMMAND_ARGS}",
                spec.command.len()
            ),
        ));
    }
    for (i, arg) in spec.command.iter().enumerate() {
        let problem = if arg.is_empty() {
            "is empty".to_string()
        } else if arg.contains('\0') {
            "holds a NUL byte".to_string()
        } else if arg.len() > MAX_ARG_BYTES {
            format!("is {} bytes, over the limit of {MAX_ARG_BYTES}", arg.len())
        } else {
            continue;
        };
        return Err(bad(spec, format!("command[{i}]"), problem));
    }
    Ok(())
}

fn check_image(spec: &FunctionSpec) -> Result<(), RegistryError> {
    let image = &spec.image;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if image.len() > MAX_IMAGE_BYTES {
        return Err(bad(
            spec,
            "image",
            format!(
                "is {} bytes, over the limit of {MAX_IMAGE_BYTES}",
                image.len()
            ),
        ));
    }
    if let Some(c) = image.chars().find(|c| !allowed(*c)) {
        return Err(bad(
            spec,
            "image",
            format!(
                "{:?} holds {c:?}: give a local image as name:tag (letters, digits, . _ - / : @)",
                clip(image)
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_env(spec: &FunctionSpec, env: &BTreeMap<String, String>) -> Result<(), RegistryError> {
    if env.len() > MAX_ENV_VARS {
        return Err(bad(
            spec,
            "env",
            format!("{} variables, over the limit of {MAX_ENV_VARS}", env.len()),
        ));
    }
    for (name, value) in env {
        let field = || format!("env.{}", clip(name));
        if name.len() > MAX_ENV_NAME_BYTES || !env_name_ok(name) {
            return Err(bad(
                spec,
                field(),
                "is not a variable name: use letters, digits and _, not starting with a digit",
            ));
        }
        if name == "PORT" {
            return Err(bad(
                spec,
                field(),
                "is set by the platform (the port an http process listens on)",
            ));
        }
        if value.contains('\0') {
            return Err(bad(spec, field(), "the value holds a NUL byte"));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(bad(
                spec,
                field(),
                format!(
                    "the value is {} bytes, over the limit of {MAX_ENV_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Why `path` cannot be a file's path inside a code directory, if it cannot.
pub fn path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("the path is empty".into());
    }
    if path.len() > MAX_CODE_PATH_BYTES {
        return Some(format!(
            "the path is {} bytes, over the limit of {MAX_CODE_PATH_BYTES}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Some("the path holds a NUL byte".into());
    }
    if path.starts_with('/') {
        return Some(format!(
            "{:?} is absolute: give it relative to the code directory",
            clip(path)
        ));
    }
    if let Some(part) = path
        .split('/')
        .find(|p| p.is_empty() || *p == "." || *p == "..")
    {
        let part = if part.is_empty() {
            "an empty part"
        } else {
            part
        };
        return Some(format!(
            "{:?} holds {part}: give a plain relative path (a/b.py)",
            clip(path)
        ));
    }
    None
}

fn check_code(spec: &FunctionSpec, code: &[CodeFile]) -> Result<(), RegistryError> {
    if code.len() > MAX_CODE_FILES {
        return Err(bad(
            spec,
            "code",
            format!("{} files, over the limit of {MAX_CODE_FILES}", code.len()),
        ));
    }
    let total: u64 = code.iter().map(|f| f.content.len() as u64).sum();
    if total > MAX_CODE_BYTES {
        return Err(bad(
            spec,
            "code",
            format!(
                "{total} bytes, over the limit of {} MiB",
                MAX_CODE_BYTES >> 20
            ),
        ));
    }
    let mut files: HashSet<&str> = HashSet::with_capacity(code.len());
    for (i, f) in code.iter().enumerate() {
        if let Some(problem) = path_problem(&f.path) {
            return Err(bad(spec, format!("code[{i}].path"), problem));
        }
        if !files.insert(&f.path) {
            return Err(bad(
                spec,
                format!("code[{i}].path"),
                format!("{:?} is given twice", clip(&f.path)),
            ));
        }
    }
    // A path cannot be a file and, for another file, a directory.
    for (i, f) in code.iter().enumerate() {
        let mut dir = f.path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if files.contains(parent) {
                return Err(bad(
                    spec,
                    format!("code[{i}].path"),
                    format!(
                        "{:?} is inside {:?}, which is a file",
                        clip(&f.path),
                        clip(parent)
                    ),
                ));
            }
            dir = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "kind_tests.rs"]
mod tests;
