//! The bundle: the directory a command function is deployed as, and what its
//! `function.json` says.
//!
//! ```text
//! B/function.json   {"command": ["python3", "main.py"], "protocol": "http",
//!                    "start_timeout_ms": 10000, "env": {"GREETING": "Hello"}}
//! B/code/           the user's files (optional: without it the files sit beside
//!                   function.json and B itself is the working directory)
//! ```
//!
//! - `command` (required): the program and its arguments, never run through a shell. A
//!   program with a `/` is a path relative to the working directory (or absolute); one
//!   without is looked up on `PATH` (the `PATH` of `env` when it sets one).
//! - `protocol` (required): `"http"` (one long-lived process serving `POST /` on `$PORT`)
//!   or `"exec"` (one process per call: the event on stdin, the result on stdout).
//! - `start_timeout_ms` (optional, 1 to 600000, default 10000): how long an `http`
//!   process may take to listen.
//! - `env` (optional): variables added to the process's environment (`PORT` is always the
//!   watchdog's).
//! - `image` (optional): the Docker image of an image function. The node reads it to make
//!   the container; the container service only checks it is a string and still needs
//!   `command`.
//!
//! Anything else in `function.json` is refused, so a misspelt field (`"protocl"`) is an
//! error and not a silent default. Every error names the file and the field. Bundles are
//! content-addressed and immutable (the node passes `.../<sha256>`): the bundle is read once,
//! at start. The function's handler name is `bundle:<the directory's name>`
//! ([`Bundle::handler`]), which for a content-addressed bundle is `bundle:<sha256>`: the name
//! the platform gives a bundle function where a built-in one has `hello`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faas_common::text::clip;
use serde_json::Value;

/// What a bundle function's handler name starts with.
pub const HANDLER_PREFIX: &str = "bundle:";
/// The description file inside a bundle.
pub const MANIFEST: &str = "function.json";
/// The directory of the user's files inside a bundle (optional).
pub const CODE_DIR: &str = "code";
/// How long an `http` process may take to listen when `start_timeout_ms` is not given.
pub const DEFAULT_START_TIMEOUT_MS: u64 = 10_000;
/// The longest `start_timeout_ms`.
pub const MAX_START_TIMEOUT_MS: u64 = 600_000;
/// The largest `function.json` read.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Where a program is looked up when neither `env` nor the watchdog has a `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the function's process speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// One long-lived process; each call is `POST /` to `127.0.0.1:$PORT`.
    Http,
    /// One process per call: the event on stdin, the result on stdout.
    Exec,
}

impl Protocol {
    /// The name `function.json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Exec => "exec",
        }
    }
}

/// A bundle, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle directory `B`.
    pub dir: PathBuf,
    /// `bundle:<the name of B>` (B's last component, after resolving `.` and links).
    pub handler: String,
    /// Where the process runs: `B/code`, or `B` when there is no `code` directory.
    pub cwd: PathBuf,
    /// `command` as written.
    pub command: Vec<String>,
    /// `command[0]` resolved to the file that will run.
    pub program: PathBuf,
    pub protocol: Protocol,
    pub start_timeout: Duration,
    /// `env` as written.
    pub env: BTreeMap<String, String>,
}

/// Why a bundle cannot run. Each message is one line naming the path and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle {path} is not a directory (it does not exist or is something else)")]
    NoDir { path: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not valid JSON: {message}")]
    Json { path: String, message: String },
    #[error("{path}: {problem}")]
    Field { path: String, problem: String },
}

fn shown(path: &Path) -> String {
    clip(&path.display().to_string()).into_owned()
}

impl Bundle {
    /// Reads and checks the bundle at `dir`, resolving the program against the environment
    /// the process will get (`inherited_path`: the watchdog's own `PATH`).
    pub fn read(dir: &Path, inherited_path: Option<&OsStr>) -> Result<Bundle, BundleError> {
        if !dir.is_dir() {
            return Err(BundleError::NoDir { path: shown(dir) });
        }
        let manifest = dir.join(MANIFEST);
        let text = read_manifest(&manifest)?;
        let code = dir.join(CODE_DIR);
        let cwd = if code.is_dir() {
            code
        } else {
            dir.to_path_buf()
        };
        let Manifest {
            command,
            protocol,
            start_timeout_ms,
            env,
        } = Manifest::parse(&text).map_err(|e| match e {
            ManifestError::NotJson(message) => BundleError::Json {
                path: shown(&manifest),
                message,
            },
            ManifestError::Field(problem) => BundleError::Field {
                path: shown(&manifest),
                problem,
            },
        })?;
        let path_var = env
            .get("PATH")
            .map(OsStr::new)
            .or(inherited_path)
            .unwrap_or(OsStr::new(DEFAULT_PATH));
        let program =
            resolve(&command[0], &cwd, path_var).map_err(|problem| BundleError::Field {
                path: shown(&manifest),
                problem: format!("command[0] {:?} {problem}", clip(&command[0])),
            })?;
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Ok(Bundle {
            dir: dir.to_path_buf(),
            handler: format!("{HANDLER_PREFIX}{name}"),
            cwd,
            command,
            program,
            protocol,
            start_timeout: Duration::from_millis(start_timeout_ms),
            env,
        })
    }
}

