//! The deploy file: a TOML list of `[[function]]` entries, each with (optionally) its
//! versions, aliases, routes and chain, so a whole setup is one file. `faas deploy FILE` applies it
//! ([`parse_setup_toml`]); the API server's start-up file (`--functions`,
//! `deploy/functions.toml`) takes functions only ([`parse_functions_toml`]) and refuses the
//! rest, naming `faas deploy FILE`.
//!
//! ```toml
//! [[function]]
//! name = "shop"
//! handler = "echo"            # the current (mutable) definition: a built-in handler, or
//!                             # command/code/protocol (your program) or image/protocol
//!                             # (see file_kind.rs and deploy/user-functions.toml)
//! memory_mb = 128
//! timeout_ms = 1000
//! description = "A shop."    # optional
//!
//! [[function.version]]        # versions, in increasing order; each is immutable
//! version = 1
//! handler = "echo"            # (or command, code, protocol…: what the version runs)
//!                             # memory_mb, timeout_ms, description: the function's when
//!                             # left out (so changing those of the function changes this
//!                             # version, and the deploy refuses it: write them out to pin)
//! [[function.version]]
//! version = 2
//! handler = "sleep"
//!
//! [[function.alias]]
//! name = "live"
//! targets = "1=90,2=10"       # or "2" (or 2): all traffic to version 2
//!
//! [function.routes]           # where a call of plain `shop` goes (see docs/ROUTING.md)
//! default = "shop:live"       # NAME, NAME:N or NAME:ALIAS; left out: the current definition
//!
//! [[function.routes.rules]]   # tried in order; every condition given must hold
//! route_id = "vip"            # and/or route_id_regex = "^test-",
//! target = "shop:2"           #        fields = { wareHouseId = "2001" }
//!
//! [function.routes.fallback]
//! target = "shop:1"
//! on = ["not_found", "error", "timeout"]   # the default: all three
//! share_percent = 0.0         # this share of calls goes to the fallback anyway
//!
//! [function.routes.breaker]   # needs a fallback; give a latency rule, an error rule or both
//! latency_baseline_ms = 50    # opens when the window's p99 > baseline + margin_ms (100)
//! max_error_percent = 0.0     # opens when the window's error share exceeds this
//! # window_ms = 10000, min_calls = 20, cooldown_ms = 5000, probe_calls = 3 (the defaults)
//!
//! [function.chain]            # what is queued after an asynchronous call of `shop` ends
//! on_success = "ship"         # with the call's result as the event; left out: nothing
//! on_failure = "alert"        # with the invocation's JSON, once it failed for good
//! ```
//!
//! `faas deploy FILE` applies, in this order: every function's definition, then the declared
//! versions (each published under its number: re-applying the same file changes nothing, and
//! a version whose definition changed is refused, since versions are immutable), then the
//! aliases, then the routes, then the chains (once every function of the file exists, so a
//! chain may name a function declared after it; the server refuses a cycle). A function
//! without a `routes` (`chain`) table keeps the routes (chain) it has; an empty
//! `[function.routes]` (`[function.chain]`) table removes them.
//!
//! Every entry is validated with the registry's and the service layer's rules (those that do
//! not depend on what is deployed), so a file that parses deploys unless it names a version,
//! alias or function the server does not have. An error names the file, the entry, the
//! function and the field (`shop.toml: entry 1: function "shop": routes.rules[0].target:
//! ...`); unknown keys are refused.

#[path = "file_routing.rs"]
mod entries;
#[path = "file_kind.rs"]
mod kinds;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::routing::{RoutePolicy, Weighted};
use crate::model::{FunctionSpec, MIB};
use crate::service::registry::{RegistryError, validate_name, validate_spec};

use entries::{AliasEntry, RoutesEntry};
use kinds::{KindFields, VersionEntry};

/// The default functions (`deploy/functions.toml`), compiled in.
pub const DEFAULT_FUNCTIONS_TOML: &str = include_str!("../../../deploy/functions.toml");

/// The origin named in errors about [`DEFAULT_FUNCTIONS_TOML`].
pub const DEFAULT_FUNCTIONS_ORIGIN: &str = "deploy/functions.toml (built in)";

/// Everything a deploy file declares, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    pub functions: Vec<FunctionSetup>,
}

