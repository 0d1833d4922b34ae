//! What the Docker suites share: the `docker` command, whether a daemon answers (skipping
//! loudly without one, failing when CI requires Docker), and the images built from this tree.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

// Each suite that includes `support` uses some of these, none all.
#[allow(unused_imports)]
pub use faas_testkit::docker::{docker_available, docker_cli, docker_required};

/// Builds the images from this tree as `minifaas/NAME:tag` (`deploy/build-images.sh`), once
/// per tag and test process; panics when the build fails.
pub fn build_images(tag: &str) {
    static BUILT: Mutex<Option<HashMap<String, Result<(), String>>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let result = built
        .get_or_insert_with(HashMap::new)
        .entry(tag.to_string())
        .or_insert_with(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/build-images.sh");
            let status = Command::new("bash")
                .arg(script)
                .env("FAAS_IMAGE_TAG", tag)
                .status()
                .map_err(|e| format!("cannot run {script}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{script} failed: {status}"))
            }
        });
    if let Err(e) = result {
        panic!("{e}");
    }
}
