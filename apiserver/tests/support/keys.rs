//! Keys files for the front door's tests (`#[path = "support/keys.rs"] mod keys;`).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An admin key (name `ops`) and an invoke key (name `shop`) the tests use.
pub const ADMIN_KEY: &str = "admin-0123456789abcdef0123456789";
pub const INVOKE_KEY: &str = "invoke-0123456789abcdef012345678";

/// Writes `DIR/keys` with one `scope name key` line per entry, mode 0600 (the server
/// refuses a keys file others can read).
pub fn write_keys(dir: &Path, entries: &[(&str, &str, &str)]) -> PathBuf {
    let text: String = entries
        .iter()
        .map(|(scope, name, key)| format!("{scope} {name} {key}\n"))
        .collect();
    let path = dir.join("keys");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The keys file with [`ADMIN_KEY`] as `ops` and [`INVOKE_KEY`] as `shop`.
pub fn admin_and_invoke(dir: &Path) -> PathBuf {
    write_keys(
        dir,
        &[("admin", "ops", ADMIN_KEY), ("invoke", "shop", INVOKE_KEY)],
    )
}