fn read_manifest(manifest: &Path) -> Result<String, BundleError> {
    let read_err = |message: String| BundleError::Read {
        path: shown(manifest),
        message,
    };
    let meta = std::fs::metadata(manifest).map_err(|e| read_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(read_err("it is not a file".into()));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(read_err(format!(
            "it is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
            meta.len()
        )));
    }
    std::fs::read_to_string(manifest).map_err(|e| read_err(e.to_string()))
}

/// `function.json`'s fields.
struct Manifest {
    command: Vec<String>,
    protocol: Protocol,
    start_timeout_ms: u64,
    env: BTreeMap<String, String>,
}

/// Why a `function.json` text is not one.
enum ManifestError {
    NotJson(String),
    /// A problem with one field, worded to follow the file's path.
    Field(String),
}

impl From<String> for ManifestError {
    fn from(problem: String) -> ManifestError {
        ManifestError::Field(problem)
    }
}

impl From<&str> for ManifestError {
    fn from(problem: &str) -> ManifestError {
        ManifestError::Field(problem.to_string())
    }
}

const FIELDS: [&str; 5] = ["command", "protocol", "start_timeout_ms", "env", "image"];

impl Manifest {
    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err("the file must hold a JSON object".into());
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field {:?}; the fields are {}",
                clip(unknown),
                FIELDS.join(", ")
            )
            .into());
        }
        if let Some(image) = map.get("image")
            && !image.is_string()
        {
            return Err(format!(
                "field `image` must be a string (a Docker image), got {}",
                clip(&image.to_string())
            )
            .into());
        }
        let command = match map.get("command") {
            None if map.contains_key("image") => {
                return Err("field `command` is missing: the container service runs a \
                            command, and cannot know an image's own one"
                    .into());
            }
            None => {
                return Err("field `command` is missing (e.g. [\"python3\", \"main.py\"])".into());
            }
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() && !s.contains('\0') => Ok(s.clone()),
                    _ => Err("field `command` must hold non-empty strings without NUL".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err("field `command` must be a non-empty array of strings".into());
            }
        };
        let protocol = match map.get("protocol") {
            None => return Err("field `protocol` is missing (\"http\" or \"exec\")".into()),
            Some(Value::String(s)) if s == "http" => Protocol::Http,
            Some(Value::String(s)) if s == "exec" => Protocol::Exec,
            Some(other) => {
                return Err(format!(
                    "field `protocol` must be \"http\" or \"exec\", got {}",
                    clip(&other.to_string())
                )
                .into());
            }
        };
        let start_timeout_ms = match map.get("start_timeout_ms") {
            None | Some(Value::Null) => DEFAULT_START_TIMEOUT_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (1..=MAX_START_TIMEOUT_MS).contains(ms))
                .ok_or_else(|| {
                    format!(
                        "field `start_timeout_ms` must be an integer from 1 to \
                         {MAX_START_TIMEOUT_MS}, got {}",
                        clip(&v.to_string())
                    )
                })?,
        };
        let env = match map.get("env") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(vars)) => vars
                .iter()
                .map(|(k, v)| {
                    let bad_key = k.is_empty() || k.contains('=') || k.contains('\0');
                    match v {
                        Value::String(s) if !bad_key && !s.contains('\0') => {
                            Ok((k.clone(), s.clone()))
                        }
                        _ if bad_key => Err(format!(
                            "field `env` has the variable name {:?} (names are non-empty, \
                             without = or NUL)",
                            clip(k)
                        )),
                        _ => Err(format!(
                            "field `env`: {:?} must be a string without NUL",
                            clip(k)
                        )),
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("field `env` must be an object of strings".into()),
        };
        Ok(Manifest {
            command,
            protocol,
            start_timeout_ms,
            env,
        })
    }
}

/// What a container's user may not enter (on the node's process runtime it runs
/// unprivileged: a program below `/root`, say).
const UNREACHABLE: &str = "is out of this container's user's reach (permission denied): \
                           install it where every user may run it";

/// Whether `path` is a regular file someone may execute.
fn executable(path: &Path) -> Result<(), &'static str> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(UNREACHABLE),
        Err(_) => Err("is not found"),
        Ok(m) if !m.is_file() => Err("is not a file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable (chmod +x)"),
        Ok(_) => Ok(()),
    }
}

