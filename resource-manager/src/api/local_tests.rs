//! Unit tests of `local.rs` (kept apart so that file reads as the code it is).

use super::*;

#[tokio::test]
async fn an_exited_child_is_reaped_and_described() {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("echo 'FAAS_LISTENING 127.0.0.1:1'; exit 7");
    let (mut child, _) = Child::spawn_ready(cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let pid = child.id().unwrap();
    // Wait (by polling the process table, not a timer) until it is a zombie.
    let deadline = faas_common::clock::tokio_instant() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if zombie_exit(&stat).is_some() {
            break;
        }
        assert!(
            faas_common::clock::tokio_instant() < deadline,
            "never exited: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        reap_if_exited(&mut child).as_deref(),
        Some(format!("process {pid} exited with code 7").as_str())
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "reaped: no zombie left"
    );
}

use crate::api::processes_fake::FakeProcesses;

fn provider(processes: Arc<FakeProcesses>) -> LocalProvider {
    let options = LocalOptions {
        runtime: "process".into(),
        warm_pool: None,
        start_timeout: Duration::from_secs(5),
        stop_grace: Duration::from_secs(2),
        lifetime: Lifetime::Detached,
        orphan_timeout: None,
        code: NodeCode::default(),
        metrics_port_base: None,
    };
    LocalProvider::new(Launcher::new("false", vec![]), options).with_processes(processes)
}

fn handle(pid: u32, start: u64) -> NodeHandle {
    NodeHandle {
        pid: Some(pid),
        process_start: Some(start),
        ..NodeHandle::default()
    }
}

fn nowhere() -> NodeEndpoint {
    NodeEndpoint {
        address: "127.0.0.1".into(),
        port: 1,
    }
}

#[tokio::test]
async fn only_the_recorded_process_is_taken_back_and_nothing_else_is_signalled() {
    let processes = Arc::new(FakeProcesses::default());
    processes.run(
        ProcessRef {
            pid: 10,
            start: 100,
        },
        false,
    );
    // pid 11 was reused: it now names a process that started later.
    processes.run(
        ProcessRef {
            pid: 11,
            start: 999,
        },
        false,
    );
    let local = provider(processes.clone());
    let adopt = |id: &'static str, h: NodeHandle| {
        let local = &local;
        async move { local.adopt(id, &nowhere(), &h).await }
    };
    assert_eq!(
        adopt("n-0", NodeHandle::default()).await,
        Err("no node-service process was recorded for it".to_string())
    );
    assert_eq!(
        adopt("n-12", handle(12, 100)).await,
        Err("its node-service process 12 is gone".to_string())
    );
    assert_eq!(
        adopt("n-11", handle(11, 110)).await,
        Err("its node-service process 11 is gone (the pid now names another process)".to_string())
    );
    assert_eq!(adopt("n-10", handle(10, 100)).await, Ok(()));
    assert!(adopt("n-10", handle(10, 100)).await.is_err(), "once");
    // Killing a node that was refused touches nothing.
    local.kill_node("n-11").await;
    assert!(processes.sent().is_empty(), "{:?}", processes.sent());
    assert!(local.gone_nodes().await.is_empty(), "n-10 still runs");
}

#[tokio::test(start_paused = true)]
async fn an_adopted_node_is_stopped_with_term_then_kill_and_reported_gone_once() {
    let processes = Arc::new(FakeProcesses::default());
    let stubborn = ProcessRef { pid: 10, start: 1 };
    let failed = ProcessRef { pid: 20, start: 2 };
    let exits = ProcessRef { pid: 30, start: 3 };
    processes.run(stubborn, true);
    processes.run(failed, false);
    processes.run(exits, false);
    let local = provider(processes.clone());
    for (id, p) in [("n-10", stubborn), ("n-20", failed), ("n-30", exits)] {
        local
            .adopt(id, &nowhere(), &handle(p.pid, p.start))
            .await
            .unwrap();
    }

    let began = faas_common::clock::tokio_instant();
    local.stop_node("n-10").await;
    assert_eq!(
        processes.sent(),
        vec![(10, Signal::Terminate), (10, Signal::Kill)]
    );
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "the grace was given"
    );

    local.kill_node("n-20").await;
    assert_eq!(processes.sent()[2..], [(20, Signal::Kill)], "no grace");

    processes.exit(30);
    let gone = local.gone_nodes().await;
    assert_eq!(
        gone,
        vec![GoneNode {
            node_id: "n-30".into(),
            detail: "its node-service process 30 (adopted) exited".into()
        }]
    );
    assert!(local.gone_nodes().await.is_empty(), "reported once");
    assert_eq!(processes.sent().len(), 3, "a gone process is not signalled");
}

#[tokio::test]
async fn detach_lets_go_of_adopted_nodes_without_a_signal_and_refuses_more() {
    let processes = Arc::new(FakeProcesses::default());
    processes.run(ProcessRef { pid: 10, start: 1 }, false);
    processes.run(ProcessRef { pid: 11, start: 1 }, false);
    let local = provider(processes.clone());
    local
        .adopt("n-10", &nowhere(), &handle(10, 1))
        .await
        .unwrap();
    local.detach().await;
    assert!(processes.sent().is_empty());
    assert_eq!(processes.start_time(10), Some(1), "still running");
    assert!(
        local
            .adopt("n-11", &nowhere(), &handle(11, 1))
            .await
            .is_err()
    );
    assert_eq!(
        local.start_node("n-12", 1).await,
        Err(ProviderError::Closed)
    );
    local.shutdown().await;
    assert!(
        processes.sent().is_empty(),
        "detached nodes are no longer its own"
    );
}
