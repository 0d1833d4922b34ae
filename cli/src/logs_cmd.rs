//! `faas logs NAME [--since DURATION] [--follow] [--limit N] [-o json]`: what a function's
//! containers wrote, as the API server gathers it from every node (`Admin/FunctionLogs`).
//!
//! A line prints as `TIME  VERSION  CONTAINER  STREAM  [REQUEST-ID]  TEXT`: the time (UTC,
//! with ms) the container's watchdog read it, the version the container serves (`NAME` or
//! `NAME:N`), the container id's first 8 characters, `stdout` or `stderr`, the call that
//! wrote it when that is known (an `exec` function's stderr), and the text. `--json` prints
//! one JSON object per line instead (so does `-o json`). Nodes or containers whose lines could not be read are
//! warned of on stderr (once each, while they stay unreadable).
//!
//! `--follow` asks again every second ([`Follower`]): from a little before the newest line
//! seen (an overlap of [`FOLLOW_OVERLAP_MS`], so a line a slower node reports late is not
//! skipped), printing only the lines not printed yet (by node, container and seq), until
//! Ctrl-C. While the API server cannot be reached it warns once and keeps asking.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use faas_cli::client::{Api, describe};
use faas_cli::exit::call_failed;
use faas_proto::admin::{FunctionLogLine, FunctionLogsReply, FunctionLogsRequest};
use serde::Serialize;
use tonic::Code;

use crate::routing_cmds::utc;

/// How often `--follow` asks again.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How far before the newest line seen `--follow` asks from again.
pub const FOLLOW_OVERLAP_MS: i64 = 1000;

/// The flags of `faas logs` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct LogsArgs {
    /// The function: NAME (its containers and its versions') or NAME:N (one version's).
    pub name: String,
    /// Only lines of the last DURATION: 90s, 5m, 1h, 1500ms (0s: none yet, only what comes).
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<u64>,
    /// Keep printing new lines, asking every second, until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// At most N lines (each time, with --follow), the newest. [default: the server's cap,
    /// 10000]
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// `-o json` (or `--json`): one JSON object per line.
    #[command(flatten)]
    pub output: crate::output::OutputArgs,
}

/// `--since`: a duration as `faas replay --duration` reads it, or zero (`0`, `0s`).
fn parse_since(text: &str) -> Result<u64, String> {
    faas_cli::bench::parse_duration_ms(text).or_else(|e| {
        let number = text
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic());
        match number.parse::<f64>() {
            Ok(0.0) => Ok(0),
            _ => Err(e),
        }
    })
}

/// `faas logs`.
pub async fn logs(api: &Api, args: &LogsArgs) -> anyhow::Result<()> {
    let now = faas_common::clock::now_ms();
    let since = args.since.map_or(0, |ms| {
        now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            .max(0)
    });
    let mut follower = Follower::new(since);
    let asked_at = faas_common::clock::now_ms();
    let reply = fetch(api, args, follower.since_ms)
        .await
        .map_err(call_failed(format!("logs {}", args.name)))?;
    if reply.dropped > 0 && !args.output.is_json() {
        eprintln!(
            "note: {} older lines are no longer kept by the containers",
            reply.dropped
        );
    }
    print(follower.take(reply, asked_at), args.output.is_json())?;
    if !args.follow {
        return Ok(());
    }
    let mut failing = false;
    loop {
        tokio::select! {
            () = faas_common::shutdown::os_signal() => return Ok(()),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let asked_at = faas_common::clock::now_ms();
        match fetch(api, args, follower.since_ms).await {
            Ok(reply) => {
                failing = false;
                print(follower.take(reply, asked_at), args.output.is_json())?;
            }
            Err(s) if transient(&s) => {
                if !failing {
                    eprintln!(
                        "warning: logs {}: {}; still trying",
                        args.name,
                        describe(&s)
                    );
                }
                failing = true;
            }
            Err(s) => return Err(call_failed(format!("logs {}", args.name))(s)),
        }
    }
}

/// A failure `--follow` outlasts: the API server or its scheduler is away for a while.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

async fn fetch(
    api: &Api,
    args: &LogsArgs,
    since_ms: i64,
) -> Result<FunctionLogsReply, tonic::Status> {
    let mut request = tonic::Request::new(FunctionLogsRequest {
        name: args.name.clone(),
        since_ms,
        limit: args.limit.unwrap_or(0),
    });
    request.set_timeout(Duration::from_secs(10));
    Ok(api.admin().function_logs(request).await?.into_inner())
}

/// What one answer adds: lines not printed yet, and new warnings.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub lines: Vec<FunctionLogLine>,
    pub warnings: Vec<String>,
}

