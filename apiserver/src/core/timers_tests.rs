use chrono::{TimeZone, Utc};

use super::*;

/// ms of a UTC wall time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a valid UTC time")
        .timestamp_millis() as u64
}

fn every_second() -> Spec {
    Spec::parse("*/1 * * * * *", "").expect("parses")
}

#[test]
fn cron_needs_seconds_and_names_the_field() {
    let five = Spec::parse("* * * * *", "UTC").unwrap_err();
    assert!(five.starts_with("cron: "), "{five}");
    assert!(five.contains("5 fields"), "{five}");
    let bad = Spec::parse("61 * * * * *", "UTC").unwrap_err();
    assert!(bad.starts_with("cron: "), "{bad}");
    let junk = Spec::parse("a b c d e f", "UTC").unwrap_err();
    assert!(junk.starts_with("cron: "), "{junk}");
    assert!(Spec::parse("0 0 12 * * MON-FRI", "Europe/Paris").is_ok());
    assert!(
        Spec::parse("0 0 12 1 1 * 2030", "UTC").is_ok(),
        "seven fields"
    );
}

#[test]
fn unknown_time_zone_names_the_field() {
    let e = Spec::parse("* * * * * *", "Mars/Olympus").unwrap_err();
    assert!(e.starts_with("tz: "), "{e}");
    assert!(Spec::parse("* * * * * *", "").is_ok(), "empty is UTC");
}

#[test]
fn catch_up_rule_parses() {
    assert_eq!(CatchUp::parse(""), Ok(CatchUp::Skip));
    assert_eq!(CatchUp::parse("once"), Ok(CatchUp::Once));
    assert!(
        CatchUp::parse("twice")
            .unwrap_err()
            .starts_with("catch_up: ")
    );
}

#[test]
fn a_tick_fires_the_slot_just_passed_and_points_at_the_next() {
    let spec = every_second();
    let t = utc(2030, 1, 1, 0, 0, 10);
    let p = plan(&spec, CatchUp::Skip, t - 1_000, t + 3);
    assert_eq!(p.on_time, vec![t]);
    assert_eq!(p.catch_up, None);
    assert_eq!(p.anchor_ms, t);
    assert_eq!(p.next_ms, Some(t + 1_000));
    // Given its own anchor back, the same instant fires nothing again.
    let again = plan(&spec, CatchUp::Skip, p.anchor_ms, t + 3);
    assert!(again.on_time.is_empty());
    assert_eq!(again.anchor_ms, t);
}

#[test]
fn nothing_is_due_before_the_first_slot() {
    let spec = Spec::parse("0 0 12 * * *", "UTC").unwrap();
    let created = utc(2030, 1, 1, 11, 0, 0);
    let p = plan(&spec, CatchUp::Once, created, created + 5_000);
    assert!(p.on_time.is_empty());
    assert_eq!(p.catch_up, None);
    assert_eq!(p.missed, 0);
    assert_eq!(p.anchor_ms, created);
    assert_eq!(p.next_ms, Some(utc(2030, 1, 1, 12, 0, 0)));
}

#[test]
fn a_slow_wake_up_fires_every_on_time_slot_in_order() {
    let spec = every_second();
    let t = utc(2030, 1, 1, 0, 0, 10);
    let p = plan(&spec, CatchUp::Skip, t - 1_000, t + 1_500);
    assert_eq!(p.on_time, vec![t, t + 1_000]);
    assert_eq!(p.missed, 0);
}

#[test]
fn downtime_with_skip_drops_the_missed_slots() {
    let spec = every_second();
    let down = utc(2030, 1, 1, 0, 0, 0);
    let now = down + 60_000 + 300;
    let p = plan(&spec, CatchUp::Skip, down, now);
    assert_eq!(p.catch_up, None);
    // Slots 1 ..= 58 s after `down` are more than ON_TIME_MS old; 59 and 60 are on time.
    assert_eq!(p.missed, 58);
    assert_eq!(p.on_time, vec![down + 59_000, down + 60_000]);
    assert_eq!(p.anchor_ms, down + 60_000);
    assert_eq!(p.next_ms, Some(down + 61_000));
}

#[test]
fn downtime_with_once_fires_the_latest_missed_slot_once() {
    let spec = Spec::parse("0 * * * * *", "UTC").unwrap(); // every minute
    let down = utc(2030, 1, 1, 0, 0, 0);
    let now = utc(2030, 1, 1, 0, 10, 30);
    let p = plan(&spec, CatchUp::Once, down, now);
    assert_eq!(p.catch_up, Some(utc(2030, 1, 1, 0, 10, 0)));
    assert_eq!(p.missed, 9, "ten slots missed, one fired for them");
    assert!(p.on_time.is_empty());
    assert_eq!(p.anchor_ms, utc(2030, 1, 1, 0, 10, 0));
    // A restart right after (the anchor recorded) catches up nothing more.
    let again = plan(&spec, CatchUp::Once, p.anchor_ms, now + 500);
    assert_eq!(again.catch_up, None);
    assert!(again.on_time.is_empty());
    assert_eq!(again.next_ms, Some(utc(2030, 1, 1, 0, 11, 0)));
}

