//! Starting the platform's own binaries as child processes, which by default never outlive
//! their parent.
//!
//! A component binary is found by name (`container-service`, `node-service`, ...):
//! 1. the environment variable `FAAS_<NAME>_BIN` (e.g. `FAAS_NODE_SERVICE_BIN`);
//! 2. the multi-call `faas` binary named by `FAAS_BIN`, run as `faas <name> ...`;
//! 3. a binary of that name beside the running executable, or one folder up (test
//!    executables live in `target/<profile>/deps`);
//! 4. a multi-call `faas` binary beside the running executable.
//!
//! Explicit settings win over discovery, so a test can pin the whole process tree to the
//! freshly built `faas` binary with `FAAS_BIN` (children inherit the environment).
//!
//! Children get their own process group (a Ctrl-C in the terminal reaches only the parent,
//! which then stops them in order) and a [`Lifetime`]:
//!
//! - [`Lifetime::Guarded`] (the default): `PR_SET_PDEATHSIG = SIGKILL` (Linux), so the child
//!   dies with its parent even if the parent is killed, and it is killed when its handle drops.
//! - [`Lifetime::Detached`]: neither. The child keeps running when its parent dies or drops
//!   its handle (tokio still reaps it if it exits while this process lives). Whoever detaches
//!   a child owns its end: stop it on a clean exit, and make sure it ends by itself when its
//!   parent is gone for good (the resource manager's nodes take an orphan timeout).
//!
//! [`Child::spawn_ready`] waits for the child's readiness line (see
//! [`crate::serve::announce`]) and returns the address it listens on. A process that is not
//! (or no longer) a child of this one, such as a detached node adopted by a restarted
//! resource manager, can still be signalled by pid with [`send_signal`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::serve::parse_announce;

/// Errors of finding or starting a child.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "cannot find the {name} binary: set {env} or FAAS_BIN, or build the workspace (cargo build)"
    )]
    NotFound { name: String, env: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited before it was ready ({status})")]
    ExitedEarly { program: String, status: String },
    #[error("{program} was not ready within {secs:.1} s")]
    NotReady { program: String, secs: f64 },
}

/// How to start one component: a program and the arguments that come first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launcher {
    pub program: PathBuf,
    pub prefix_args: Vec<String>,
}

fn env_name(name: &str) -> String {
    format!("FAAS_{}_BIN", name.to_uppercase().replace('-', "_"))
}

fn beside_current_exe(file: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(file), dir.parent()?.join(file)]
        .into_iter()
        .find(|p| p.is_file())
}

impl Launcher {
    /// A launcher for an explicit program.
    pub fn new(program: impl Into<PathBuf>, prefix_args: Vec<String>) -> Launcher {
        Launcher {
            program: program.into(),
            prefix_args,
        }
    }

    /// Finds the binary of component `name` (see the module docs for the search order).
    pub fn find(name: &str) -> Result<Launcher, LaunchError> {
        let env = env_name(name);
        if let Some(p) = std::env::var_os(&env).filter(|p| !p.is_empty()) {
            return Ok(Launcher::new(PathBuf::from(p), vec![]));
        }
        let multi_call = |p: PathBuf| Launcher::new(p, vec![name.to_string()]);
        if let Some(p) = std::env::var_os("FAAS_BIN").filter(|p| !p.is_empty()) {
            return Ok(multi_call(PathBuf::from(p)));
        }
        if let Some(p) = beside_current_exe(name) {
            return Ok(Launcher::new(p, vec![]));
        }
        beside_current_exe("faas")
            .map(multi_call)
            .ok_or(LaunchError::NotFound {
                name: name.to_string(),
                env,
            })
    }

    /// The program's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// A command with the prefix arguments set, ready for more arguments. It does not
    /// inherit the cluster token's environment variables ([`crate::token`]): a parent that
    /// means to hand the token over sets them again. It logs in this process's format and
    /// exports spans where this process does ([`crate::logging::child_env`]).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix_args)
            .env_remove(crate::token::ENV)
            .env_remove(crate::token::FILE_ENV);
        cmd.envs(crate::logging::child_env());
        cmd
    }
}

/// Whether a child may outlive its parent (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lifetime {
    /// Dies with its parent (parent-death signal) and is killed when its handle drops.
    #[default]
    Guarded,
    /// Keeps running when its parent dies or drops its handle.
    Detached,
}

/// A child process. A [`Lifetime::Guarded`] one is killed (and reaped by tokio) when dropped.
#[derive(Debug)]
pub struct Child {
    inner: tokio::process::Child,
    program: String,
    lifetime: Lifetime,
}

/// Makes the child of `cmd` die (SIGKILL) when the thread that spawned it ends, so a parent
/// killed with SIGKILL leaves no child behind. The signal is tied to the spawning *thread*:
/// spawn from a thread that lives as long as the child (a runtime worker, never a
/// short-lived blocking thread). The launcher's guarded children and the watchdog's
/// function processes both use it.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

impl Child {
    /// Spawns `cmd` as a guarded child (stdout piped for the readiness line, stderr inherited).
    pub fn spawn(cmd: Command) -> Result<Child, LaunchError> {
        Child::spawn_with(cmd, Lifetime::Guarded)
    }

    /// Spawns `cmd` with `lifetime` (stdout piped for the readiness line, stderr inherited).
    pub fn spawn_with(mut cmd: Command, lifetime: Lifetime) -> Result<Child, LaunchError> {
        let program = format!("{:?}", cmd.as_std().get_program());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(lifetime == Lifetime::Guarded)
            .process_group(0);
        if lifetime == Lifetime::Guarded {
            die_with_parent(cmd.as_std_mut());
        }
        let inner = cmd.spawn().map_err(|source| LaunchError::Spawn {
            program: program.clone(),
            source,
        })?;
        Ok(Child {
            inner,
            program,
            lifetime,
        })
    }