/// One `[[function]]` entry: the definition and what is built on it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSetup {
    /// The current (mutable) definition.
    pub spec: FunctionSpec,
    /// The definition's code directory as the file names it (relative to the file's
    /// directory), not read yet (`store::code_dir::load_setup_code` reads it).
    pub code: Option<PathBuf>,
    /// The declared versions, in increasing order.
    pub versions: Vec<VersionSpec>,
    /// The declared aliases, in file order.
    pub aliases: Vec<AliasSpec>,
    /// `None`: the function's routes are left as they are; `Some` of an empty policy: they
    /// are removed.
    pub routes: Option<RoutePolicy>,
    /// `None`: the function's chain is left as it is; `Some`: it becomes exactly this (an
    /// empty target: none).
    pub chain: Option<ChainSpec>,
}

/// A declared chain (`[function.chain]`): what is queued after the function's calls end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainSpec {
    /// Queued with the call's result when it succeeds; empty: nothing.
    pub on_success: String,
    /// Queued with the invocation's JSON when it fails for good; empty: nothing.
    pub on_failure: String,
}

impl FunctionSetup {
    /// Whether it declares anything beyond the definition (versions, aliases, routes or a
    /// chain).
    pub fn has_routing(&self) -> bool {
        !self.versions.is_empty()
            || !self.aliases.is_empty()
            || self.routes.is_some()
            || self.chain.is_some()
    }
}

/// A declared version: its number and its frozen definition (named as the function).
#[derive(Clone, Debug, PartialEq)]
pub struct VersionSpec {
    pub version: i64,
    pub spec: FunctionSpec,
    /// Its code directory, as [`FunctionSetup::code`].
    pub code: Option<PathBuf>,
}

/// A declared alias and the versions it points at.
#[derive(Clone, Debug, PartialEq)]
pub struct AliasSpec {
    pub name: String,
    pub targets: Vec<Weighted>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    function: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: Option<String>,
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
    #[serde(default)]
    version: Vec<VersionEntry>,
    #[serde(default)]
    alias: Vec<AliasEntry>,
    routes: Option<RoutesEntry>,
    chain: Option<ChainEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    on_success: Option<String>,
    on_failure: Option<String>,
}

impl ChainEntry {
    /// The chain of `function`; each target named must be a valid function name.
    fn into_spec(self, function: &str) -> Result<ChainSpec, RegistryError> {
        let target = |field: &str, name: Option<String>| -> Result<String, RegistryError> {
            let name = name.unwrap_or_default();
            if name.is_empty() {
                return Ok(name);
            }
            validate_name(&name).map_err(|e| RegistryError::BadRouting {
                function: function.to_string(),
                field: format!("chain.{field}"),
                problem: e.to_string(),
            })?;
            Ok(name)
        };
        Ok(ChainSpec {
            on_success: target("on_success", self.on_success)?,
            on_failure: target("on_failure", self.on_failure)?,
        })
    }
}

/// Memory in MiB as bytes; saturates far outside the valid range, so validation still
/// refuses it.
fn mib_to_bytes(memory_mb: i64) -> i64 {
    memory_mb.saturating_mul(MIB)
}

impl FileEntry {
    fn into_setup(self) -> Result<FunctionSetup, RegistryError> {
        let name = self.name.unwrap_or_default();
        let missing = |field| RegistryError::MissingField {
            name: name.clone(),
            field,
        };
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        let kind = KindFields {
            handler: self.handler,
            command: self.command,
            protocol: self.protocol,
            image: self.image,
            start_timeout_ms: self.start_timeout_ms,
            env: self.env,
            code: self.code,
        };
        if !kind.given() {
            return Err(RegistryError::NoKind { name });
        }
        let memory_mb = self.memory_mb.ok_or_else(|| missing("memory_mb"))?;
        let timeout_ms = self.timeout_ms.ok_or_else(|| missing("timeout_ms"))?;
        let mut spec = FunctionSpec {
            memory_bytes: mib_to_bytes(memory_mb),
            name,
            timeout_ms,
            description: self.description.unwrap_or_default(),
            ..FunctionSpec::default()
        };
        let code = kind.apply(&mut spec)?;
        validate_spec(&spec)?;
        let versions = kinds::versions(&spec, self.version)?;
        let aliases = entries::aliases(&spec.name, self.alias)?;
        let routes = self.routes.map(|r| r.into_policy(&spec.name)).transpose()?;
        let chain = self.chain.map(|c| c.into_spec(&spec.name)).transpose()?;
        Ok(FunctionSetup {
            spec,
            code,
            versions,
            aliases,
            routes,
            chain,
        })
    }
}

