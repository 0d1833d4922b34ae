use super::*;

fn sched(id: &str, function: &str, anchor_ms: u64) -> Schedule {
    Schedule {
        id: id.into(),
        function: function.into(),
        cron: "* * * * * *".into(),
        tz: "UTC".into(),
        event: b"{}".to_vec(),
        catch_up: CatchUp::Once,
        enabled: true,
        created_at_ms: anchor_ms,
        anchor_ms,
    }
}

fn firing(slot_ms: u64) -> Firing {
    Firing {
        slot_ms,
        fired_at_ms: slot_ms + 3,
        invocation_id: format!("inv-{slot_ms}"),
        ..Firing::default()
    }
}

#[test]
fn a_schedule_round_trips_and_lists_by_function() {
    let t = SqliteTimers::in_memory();
    t.create(&sched("a", "f", 10)).unwrap();
    t.create(&sched("b", "g", 20)).unwrap();
    assert_eq!(t.list(None).unwrap().len(), 2);
    assert_eq!(t.list(Some("f")).unwrap(), vec![sched("a", "f", 10)]);
    assert!(t.list(Some("h")).unwrap().is_empty());
}

#[test]
fn a_firing_moves_the_anchor_and_history_is_bounded_newest_first() {
    let t = SqliteTimers::in_memory();
    t.create(&sched("a", "f", 0)).unwrap();
    for slot in 1..=(MAX_FIRINGS_KEPT as u64 + 5) {
        assert!(t.record("a", &firing(slot * 1000)).unwrap());
    }
    let kept = t.firings("a", 1000).unwrap();
    assert_eq!(kept.len(), MAX_FIRINGS_KEPT);
    assert_eq!(kept[0].slot_ms, (MAX_FIRINGS_KEPT as u64 + 5) * 1000);
    assert_eq!(kept[0].invocation_id, format!("inv-{}", kept[0].slot_ms));
    assert_eq!(t.list(None).unwrap()[0].anchor_ms, kept[0].slot_ms);
    // The same slot again changes nothing; the anchor never goes back.
    assert!(t.record("a", &firing(1000)).unwrap());
    assert_eq!(t.firings("a", 1000).unwrap().len(), MAX_FIRINGS_KEPT);
    assert_eq!(t.list(None).unwrap()[0].anchor_ms, kept[0].slot_ms);
    t.advance("a", 5).unwrap();
    assert_eq!(t.list(None).unwrap()[0].anchor_ms, kept[0].slot_ms);
}

#[test]
fn recording_for_a_deleted_schedule_says_so() {
    let t = SqliteTimers::in_memory();
    t.create(&sched("a", "f", 0)).unwrap();
    t.record("a", &firing(1000)).unwrap();
    assert!(t.delete("a").unwrap());
    assert!(!t.delete("a").unwrap());
    assert!(!t.record("a", &firing(2000)).unwrap());
    assert!(t.firings("a", 10).unwrap().is_empty(), "firings go with it");
}

#[test]
fn resuming_moves_the_anchor_to_now() {
    let t = SqliteTimers::in_memory();
    t.create(&sched("a", "f", 0)).unwrap();
    assert!(t.set_enabled("a", false, 100).unwrap());
    assert!(!t.list(None).unwrap()[0].enabled);
    assert_eq!(t.list(None).unwrap()[0].anchor_ms, 0, "pausing keeps it");
    assert!(t.set_enabled("a", true, 500).unwrap());
    let s = &t.list(None).unwrap()[0];
    assert!(s.enabled);
    assert_eq!(s.anchor_ms, 500, "nothing missed while paused fires");
    assert!(!t.set_enabled("nope", true, 1).unwrap());
}

#[test]
fn on_file_schedules_need_their_function_and_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE functions (name TEXT PRIMARY KEY);")
            .unwrap();
        conn.execute_batch(TIMER_TABLES).unwrap();
        conn.execute("INSERT INTO functions (name) VALUES ('f')", [])
            .unwrap();
    }
    let t = SqliteTimers::open(&path).unwrap();
    assert_eq!(
        t.create(&sched("x", "missing", 0)),
        Err(ScheduleError::NoFunction("missing".into()))
    );
    t.create(&sched("a", "f", 0)).unwrap();
    t.record("a", &firing(1000)).unwrap();
    drop(t);
    // Kept across opens; deleting the function deletes the schedule and its firings.
    let t = SqliteTimers::open(&path).unwrap();
    assert_eq!(t.list(None).unwrap()[0].anchor_ms, 1000);
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute("DELETE FROM functions WHERE name = 'f'", [])
            .unwrap();
    }
    assert!(t.list(None).unwrap().is_empty());
    assert!(t.firings("a", 10).unwrap().is_empty());
}
