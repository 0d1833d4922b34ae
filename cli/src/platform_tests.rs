//! Unit tests of `platform.rs` (kept apart so that file reads as the code it is).

use super::*;

#[test]
fn every_component_names_the_one_list_of_built_in_handlers() {
    // The API server refuses an unknown handler at deploy, node services before they start
    // a process, the container service runs them, and the e2e workloads call them: all four
    // use `faas_proto::builtin::Builtin` (these lines compile only while they do), so a
    // handler added there shows up at every one of them.
    fn one_list(
        apiserver: faas_apiserver::Handler,
        container: faas_container_service::handlers::HandlerKind,
        e2e: faas_e2e::HandlerKind,
    ) -> [faas_proto::builtin::Builtin; 3] {
        [apiserver, container, e2e]
    }
    for h in faas_proto::builtin::Builtin::ALL {
        assert_eq!(one_list(h, h, h), [h; 3]);
        assert!(faas_proto::limits::is_handler(h.as_str()));
    }
    assert_eq!(
        faas_apiserver::Handler::names(),
        faas_container_service::handlers::HandlerKind::NAMES
    );
    assert_eq!(faas_proto::limits::HANDLERS, faas_e2e::HandlerKind::NAMES);
}

#[tokio::test]
async fn a_component_that_stops_while_running_is_named_and_the_rest_stop() {
    let mut platform = fake_platform(Some("lost its resource manager"));
    let err = platform.failed().await;
    assert_eq!(
        err.to_string(),
        "scheduler stopped: lost its resource manager"
    );
    assert_eq!(platform.components.len(), 2);
    platform.stop().await.unwrap();
}

/// A component that runs until told to stop, or fails at once with `fail`.
fn fake_component(name: &'static str, fail: Option<&'static str>) -> Component {
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(async move {
        match fail {
            Some(why) => Err(anyhow::anyhow!("{why}")),
            None => {
                shutdown.wait().await;
                Ok(())
            }
        }
    });
    Component {
        name,
        addr: "127.0.0.1:1".parse().unwrap(),
        trigger,
        detach: None,
        task,
        own: None,
    }
}

/// A platform of fake components; the scheduler fails at once with `scheduler_fails`.
fn fake_platform(scheduler_fails: Option<&'static str>) -> LocalPlatform {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    LocalPlatform {
        apiserver: addr,
        scheduler: addr,
        resource_manager: addr,
        cluster_token: None,
        api_key: None,
        components: vec![
            fake_component(APISERVER, None),
            fake_component(SCHEDULER, scheduler_fails),
            fake_component(RESOURCE_MANAGER, None),
        ],
    }
}

#[tokio::test]
async fn restarts_need_a_restartable_platform_and_a_running_component() {
    let mut platform = fake_platform(None);
    let err = platform.restart_scheduler().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot restart the scheduler: the platform was not started restartable"
    );
    // Refused, it still runs where it ran.
    assert_eq!(platform.components[1].name, SCHEDULER);
    assert!(!platform.components[1].task.is_finished());
    let gone = platform.components.remove(2);
    gone.stop().await.unwrap();
    let err = platform.restart_resource_manager().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot restart the resource-manager: it is not running"
    );
    platform.stop().await.unwrap();
}

#[test]
fn the_default_data_dir_follows_xdg_then_home() {
    let os = |s: &str| Some(std::ffi::OsString::from(s));
    assert_eq!(
        default_data_dir(os("/xdg"), os("/home/ada")),
        Some(PathBuf::from("/xdg/mini-faas"))
    );
    for xdg in [None, os(""), os("relative/data")] {
        assert_eq!(
            default_data_dir(xdg, os("/home/ada")),
            Some(PathBuf::from("/home/ada/.local/share/mini-faas"))
        );
    }
    assert_eq!(default_data_dir(None, None), None);
    assert_eq!(default_data_dir(None, os("not/absolute")), None);
}

#[test]
fn extra_flags_win_and_bad_ones_name_the_component() {
    let config: faas_scheduler::Config = config_from(
        SCHEDULER,
        &strings(&["--policy", "baseline", "--policy", "czy"]),
    )
    .unwrap();
    assert_eq!(config.policy, "czy");
    let err = config_from::<faas_scheduler::Config>(SCHEDULER, &strings(&["--nope"]))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "scheduler: bad flags: unexpected argument '--nope' found"
    );
}
