//! `protocol = "exec"`: one process per call.
//!
//! A call runs the command (same working directory and environment every time, in a process
//! group of its own), writes the event to its stdin and closes it, and at the same time reads
//! its stdout (the result, up to [`MAX_RESULT_BYTES`]) and its stderr (line by line into the
//! container's log ring with the request id, and into the call's own [`Tail`]). The call is
//! over when the process has exited and both pipes are closed: the reaper kills whatever the
//! process left in its group, so a forgotten background job cannot hold the pipes open.
//!
//! | what happened | the reply |
//! |---|---|
//! | exit 0 | the result is stdout |
//! | SIGKILL while the container's memory cgroup counted an OOM kill ([`super::cgroup`]) | `OutOfMemory`, naming the group's limit |
//! | exit non-zero or a signal | `FunctionError`: the exit status and the end of stderr |
//! | the timeout passed | `Timeout`; the group is killed |
//! | the memory guard killed it, or its peak (`wait4`) passed the limit | `OutOfMemory` |
//! | stdout passed [`MAX_RESULT_BYTES`] | `FunctionError`; the group is killed |
//! | the container is stopping | `ContainerExited`; the group is killed |
//!
//! The call's stderr is also its reply's `function_log`. Its peak memory is the larger of
//! the guard's samples and `wait4`'s `ru_maxrss`.

use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faas_common::text::clip;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cgroup::{oom_killed, oom_message};
use super::logs::{Stream, Tail, read_lines};
use super::process::{KillOnDrop, Spawned, spawn};
use super::sys::Exit;
use super::{CallReport, MAX_RESULT_BYTES, MESSAGE_BYTES, Shared, code};

/// How long a killed call waits to learn its processes' peak memory.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// The end of `text`, at most `max` bytes (cut on a character boundary), with what was cut.
fn clip_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…({} bytes) {}", text.len(), &text[start..])
}

