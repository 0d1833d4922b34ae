//! The live run's figures: nodes' reserved time (warm-up counted only on a fresh platform)
//! and containers' lifetimes.

use super::*;
use faas_proto::resourcemanagerproto::NodeDesc;

fn desc(id: &str, reserved: i64, released: i64) -> NodeDesc {
    NodeDesc {
        id: id.into(),
        reserved_time_timestamp_ms: reserved,
        released_time_timestamp_ms: released,
        ..NodeDesc::default()
    }
}

#[test]
fn node_usage_counts_warm_up_only_on_a_fresh_platform() {
    let nodes = [
        desc("old", 1_000, 5_000),
        desc("early", 8_000, 0),
        desc("in-run", 12_000, 15_000),
        desc("never", 0, 0),
    ];
    let fresh = node_usage(&nodes, 10_000, true);
    assert_eq!(fresh.len(), 3);
    assert_eq!(fresh[1].reserved_ms, -2_000);
    let shared = node_usage(&nodes, 10_000, false);
    assert_eq!(
        shared.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["early", "in-run"]
    );
    assert_eq!(shared[0].reserved_ms, 0);
    assert_eq!(shared[1].released_ms, Some(5_000));
}

#[test]
fn lifetimes_start_at_the_first_grant_when_it_is_earlier() {
    let w = crate::scenario::build("contest", &crate::ScenarioOptions::default()).unwrap();
    let mut seen = HashMap::new();
    seen.insert(
        "c1".to_string(),
        Seen {
            node_id: "n1".into(),
            limit: 0,
            first_ms: 900,
            last_ms: 4_000,
            gone_ms: Some(4_250),
        },
    );
    let r = RequestRecord {
        function: "f3".into(),
        at_ms: 500,
        response_ms: 400.0,
        scheduling_ms: 20.4,
        duration_ms: 32.0,
        cold: true,
        error: None,
        node_id: Some("n1".into()),
        container_id: Some("c1".into()),
    };
    let l = lifetimes(seen, &[r], &w);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].created_ms, 520);
    assert_eq!(l[0].removed_ms, Some(4_250));
    assert_eq!(l[0].function, "f3");
    assert_eq!(
        l[0].memory_bytes,
        512 << 20,
        "the function's limit when stats had none"
    );
}
