//! The function's output, kept per container.
//!
//! Every line a function's process writes to stdout or stderr (an `http` server's whole
//! output; an `exec` call's stderr: its stdout is the result) goes into one bounded
//! [`LogRing`] per container, with the time it was read and, for an `exec` call, the request
//! id. The ring keeps the newest lines: at most [`RING_LINES`] lines and [`RING_BYTES`]
//! bytes of text, each line cut at [`MAX_LINE_BYTES`] (a process writing megabytes without a
//! newline costs no more than one long line). An `exec` call also keeps its own stderr in a
//! [`Tail`] (the newest [`CALL_LOG_BYTES`]), which becomes the reply's `function_log` and,
//! when the call fails, its error message.
//!
//! Each line gets a sequence number when it is pushed (1, 2, 3… for the container's life;
//! eviction never renumbers), so a reader that remembers the last number it saw asks for
//! what came after it ([`LogQuery::after_seq`]) and reads every line once, or learns from
//! [`LogPage::dropped`] that the ring moved on faster than it read.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The most lines a container keeps.
pub const RING_LINES: usize = 1000;
/// The most bytes of line text a container keeps.
pub const RING_BYTES: usize = 256 * 1024;
/// The longest line kept; the rest is cut and its length noted.
pub const MAX_LINE_BYTES: usize = 4096;
/// The most bytes of one `exec` call's stderr kept for its reply (the newest).
pub const CALL_LOG_BYTES: usize = 64 * 1024;

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of the function's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its number in the container's output: 1, 2, 3… in the order lines were read.
    pub seq: u64,
    /// When the watchdog read it.
    pub at: SystemTime,
    pub stream: Stream,
    /// The call that wrote it, where that is known (`exec`).
    pub request_id: Option<String>,
    /// The text, without its newline.
    pub text: String,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    dropped: u64,
    /// How many lines were ever pushed (the last one's `seq`).
    pushed: u64,
}

/// Which lines a reader asks for; the default asks for every line kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only lines numbered above this (0: from the oldest kept).
    pub after_seq: u64,
    /// Only lines read at or after this time.
    pub since: Option<SystemTime>,
    /// At most this many lines, the newest of those matching.
    pub limit: Option<usize>,
}

impl LogQuery {
    fn matches(&self, line: &LogLine) -> bool {
        line.seq > self.after_seq && self.since.is_none_or(|since| line.at >= since)
    }
}

/// The lines a [`LogQuery`] asked for, oldest first, and how many the ring has dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Lines pushed out by newer ones since the container started (whatever the query).
    pub dropped: u64,
}

/// The newest lines of a container's function, bounded in lines and bytes.
#[derive(Debug)]
pub struct LogRing {
    max_lines: usize,
    max_bytes: usize,
    ring: Mutex<Ring>,
}

impl Default for LogRing {
    fn default() -> LogRing {
        LogRing::new(RING_LINES, RING_BYTES)
    }
}

impl LogRing {
    /// A ring of at most `max_lines` lines and `max_bytes` bytes of text.
    pub fn new(max_lines: usize, max_bytes: usize) -> LogRing {
        LogRing {
            max_lines,
            max_bytes,
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Adds a line read now, dropping the oldest ones past the bounds.
    pub fn push(&self, stream: Stream, request_id: Option<&str>, text: String) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.bytes += text.len();
        ring.pushed += 1;
        let seq = ring.pushed;
        ring.lines.push_back(LogLine {
            seq,
            at: faas_common::clock::system_time(),
            stream,
            request_id: request_id.map(str::to_string),
            text,
        });
        while ring.lines.len() > self.max_lines || ring.bytes > self.max_bytes {
            let Some(old) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= old.text.len();
            ring.dropped += 1;
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.lines.iter().cloned().collect()
    }

    /// The lines `query` asks for, oldest first (the newest `limit` of those matching).
    pub fn query(&self, query: &LogQuery) -> LogPage {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut lines: Vec<LogLine> = ring
            .lines
            .iter()
            .rev()
            .filter(|l| query.matches(l))
            .take(limit)
            .cloned()
            .collect();
        lines.reverse();
        LogPage {
            lines,
            dropped: ring.dropped,
        }
    }

    /// How many lines were dropped to keep within the bounds.
    pub fn dropped(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// The newest line of `stream`, if any (what a process said before it failed to start).
    pub fn last(&self, stream: Stream) -> Option<String> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.lines
            .iter()
            .rev()
            .find(|l| l.stream == stream && !l.text.trim().is_empty())
            .map(|l| l.text.clone())
    }
}

/// The newest bytes of one call's output, whole lines.
#[derive(Debug, Default)]
pub struct Tail {
    text: String,
    cut: usize,
}

impl Tail {
    /// Appends a line, dropping the oldest lines past [`CALL_LOG_BYTES`].
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        while self.text.len() > CALL_LOG_BYTES {
            let first = self.text.find('\n').map_or(self.text.len(), |i| i + 1);
            self.cut += first;
            self.text.drain(..first);
        }
    }

    /// The text kept, with a first line saying how much was dropped, if any.
    pub fn text(&self) -> String {
        if self.cut == 0 {
            self.text.clone()
        } else {
            format!("…({} earlier bytes dropped)\n{}", self.cut, self.text)
        }
    }

    /// The last non-blank line.
    pub fn last_line(&self) -> Option<&str> {
        self.text.lines().rev().find(|l| !l.trim().is_empty())
    }
}

/// Reads `reader` to its end, line by line, calling `each` with every line (without its
/// newline or `\r`, cut at [`MAX_LINE_BYTES`] with the full length noted, invalid UTF-8
/// replaced). A last line without a newline counts too.
pub async fn read_lines<R: AsyncRead + Unpin>(reader: R, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut over = 0usize;
    loop {
        let (used, ended) = match reader.fill_buf().await {
            Err(_) => break,
            Ok([]) => break,
            Ok(buf) => {
                let (chunk, ended) = match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => (&buf[..i], true),
                    None => (buf, false),
                };
                let take = chunk.len().min(MAX_LINE_BYTES.saturating_sub(line.len()));
                line.extend_from_slice(&chunk[..take]);
                over += chunk.len() - take;
                (chunk.len() + usize::from(ended), ended)
            }
        };
        reader.consume(used);
        if ended {
            each(finish(&mut line, &mut over));
        }
    }
    if !line.is_empty() || over > 0 {
        each(finish(&mut line, &mut over));
    }
}