/// Parses and validates a deploy file. `origin` names the file in errors (a path, or
/// [`DEFAULT_FUNCTIONS_ORIGIN`]). An error names the file, the entry, the function and, for
/// versions, aliases and routes, the field.
pub fn parse_setup_toml(text: &str, origin: &str) -> Result<Setup, RegistryError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| RegistryError::Malformed {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut first_entry: HashMap<String, usize> = HashMap::with_capacity(doc.function.len());
    let mut functions = Vec::with_capacity(doc.function.len());
    for (i, entry) in doc.function.into_iter().enumerate() {
        let entry_no = i + 1;
        let setup = entry
            .into_setup()
            .map_err(|problem| RegistryError::InFile {
                origin: origin.to_string(),
                entry: entry_no,
                problem: Box::new(problem),
            })?;
        let name = &setup.spec.name;
        if let Some(&first) = first_entry.get(name) {
            return Err(RegistryError::Duplicate {
                origin: origin.to_string(),
                entry: entry_no,
                first,
                name: name.clone(),
            });
        }
        first_entry.insert(name.clone(), entry_no);
        functions.push(setup);
    }
    Ok(Setup { functions })
}

/// Parses and validates a functions file as the API server reads it at start: functions
/// only. An entry that declares versions, aliases or routes is refused (they are applied
/// with `faas deploy FILE` once the platform runs), never ignored. Code directories are
/// named, not read (`store::code_dir::load_setup_code` reads them).
pub fn parse_startup_toml(text: &str, origin: &str) -> Result<Setup, RegistryError> {
    let setup = parse_setup_toml(text, origin)?;
    if let Some((i, f)) = setup
        .functions
        .iter()
        .enumerate()
        .find(|(_, f)| f.has_routing())
    {
        let field = if !f.versions.is_empty() {
            "version"
        } else if !f.aliases.is_empty() {
            "alias"
        } else if f.routes.is_some() {
            "routes"
        } else {
            "chain"
        };
        return Err(RegistryError::InFile {
            origin: origin.to_string(),
            entry: i + 1,
            problem: Box::new(RegistryError::BadRouting {
                function: f.spec.name.clone(),
                field: field.into(),
                problem: "the start-up functions file takes functions only: apply versions, \
                          aliases, routes and chains with `faas deploy FILE` once the platform \
                          runs"
                    .into(),
            }),
        });
    }
    Ok(setup)
}

