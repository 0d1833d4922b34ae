//! What the Docker suites share: the `docker` command, whether a daemon answers (skipping
//! loudly without one, failing when CI requires Docker), and the images built from this tree.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

/// Runs `docker ARGS`; its trimmed output, or why it failed.
pub fn docker_cli(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether Docker is required (CI sets `FAAS_REQUIRE_DOCKER=1`): then a test fails rather
/// than skips.
pub fn docker_required() -> bool {
    std::env::var("FAAS_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// Whether the daemon answers: skips loudly without one, panics if CI requires Docker.
pub fn docker_available() -> bool {
    match docker_cli(&["version", "--format", "{{.Server.Version}}"]) {
        Ok(_) => true,
        Err(e) => {
            if docker_required() {
                panic!("FAAS_REQUIRE_DOCKER=1 but the Docker daemon does not answer: {e}");
            }
            eprintln!(
                "\n!!!!! SKIPPED: no Docker daemon answers ({e}); docker tests did not run !!!!!\n"
            );
            false
        }
    }
}

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