fn finish(line: &mut Vec<u8>, over: &mut usize) -> String {
    if line.last() == Some(&b'\r') && *over == 0 {
        line.pop();
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *over > 0 {
        text.push_str(&format!("…({} bytes)", line.len() + *over));
    }
    line.clear();
    *over = 0;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_its_bounds() {
        let ring = LogRing::new(3, 10);
        for text in ["a", "b", "c", "d"] {
            ring.push(Stream::Stderr, Some("r-1"), text.into());
        }
        let texts: Vec<_> = ring.lines().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["b", "c", "d"]);
        assert_eq!(ring.dropped(), 1);
        ring.push(Stream::Stdout, None, "0123456789".into());
        let lines = ring.lines();
        assert_eq!(lines.len(), 1, "ten bytes: the others went");
        assert_eq!(lines[0].request_id, None);
        assert_eq!(ring.last(Stream::Stderr), None);
        assert_eq!(ring.last(Stream::Stdout).as_deref(), Some("0123456789"));
    }

    /// A ring of `texts`, pushed in order, with at most `max_lines` lines.
    fn ring_of(max_lines: usize, texts: &[&str]) -> LogRing {
        let ring = LogRing::new(max_lines, RING_BYTES);
        for text in texts {
            ring.push(Stream::Stderr, None, (*text).into());
        }
        ring
    }

    fn seqs_and_texts(page: &LogPage) -> Vec<(u64, &str)> {
        page.lines
            .iter()
            .map(|l| (l.seq, l.text.as_str()))
            .collect()
    }

    #[test]
    fn lines_are_numbered_in_push_order_and_keep_their_numbers_past_eviction() {
        let ring = ring_of(2, &["a", "b", "c", "d"]);
        let page = ring.query(&LogQuery::default());
        assert_eq!(seqs_and_texts(&page), [(3, "c"), (4, "d")]);
        assert_eq!(page.dropped, 2);
        ring.push(Stream::Stdout, None, "e".into());
        assert_eq!(ring.lines().last().map(|l| l.seq), Some(5));
    }

    #[test]
    fn a_query_takes_lines_after_a_number_and_the_newest_within_its_limit() {
        let ring = ring_of(10, &["a", "b", "c", "d"]);
        let after = |after_seq| LogQuery {
            after_seq,
            ..LogQuery::default()
        };
        assert_eq!(seqs_and_texts(&ring.query(&after(2))), [(3, "c"), (4, "d")]);
        assert!(ring.query(&after(4)).lines.is_empty(), "nothing newer");
        let newest_two = LogQuery {
            limit: Some(2),
            ..after(1)
        };
        assert_eq!(
            seqs_and_texts(&ring.query(&newest_two)),
            [(3, "c"), (4, "d")]
        );
        let none = LogQuery {
            limit: Some(0),
            ..LogQuery::default()
        };
        assert!(ring.query(&none).lines.is_empty());
        assert_eq!(ring.query(&after(0)).dropped, 0);
    }

    #[test]
    fn a_query_since_a_time_leaves_older_lines_out() {
        let ring = ring_of(10, &["old"]);
        let since = ring.lines()[0].at + std::time::Duration::from_millis(1);
        let query = LogQuery {
            since: Some(since),
            ..LogQuery::default()
        };
        assert!(ring.query(&query).lines.is_empty());
        let at_it = LogQuery {
            since: Some(ring.lines()[0].at),
            ..LogQuery::default()
        };
        assert_eq!(seqs_and_texts(&ring.query(&at_it)), [(1, "old")]);
    }

    #[test]
    fn a_tail_keeps_whole_newest_lines() {
        let mut tail = Tail::default();
        tail.push("first");
        assert_eq!(tail.text(), "first\n");
        let long = "x".repeat(CALL_LOG_BYTES - 10);
        tail.push(&long);
        tail.push("last");
        let text = tail.text();
        assert!(
            text.starts_with("…(6 earlier bytes dropped)\n"),
            "{}",
            &text[..40]
        );
        assert!(text.ends_with("last\n"));
        assert_eq!(tail.last_line(), Some("last"));
    }

    #[tokio::test]
    async fn lines_are_split_cut_and_finished() {
        let long = "y".repeat(MAX_LINE_BYTES + 100);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let mut got = Vec::new();
        read_lines(input.as_bytes(), |l| got.push(l)).await;
        assert_eq!(got.len(), 4);
        assert_eq!(
            (got[0].as_str(), got[1].as_str(), got[3].as_str()),
            ("one", "two", "last")
        );
        assert!(got[2].ends_with(&format!("…({} bytes)", MAX_LINE_BYTES + 100)));
        assert!(got[2].len() < MAX_LINE_BYTES + 20);
    }
}