    /// Spawns `cmd` as a guarded child and waits up to `timeout` for its readiness line;
    /// returns the child and the address it announced. The child is killed if it is not
    /// ready in time.
    pub async fn spawn_ready(
        cmd: Command,
        timeout: Duration,
    ) -> Result<(Child, SocketAddr), LaunchError> {
        Child::spawn_ready_with(cmd, timeout, Lifetime::Guarded).await
    }

    /// [`Child::spawn_ready`] with `lifetime`. A detached child that is not ready in time is
    /// killed too: it never outlives a failed start.
    pub async fn spawn_ready_with(
        cmd: Command,
        timeout: Duration,
        lifetime: Lifetime,
    ) -> Result<(Child, SocketAddr), LaunchError> {
        let mut child = Child::spawn_with(cmd, lifetime)?;
        let stdout = child.inner.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = parse_announce(&line) {
                    return Some(addr);
                }
            }
            None
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(addr)) => {
                // Keep draining stdout so the child never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok((child, addr))
            }
            Ok(None) => {
                let status = child
                    .inner
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                Err(LaunchError::ExitedEarly {
                    program: child.program.clone(),
                    status,
                })
            }
            Err(_) => {
                child.kill().await;
                Err(LaunchError::NotReady {
                    program: child.program.clone(),
                    secs: timeout.as_secs_f64(),
                })
            }
        }
    }

    /// The child's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.inner.id()
    }

    /// How the child was spawned.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// Whether the child has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.try_status(), Ok(None))
    }

    /// How the child ended, reaping it, or `None` while it runs (without waiting).
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Waits until the child exits, reaps it and says how it ended.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.inner.wait().await
    }

    /// Asks the child to stop with SIGTERM, waits up to `grace`, then kills it; always reaps.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.inner.id() {
            let _ = send_signal(pid, Signal::Terminate);
            if tokio::time::timeout(grace, self.inner.wait()).await.is_ok() {
                return;
            }
        }
        self.kill().await;
    }

    /// Kills the child with SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.inner.kill().await;
    }
}

/// A signal the platform sends to its own processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGTERM: stop cleanly.
    Terminate,
    /// SIGKILL: stop now.
    Kill,
}

/// Sends `signal` to process `pid` (a child or not; the caller makes sure the pid is still
/// the process it means). Fails like kill(2): `ESRCH` once the process is gone.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let signal = match signal {
        Signal::Terminate => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) on one positive pid (never a process group); no memory is shared.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_component_name() {
        assert_eq!(env_name("node-service"), "FAAS_NODE_SERVICE_BIN");
        assert_eq!(env_name("container-service"), "FAAS_CONTAINER_SERVICE_BIN");
    }

    #[tokio::test]
    async fn spawn_ready_reads_the_announced_address_and_kill_reaps() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo starting; echo 'FAAS_LISTENING 127.0.0.1:5555'; sleep 30");
        let (mut child, addr) = Child::spawn_ready(cmd, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(addr, "127.0.0.1:5555".parse().unwrap());
        assert!(!child.has_exited());
        child.stop(Duration::from_millis(500)).await;
        assert!(child.has_exited());
    }

    /// Polls the process table until `pid` is gone (exited and reaped).
    async fn wait_gone(pid: u32) {
        let deadline = crate::clock::instant() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(crate::clock::instant() < deadline, "{pid} never reaped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The parent-death signal cannot be read for another process (`PR_GET_PDEATHSIG` only
    /// reads one's own), so this checks what detaching is for: the child survives its handle.
    #[tokio::test]
    async fn a_detached_child_survives_its_handle_and_is_stopped_by_pid() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo 'FAAS_LISTENING 127.0.0.1:5556'; exec sleep 30");
        let (child, _) = Child::spawn_ready_with(cmd, Duration::from_secs(5), Lifetime::Detached)
            .await
            .unwrap();
        assert_eq!(child.lifetime(), Lifetime::Detached);
        let pid = child.id().unwrap();
        drop(child);
        // Still there after the drop (a guarded child is killed by it).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit_once(") ").unwrap().1.chars().next().unwrap();
        assert!(state != 'Z' && state != 'X', "{stat}");

        send_signal(pid, Signal::Kill).unwrap();
        // tokio reaps the child whose handle was dropped.
        wait_gone(pid).await;
        let err = send_signal(pid, Signal::Terminate).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
        assert!(
            send_signal(0, Signal::Kill).is_err(),
            "never a process group"
        );
    }

    #[tokio::test]
    async fn a_guarded_child_is_killed_when_its_handle_drops_and_wait_reports_how() {
        let sleeper = || {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg("exec sleep 30");
            Child::spawn(cmd).unwrap()
        };
        let child = sleeper();
        assert_eq!(child.lifetime(), Lifetime::Guarded);
        let pid = child.id().unwrap();
        drop(child);
        wait_gone(pid).await;

        let mut child = sleeper();
        assert!(child.try_status().unwrap().is_none(), "running");
        child.kill().await;
        let status = child.try_status().unwrap().expect("reaped by kill");
        assert!(!status.success());

        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("exit 4");
        let mut child = Child::spawn(cmd).unwrap();
        assert_eq!(child.wait().await.unwrap().code(), Some(4));
    }

    #[tokio::test]
    async fn spawn_ready_reports_an_early_exit() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("exit 3");
        let err = Child::spawn_ready(cmd, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::ExitedEarly { .. }), "{err}");
    }
}
