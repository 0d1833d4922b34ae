//! A platform started with a data directory hands its nodes `DATA_DIR/bundles` (where the API
//! server writes the bundles of functions made of the users' own code): the directory is
//! created and every node service gets it as `--bundles-dir` (the resource manager's own
//! tests run a bundle on such a node).

mod support;

use faas_cli::platform::PlatformOptions;

/// A temporary data directory, removed on drop.
struct DataDir(std::path::PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_nodes_get_the_data_dirs_bundles() {
    let data = DataDir(std::env::temp_dir().join(format!("faas-data-{}", uuid::Uuid::new_v4())));
    let (platform, _api) = support::start(PlatformOptions {
        data_dir: Some(data.0.clone()),
        ready_nodes: 1,
        max_nodes: 2,
        ..support::small_options()
    })
    .await;
    let bundles = data.0.join("bundles");
    assert!(bundles.is_dir(), "DATA_DIR/bundles is created");
    // Its node services get it (they start in the background as the pool fills).
    let flag = format!("--bundles-dir {}", bundles.display());
    let since = faas_common::clock::instant();
    while !support::descendants().into_iter().any(|pid| {
        support::procs::component(pid) == Some("node-service")
            && support::cmdline(pid).contains(&flag)
    }) {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(60),
            "no node got {flag}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    platform.stop().await.unwrap();
}
