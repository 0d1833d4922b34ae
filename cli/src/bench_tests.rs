//! Tests of the flags (`bench_args.rs`): parsing and the options they give.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Sim {
    #[command(flatten)]
    args: SimulateArgs,
}

#[derive(Parser)]
struct Replay {
    #[command(flatten)]
    args: ReplayArgs,
}

#[test]
fn distributions_parse_three_ways() {
    assert_eq!(parse_distribution("15").unwrap().max(), 15.0);
    let u = parse_distribution("8-60").unwrap();
    assert_eq!((u.min(), u.max()), (8.0, 60.0));
    let p = parse_distribution("0:8,0.5:15,1:60").unwrap();
    assert_eq!(p.points().len(), 3);
    assert!(parse_distribution("0:8,x").is_err());
    assert!(parse_distribution("60-8").is_err());
}

#[test]
fn baseline_comes_first_when_scoring_and_policies_are_checked() {
    let s = Sim::try_parse_from([
        "x",
        "--policy",
        "no-reuse",
        "--compare",
        "keepalive-10m,baseline",
    ])
    .unwrap();
    assert_eq!(
        s.args.policies.policies(true),
        ["baseline", "no-reuse", "keepalive-10m"]
    );
    assert!(s.args.policies.wants_score());
    let r = Replay::try_parse_from(["x", "--policy", "keepalive-10m"]).unwrap();
    assert!(!r.args.policies.wants_score());
    assert_eq!(r.args.policies.policies(false), ["keepalive-10m"]);
    let e = Sim::try_parse_from(["x", "--policy", "magic"])
        .err()
        .unwrap();
    assert!(e.to_string().contains("magic"), "{e}");
    assert!(Replay::try_parse_from(["x", "--resource-manager", "a:1"]).is_err());
}

#[test]
fn faults_parse_on_both_commands() {
    let r =
        Replay::try_parse_from(["x", "--faults", "restart-scheduler@60s,kill-node@30s"]).unwrap();
    assert_eq!(
        r.args.faults.unwrap().to_string(),
        "kill-node@30s,restart-scheduler@60s"
    );
    let e = Replay::try_parse_from(["x", "--faults", "kill-node"])
        .err()
        .unwrap();
    assert!(e.to_string().contains("has no time"), "{e}");
    let s = Sim::try_parse_from(["x", "--faults", "kill-node@5s,kill-node@9s"]).unwrap();
    assert_eq!(s.args.sim_options().faults.0.len(), 2);
    let none = Sim::try_parse_from(["x"]).unwrap();
    assert!(none.args.sim_options().faults.0.is_empty());
}

#[tokio::test]
async fn replay_faults_only_its_own_platform_within_the_run() {
    let r = Replay::try_parse_from([
        "x",
        "--duration",
        "10s",
        "--faults",
        "kill-node@5s",
        "--apiserver",
        "127.0.0.1:1",
    ])
    .unwrap();
    let e = replay(r.args).await.unwrap_err().to_string();
    assert!(
        e.contains("--faults strikes only a platform this command starts"),
        "{e}"
    );
    let r =
        Replay::try_parse_from(["x", "--duration", "10s", "--faults", "kill-node@10s"]).unwrap();
    let e = replay(r.args).await.unwrap_err().to_string();
    assert!(e.contains("not within the run"), "{e}");
}

#[test]
fn the_contest_scenario_is_the_default_and_takes_the_duration() {
    let s = Sim::try_parse_from(["x", "--duration", "30s", "--seed", "4"]).unwrap();
    let w = s.args.workload.build().unwrap();
    assert_eq!(w.name, "contest");
    assert_eq!(w.duration_ms, 30_000);
    assert!(w.invocations.iter().all(|i| i.at_ms < 30_000));
    assert_eq!(s.args.sim_options().seed, 4);
}