/// Which lines were printed, and from when to ask next.
#[derive(Debug)]
pub struct Follower {
    /// What the next request asks from (never before the user's `--since`).
    since_ms: i64,
    floor_ms: i64,
    /// The lines printed that the next answer may hold again, with their time.
    seen: HashMap<(String, String, u64), i64>,
    /// The unreadable entries of the latest answer (each is warned of once).
    warned: BTreeSet<String>,
}

impl Follower {
    pub fn new(since_ms: i64) -> Follower {
        Follower {
            since_ms,
            floor_ms: since_ms,
            seen: HashMap::new(),
            warned: BTreeSet::new(),
        }
    }

    /// Takes an answer to a request sent at `asked_at_ms`: the lines not printed yet (in
    /// the answer's order, oldest first) and the unreadable entries not warned of yet.
    pub fn take(&mut self, reply: FunctionLogsReply, asked_at_ms: i64) -> Batch {
        let mut newest = asked_at_ms;
        let mut lines = Vec::new();
        for line in reply.lines {
            newest = newest.max(line.at_ms);
            let key = (line.node_id.clone(), line.container_id.clone(), line.seq);
            if self.seen.insert(key, line.at_ms).is_none() {
                lines.push(line);
            }
        }
        self.since_ms = newest.saturating_sub(FOLLOW_OVERLAP_MS).max(self.floor_ms);
        let since = self.since_ms;
        self.seen.retain(|_, at_ms| *at_ms >= since);
        let now: BTreeSet<String> = reply.unreadable.into_iter().collect();
        let warnings = now.difference(&self.warned).cloned().collect();
        self.warned = now;
        Batch { lines, warnings }
    }
}

/// One line as `--json` prints it.
#[derive(Serialize)]
struct LineJson<'a> {
    time: String,
    at_ms: i64,
    function: &'a str,
    node_id: &'a str,
    container_id: &'a str,
    seq: u64,
    stream: &'a str,
    request_id: &'a str,
    text: &'a str,
}

/// Unix ms as `2025-01-31 12:00:00.123` (UTC).
fn time(at_ms: i64) -> String {
    format!("{}.{:03}", utc(at_ms), at_ms.rem_euclid(1000))
}

/// A line as text: `TIME  VERSION  CONTAINER  STREAM  [REQUEST-ID]  TEXT`, the version
/// padded to `width`.
pub fn render(line: &FunctionLogLine, width: usize) -> String {
    let short: String = line.container_id.chars().take(8).collect();
    let request = if line.request_id.is_empty() {
        String::new()
    } else {
        format!("[{}]  ", line.request_id)
    };
    format!(
        "{}  {:<width$}  {short:<8}  {:<6}  {request}{}",
        time(line.at_ms),
        line.function_name,
        line.stream,
        line.text
    )
}

