//! Headless Chromium for the tests that look at a page as a person would (the dashboard,
//! the HTML report): where the browser is, what a test does when it is not there, and the
//! flags every headless start uses.
//!
//! [`find`] looks for `$FAAS_CHROMIUM`, then `chromium` or `chromium-browser` on the PATH
//! (Debian's `chromium`). [`find_or_skip`]: absent, a test skips with its reason, unless
//! `FAAS_REQUIRE_BROWSER` is set (CI sets it), and then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary: `$FAAS_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FAAS_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// The browser, or `None` after saying on stderr why `test` skips; a failure (panic)
/// instead when `FAAS_REQUIRE_BROWSER` is set.
pub fn find_or_skip(test: &str) -> Option<PathBuf> {
    match find() {
        Some(path) => Some(path),
        None if std::env::var_os("FAAS_REQUIRE_BROWSER").is_some_and(|v| v != "0") => panic!(
            "{test}: FAAS_REQUIRE_BROWSER is set but no chromium was found on the PATH (or \
             $FAAS_CHROMIUM): install it (apt-get install -y chromium)"
        ),
        None => {
            eprintln!(
                "{test}: browser part skipped: no chromium on the PATH (apt-get install -y \
                 chromium, or set FAAS_CHROMIUM); set FAAS_REQUIRE_BROWSER=1 to fail instead"
            );
            None
        }
    }
}

/// `binary` as a headless browser command with its own profile in `profile` and a window
/// of `width` × `height` px; the caller adds what it does (a page, a DevTools port, a dump).
pub fn headless(binary: &Path, profile: &Path, width: u32, height: u32) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},{height}"));
    cmd
}
