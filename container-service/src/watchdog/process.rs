//! Starting a function's process, and the [`Group`] handle that kills it and learns how it
//! ended.
//!
//! Every process the watchdog starts is the leader of its own process group (so a shell and
//! everything it forks are killed together) and dies with the container service
//! ([`sys::die_with_parent`]). One reaper thread per process waits for the leader to exit *without
//! reaping it* ([`sys::wait_exited`]), kills whatever is left of its group, and only then reaps it
//! (getting its peak memory from `wait4`). The order matters: while the leader is an unreaped
//! zombie, its pid, which is also the group id, cannot be given to another process, so a
//! kill of the group can never hit a stranger. [`Group::kill`] holds the same lock as the
//! reaper and sends nothing once the leader is reaped.
//!
//! The reaper is a plain thread, not a runtime task: tokio's own child handling is not used
//! for these processes (it cannot return `wait4`'s peak memory), and a blocked thread must
//! not hold back the runtime's shutdown.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::watch;

use super::bundle::Bundle;
use super::sys::{self, Exit, Sys};

/// A process group led by a process this watchdog started.
#[derive(Debug)]
pub struct Group {
    pid: u32,
    sys: Arc<dyn Sys>,
    /// Whether the leader has been reaped (after which its group id may be reused).
    reaped: Mutex<bool>,
    exit: watch::Sender<Option<Exit>>,
}

impl Group {
    /// A handle of the group led by `pid` (a child of this process, in its own group).
    pub fn new(pid: u32, sys: Arc<dyn Sys>) -> Arc<Group> {
        Arc::new(Group {
            pid,
            sys,
            reaped: Mutex::new(false),
            exit: watch::Sender::new(None),
        })
    }

    /// The leader's pid, which is the group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills every process of the group, unless the leader is already reaped (then the
    /// reaper killed the group just before). Returns whether a signal was sent.
    pub fn kill(&self) -> bool {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped {
            return false;
        }
        self.sys.kill_group(self.pid).is_ok()
    }

    /// How the leader ended, once it is reaped.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Waits until the leader has ended and is reaped.
    pub async fn exited(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            // The sender lives in `self`, so this only fails if it is gone: never here.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Records the leader's end (the reaper, after the group's last kill).
    pub fn reaped(&self, exit: Exit) {
        let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        *reaped = true;
        drop(reaped);
        self.exit.send_replace(Some(exit));
    }

    /// The reaper thread's work: wait for the exit, kill what is left, reap.
    fn reap_after_exit(&self) {
        if let Err(e) = sys::wait_exited(self.pid) {
            tracing::warn!(
                pid = self.pid,
                "cannot wait for the function's process: {e}"
            );
        }
        let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        // Whatever the leader left behind (a shell's background jobs) ends with it.
        let _ = self.sys.kill_group(self.pid);
        let exit = sys::reap(self.pid).unwrap_or_else(|e| {
            tracing::warn!(pid = self.pid, "cannot reap the function's process: {e}");
            Exit::with_code(255, 0)
        });
        *reaped = true;
        drop(reaped);
        self.exit.send_replace(Some(exit));
    }
}

/// Kills its group when dropped (a call whose caller went away, a start that failed), unless
/// disarmed.
#[derive(Debug)]
pub struct KillOnDrop(Option<Arc<Group>>);

impl KillOnDrop {
    /// Arms the guard for `group`.
    pub fn new(group: Arc<Group>) -> KillOnDrop {
        KillOnDrop(Some(group))
    }

    /// The group, no longer killed by this guard.
    pub fn disarm(mut self) -> Arc<Group> {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
        }
    }
}

/// A started process: its group and its pipes.
#[derive(Debug)]
pub struct Spawned {
    pub group: Arc<Group>,
    /// Present when spawned with stdin piped (`exec`); an `http` process gets /dev/null.
    pub stdin: Option<ChildStdin>,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// The environment of the function's process: the container service's own, without its
/// settings (`FAAS_*`, `CONTAINER_SERVICE_PORT`: they configure the watchdog, not the
/// function), then the bundle's `env`, then `PORT` (http) which always wins.
pub fn environment(bundle: &Bundle, port: Option<u16>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !k.starts_with("FAAS_") && k != "CONTAINER_SERVICE_PORT"
        })
        .collect();
    let mut set = |k: OsString, v: OsString| {
        env.retain(|(old, _)| *old != k);
        env.push((k, v));
    };
    for (k, v) in &bundle.env {
        set(k.into(), v.into());
    }
    if let Some(port) = port {
        set("PORT".into(), port.to_string().into());
    }
    env
}

