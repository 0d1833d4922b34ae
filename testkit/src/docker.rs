//! The Docker command line for tests that check what the platform left on a daemon, and
//! the rule for tests that need one: without a daemon they skip loudly, unless CI requires
//! Docker (`FAAS_REQUIRE_DOCKER=1`), and then they fail.

use std::process::Command;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_docker_command_says_what_it_ran() {
        // An unknown subcommand fails whether or not a daemon runs (or docker exists).
        let e = docker_cli(&["no-such-subcommand-of-docker"]).unwrap_err();
        assert!(
            e.contains("no-such-subcommand-of-docker") || e.starts_with("cannot run docker"),
            "{e}"
        );
    }
}
