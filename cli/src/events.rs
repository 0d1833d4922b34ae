//! `faas events [--follow]`: the scheduler's decisions with the policy's reason for each
//! ("created on node-3: no idle container of hello for request r-7, 2.4 GiB free after its
//! 128 MiB"), read through the API server (`faas.decisions.v1.Decisions`, scope admin).
//! Also the JSON-lines file `faas simulate --decisions FILE` writes ([`DecisionFile`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use faas_e2e::live::client::Api;
use faas_e2e::sim::DecisionRecord;
use faas_proto::decisions::{DecisionEntry, RecentRequest};
use futures::StreamExt;

use crate::exit::call_failed;

/// The flags of `faas events`.
#[derive(clap::Args, Clone, Debug)]
pub struct EventsArgs {
    /// Keep printing decisions as the scheduler makes them, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How many of the latest decisions to print first (0: all the scheduler keeps).
    #[arg(long, short = 'n', default_value_t = 20)]
    pub last: u32,
    /// Only decisions about this function (and its versions, NAME:N).
    #[arg(long)]
    pub function: Option<String>,
    /// Print each decision as one JSON object per line (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Whether `entry` is about `function` (or any, with none).
fn wanted(function: Option<&str>, entry_function: &str) -> bool {
    function.is_none_or(|f| {
        entry_function == f
            || entry_function
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with(':'))
    })
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in ms.
pub fn time_of_day(unix_ms: i64) -> String {
    let ms = unix_ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// One decision as a line for people.
pub fn line(e: &DecisionEntry) -> String {
    let function = if e.function.is_empty() {
        "-"
    } else {
        &e.function
    };
    format!(
        "{}  {:<12}  {:<16}  {}",
        time_of_day(e.at_unix_ms),
        e.kind,
        function,
        e.reason
    )
}

/// One decision as JSON.
pub fn entry_json(e: &DecisionEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "at_unix_ms": e.at_unix_ms,
        "kind": e.kind,
        "function": e.function,
        "node": e.node,
        "container": e.container,
        "request": e.request,
        "reason": e.reason,
    })
}

fn print(e: &DecisionEntry, json: bool) {
    if json {
        println!("{}", entry_json(e));
    } else {
        println!("{}", line(e));
    }
}

/// `faas events`.
pub async fn events(api: &Api, args: &EventsArgs) -> anyhow::Result<()> {
    let json = args.json;
    let function = args.function.as_deref();
    let request = RecentRequest {
        after_seq: 0,
        limit: args.last,
    };
    let mut client = api.decisions();
    if !args.follow {
        let reply = client
            .recent(request)
            .await
            .map_err(call_failed("read the scheduler's decisions"))?
            .into_inner();
        if reply.decisions.is_empty() && !json {
            if reply.kept == 0 {
                eprintln!("the scheduler keeps no decisions (started with --decisions-kept 0)");
            } else {
                eprintln!("no decisions yet: invoke a function");
            }
        }
        for e in reply
            .decisions
            .iter()
            .filter(|e| wanted(function, &e.function))
        {
            print(e, json);
        }
        return Ok(());
    }
    let mut stream = client
        .follow(request)
        .await
        .map_err(call_failed("follow the scheduler's decisions"))?
        .into_inner();
    while let Some(item) = stream.next().await {
        let e = item.map_err(call_failed("follow the scheduler's decisions"))?;
        if wanted(function, &e.function) {
            print(&e, json);
            let _ = std::io::stdout().flush();
        }
    }
    Ok(())
}

/// The decisions of simulated runs, as JSON lines (`faas simulate --decisions FILE`):
/// `{"policy","seq","at_ms","kind","function","node","container","request","reason"}`,
/// `at_ms` the run's virtual time.
pub struct DecisionFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    count: u64,
    failed: Option<std::io::Error>,
}

impl DecisionFile {
    /// Creates (or empties) `path`.
    pub fn create(path: &Path) -> anyhow::Result<DecisionFile> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write the decisions to {}", path.display()))?;
        Ok(DecisionFile {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            count: 0,
            failed: None,
        })
    }

    /// Writes one decision of `policy` (a failure is kept for [`DecisionFile::check`]).
    pub fn write(&mut self, policy: &str, r: DecisionRecord) {
        if self.failed.is_some() {
            return;
        }
        self.count += 1;
        let value = serde_json::json!({
            "policy": policy,
            "seq": self.count,
            "at_ms": r.at_unix_ms,
            "kind": r.kind,
            "function": r.function,
            "node": r.node,
            "container": r.container,
            "request": r.request,
            "reason": r.reason,
        });
        if let Err(e) = writeln!(self.out, "{value}") {
            self.failed = Some(e);
        }
    }

    /// The first write that failed, if one did.
    pub fn check(&mut self) -> anyhow::Result<()> {
        match self.failed.take() {
            Some(e) => Err(e).with_context(|| format!("cannot write {}", self.path.display())),
            None => Ok(()),
        }
    }

    /// Flushes the file: its path and how many decisions it holds.
    pub fn finish(mut self) -> anyhow::Result<(PathBuf, u64)> {
        self.check()?;
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok((self.path, self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_well_and_filters_take_versions() {
        let e = DecisionEntry {
            at_unix_ms: 3_723_004,
            kind: "grant-cold".into(),
            function: "hello".into(),
            reason: "cold start".into(),
            ..DecisionEntry::default()
        };
        assert_eq!(
            line(&e),
            "01:02:03.004  grant-cold    hello             cold start"
        );
        assert!(wanted(Some("hello"), "hello:2"));
        assert!(wanted(Some("hello"), "hello"));
        assert!(!wanted(Some("hello"), "hello2"));
        assert!(wanted(None, ""));
    }
}
