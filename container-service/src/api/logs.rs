//! `ContainerService.Logs`: the newest lines of a command function's output, from the
//! watchdog's [log ring](crate::watchdog::logs).
//!
//! The request becomes a [`LogQuery`] at this edge: `after_seq` as is, `since_ms` 0 as "any
//! age" and otherwise a time since the Unix epoch (a negative one is INVALID_ARGUMENT),
//! `limit` 0 as "all kept". A container with no watchdog (a built-in handler, or one not yet
//! bound) has no function output to report: it answers an empty list, not an error, so a
//! node asking every container of a function needs no special case.

use std::time::{Duration, UNIX_EPOCH};

use faas_proto::container::{LogLine, LogsReply, LogsRequest};
use tonic::Status;

use crate::binding::Binding;
use crate::watchdog::logs::{self, LogQuery};

/// The query a `Logs` request asks, or why it cannot be asked.
fn query(req: &LogsRequest) -> Result<LogQuery, Status> {
    let since_ms = u64::try_from(req.since_ms).map_err(|_| {
        Status::invalid_argument(format!(
            "since_ms is {}: it must be a time in ms since the Unix epoch, or 0 for lines of \
             any age",
            req.since_ms
        ))
    })?;
    Ok(LogQuery {
        after_seq: req.after_seq,
        since: (since_ms > 0).then(|| UNIX_EPOCH + Duration::from_millis(since_ms)),
        limit: (req.limit > 0).then(|| usize::try_from(req.limit).unwrap_or(usize::MAX)),
    })
}

/// A ring line as the wire carries it.
fn wire_line(line: logs::LogLine) -> LogLine {
    let at_ms = line
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    LogLine {
        seq: line.seq,
        at_ms,
        stream: line.stream.as_str().to_string(),
        request_id: line.request_id.unwrap_or_default(),
        text: line.text,
    }
}

/// Answers a `Logs` request for the container's `binding`.
pub(super) fn logs(binding: &Binding, req: &LogsRequest) -> Result<LogsReply, Status> {
    let query = query(req)?;
    let Some(watchdog) = binding.executor().and_then(|e| e.spec().watchdog()) else {
        return Ok(LogsReply::default());
    };
    let page = watchdog.query_logs(&query);
    Ok(LogsReply {
        lines: page.lines.into_iter().map(wire_line).collect(),
        dropped: page.dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::FunctionConfig;
    use crate::watchdog::logs::Stream;
    use faas_common::units::MIB;
    use tonic::Code;

    fn request(after_seq: u64, since_ms: i64, limit: u32) -> LogsRequest {
        LogsRequest {
            after_seq,
            since_ms,
            limit,
        }
    }

    #[test]
    fn zeros_ask_for_everything_kept() {
        assert_eq!(query(&request(0, 0, 0)).unwrap(), LogQuery::default());
        let q = query(&request(7, 1_000, 3)).unwrap();
        assert_eq!(q.after_seq, 7);
        assert_eq!(q.since, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(q.limit, Some(3));
    }

    #[test]
    fn a_negative_since_is_an_invalid_argument_that_says_what_to_send() {
        let s = query(&request(0, -5, 0)).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("since_ms is -5"), "{}", s.message());
        assert!(
            s.message().contains("0 for lines of any age"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn a_container_without_a_watchdog_has_no_lines() {
        let unbound = Binding::unbound(true);
        assert_eq!(
            logs(&unbound, &request(0, 0, 0)).unwrap(),
            LogsReply::default()
        );
        let builtin = Binding::start(
            Some(&FunctionConfig {
                function_name: "f".into(),
                handler: "echo".into(),
                memory_bytes: MIB,
                timeout_ms: 100,
            }),
            true,
        )
        .unwrap();
        assert_eq!(
            logs(&builtin, &request(0, 0, 0)).unwrap(),
            LogsReply::default()
        );
        let s = logs(&builtin, &request(0, -1, 0)).unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "input is checked first");
    }

    #[test]
    fn a_line_goes_on_the_wire_field_by_field() {
        let line = logs::LogLine {
            seq: 4,
            at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            stream: Stream::Stderr,
            request_id: Some("r-1".into()),
            text: "hello".into(),
        };
        assert_eq!(
            wire_line(line),
            LogLine {
                seq: 4,
                at_ms: 1_700_000_000_123,
                stream: "stderr".into(),
                request_id: "r-1".into(),
                text: "hello".into(),
            }
        );
    }
}
