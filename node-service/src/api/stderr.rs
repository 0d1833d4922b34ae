//! A container process's stderr: passed through to the node service's own stderr line by
//! line (where it always went), with the line that says why the process exited kept, so a
//! container that exits while it starts fails its create with that reason instead of "see
//! the log".
//!
//! The container service exits with `Error: <one line>` (what a Rust `main` returning an
//! error prints; a backtrace or "Caused by" lines may follow). The reason is the last such
//! line without its `Error: `, else the last non-empty line, without terminal colour codes.
//!
//! How: a pipe whose write end becomes the child's fd 2 (a `dup2` between fork and exec:
//! `faas_common::launch` sets the child's stderr to "inherit", which leaves fd 2 alone, and
//! runs this after its own set-up), and a task that reads the other end until every holder
//! of the write end is gone (the child and anything it started that kept its stderr).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_common::text::clip_to;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// The longest reason kept: the container service's line names the bundle's path and the
/// command, longer than the 128 bytes an echo of user input gets.
const REASON_BYTES: usize = 512;
/// The longest line held back until its end arrives (short in tests, which print it).
const MAX_LINE: usize = if cfg!(test) { 64 } else { 16 * 1024 };

/// What was seen of one child's stderr.
#[derive(Debug, Default)]
struct Seen {
    /// The last `Error: …` line, without the prefix.
    error: Option<String>,
    /// The last non-empty line.
    last: Option<String>,
}

/// The reading side of one child's stderr.
#[derive(Debug, Clone)]
pub struct StderrTail {
    seen: Arc<Mutex<Seen>>,
    ended: watch::Receiver<bool>,
}

/// The write end of the pipe: keep it until the child is spawned, then drop it (else the
/// reader never sees the end).
#[derive(Debug)]
pub struct WriteEnd(#[allow(dead_code)] OwnedFd);

/// Makes `cmd`'s child write its stderr into a new pipe, read (and passed through) by a task
/// of the current runtime.
pub fn capture(cmd: &mut tokio::process::Command) -> std::io::Result<(StderrTail, WriteEnd)> {
    let (reader, writer) = std::io::pipe()?;
    let writer = OwnedFd::from(writer);
    redirect_stderr(cmd, writer.as_raw_fd());
    let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (ended_tx, ended) = watch::channel(false);
    let sink = seen.clone();
    tokio::spawn(async move {
        pass_through(receiver, &sink).await;
        ended_tx.send_replace(true);
    });
    Ok((StderrTail { seen, ended }, WriteEnd(writer)))
}

/// Copies what arrives to this process's stderr, whole lines at a time (so lines of
/// concurrent containers do not mix), noting each line in `seen`, until every writer is
/// gone. Bytes, not text: a line that is not UTF-8 passes unchanged, and one longer than
/// [`MAX_LINE`] is passed on in pieces, so a child can neither stall the copy nor make it
/// hold much.
async fn pass_through(mut from: tokio::net::unix::pipe::Receiver, seen: &Mutex<Seen>) {
    let mut chunk = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let whole = match pending.iter().rposition(|b| *b == b'\n') {
            Some(last) => last + 1,
            None if pending.len() > MAX_LINE => pending.len(),
            None => continue,
        };
        let out: Vec<u8> = pending.drain(..whole).collect();
        forward(&out, seen);
    }
    if !pending.is_empty() {
        forward(&pending, seen);
    }
}

fn forward(bytes: &[u8], seen: &Mutex<Seen>) {
    let _ = std::io::stderr().lock().write_all(bytes);
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    for line in bytes.split(|b| *b == b'\n') {
        note(
            &mut seen,
            &String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]),
        );
    }
}

/// Makes `fd` the child's stderr (fd 2), after the launcher's own stdio set-up.
#[allow(unsafe_code)]
fn redirect_stderr(cmd: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls
    // are allowed: dup2 is one, and the closure touches no memory but the copied fd number.
    // `fd` is open in the child (the parent keeps it open until the spawn returns); it is
    // close-on-exec, while the copy dup2 makes is not.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, libc::STDERR_FILENO) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn note(seen: &mut Seen, line: &str) {
    let line = plain(line);
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    if let Some(error) = line.strip_prefix("Error: ") {
        seen.error = Some(clip_to(error.trim(), REASON_BYTES).into_owned());
    }
    seen.last = Some(clip_to(line, REASON_BYTES).into_owned());
}

/// `line` without terminal escape sequences (`ESC [ … letter`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// The reason in a whole output (a container's logs), as [`StderrTail::reason`] finds it.
pub fn reason_in(text: &str) -> Option<String> {
    let mut seen = Seen::default();
    for line in text.lines() {
        note(&mut seen, line);
    }
    seen.error.or(seen.last)
}

impl StderrTail {
    /// Why the child exited, as its stderr says (see the module docs): waits up to `within`
    /// for the rest of its output, then answers what it has (`None`: it said nothing).
    pub async fn reason(&self, within: Duration) -> Option<String> {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(within, ended.wait_for(|e| *e)).await;
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.error.clone().or_else(|| seen.last.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_error_line_else_the_last_line() {
        let mut seen = Seen::default();
        note(
            &mut seen,
            "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m starting",
        );
        assert_eq!(seen.last.as_deref(), Some("2026  INFO starting"));
        note(&mut seen, "Error: cannot start the function: no such file");
        for line in ["", "Stack backtrace:", "   0: main"] {
            note(&mut seen, line);
        }
        assert_eq!(
            seen.error.as_deref(),
            Some("cannot start the function: no such file")
        );
        assert_eq!(seen.last.as_deref(), Some("0: main"));
        assert_eq!(
            reason_in("a\nError: b\n\nCaused by: c\n").as_deref(),
            Some("b")
        );
        assert_eq!(reason_in("a\n  b  \n\n").as_deref(), Some("b"));
        assert_eq!(reason_in(""), None);
    }

    #[tokio::test]
    async fn a_childs_stderr_is_read_to_its_end() {
        let mut cmd = tokio::process::Command::new("sh");
        // Not UTF-8, and a line longer than the copy holds back, before the reason.
        let script = "printf 'bad \\377 byte\\n' >&2; head -c 200 /dev/zero | tr '\\0' x >&2; \
                      echo >&2; echo 'Error: it broke' >&2; exit 3";
        cmd.args(["-c", script]);
        let (tail, write_end) = capture(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(write_end);
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
        assert_eq!(
            tail.reason(Duration::from_secs(30)).await.as_deref(),
            Some("it broke")
        );
    }
}