fn print(batch: Batch, json: bool) -> anyhow::Result<()> {
    for warning in &batch.warnings {
        eprintln!("warning: cannot read {warning}");
    }
    let width = batch
        .lines
        .iter()
        .map(|l| l.function_name.len())
        .max()
        .unwrap_or(0);
    for line in &batch.lines {
        if json {
            let object = LineJson {
                time: time(line.at_ms),
                at_ms: line.at_ms,
                function: &line.function_name,
                node_id: &line.node_id,
                container_id: &line.container_id,
                seq: line.seq,
                stream: &line.stream,
                request_id: &line.request_id,
                text: &line.text,
            };
            println!("{}", serde_json::to_string(&object)?);
        } else {
            println!("{}", render(line, width));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(node: &str, seq: u64, at_ms: i64) -> FunctionLogLine {
        FunctionLogLine {
            node_id: node.into(),
            container_id: "0f1e2d3c-aaaa-bbbb".into(),
            function_name: "sh-hello".into(),
            seq,
            at_ms,
            stream: "stderr".into(),
            request_id: String::new(),
            text: format!("line {seq}"),
        }
    }

    fn reply(lines: Vec<FunctionLogLine>, unreadable: &[&str]) -> FunctionLogsReply {
        FunctionLogsReply {
            lines,
            unreadable: unreadable.iter().map(|s| s.to_string()).collect(),
            dropped: 0,
        }
    }

    fn seqs(batch: &Batch) -> Vec<(String, u64)> {
        batch
            .lines
            .iter()
            .map(|l| (l.node_id.clone(), l.seq))
            .collect()
    }

    #[test]
    fn follow_prints_each_line_once_and_asks_from_a_little_before_the_newest() {
        let mut f = Follower::new(500);
        let first = f.take(
            reply(vec![line("n1", 1, 10_000), line("n1", 2, 10_500)], &[]),
            9_000,
        );
        assert_eq!(seqs(&first), [("n1".into(), 1), ("n1".into(), 2)]);
        assert_eq!(f.since_ms, 9_500);
        // The overlap brings line 2 back: not printed again; a late line of n2 is.
        let next = f.take(
            reply(
                vec![
                    line("n2", 1, 9_800),
                    line("n1", 2, 10_500),
                    line("n1", 3, 10_900),
                ],
                &[],
            ),
            10_950,
        );
        assert_eq!(seqs(&next), [("n2".into(), 1), ("n1".into(), 3)]);
        assert_eq!(f.since_ms, 9_950);
        assert_eq!(
            f.seen.len(),
            3,
            "lines before since are forgotten: {:?}",
            f.seen
        );
        // Nothing new: the request time moves since on, never before --since.
        assert!(f.take(reply(Vec::new(), &[]), 20_000).lines.is_empty());
        assert_eq!(f.since_ms, 19_000);
        let mut early = Follower::new(5_000);
        early.take(reply(Vec::new(), &[]), 5_100);
        assert_eq!(early.since_ms, 5_000);
    }

    #[test]
    fn unreadable_nodes_are_warned_of_once_while_they_stay_unreadable() {
        let mut f = Follower::new(0);
        let down = "node n3 (127.0.0.1:4567): deadline exceeded";
        assert_eq!(f.take(reply(Vec::new(), &[down]), 1).warnings, [down]);
        assert!(f.take(reply(Vec::new(), &[down]), 2).warnings.is_empty());
        assert!(f.take(reply(Vec::new(), &[]), 3).warnings.is_empty());
        assert_eq!(f.take(reply(Vec::new(), &[down]), 4).warnings, [down]);
    }

    #[test]
    fn lines_render_with_ms_time_version_short_container_and_request_id() {
        let mut l = line("n1", 1, 1_738_324_800_123);
        assert_eq!(
            render(&l, 10),
            "2025-01-31 12:00:00.123  sh-hello    0f1e2d3c  stderr  line 1"
        );
        l.request_id = "r-7".into();
        l.stream = "stdout".into();
        assert_eq!(
            render(&l, 8),
            "2025-01-31 12:00:00.123  sh-hello  0f1e2d3c  stdout  [r-7]  line 1"
        );
    }

    #[test]
    fn since_takes_durations_and_zero() {
        assert_eq!(parse_since("5m"), Ok(300_000));
        assert_eq!(parse_since("1500ms"), Ok(1500));
        assert_eq!(parse_since("0s"), Ok(0));
        assert_eq!(parse_since("0"), Ok(0));
        assert!(parse_since("soon").unwrap_err().contains("not a duration"));
        assert!(parse_since("-5m").is_err());
    }
}
