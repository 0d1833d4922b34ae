//! When a schedule fires: the pure rule behind timers (`service::timers`). No clock is read
//! here; `now` and the schedule's anchor (its last fired slot) are arguments, so every case —
//! a normal tick, a slow wake-up, a restart after downtime, a daylight-saving change — is a
//! plain unit test.
//!
//! # Slots
//!
//! A schedule is a cron expression with seconds (six fields, `sec min hour day month weekday`,
//! or seven with a year; parsed by `croner`) read in an IANA time zone (`chrono-tz`). Its
//! *slots* are the instants the expression names, in that zone. Across daylight-saving
//! changes the rule is croner's (the Open Cron Pattern Specification's):
//!
//! - a local time skipped by the spring change: a fixed-time schedule (`0 30 2 * * *`) fires
//!   at the first second after the gap; a wildcard or step schedule skips the slots in it;
//! - a local time that happens twice in the autumn: a fixed-time schedule fires once (the
//!   first), a wildcard or step schedule fires in both passes.
//!
//! # Due slots and the catch-up rule
//!
//! Given the anchor (the last slot fired or skipped, or the schedule's creation time) and
//! `now`, the slots after the anchor and at or before `now` are due:
//!
//! - a due slot at most [`ON_TIME_MS`] old is *on time* and fires (each one, oldest first,
//!   at most [`MAX_ON_TIME`] in one plan);
//! - older due slots were *missed* (the API server was down, or the machine stalled):
//!   [`CatchUp::Skip`] (the default) drops them; [`CatchUp::Once`] fires the latest of them,
//!   once, however many were missed.
//!
//! The new anchor is the last slot fired or dropped, so a plan never returns a slot twice
//! when it is given its own anchor back.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How old a due slot may be and still fire as on time, ms.
pub const ON_TIME_MS: u64 = 2_000;
/// The most on-time slots one plan fires (a schedule of every second after a long stall).
pub const MAX_ON_TIME: usize = 100;

/// What happens to slots missed while the API server was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// Missed slots are dropped: the schedule goes on from the next one.
    #[default]
    Skip,
    /// The latest missed slot fires once, standing for all of them.
    Once,
}

impl CatchUp {
    /// As the API and the database write it: `skip`, `once`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Once => "once",
        }
    }

    /// The rule of its name; empty is the default (`skip`).
    pub fn parse(text: &str) -> Result<CatchUp, String> {
        match text {
            "" | "skip" => Ok(CatchUp::Skip),
            "once" => Ok(CatchUp::Once),
            other => Err(format!(
                "catch_up: {:?} is not a rule; use once or skip",
                faas_common::text::clip(other)
            )),
        }
    }
}

/// A parsed cron expression and its time zone.
#[derive(Clone, Debug)]
pub struct Spec {
    cron: Cron,
    tz: Tz,
}

/// Parses a cron expression with seconds (6 or 7 fields); the error names the field `cron`.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) && !text.trim_start().starts_with('@') {
        return Err(format!(
            "cron: {:?} has {fields} fields; write 6 (sec min hour day month weekday) or 7 (and a year), e.g. \"*/10 * * * * *\"",
            faas_common::text::clip(text)
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Optional)
        .build()
        .parse(text)
        .map_err(|e| {
            format!(
                "cron: {:?} does not parse: {e}",
                faas_common::text::clip(text)
            )
        })?;
    Ok(cron)
}

/// Parses an IANA time zone name (`Europe/Paris`); empty is `UTC`. The error names `tz`.
pub fn parse_tz(text: &str) -> Result<Tz, String> {
    if text.is_empty() {
        return Ok(Tz::UTC);
    }
    Tz::from_str(text).map_err(|_| {
        format!(
            "tz: {:?} is not an IANA time zone; use a name such as UTC, Europe/Paris or America/New_York",
            faas_common::text::clip(text)
        )
    })
}

impl Spec {
    /// The schedule `cron` read in `tz` (empty: UTC); errors name the field.
    pub fn parse(cron: &str, tz: &str) -> Result<Spec, String> {
        let cron = parse_cron(cron)?;
        let tz = parse_tz(tz)?;
        let spec = Spec { cron, tz };
        Ok(spec)
    }

    fn at(&self, ms: u64) -> Option<DateTime<Tz>> {
        let ms = i64::try_from(ms).ok()?;
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }

    /// The first slot strictly after `ms`.
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let t = self.at(ms)?;
        let next = self.cron.find_next_occurrence(&t, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last slot at or before `ms`.
    pub fn last_at_or_before(&self, ms: u64) -> Option<u64> {
        let t = self.at(ms)?;
        let prev = self.cron.find_previous_occurrence(&t, true).ok()?;
        u64::try_from(prev.timestamp_millis()).ok()
    }
}

/// What fires now, and when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The latest missed slot, fired once under [`CatchUp::Once`].
    pub catch_up: Option<u64>,
    /// Missed slots dropped (under [`CatchUp::Skip`], or beside the one caught up).
    pub missed: u64,
    /// On-time slots to fire, oldest first.
    pub on_time: Vec<u64>,
    /// The anchor after this plan: the last slot fired or dropped (unchanged when none).
    pub anchor_ms: u64,
    /// The first slot after `now` (None: the expression names no later instant).
    pub next_ms: Option<u64>,
}

/// The plan of `spec` whose last fired (or dropped) slot is `anchor_ms`, at `now_ms`.
pub fn plan(spec: &Spec, rule: CatchUp, anchor_ms: u64, now_ms: u64) -> Plan {
    let mut out = Plan {
        anchor_ms,
        ..Plan::default()
    };
    let cutoff = now_ms.saturating_sub(ON_TIME_MS);
    // Missed: after the anchor and before the on-time window.
    if cutoff > anchor_ms
        && let Some(latest) = spec.last_at_or_before(cutoff.saturating_sub(1))
        && latest > anchor_ms
    {
        out.missed = count_between(spec, anchor_ms, latest);
        if rule == CatchUp::Once {
            out.catch_up = Some(latest);
            out.missed -= 1;
        }
        out.anchor_ms = latest;
    }
    // On time: from the later of the anchor and the window's start, up to now.
    let mut from = out.anchor_ms.max(cutoff.saturating_sub(1));
    while out.on_time.len() < MAX_ON_TIME {
        match spec.next_after(from) {
            Some(slot) if slot <= now_ms => {
                out.on_time.push(slot);
                out.anchor_ms = slot;
                from = slot;
            }
            _ => break,
        }
    }
    out.next_ms = spec.next_after(out.anchor_ms.max(now_ms));
    out
}

/// How many slots lie in `(after, up_to]`, counted up to 10 000 (a figure for logs).
fn count_between(spec: &Spec, after: u64, up_to: u64) -> u64 {
    let mut n = 0;
    let mut at = after;
    while n < 10_000 {
        match spec.next_after(at) {
            Some(slot) if slot <= up_to => {
                n += 1;
                at = slot;
            }
            _ => break,
        }
    }
    n.max(1)
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