/// The file `program` names: a path (with a `/`) relative to `cwd`, else the first
/// executable of that name on `path_var`.
fn resolve(program: &str, cwd: &Path, path_var: &OsStr) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = cwd.join(program);
        executable(&path).map_err(|why| format!("{why} (relative to {})", shown(cwd)))?;
        return Ok(path);
    }
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err("is not found") => {}
            Err(why) => not_executable = not_executable.or(Some((candidate, why))),
        }
    }
    Err(match not_executable {
        Some((p, UNREACHABLE)) => format!("{UNREACHABLE} ({})", shown(&p)),
        Some((p, _)) => format!("is not executable ({})", shown(&p)),
        None => format!(
            "is not found on PATH ({})",
            clip(&path_var.to_string_lossy())
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), manifest).unwrap();
        dir
    }

    fn read(dir: &Path) -> Result<Bundle, BundleError> {
        Bundle::read(dir, std::env::var_os("PATH").as_deref())
    }

    fn problem(manifest: &str) -> String {
        let dir = bundle(manifest);
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("function.json"), "names the file: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn a_good_bundle_is_read_with_defaults() {
        let dir = bundle(r#"{"command": ["sh", "main.sh"], "protocol": "exec"}"#);
        let b = read(dir.path()).unwrap();
        assert_eq!(b.protocol, Protocol::Exec);
        assert_eq!(
            b.cwd,
            dir.path(),
            "no code/: the bundle is the working directory"
        );
        assert!(
            b.program.ends_with("sh") && b.program.is_absolute(),
            "{:?}",
            b.program
        );
        assert_eq!(
            b.start_timeout,
            Duration::from_millis(DEFAULT_START_TIMEOUT_MS)
        );
        assert!(b.env.is_empty());
        let name = dir.path().file_name().unwrap().to_string_lossy();
        assert_eq!(b.handler, format!("bundle:{name}"));

        std::fs::create_dir(dir.path().join(CODE_DIR)).unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"command": ["sh"], "protocol": "http", "start_timeout_ms": 5, "env": {"A": "b"}}"#,
        )
        .unwrap();
        let b = read(dir.path()).unwrap();
        assert_eq!(b.cwd, dir.path().join(CODE_DIR));
        assert_eq!(b.protocol, Protocol::Http);
        assert_eq!(b.start_timeout, Duration::from_millis(5));
        assert_eq!(b.env.get("A").map(String::as_str), Some("b"));
    }

    #[test]
    fn a_missing_directory_or_file_is_named() {
        let e = read(Path::new("/nonexistent/bundle"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/bundle"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("function.json"),
            "{e}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (manifest, says) in [
            ("{not json", "is not valid JSON"),
            ("[1]", "must hold a JSON object"),
            (r#"{"protocol": "exec"}"#, "field `command` is missing"),
            (
                r#"{"command": [], "protocol": "exec"}"#,
                "field `command` must be a non-empty array",
            ),
            (
                r#"{"command": "sh x", "protocol": "exec"}"#,
                "field `command` must be a non-empty array",
            ),
            (
                r#"{"command": [""], "protocol": "exec"}"#,
                "non-empty strings",
            ),
            (r#"{"command": ["sh"]}"#, "field `protocol` is missing"),
            (
                r#"{"command": ["sh"], "protocol": "grpc"}"#,
                "field `protocol` must be \"http\" or \"exec\", got \"grpc\"",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "start_timeout_ms": 0}"#,
                "field `start_timeout_ms` must be an integer from 1",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "start_timeout_ms": "5"}"#,
                "field `start_timeout_ms`",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "env": []}"#,
                "field `env` must be an object",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "env": {"A": 1}}"#,
                "field `env`: \"A\" must be a string",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "env": {"A=B": "1"}}"#,
                "the variable name \"A=B\"",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "protocl": "x"}"#,
                "unknown field \"protocl\"",
            ),
            (
                r#"{"image": "a:1", "protocol": "exec"}"#,
                "field `command` is missing: the container service runs a command",
            ),
            (
                r#"{"command": ["sh"], "image": 1, "protocol": "exec"}"#,
                "field `image` must be a string",
            ),
            (
                r#"{"command": ["no-such-program-here"], "protocol": "exec"}"#,
                "command[0] \"no-such-program-here\" is not found on PATH",
            ),
            (
                r#"{"command": ["./missing.sh"], "protocol": "exec"}"#,
                "command[0] \"./missing.sh\" is not found (relative to",
            ),
            (
                r#"{"command": ["sh"], "protocol": "exec", "env": {"PATH": "/nonexistent"}}"#,
                "is not found on PATH (/nonexistent)",
            ),
        ] {
            let e = problem(manifest);
            assert!(e.contains(says), "{manifest}: {e} should say {says}");
        }
    }

    #[test]
    fn a_program_must_be_an_executable_file() {
        let dir = bundle(r#"{"command": ["./main.sh"], "protocol": "exec"}"#);
        let script = dir.path().join("main.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("command[0] \"./main.sh\" is not executable"),
            "{e}"
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            read(dir.path()).unwrap().program,
            dir.path().join("./main.sh")
        );

        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"command": ["./"], "protocol": "exec"}"#,
        )
        .unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a file"), "{e}");
    }
}
