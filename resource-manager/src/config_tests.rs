//! Unit tests of `config.rs` (kept apart so that file reads as the code it is).

use super::*;
use clap::Parser;
use faas_common::units::CONTEST_NODE_BYTES;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[test]
fn defaults_are_the_contest_rules() {
    let parsed = Cli::try_parse_from(["rm"]).unwrap().config;
    assert_eq!(parsed, Config::default());
    let rules = parsed.pool_rules().unwrap();
    assert_eq!(rules.max_nodes, 20);
    assert_eq!(rules.ready_nodes, 10);
    assert_eq!(rules.refill_delay_ms, 10_000);
    assert_eq!(rules.node_memory_bytes, CONTEST_NODE_BYTES);
    assert_eq!(rules.failed_after_ms, 3_000);
    assert_eq!(parsed.node_probe_interval_ms, 1_000);
    assert_eq!(parsed.node_probe_timeout_ms, 1_000);
}

#[test]
fn local_is_clap_s_defaults() {
    let local = Config::local();
    assert_eq!(local.port, 10400);
    assert_eq!(local.node_memory_mib, faas_common::units::CONTEST_NODE_MIB);
    assert_eq!(local.docker_cpus_per_gib, "0.67");
    assert_eq!(local.cluster, TokenArgs::default());
    assert_eq!(Config::default(), local);
}

#[test]
fn node_health_flags_parse_and_are_checked() {
    let c = Cli::try_parse_from([
        "rm",
        "--node-probe-interval-ms",
        "300",
        "--node-failed-after-ms",
        "1000",
        "--node-probe-timeout-ms",
        "200",
    ])
    .unwrap()
    .config;
    assert_eq!(c.node_probe_interval_ms, 300);
    assert_eq!(c.node_probe_timeout_ms, 200);
    assert_eq!(c.pool_rules().unwrap().failed_after_ms, 1_000);
    let no_timeout = Config {
        node_probe_timeout_ms: 0,
        ..Config::default()
    };
    let err = no_timeout.pool_rules().unwrap_err();
    assert!(err.to_string().contains("--node-probe-timeout-ms"), "{err}");
    let probes_off = Config {
        node_probe_interval_ms: 0,
        node_probe_timeout_ms: 0,
        ..Config::default()
    };
    assert!(probes_off.pool_rules().is_ok());
    let huge = Config {
        node_failed_after_ms: u64::MAX,
        ..Config::default()
    };
    assert!(huge.pool_rules().is_err());
}

#[test]
fn the_orphan_timeout_is_given_only_with_a_state_dir_and_outlasts_the_probes() {
    let c = Cli::try_parse_from(["rm", "--state-dir", "/var/lib/rm"])
        .unwrap()
        .config;
    assert_eq!(
        c.state_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/rm"))
    );
    assert_eq!(
        c.node_orphan_timeout().unwrap(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        Config::default().node_orphan_timeout().unwrap(),
        None,
        "no state dir: nodes die with the manager"
    );
    let off = Config {
        node_orphan_timeout_ms: 0,
        ..c.clone()
    };
    assert_eq!(off.node_orphan_timeout().unwrap(), None);
    let too_short = Config {
        node_orphan_timeout_ms: 2_000,
        ..c.clone()
    };
    let err = too_short.node_orphan_timeout().unwrap_err();
    assert!(err.to_string().contains("must exceed twice"), "{err}");
    let no_probes = Config {
        node_probe_interval_ms: 0,
        ..c
    };
    let err = no_probes.node_orphan_timeout().unwrap_err();
    assert!(
        err.to_string().contains("--node-orphan-timeout-ms 0"),
        "{err}"
    );
}

#[test]
fn flags_parse_and_are_checked() {
    let c = Cli::try_parse_from([
        "rm",
        "--provider",
        "static",
        "--static-nodes",
        "10.0.0.1:7000,node-b:7001,[::1]:7002",
        "--ready-nodes",
        "1",
        "--max-nodes",
        "1",
    ])
    .unwrap()
    .config;
    assert_eq!(c.provider, ProviderKind::Static);
    let eps = c.static_endpoints().unwrap();
    assert_eq!(eps.len(), 3);
    assert_eq!(eps[1].address, "node-b");
    assert_eq!(eps[2].address, "::1");
    assert_eq!(eps[2].port, 7002);

    let too_many = Config {
        ready_nodes: 5,
        max_nodes: 2,
        ..Config::default()
    };
    let err = too_many.pool_rules().unwrap_err();
    assert!(
        err.to_string()
            .contains("--ready-nodes 5 exceeds --max-nodes 2"),
        "{err}"
    );
    let bad = Config {
        static_nodes: vec!["nope".into()],
        ..Config::default()
    };
    assert!(bad.static_endpoints().is_err());
    assert!(Config::default().static_endpoints().is_err());
    assert!(Cli::try_parse_from(["rm", "--provider", "cloud"]).is_err());
}

#[test]
fn node_metrics_ports_start_at_the_flag_else_at_the_inherited_variable() {
    let flag = Cli::try_parse_from(["rm", "--node-metrics-port-base", "10700"])
        .unwrap()
        .config;
    assert_eq!(
        flag.node_metrics_port_base(Some("9100")).unwrap(),
        Some(10700)
    );
    let none = Config::default();
    assert_eq!(none.node_metrics_port_base(None).unwrap(), None);
    assert_eq!(
        none.node_metrics_port_base(Some("9100")).unwrap(),
        Some(9100)
    );
    assert_eq!(none.node_metrics_port_base(Some("0")).unwrap(), None);
    let off = Config {
        node_metrics_port_base: Some(0),
        ..Config::default()
    };
    assert_eq!(off.node_metrics_port_base(Some("9100")).unwrap(), None);
    let err = none.node_metrics_port_base(Some("nine")).unwrap_err();
    assert!(
        err.to_string().contains("NODE_METRICS_PORT=\"nine\""),
        "{err}"
    );
}

#[test]
fn the_nodes_get_the_bundles_dir_and_the_watchdog() {
    assert_eq!(
        Config::default().node_code().unwrap().args(),
        Vec::<String>::new()
    );
    let here = std::env::temp_dir();
    let c = Cli::try_parse_from([
        "rm",
        "--node-bundles-dir",
        here.to_str().unwrap(),
        "--node-docker-watchdog-bin",
        "/opt/faas/container-service",
    ])
    .unwrap()
    .config;
    assert_eq!(
        c.node_code().unwrap().args(),
        vec![
            "--bundles-dir".to_string(),
            std::path::absolute(&here).unwrap().display().to_string(),
            "--docker-watchdog-bin".to_string(),
            "/opt/faas/container-service".to_string(),
        ]
    );
    let missing = Config {
        node_bundles_dir: Some(here.join(format!("no-such-{}", std::process::id()))),
        ..Config::default()
    };
    let err = missing.node_code().unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}