#[test]
fn a_restart_before_the_next_slot_fires_nothing() {
    // The anchor is the last slot fired before the kill; the server is back before the next.
    let spec = every_second();
    let last = utc(2030, 1, 1, 0, 0, 5);
    for rule in [CatchUp::Skip, CatchUp::Once] {
        let p = plan(&spec, rule, last, last + 900);
        assert!(
            p.on_time.is_empty() && p.catch_up.is_none(),
            "{rule:?}: {p:?}"
        );
    }
}

#[test]
fn a_long_stall_fires_at_most_max_on_time() {
    let spec = Spec::parse("* * * * * *", "UTC").unwrap();
    let t = utc(2030, 1, 1, 0, 0, 0);
    // Anchor exactly at the window's start: every slot of the window is on time.
    let p = plan(&spec, CatchUp::Skip, t, t + ON_TIME_MS);
    assert_eq!(p.on_time.len(), (ON_TIME_MS / 1_000) as usize);
    assert!(p.on_time.len() <= MAX_ON_TIME);
}

#[test]
fn spring_forward_moves_a_fixed_time_past_the_gap() {
    // Europe/Paris: 2030-03-31 02:00 local (01:00 UTC) jumps to 03:00.
    let spec = Spec::parse("0 30 2 * * *", "Europe/Paris").unwrap();
    let before = utc(2030, 3, 30, 12, 0, 0);
    let next = spec.next_after(before).unwrap();
    // 02:30 does not exist that day: it fires at the first second after the gap, 03:00
    // local = 01:00 UTC.
    assert_eq!(next, utc(2030, 3, 31, 1, 0, 0));
    // The day after, 02:30 CEST = 00:30 UTC.
    assert_eq!(spec.next_after(next).unwrap(), utc(2030, 4, 1, 0, 30, 0));
}

#[test]
fn spring_forward_skips_interval_slots_in_the_gap() {
    let spec = Spec::parse("0 */30 * * * *", "Europe/Paris").unwrap();
    // 01:30 CET = 00:30 UTC; the next local slots 02:00, 02:30 do not exist; 03:00 CEST =
    // 01:00 UTC.
    let at = utc(2030, 3, 31, 0, 30, 0);
    assert_eq!(spec.next_after(at).unwrap(), utc(2030, 3, 31, 1, 0, 0));
}

#[test]
fn fall_back_fires_a_fixed_time_once() {
    // Europe/Paris: 2030-10-27 03:00 CEST (01:00 UTC) falls back to 02:00 CET; 02:30 local
    // happens at 00:30 UTC and again at 01:30 UTC.
    let spec = Spec::parse("0 30 2 * * *", "Europe/Paris").unwrap();
    let first = spec.next_after(utc(2030, 10, 26, 12, 0, 0)).unwrap();
    assert_eq!(first, utc(2030, 10, 27, 0, 30, 0));
    let second = spec.next_after(first).unwrap();
    assert_eq!(
        second,
        utc(2030, 10, 28, 1, 30, 0),
        "the next day, not the repeat"
    );
}

#[test]
fn fall_back_fires_interval_slots_in_both_passes_moving_forward() {
    let spec = Spec::parse("0 */30 * * * *", "Europe/Paris").unwrap();
    let mut at = utc(2030, 10, 27, 0, 0, 0); // 02:00 CEST
    let mut slots = Vec::new();
    for _ in 0..4 {
        at = spec.next_after(at).unwrap();
        slots.push(at);
    }
    // 02:30 CEST, 02:00 CET, 02:30 CET, 03:00 CET: real time only moves forward.
    assert_eq!(
        slots,
        vec![
            utc(2030, 10, 27, 0, 30, 0),
            utc(2030, 10, 27, 1, 0, 0),
            utc(2030, 10, 27, 1, 30, 0),
            utc(2030, 10, 27, 2, 0, 0),
        ]
    );
    // A plan anchored in the first pass goes on into the second, never back.
    let p = plan(
        &spec,
        CatchUp::Skip,
        utc(2030, 10, 27, 0, 30, 0),
        utc(2030, 10, 27, 1, 0, 1),
    );
    assert_eq!(p.on_time, vec![utc(2030, 10, 27, 1, 0, 0)]);
}

#[test]
fn a_time_zone_shifts_the_slots() {
    let spec = Spec::parse("0 0 9 * * *", "America/New_York").unwrap();
    // 09:00 EST = 14:00 UTC in January.
    assert_eq!(
        spec.next_after(utc(2030, 1, 10, 0, 0, 0)),
        Some(utc(2030, 1, 10, 14, 0, 0))
    );
}
