//! The `faas` command and the API server's front door: the key `faas up`'s data directory
//! holds is found and sent, a missing or wrong key is refused with a message saying what to
//! do, and `--tls-ca` connects over TLS.

use std::path::Path;
use std::process::Output;

use faas_common::shutdown::{self, Trigger};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[path = "../../apiserver/tests/support/cert.rs"]
#[allow(dead_code)]
mod cert;

/// The real API server on 127.0.0.1:0 (no scheduler: listing needs none).
async fn apiserver(
    config: faas_apiserver::Config,
) -> (
    String,
    Trigger,
    JoinHandle<Result<(), faas_apiserver::Error>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = faas_apiserver::Config {
        scheduler: "127.0.0.1:1".into(),
        ..config
    };
    // Made now (the server makes it too as it starts): the command must find it at once.
    config.client_key().unwrap();
    let (trigger, stop) = shutdown::channel();
    let task = tokio::spawn(faas_apiserver::run(listener, config, stop));
    (format!("127.0.0.1:{port}"), trigger, task)
}

/// `faas ARGS` with no key and no data directory from the environment.
async fn faas(args: &[&str], data_dir: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_faas"))
        .args(args)
        .env_remove("FAAS_API_KEY")
        .env_remove("FAAS_APISERVER")
        .env_remove("FAAS_TLS_CA")
        .env("FAAS_DATA_DIR", data_dir)
        .output()
        .await
        .unwrap()
}

/// stdout of `faas ARGS`, which must succeed.
async fn ok(args: &[&str], data_dir: &Path) -> String {
    let out = faas(args, data_dir).await;
    assert!(out.status.success(), "faas {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[tokio::test]
async fn the_command_finds_the_key_in_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (addr, trigger, task) = apiserver(faas_apiserver::Config {
        data_dir: Some(data.path().to_path_buf()),
        ..faas_apiserver::Config::default()
    })
    .await;
    // The key the server made is found through FAAS_DATA_DIR (or --data-dir).
    let listed = ok(&["functions", "--apiserver", &addr], data.path()).await;
    assert!(listed.contains("hello"), "{listed}");
    let dir = data.path().to_str().unwrap();
    let args = ["functions", "--apiserver", &addr, "--data-dir", dir];
    ok(&args, elsewhere.path()).await;
    // No key: refused, saying where one is.
    let out = faas(&["functions", "--apiserver", &addr], elsewhere.path()).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).ends_with(
            "Unauthenticated: this API server requires a key: pass --api-key or set FAAS_API_KEY; `faas up` wrote one to DATA_DIR/keys"
        ),
        "{}",
        stderr(&out)
    );
    // A wrong key: refused too, and --api-key wins over the data directory's.
    let out = faas(
        &[
            "invoke",
            "hello",
            "--apiserver",
            &addr,
            "--api-key",
            "not-this-servers-key-0123456789",
        ],
        data.path(),
    )
    .await;
    assert!(
        stderr(&out)
            .contains("Unauthenticated: the key presented is not one of this API server's keys"),
        "{}",
        stderr(&out)
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_ca_connects_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let made = cert::localhost_cert(dir.path());
    let (addr, trigger, task) = apiserver(faas_apiserver::Config {
        tls_cert: Some(made.cert.clone()),
        tls_key: Some(made.key),
        ..faas_apiserver::Config::default()
    })
    .await;
    let port = addr.rsplit(':').next().unwrap();
    let https = format!("https://localhost:{port}");
    let ca = made.cert.to_str().unwrap();
    ok(
        &["functions", "--apiserver", &https, "--tls-ca", ca],
        dir.path(),
    )
    .await;
    // Without TLS the command fails, and says it could not talk to the server.
    let out = faas(&["functions", "--apiserver", &addr], dir.path()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    trigger.trigger();
    task.await.unwrap().unwrap();
}
