//! API keys: what a key may do, the keys file's format, and the table a call's key is
//! looked up in.
//!
//! A key has a *scope*: `invoke` keys may call the contest's `apiserverproto.APIServer`
//! (`InvokeFunction`, `ListFunctions`); `admin` keys may also call all of `faas.admin.v1.Admin`
//! (deploy, publish, alias, route, delete, describe, logs). Admin reads stay admin: a
//! function's definition holds its environment, and its logs what it printed.
//!
//! The keys file holds one key a line, `scope name key`; `#` starts a comment:
//!
//! ```text
//! # scope  name     key
//! admin    faas-up  6f1c…(64 hex digits)
//! invoke   shop     2b9e…
//! ```
//!
//! A key is 16 to 256 printable ASCII characters without spaces (it travels as gRPC
//! metadata, `authorization: Bearer KEY`); names are unique and only ever logged instead of
//! the key.
//!
//! The table keeps the SHA-256 digest of each key, never the key, and [`KeyTable::find`]
//! compares the digest of the key presented with *every* entry, each with a comparison whose
//! time does not depend on where the bytes differ: how long a lookup takes tells a caller
//! nothing about which bytes of which key it guessed right (a hash-map lookup by the raw key
//! would).

use sha2::{Digest, Sha256};

/// The shortest key accepted.
pub const MIN_KEY_CHARS: usize = 16;
/// The longest key accepted.
pub const MAX_KEY_CHARS: usize = 256;

/// What a key may do. `Admin` includes everything `Invoke` may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `InvokeFunction` and `ListFunctions`.
    Invoke,
    /// Also every call of the admin API.
    Admin,
}

impl Scope {
    /// Its name in the keys file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Invoke => "invoke",
            Scope::Admin => "admin",
        }
    }

    /// Whether a key of this scope may make a call that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }

    /// Parses `invoke` or `admin`.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "invoke" => Some(Scope::Invoke),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a keys file, key included (what a client reads to find its key).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyLine {
    pub scope: Scope,
    pub name: String,
    pub key: String,
}

impl std::fmt::Debug for KeyLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: a debug print must not leak it into a log.
        f.debug_struct("KeyLine")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KeyLine {
    /// The line as the keys file holds it.
    pub fn to_line(&self) -> String {
        format!("{} {} {}", self.scope, self.name, self.key)
    }
}

/// Why a key or a keys file is refused. Messages name the line, never the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{origin} line {line}: expected `scope name key` (scope invoke or admin)")]
    Shape { origin: String, line: usize },
    #[error("{origin} line {line}: unknown scope {scope:?} (invoke or admin)")]
    UnknownScope {
        origin: String,
        line: usize,
        scope: String,
    },
    #[error("{origin}: key {name:?}: {reason}")]
    BadKey {
        origin: String,
        name: String,
        reason: String,
    },
    #[error("{origin}: key name {name:?} is used twice (names must be unique)")]
    DuplicateName { origin: String, name: String },
    #[error("{origin}: bad key name {name:?}: letters, digits, '_', '-' and '.', at most 64")]
    BadName { origin: String, name: String },
}

/// Checks a key's shape: the reason it is refused, if it is.
pub fn key_problem(key: &str) -> Option<String> {
    let n = key.chars().count();
    if n < MIN_KEY_CHARS {
        return Some(format!(
            "{n} characters, fewer than {MIN_KEY_CHARS} (make one with: openssl rand -hex 32)"
        ));
    }
    if n > MAX_KEY_CHARS {
        return Some(format!("{n} characters, more than {MAX_KEY_CHARS}"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("only printable ASCII without spaces travels as gRPC metadata".into());
    }
    None
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Parses a keys file (see the module documentation); `origin` names it in errors.
pub fn parse_keys(text: &str, origin: &str) -> Result<Vec<KeyLine>, KeyError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [scope, name, key] = fields[..] else {
            return Err(KeyError::Shape {
                origin: origin.to_string(),
                line: i + 1,
            });
        };
        let scope = Scope::parse(scope).ok_or_else(|| KeyError::UnknownScope {
            origin: origin.to_string(),
            line: i + 1,
            scope: faas_common::text::clip(scope).to_string(),
        })?;
        lines.push(KeyLine {
            scope,
            name: name.to_string(),
            key: key.to_string(),
        });
    }
    Ok(lines)
}

/// One key of the table: its name, scope and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub scope: Scope,
    digest: [u8; 32],
}