/// Starts the bundle's command in `bundle.cwd` with exactly `env`, in a process group of its
/// own, stdout and stderr piped, stdin piped when `with_stdin` (else /dev/null). Call it from
/// a runtime thread (see [`sys::die_with_parent`]).
pub fn spawn(
    bundle: &Bundle,
    env: &[(OsString, OsString)],
    with_stdin: bool,
    sys: Arc<dyn Sys>,
) -> std::io::Result<Spawned> {
    let mut cmd = std::process::Command::new(&bundle.program);
    cmd.arg0(&bundle.command[0])
        .args(&bundle.command[1..])
        .current_dir(&bundle.cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let group = Group::new(child.id(), sys);
    let reaper = group.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("faas-reaper".into())
        .spawn(move || reaper.reap_after_exit())
    {
        group.kill();
        let _ = child.wait();
        return Err(e);
    }
    // From here on any early return kills the group (the reaper then reaps it).
    let guard = KillOnDrop::new(group);
    let stdin = child.stdin.take().map(ChildStdin::from_std).transpose()?;
    let stdout = ChildStdout::from_std(child.stdout.take().expect("stdout is piped"))?;
    let stderr = ChildStderr::from_std(child.stderr.take().expect("stderr is piped"))?;
    Ok(Spawned {
        group: guard.disarm(),
        stdin,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::sys::RealSys;
    use crate::watchdog::sys_fake::FakeSys;

    #[test]
    fn a_reaped_group_is_never_signalled() {
        let sys = Arc::new(FakeSys::default());
        let group = Group::new(42, sys.clone());
        assert!(group.kill());
        assert!(group.exit().is_none());
        group.reaped(Exit::with_code(0, 0));
        assert!(!group.kill(), "the group id may belong to someone else now");
        assert_eq!(sys.kills(), vec![42]);
        assert_eq!(group.exit().unwrap().status.code(), Some(0));
    }

    #[test]
    fn a_guard_kills_unless_disarmed() {
        let sys = Arc::new(FakeSys::default());
        drop(KillOnDrop::new(Group::new(7, sys.clone())));
        let kept = KillOnDrop::new(Group::new(8, sys.clone())).disarm();
        assert_eq!(kept.pid(), 8);
        assert_eq!(sys.kills(), vec![7]);
    }

    fn bundle(command: &[&str]) -> Bundle {
        let path = std::env::var_os("PATH");
        let dir = std::env::temp_dir();
        let mut b = Bundle {
            dir: dir.clone(),
            handler: "bundle:test".into(),
            cwd: dir,
            command: command.iter().map(|s| s.to_string()).collect(),
            program: "/bin/sh".into(),
            protocol: super::super::bundle::Protocol::Exec,
            start_timeout: std::time::Duration::from_secs(1),
            env: [("GREETING".to_string(), "hi".to_string())].into(),
        };
        b.program = std::env::split_paths(path.as_deref().unwrap())
            .map(|d| d.join(command[0]))
            .find(|p| p.is_file())
            .unwrap();
        b
    }

    #[test]
    fn the_environment_drops_the_watchdogs_settings_and_sets_port_last() {
        let mut b = bundle(&["sh"]);
        b.env.insert("PORT".into(), "1".into());
        let env = environment(&b, Some(8080));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PORT"), Some("8080".into()));
        assert_eq!(get("GREETING"), Some("hi".into()));
        assert!(
            env.iter()
                .all(|(k, _)| !k.to_string_lossy().starts_with("FAAS_"))
        );
        assert_eq!(env.iter().filter(|(k, _)| k == "PORT").count(), 1);
    }

    #[tokio::test]
    async fn a_real_process_is_reaped_with_its_status_and_peak() {
        let b = bundle(&["sh", "-c", "echo \"$GREETING\"; exit 3"]);
        let spawned = spawn(&b, &environment(&b, None), false, Arc::new(RealSys)).unwrap();
        let exit = spawned.group.exited().await;
        assert_eq!(exit.status.code(), Some(3));
        assert!(exit.max_rss_bytes > 0);
        assert!(!spawned.group.kill(), "reaped: nothing to signal");
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut { spawned.stdout }, &mut out)
            .await
            .unwrap();
        assert_eq!(out, "hi\n");
    }

    #[tokio::test]
    async fn a_kill_ends_the_whole_group() {
        // The shell forks a sleep and waits: both are in the group.
        let b = bundle(&["sh", "-c", "sleep 600 & echo $!; wait"]);
        let spawned = spawn(&b, &environment(&b, None), false, Arc::new(RealSys)).unwrap();
        let mut lines =
            tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(spawned.stdout));
        let sleeper: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
        assert!(spawned.group.kill());
        let exit = spawned.group.exited().await;
        assert_eq!(exit.status.code(), None, "killed by a signal");
        assert!(
            crate::watchdog::test_support::gone(sleeper).await,
            "the sleep survived"
        );
    }
}
