//! The front door over real gRPC on 127.0.0.1:0 (fake scheduler and nodes): keys and their
//! scopes, the contest mode, the data directory's key, per-account limits (TLS: tls.rs).

#![allow(dead_code)]

include!("support/fakes.rs");

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ADMIN_KEY: &str = "admin-0123456789abcdef0123456789";
const INVOKE_KEY: &str = "invoke-0123456789abcdef012345678";

/// A keys file with an admin key `ops` and an invoke key `shop`, mode 0600.
fn keys_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("keys");
    std::fs::write(
        &path,
        format!("admin ops {ADMIN_KEY}\ninvoke shop {INVOKE_KEY}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

fn list() -> admin::ListFunctionsRequest {
    admin::ListFunctionsRequest::default()
}

async fn keyed(config: Config) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        keys_file: Some(keys_file(dir.path())),
        ..config
    };
    let p = start(Setup {
        config,
        ..Setup::default()
    })
    .await;
    (p, dir)
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, text: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test]
async fn every_call_needs_a_key_of_the_right_scope() {
    let (mut p, _dir) = keyed(Config::default()).await;
    // Missing, malformed, unknown: UNAUTHENTICATED, saying what to do.
    assert_status(
        p.api.invoke_function(invoke("hello", "a", b"")).await,
        Code::Unauthenticated,
        "this API server requires a key: pass --api-key or set FAAS_API_KEY; `faas up` wrote one to DATA_DIR/keys",
    );
    let mut request = Request::new(invoke("hello", "a", b""));
    request
        .metadata_mut()
        .insert("authorization", ADMIN_KEY.parse().unwrap());
    assert_status(
        p.api.invoke_function(request).await,
        Code::Unauthenticated,
        "`Bearer KEY`",
    );
    assert_status(
        p.api
            .invoke_function(with_key(
                invoke("hello", "a", b""),
                "not-a-key-of-this-server",
            ))
            .await,
        Code::Unauthenticated,
        "not one of this API server's keys",
    );
    assert_status(
        p.admin.list_functions(list()).await,
        Code::Unauthenticated,
        "requires a key",
    );
    // An invoke key invokes and lists, and may not administer.
    let reply = p
        .api
        .invoke_function(with_key(invoke("hello", "a", b""), INVOKE_KEY))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().body, b"hello world");
    p.api
        .list_functions(with_key(
            apiserverproto::ListFunctionsRequest {},
            INVOKE_KEY,
        ))
        .await
        .unwrap();
    assert_status(
        p.admin.list_functions(with_key(list(), INVOKE_KEY)).await,
        Code::PermissionDenied,
        "key \"shop\" has scope invoke; this call needs a key of scope admin",
    );
    // An admin key does both.
    p.admin
        .list_functions(with_key(list(), ADMIN_KEY))
        .await
        .unwrap();
    p.api
        .invoke_function(with_key(invoke("hello", "a", b""), ADMIN_KEY))
        .await
        .unwrap();
    // Health probes need no key.
    let channel = faas_common::serve::connect(&p.addr).await.unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    p.stop().await;
}

#[tokio::test]
async fn the_contest_mode_takes_keyless_invocations_and_no_keyless_admin() {
    let (mut p, _dir) = keyed(Config {
        allow_anonymous_invoke: true,
        ..Config::default()
    })
    .await;
    let reply = p
        .api
        .invoke_function(invoke("hello", "acct-1", b""))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().body, b"hello world");
    p.api
        .list_functions(apiserverproto::ListFunctionsRequest {})
        .await
        .unwrap();
    assert_status(
        p.admin.list_functions(list()).await,
        Code::Unauthenticated,
        "admin calls need an admin key",
    );
    p.admin
        .list_functions(with_key(list(), ADMIN_KEY))
        .await
        .unwrap();
    p.stop().await;
}

#[tokio::test]
async fn the_data_dirs_key_is_made_once_private_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let mut p = start(Setup {
        config: config.clone(),
        ..Setup::default()
    })
    .await;
    let path = dir.path().join("keys");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).unwrap();
    let key = config.client_key().unwrap().unwrap();
    assert_eq!(key.len(), 64);
    assert!(first.contains(&format!("admin faas-up {key}")), "{first}");
    assert_status(
        p.admin.list_functions(list()).await,
        Code::Unauthenticated,
        "requires a key",
    );
    p.admin
        .list_functions(with_key(list(), &key))
        .await
        .unwrap();
    p.stop().await;

    // A restart reads the same file and changes nothing.
    let mut p = start(Setup {
        config,
        ..Setup::default()
    })
    .await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    p.admin
        .list_functions(with_key(list(), &key))
        .await
        .unwrap();
    p.stop().await;
}

#[tokio::test]
async fn without_keys_only_loopback_or_an_explicit_flag_is_open() {
    // Loopback without keys: open, as before (tests, a local platform without a data dir).
    let mut p = start(Setup::default()).await;
    p.admin.list_functions(list()).await.unwrap();
    p.stop().await;
    // Any other address: refused, saying how to give keys.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = faas_apiserver::run(listener, Config::default(), shutdown::Shutdown::never())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no keys and listens on a public address"),
        "{err}"
    );
    // A keys file others may read is refused too.
    let dir = tempfile::tempdir().unwrap();
    let path = keys_file(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        keys_file: Some(path),
        ..Config::default()
    };
    let err = faas_apiserver::run(listener, config, shutdown::Shutdown::never())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("(mode 0640): run chmod 600"), "{err}");
}

#[tokio::test]
async fn an_account_over_its_concurrency_limit_waits_alone() {
    let mut p = start(Setup {
        hang_acquire: true,
        config: Config {
            account_concurrency: 2,
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    // Two calls of acct-1 in flight (their acquire never answers).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut api = p.api.clone();
        held.push(tokio::spawn(async move {
            api.invoke_function(invoke("hello", "acct-1", b"")).await
        }));
    }
    while p.calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_status(
        p.api.invoke_function(invoke("hello", "acct-1", b"")).await,
        Code::ResourceExhausted,
        "account acct-1 is at its concurrency limit of 2 calls; retry later or raise --account-concurrency",
    );
    // Another account is admitted: its call goes on to the scheduler (and waits there
    // like the others).
    let mut api = p.api.clone();
    held.push(tokio::spawn(async move {
        api.invoke_function(invoke("hello", "acct-2", b"")).await
    }));
    while p.calls().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in held {
        h.abort();
    }
    // Not stop(): it would wait for the calls the scheduler never answers.
    drop(p);
}

#[tokio::test]
async fn an_account_over_its_rate_limit_is_refused_and_others_are_not() {
    let mut p = start(Setup {
        config: Config {
            account_rate: 1,
            account_burst: 2,
            ..Config::default()
        },
        ..Setup::default()
    })
    .await;
    for _ in 0..2 {
        p.api
            .invoke_function(invoke("hello", "acct-1", b""))
            .await
            .unwrap();
    }
    assert_status(
        p.api.invoke_function(invoke("hello", "acct-1", b"")).await,
        Code::ResourceExhausted,
        "account acct-1 is over its rate limit of 1 calls/s (burst 2); retry in",
    );
    p.api
        .invoke_function(invoke("hello", "acct-2", b""))
        .await
        .unwrap();
    p.stop().await;
}
