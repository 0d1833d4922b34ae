//! Image functions on the `docker` runtime: a bundle whose `function.json` names an `image`
//! runs in a container of *that* image, with the platform's watchdog brought in from outside.
//!
//! The user's image need not contain the container service: the node bind-mounts, read-only,
//!
//! - the static `container-service` binary (`--docker-watchdog-bin`, a path on the Docker
//!   host) at [`WATCHDOG`], which becomes the container's entrypoint, and
//! - the bundle directory at [`BUNDLE`], which the watchdog gets as `--bundle`,
//!
//! so the container runs `/faas/container-service --function-name F --bundle /faas/bundle
//! --memory-bytes M …` and starts the user's command (from `function.json`) inside the
//! image's file system. Everything else is as for the platform's own containers (memory and
//! CPU limits, labels, read-only root, no capabilities, the non-root `--docker-user`: the
//! image's files must be readable by that user).
//!
//! Checked before anything is created, each a FAILED_PRECONDITION that says what to do: the
//! bundle has an image; the image is on this machine (no registry is reachable: it must
//! have been built here); the watchdog binary is known and, when the node can read it,
//! statically linked (a dynamically linked one cannot start in a `FROM scratch` image).
//!
//! Paths travel to the Docker daemon, which resolves them on *its* host: a node running in
//! a container needs the bundles directory mounted at the same path (the resource manager's
//! docker provider does that) and `--docker-watchdog-bin` given as a host path.

use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, Mount, MountType};
use bollard::query_parameters::LogsOptionsBuilder;
use faas_common::docker::is_not_found;
use faas_common::text::clip;
use futures::StreamExt;

use crate::model::bundle::Bundle;
use crate::service::RuntimeError;

/// Where the watchdog binary is mounted inside an image function's container.
pub const WATCHDOG: &str = "/faas/container-service";
/// Where the bundle is mounted inside an image function's container.
pub const BUNDLE: &str = "/faas/bundle";
/// Where `deploy/build-images.sh` leaves the static container service (under the repo).
pub const STATIC_BUILD: &str = "target-static/x86_64-unknown-linux-gnu/release/container-service";

/// What an image function's container is made of, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRun {
    pub image: String,
    pub watchdog: PathBuf,
    pub bundle_dir: PathBuf,
}

/// The default `--docker-watchdog-bin`: a `container-service` beside the node service's own
/// executable (so a node run from the static build's directory finds the static binary),
/// if there is one.
pub fn default_watchdog() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent()?.join("container-service");
    beside.is_file().then_some(beside)
}

/// Whether the ELF file at `path` asks for a dynamic loader (`PT_INTERP`); `None` when the
/// node cannot read it (a path on another host) or it is no 64-bit little-endian ELF.
pub fn is_dynamic(path: &Path) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = Vec::new();
    file.by_ref().take(64 * 1024).read_to_end(&mut head).ok()?;
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(head.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (entsize, count) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    let mut dynamic = false;
    for i in 0..count {
        let at = phoff + i * entsize;
        let kind = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        dynamic |= kind == PT_INTERP;
    }
    Some(dynamic)
}

fn refused(message: String) -> RuntimeError {
    RuntimeError::Unsupported(message)
}

/// Checks that `bundle` can run here (see the module docs) and says how.
pub async fn prepare(
    docker: &Docker,
    bundle: &Bundle,
    watchdog: Option<&Path>,
) -> Result<ImageRun, RuntimeError> {
    let Some(image) = bundle.image.clone() else {
        return Err(refused(format!(
            "bundle {} has no \"image\" in its function.json: command functions run on the \
             process runtime; give an image for Docker",
            bundle.hash
        )));
    };
    match docker.inspect_image(&image).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(refused(format!(
                "image {:?} is not on this machine (docker build it first; no registry is \
                 reachable)",
                clip(&image)
            )));
        }
        Err(e) => {
            return Err(RuntimeError::Unavailable(format!(
                "docker: cannot inspect image {:?}: {e}",
                clip(&image)
            )));
        }
    }
    let Some(watchdog) = watchdog else {
        return Err(refused(format!(
            "image functions need the static container-service binary on the Docker host, \
             mounted into their containers as {WATCHDOG}: start the node with \
             --docker-watchdog-bin PATH (deploy/build-images.sh builds it as {STATIC_BUILD})"
        )));
    };
    if is_dynamic(watchdog) == Some(true) {
        return Err(refused(format!(
            "--docker-watchdog-bin {} is dynamically linked and cannot start in an image \
             without its C library (a FROM scratch one): give the static build \
             (deploy/build-images.sh builds it as {STATIC_BUILD})",
            watchdog.display()
        )));
    }
    Ok(ImageRun {
        image,
        watchdog: watchdog.to_path_buf(),
        bundle_dir: bundle.dir.clone(),
    })
}

fn bind(source: &Path, target: &str) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    }
}

impl ImageRun {
    /// Turns the body of a container-service container into one of this image function:
    /// its image, the watchdog as the entrypoint (the body's `cmd` are its flags), the two
    /// read-only mounts. A bind mount (not a `Binds` entry) refuses a missing source
    /// instead of creating it.
    pub fn apply(&self, body: &mut ContainerCreateBody) {
        body.image = Some(self.image.clone());
        // The image's environment (its PATH…) stays: the watchdog hands it to the user's
        // process.
        body.entrypoint = Some(vec![WATCHDOG.to_string()]);
        if let Some(host) = body.host_config.as_mut() {
            host.mounts = Some(vec![
                bind(&self.watchdog, WATCHDOG),
                bind(&self.bundle_dir, BUNDLE),
            ]);
        }
    }
}

/// Why a container that exited while it started did, from the end of its logs.
pub async fn exit_reason(docker: &Docker, docker_id: &str) -> Option<String> {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail("50")
        .build();
    let mut logs = docker.logs(docker_id, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    super::stderr::reason_in(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_told_from_a_static_one() {
        // This test executable is linked dynamically (a debug build).
        let me = std::env::current_exe().unwrap();
        assert_eq!(is_dynamic(&me), Some(true));
        assert_eq!(is_dynamic(Path::new("/nonexistent")), None);
        let script = std::env::temp_dir().join(format!("faas-not-elf-{}", uuid::Uuid::new_v4()));
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(is_dynamic(&script), None);
        std::fs::remove_file(&script).unwrap();
    }

    #[test]
    fn an_image_function_runs_the_mounted_watchdog_in_its_image() {
        let run = ImageRun {
            image: "fn:1".into(),
            watchdog: "/host/container-service".into(),
            bundle_dir: "/data/bundles/ab".into(),
        };
        let mut body = ContainerCreateBody {
            image: Some("minifaas/container-service:latest".into()),
            cmd: Some(vec!["--bundle".into(), BUNDLE.into()]),
            host_config: Some(Default::default()),
            ..Default::default()
        };
        run.apply(&mut body);
        assert_eq!(body.image.as_deref(), Some("fn:1"));
        assert_eq!(body.entrypoint, Some(vec![WATCHDOG.to_string()]));
        let mounts = body.host_config.unwrap().mounts.unwrap();
        let seen: Vec<_> = mounts
            .iter()
            .map(|m| {
                (
                    m.source.as_deref().unwrap(),
                    m.target.as_deref().unwrap(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("/host/container-service", WATCHDOG, Some(true)),
                ("/data/bundles/ab", BUNDLE, Some(true)),
            ]
        );
    }
}
