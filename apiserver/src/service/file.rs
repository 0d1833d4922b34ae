//! The functions file: a TOML list of `[[function]]` entries, read by the API server at start
//! (`--functions`) and by `faas deploy FILE`.
//!
//! ```toml
//! [[function]]
//! name = "hello"
//! handler = "hello"
//! memory_mb = 128
//! timeout_ms = 60000
//! description = "Answers a greeting."   # optional
//! ```
//!
//! Every entry is validated with the registry's rules, so a file that parses deploys.

use std::collections::HashMap;

use serde::Deserialize;

use crate::model::{FunctionSpec, MIB};
use crate::service::registry::{RegistryError, validate_spec};

/// The default functions (`deploy/functions.toml`), compiled in.
pub const DEFAULT_FUNCTIONS_TOML: &str = include_str!("../../../deploy/functions.toml");

/// The origin named in errors about [`DEFAULT_FUNCTIONS_TOML`].
pub const DEFAULT_FUNCTIONS_ORIGIN: &str = "deploy/functions.toml (built in)";

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
    memory_mb: Option<i64>,
    timeout_ms: Option<i64>,
    description: Option<String>,
}

impl FileEntry {
    fn into_spec(self) -> Result<FunctionSpec, RegistryError> {
        let name = self.name.unwrap_or_default();
        let missing = |field| RegistryError::MissingField {
            name: name.clone(),
            field,
        };
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        let handler = self.handler.ok_or_else(|| missing("handler"))?;
        let memory_mb = self.memory_mb.ok_or_else(|| missing("memory_mb"))?;
        let timeout_ms = self.timeout_ms.ok_or_else(|| missing("timeout_ms"))?;
        let spec = FunctionSpec {
            // Saturates far outside the valid range, so validation still refuses it.
            memory_bytes: memory_mb.saturating_mul(MIB),
            name,
            handler,
            timeout_ms,
            description: self.description.unwrap_or_default(),
        };
        validate_spec(&spec)?;
        Ok(spec)
    }
}

/// Parses and validates a functions file. `origin` names the file in errors (a path, or
/// [`DEFAULT_FUNCTIONS_ORIGIN`]). An error names the file, the entry and the function.
pub fn parse_functions_toml(text: &str, origin: &str) -> Result<Vec<FunctionSpec>, RegistryError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| RegistryError::Malformed {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut first_entry: HashMap<String, usize> = HashMap::with_capacity(doc.function.len());
    let mut specs = Vec::with_capacity(doc.function.len());
    for (i, entry) in doc.function.into_iter().enumerate() {
        let entry_no = i + 1;
        let spec = entry.into_spec().map_err(|problem| RegistryError::InFile {
            origin: origin.to_string(),
            entry: entry_no,
            problem: Box::new(problem),
        })?;
        if let Some(&first) = first_entry.get(&spec.name) {
            return Err(RegistryError::Duplicate {
                origin: origin.to_string(),
                entry: entry_no,
                first,
                name: spec.name,
            });
        }
        first_entry.insert(spec.name.clone(), entry_no);
        specs.push(spec);
    }
    Ok(specs)
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
                },
                FunctionSpec {
                    name: "a".into(),
                    handler: "sleep".into(),
                    memory_bytes: 64 * MIB,
                    timeout_ms: 1,
                    description: String::new(),
                },
            ]
        );
        assert_eq!(parse_functions_toml("", "empty.toml").unwrap(), vec![]);
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
            "f.toml: entry 1: function \"nohandler\": handler is missing"
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
    }
}