/// [`parse_startup_toml`] for a file without code directories (the built-in one): its
/// specs. A code directory is refused, never dropped: read such a file with
/// `Config::load_functions`.
pub fn parse_functions_toml(text: &str, origin: &str) -> Result<Vec<FunctionSpec>, RegistryError> {
    let setup = parse_startup_toml(text, origin)?;
    if let Some((i, f)) = setup
        .functions
        .iter()
        .enumerate()
        .find(|(_, f)| f.code.is_some())
    {
        return Err(RegistryError::InFile {
            origin: origin.to_string(),
            entry: i + 1,
            problem: Box::new(RegistryError::BadKind {
                name: f.spec.name.clone(),
                field: "code".into(),
                problem: "this reader takes no code directories: deploy the file with faas deploy, or start the API server with --functions".into(),
            }),
        });
    }
    Ok(setup.functions.into_iter().map(|f| f.spec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Handler;

    #[test]
    fn the_default_file_holds_one_function_per_handler() {
        let specs = parse_functions_toml(DEFAULT_FUNCTIONS_TOML, DEFAULT_FUNCTIONS_ORIGIN).unwrap();
        for handler in Handler::ALL {
            let named = specs
                .iter()
                .find(|s| s.name == handler.as_str())
                .unwrap_or_else(|| panic!("no function named {handler}"));
            assert_eq!(named.handler, handler.as_str());
        }
        let hello = specs.iter().find(|s| s.name == "hello").unwrap();
        assert_eq!(hello.memory_bytes, 128 * MIB);
        assert_eq!(hello.timeout_ms, 60_000);
        let cpu = specs.iter().find(|s| s.name == "cpu").unwrap();
        assert_eq!(cpu.memory_bytes, 512 * MIB);
    }

    #[test]
    fn a_good_file_parses_in_order() {
        let text = r#"
            [[function]]
            name = "b"
            handler = "echo"
            memory_mb = 256
            timeout_ms = 1500
            description = "echoes"

            [[function]]
            name = "a"
            handler = "sleep"
            memory_mb = 64
            timeout_ms = 1
        "#;
        let specs = parse_functions_toml(text, "my.toml").unwrap();
        assert_eq!(
            specs,
            vec![
                FunctionSpec {
                    name: "b".into(),
                    handler: "echo".into(),
                    memory_bytes: 256 * MIB,
                    timeout_ms: 1500,
                    description: "echoes".into(),
                    ..Default::default()
                },
                FunctionSpec {
                    name: "a".into(),
                    handler: "sleep".into(),
                    memory_bytes: 64 * MIB,
                    timeout_ms: 1,
                    description: String::new(),
                    ..Default::default()
                },
            ]
        );
        assert_eq!(parse_functions_toml("", "empty.toml").unwrap(), vec![]);
        // The same file as a setup: functions and nothing else.
        let setup = parse_setup_toml(text, "my.toml").unwrap();
        assert_eq!(setup.functions.len(), 2);
        assert!(setup.functions.iter().all(|f| !f.has_routing()));
    }

    #[test]
    fn malformed_toml_names_the_file() {
        let err = parse_functions_toml("[[function]\nname = ", "broken.toml").unwrap_err();
        assert!(matches!(err, RegistryError::Malformed { .. }), "{err}");
        assert!(err.to_string().starts_with("broken.toml: "), "{err}");

        let err = parse_functions_toml(
            "[[function]]\nname = \"a\"\nmemory_mib = 128\n",
            "typo.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("memory_mib"), "{err}");

        let err = parse_functions_toml(
            "[[function]]\nname = \"a\"\nhandler = \"hello\"\nmemory_mb = 1.5\ntimeout_ms = 5\n",
            "float.toml",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("float.toml: "), "{err}");
    }

    #[test]
    fn an_invalid_function_names_the_file_entry_and_function() {
        let text = r#"
            [[function]]
            name = "fine"
            handler = "hello"
            memory_mb = 128
            timeout_ms = 1000

            [[function]]
            name = "greedy"
            handler = "memory"
            memory_mb = 4096
            timeout_ms = 1000
        "#;
        let err = parse_functions_toml(text, "/etc/faas/functions.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/faas/functions.toml: entry 2: function \"greedy\": memory of 4096 MiB is out of range: give 64 to 3072 MiB"
        );

        let text = "[[function]]\nname = \"nohandler\"\nmemory_mb = 128\ntimeout_ms = 5\n";
        let err = parse_functions_toml(text, "f.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.toml: entry 1: function \"nohandler\": give handler (a built-in: hello, echo, sleep, cpu, memory, spin), command (your program, with its code) or image (a local Docker image)"
        );

        let text = "[[function]]\nname = \"x\"\nhandler = \"hello\"\nmemory_mb = 99999999999999999\ntimeout_ms = 5\n";
        let err = parse_functions_toml(text, "f.toml").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn a_name_defined_twice_is_refused() {
        let entry = "[[function]]\nname = \"twice\"\nhandler = \"hello\"\nmemory_mb = 128\ntimeout_ms = 5\n";
        let err = parse_functions_toml(&format!("{entry}{entry}"), "dup.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "dup.toml: entry 2: function \"twice\" is defined twice (first at entry 1)"
        );
        let err = parse_setup_toml(&format!("{entry}{entry}"), "dup.toml").unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Duplicate {
                    entry: 2,
                    first: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_start_up_file_refuses_versions_aliases_routes_and_chains() {
        let function =
            "[[function]]\nname = \"shop\"\nhandler = \"echo\"\nmemory_mb = 128\ntimeout_ms = 5\n";
        for (extra, field) in [
            (
                "[[function.version]]\nversion = 1\nhandler = \"echo\"\n",
                "version",
            ),
            (
                "[[function.version]]\nversion = 1\nhandler = \"echo\"\n[[function.alias]]\nname = \"live\"\ntargets = \"1\"\n",
                "version",
            ),
            (
                "[[function.alias]]\nname = \"live\"\ntargets = \"1\"\n",
                "alias",
            ),
            ("[function.routes]\n", "routes"),
            ("[function.chain]\non_success = \"first\"\n", "chain"),
        ] {
            let text = format!("{function}{function}{extra}").replacen("\"shop\"", "\"first\"", 1);
            let err = parse_functions_toml(&text, "start.toml").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "start.toml: entry 2: function \"shop\": {field}: the start-up functions file takes functions only: apply versions, aliases, routes and chains with `faas deploy FILE` once the platform runs"
                )
            );
            assert!(parse_setup_toml(&text, "start.toml").is_ok(), "{extra}");
        }
    }
}