/// Runs one call (see the module docs).
pub(crate) async fn invoke(
    shared: &Shared,
    request_id: &str,
    event: Vec<u8>,
    timeout: Duration,
) -> CallReport {
    let bundle = &shared.bundle;
    let _busy = shared.guard.busy();
    let cgroup_before = shared.sys.memory_cgroup();
    let spawned = match spawn(bundle, &shared.env, true, shared.sys.clone()) {
        Ok(s) => s,
        Err(e) => {
            return CallReport::failed(
                code::FUNCTION_ERROR,
                format!("cannot start {:?}: {e}", clip(&bundle.command[0])),
            );
        }
    };
    let Spawned {
        group,
        stdin,
        stdout,
        stderr,
    } = spawned;
    // Whatever way this call ends, even its future dropped, nothing of it outlives it.
    let _kill = KillOnDrop::new(group.clone());
    let tracked = shared.guard.track(group.clone());
    if shared.stopping.load(Ordering::Acquire) {
        // `stop` ran between the check in `Watchdog::invoke` and the tracking above.
        group.kill();
    }
    let tail = Mutex::new(Tail::default());
    let too_large = AtomicBool::new(false);

    let write = async {
        if let Some(mut stdin) = stdin {
            // A process that does not read its stdin closes the pipe: not an error.
            let _ = stdin.write_all(&event).await;
            let _ = stdin.shutdown().await;
        }
    };
    let read_stdout = async {
        let mut out = Vec::new();
        let mut limited = stdout.take(MAX_RESULT_BYTES as u64 + 1);
        let _ = limited.read_to_end(&mut out).await;
        if out.len() > MAX_RESULT_BYTES {
            too_large.store(true, Ordering::Relaxed);
            group.kill();
        }
        out
    };
    let read_stderr = read_lines(stderr, |line| {
        tail.lock().unwrap_or_else(|e| e.into_inner()).push(&line);
        shared.logs.push(Stream::Stderr, Some(request_id), line);
    });
    let run = async {
        let ((), out, (), exit) = tokio::join!(write, read_stdout, read_stderr, group.exited());
        (out, exit)
    };
    let (out, exit, timed_out) = match tokio::time::timeout(timeout, run).await {
        Ok((out, exit)) => (out, Some(exit), false),
        Err(_) => {
            group.kill();
            let exit = tokio::time::timeout(REAP_GRACE, group.exited()).await.ok();
            (Vec::new(), exit, true)
        }
    };
    let member = tracked.member();
    let peak = member
        .peak_hwm()
        .max(exit.map_or(0, |e: Exit| e.max_rss_bytes));
    let tail = tail.into_inner().unwrap_or_else(|e| e.into_inner());
    let result = if let Some(why) = member.killed_for() {
        Err((
            code::OUT_OF_MEMORY,
            format!("out of memory: {why}; the call's processes were killed"),
        ))
    } else if shared.stopping.load(Ordering::Acquire) {
        Err((
            code::CONTAINER_EXITED,
            "the container is stopping; the call's processes were killed".to_string(),
        ))
    } else if timed_out {
        Err((
            code::TIMEOUT,
            format!("function timed out after {} ms", timeout.as_millis()),
        ))
    } else if too_large.load(Ordering::Relaxed) {
        Err((
            code::FUNCTION_ERROR,
            format!("the result is larger than {MAX_RESULT_BYTES} bytes"),
        ))
    } else if let Some(group) =
        exit.and_then(|e| oom_killed(&*shared.sys, cgroup_before, e.status.signal()))
    {
        Err((
            code::OUT_OF_MEMORY,
            oom_message("the call's process", group.limit_bytes),
        ))
    } else if let Some(exit) = exit.filter(|e| !e.status.success()) {
        let stderr = tail.text();
        let stderr = stderr.trim();
        Err((
            code::FUNCTION_ERROR,
            if stderr.is_empty() {
                format!(
                    "the command failed ({}) and wrote nothing to stderr",
                    exit.status
                )
            } else {
                format!(
                    "the command failed ({}): {}",
                    exit.status,
                    clip_tail(stderr, MESSAGE_BYTES)
                )
            },
        ))
    } else if let Some(limit) = shared.guard.limit()
        && shared.guard.own_bytes().saturating_add(peak) > limit
    {
        // Too short for a sample to catch, but the kernel kept its peak.
        Err((
            code::OUT_OF_MEMORY,
            format!(
                "out of memory: the call's processes peaked at {peak} bytes, which with the \
                 watchdog's {} bytes is above its memory limit of {limit} bytes",
                shared.guard.own_bytes()
            ),
        ))
    } else {
        Ok(out)
    };
    CallReport {
        result,
        child_peak_bytes: peak,
        log: tail.text(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::watchdog::sys_fake::FakeSys;
    use crate::watchdog::{Limits, Watchdog};
    use faas_common::units::GIB;

    /// Runs one call of an `exec` function `sh -c script` whose container's memory cgroup
    /// reads `oom_kills` (before the call, then after).
    async fn call(script: &str, oom_kills: &[u64]) -> CallReport {
        let dir = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!({"command": ["sh", "-c", script], "protocol": "exec"});
        std::fs::write(dir.path().join("function.json"), manifest.to_string()).unwrap();
        let sys = Arc::new(FakeSys::default());
        sys.cgroup_readings(oom_kills, 64 << 20);
        let limits = Limits {
            memory_bytes: GIB,
            enforce_memory: false,
        };
        let watchdog = Watchdog::start_with(dir.path(), limits, sys).await.unwrap();
        watchdog
            .invoke("r", b"{}".to_vec(), Duration::from_secs(30))
            .await
    }

    #[tokio::test]
    async fn a_process_the_kernel_killed_for_the_cgroups_memory_is_out_of_memory() {
        let report = call("kill -9 $$", &[3, 4]).await;
        let (code, message) = report.result.unwrap_err();
        assert_eq!(code, code::OUT_OF_MEMORY);
        assert!(message.contains("limit of 67108864 bytes"), "{message}");
    }

    #[tokio::test]
    async fn a_sigkill_without_an_oom_kill_or_another_signal_is_the_functions_error() {
        for (script, kills) in [("kill -9 $$", [3, 3]), ("kill -15 $$", [3, 4])] {
            let (code, message) = call(script, &kills).await.result.unwrap_err();
            assert_eq!(code, code::FUNCTION_ERROR, "{script}: {message}");
            assert!(message.contains("the command failed (signal"), "{message}");
        }
    }

    #[test]
    fn a_tail_clip_keeps_the_end() {
        assert_eq!(clip_tail("short", 10), "short");
        assert_eq!(clip_tail("0123456789abc", 3), "…(13 bytes) abc");
        let wide = "é".repeat(10);
        assert_eq!(clip_tail(&wide, 3), "…(20 bytes) é");
    }
}