/// The keys a server accepts, by digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTable {
    entries: Vec<KeyEntry>,
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Equal digests, in a time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl KeyTable {
    /// A table of these keys; `origin` names where they came from in errors.
    pub fn from_lines(lines: &[KeyLine], origin: &str) -> Result<KeyTable, KeyError> {
        let mut table = KeyTable::default();
        for line in lines {
            table.add(line, origin)?;
        }
        Ok(table)
    }

    /// Adds one key, checked: a valid name not used yet, a key of the right shape.
    pub fn add(&mut self, line: &KeyLine, origin: &str) -> Result<(), KeyError> {
        if !name_ok(&line.name) {
            return Err(KeyError::BadName {
                origin: origin.to_string(),
                name: faas_common::text::clip(&line.name).to_string(),
            });
        }
        if let Some(reason) = key_problem(&line.key) {
            return Err(KeyError::BadKey {
                origin: origin.to_string(),
                name: line.name.clone(),
                reason,
            });
        }
        if self.entries.iter().any(|e| e.name == line.name) {
            return Err(KeyError::DuplicateName {
                origin: origin.to_string(),
                name: line.name.clone(),
            });
        }
        self.entries.push(KeyEntry {
            name: line.name.clone(),
            scope: line.scope,
            digest: digest(line.key.as_bytes()),
        });
        Ok(())
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `presented`, if it is one of the keys. Every entry is compared, each in
    /// constant time (see the module documentation).
    pub fn find(&self, presented: &str) -> Option<&KeyEntry> {
        let wanted = digest(presented.as_bytes());
        let mut found = None;
        for entry in &self.entries {
            if same_digest(&entry.digest, &wanted) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn admin_includes_invoke_and_not_the_other_way() {
        assert!(Scope::Admin.allows(Scope::Invoke));
        assert!(Scope::Admin.allows(Scope::Admin));
        assert!(Scope::Invoke.allows(Scope::Invoke));
        assert!(!Scope::Invoke.allows(Scope::Admin));
    }

    #[test]
    fn a_keys_file_parses_with_comments_and_blank_lines() {
        let text = format!("# scope name key\n\nadmin up {A}  # the first\n invoke shop {B}\n");
        let lines = parse_keys(&text, "keys").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].scope, lines[0].name.as_str()),
            (Scope::Admin, "up")
        );
        assert_eq!(lines[1].to_line(), format!("invoke shop {B}"));
        let table = KeyTable::from_lines(&lines, "keys").unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.find(A).unwrap().name, "up");
        assert_eq!(table.find(B).unwrap().scope, Scope::Invoke);
        assert!(table.find("0123456789abcdef0123456789abcdeX").is_none());
        assert!(table.find("").is_none());
        // The key never shows in a debug print.
        assert!(!format!("{lines:?}{table:?}").contains(A));
    }

    #[test]
    fn bad_files_name_the_line_and_never_the_key() {
        let err = |text: &str| parse_keys(text, "k").and_then(|l| KeyTable::from_lines(&l, "k"));
        assert_eq!(
            err("admin up\n").unwrap_err().to_string(),
            "k line 1: expected `scope name key` (scope invoke or admin)"
        );
        assert_eq!(
            err(&format!("\nroot up {A}")).unwrap_err().to_string(),
            "k line 2: unknown scope \"root\" (invoke or admin)"
        );
        let short = err("admin up short").unwrap_err().to_string();
        assert!(short.contains("5 characters, fewer than 16"), "{short}");
        assert!(!short.contains("short\""), "{short}");
        assert!(matches!(
            err(&format!("admin up {A}\ninvoke up {B}")).unwrap_err(),
            KeyError::DuplicateName { .. }
        ));
        assert!(matches!(
            err(&format!("admin u/p {A}")).unwrap_err(),
            KeyError::BadName { .. }
        ));
        assert!(
            key_problem(&"é".repeat(20))
                .unwrap()
                .contains("printable ASCII")
        );
        assert!(key_problem(&"a".repeat(257)).is_some());
        assert!(key_problem(A).is_none());
    }
}
