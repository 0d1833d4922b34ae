//! After the platform stops, no component, node or container process remains. Alone in its
//! own test binary so that no other test's children are in the process tree.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_platform_leaves_no_process_behind() {
    let (platform, api) = support::start(support::small_options()).await;
    for function in ["hello", "echo", "sleep"] {
        api.invoke("test-account", function, vec![]).await.unwrap();
    }
    let running = support::descendants();
    let containers = running
        .iter()
        .filter(|&&p| support::cmdline(p).contains("container-service"))
        .count();
    let nodes = running
        .iter()
        .filter(|&&p| support::cmdline(p).contains("node-service"))
        .count();
    assert!(
        containers >= 3,
        "expected container processes, saw {running:?}"
    );
    assert!(nodes >= 1, "expected node processes, saw {running:?}");

    platform.stop().await.unwrap();

    let left: Vec<(u32, String)> = running
        .iter()
        .filter(|&&p| support::alive(p))
        .map(|&p| (p, support::cmdline(p)))
        .collect();
    assert!(left.is_empty(), "processes left after stop: {left:?}");
    assert!(
        support::descendants().is_empty(),
        "new children appeared after stop"
    );
}
