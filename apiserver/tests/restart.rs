//! What users deploy outlives the API server: real servers on 127.0.0.1:0 over a real SQLite
//! database in a temporary data directory, stopped cleanly, refused a file they must not use,
//! and killed with SIGKILL as a child process.

use std::path::Path;

use faas_apiserver::Config;
use faas_common::launch::Child;
use faas_common::shutdown::{self, Trigger};
use faas_proto::admin::{self, admin_client::AdminClient};
use faas_proto::apiserverproto::{self, api_server_client::ApiServerClient};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

#[path = "support/process.rs"]
mod process;

/// No scheduler answers here: these tests only deploy, list and delete (a delete's notice to
/// the scheduler fails in the background, as the API server allows).
const NO_SCHEDULER: &str = "127.0.0.1:1";

/// An API server running in this process.
struct Server {
    addr: String,
    trigger: Trigger,
    task: JoinHandle<Result<(), faas_apiserver::Error>>,
}

impl Server {
    fn start(listener: TcpListener, config: Config) -> Server {
        let addr = listener.local_addr().unwrap().to_string();
        let (trigger, shutdown) = shutdown::channel();
        let config = Config {
            port: 0,
            scheduler: NO_SCHEDULER.into(),
            ..config
        };
        let task = tokio::spawn(faas_apiserver::run(listener, config, shutdown));
        Server {
            addr,
            trigger,
            task,
        }
    }

    async fn on(data_dir: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::start(listener, with_data_dir(data_dir))
    }

    /// What clients see of it; a server that stopped instead says why.
    async fn seen(&mut self) -> Seen {
        tokio::select! {
            ended = &mut self.task => panic!("the API server stopped: {ended:?}"),
            seen = seen(&self.addr) => seen,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

fn with_data_dir(data_dir: &Path) -> Config {
    Config {
        data_dir: Some(data_dir.to_path_buf()),
        // Keys are tested in auth.rs; these calls go without one.
        allow_anonymous: true,
        ..Config::default()
    }
}

async fn admin(addr: &str) -> AdminClient<Channel> {
    AdminClient::new(faas_common::serve::connect(addr).await.unwrap())
        .max_decoding_message_size(64 << 20)
}

fn spec(name: &str, handler: &str, memory_mib: i64, description: &str) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: name.into(),
        handler: handler.into(),
        memory_in_bytes: memory_mib << 20,
        timeout_in_ms: 1_000 + memory_mib,
        description: description.into(),
        ..Default::default()
    }
}

async fn deploy(
    admin: &mut AdminClient<Channel>,
    spec: admin::FunctionSpec,
) -> admin::FunctionRecord {
    admin
        .deploy_function(admin::DeployFunctionRequest {
            function: Some(spec),
        })
        .await
        .unwrap()
        .into_inner()
        .function
        .unwrap()
}

async fn delete(admin: &mut AdminClient<Channel>, name: &str) {
    admin
        .delete_function(admin::DeleteFunctionRequest { name: name.into() })
        .await
        .unwrap();
}

/// Everything a client can see of the functions: the admin list, the contest's list, and
/// each function on its own.
#[derive(Debug, PartialEq)]
struct Seen {
    records: Vec<admin::FunctionRecord>,
    contest: Vec<apiserverproto::FunctionConfig>,
    each: Vec<admin::FunctionRecord>,
}

async fn seen(addr: &str) -> Seen {
    let mut admin = admin(addr).await;
    let records = admin
        .list_functions(admin::ListFunctionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .functions;
    let mut each = Vec::new();
    for r in &records {
        let name = r.spec.as_ref().unwrap().name.clone();
        let got = admin
            .get_function(admin::GetFunctionRequest { name })
            .await
            .unwrap()
            .into_inner()
            .function
            .unwrap();
        each.push(got);
    }
    let contest = ApiServerClient::new(faas_common::serve::connect(addr).await.unwrap())
        .list_functions(apiserverproto::ListFunctionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .functions;
    Seen {
        records,
        contest,
        each,
    }
}

fn names(seen: &Seen) -> Vec<String> {
    seen.records
        .iter()
        .map(|r| r.spec.as_ref().unwrap().name.clone())
        .collect()
}

async fn is_gone(admin: &mut AdminClient<Channel>, name: &str) -> bool {
    let status = admin
        .get_function(admin::GetFunctionRequest { name: name.into() })
        .await
        .unwrap_err();
    status.code() == Code::NotFound
}

#[tokio::test]
async fn a_restarted_server_serves_exactly_the_functions_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Server::on(dir.path()).await;
    let defaults = first.seen().await;
    assert_eq!(
        names(&defaults),
        ["cpu", "echo", "hello", "memory", "sleep", "spin"],
        "a new database is seeded with the built-in set"
    );

    let mut a = admin(&first.addr).await;
    deploy(&mut a, spec("alpha", "echo", 64, "")).await;
    deploy(
        &mut a,
        spec(
            "beta",
            "memory",
            faas_common::units::CONTEST_NODE_MIB as i64,
            "ünïcödé \"quoted\" 'text'; DROP TABLE functions;",
        ),
    )
    .await;
    let hello = deploy(&mut a, spec("hello", "sleep", 256, "replaced")).await;
    assert_eq!(hello.revision, 2);
    deploy(&mut a, spec("alpha", "cpu", 512, "second")).await;
    deploy(&mut a, spec("gamma", "spin", 128, "")).await;
    delete(&mut a, "gamma").await;
    delete(&mut a, "sleep").await;
    let before = first.seen().await;
    assert_eq!(
        names(&before),
        ["alpha", "beta", "cpu", "echo", "hello", "memory", "spin"]
    );
    first.stop().await;

    // A functions file given to a later start is not applied: the database is the truth.
    let file = dir.path().join("functions.toml");
    std::fs::write(
        &file,
        "[[function]]\nname = \"only-in-file\"\nhandler = \"hello\"\nmemory_mb = 128\ntimeout_ms = 5\n",
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut second = Server::start(
        listener,
        Config {
            functions: Some(file),
            ..with_data_dir(dir.path())
        },
    );
    assert_eq!(second.seen().await, before);
    let mut a = admin(&second.addr).await;
    for name in ["gamma", "sleep", "only-in-file"] {
        assert!(is_gone(&mut a, name).await, "{name} is back");
    }
    // Revisions go on from where they were; the creation time stays.
    let alpha_before = before.records[0].clone();
    let alpha = deploy(&mut a, spec("alpha", "echo", 64, "third")).await;
    assert_eq!(alpha.revision, 3);
    assert_eq!(alpha.created_at_ms, alpha_before.created_at_ms);
    second.stop().await;
}

/// Why a server on `data_dir` does not start.
async fn refused_start(data_dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    faas_apiserver::run(
        listener,
        with_data_dir(data_dir),
        shutdown::Shutdown::never(),
    )
    .await
    .unwrap_err()
    .to_string()
}

#[tokio::test]
async fn a_database_the_server_must_not_use_is_refused_at_start_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(faas_apiserver::DATABASE_FILE);
    let garbage = "not a database, but somebody's notes\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    assert_eq!(
        refused_start(dir.path()).await,
        format!(
            "{} is not a mini-faas database (file is not a database); move it away or start with --fresh",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);

    // A second server on a data directory in use is refused; the first runs on.
    let other = tempfile::tempdir().unwrap();
    let mut running = Server::on(other.path()).await;
    running.seen().await;
    assert_eq!(
        refused_start(other.path()).await,
        format!(
            "another API server (pid {}) uses the data directory {}: stop it, or give this one another --data-dir",
            std::process::id(),
            other.path().display()
        )
    );
    // What `faas up` checks before it starts anything says the same.
    let err = faas_apiserver::check_data_dir(other.path()).unwrap_err();
    assert!(
        matches!(err, faas_apiserver::StoreError::InUse { .. }),
        "{err}"
    );
    let mut a = admin(&running.addr).await;
    deploy(&mut a, spec("still-fine", "echo", 64, "")).await;
    running.stop().await;
}

/// The `apiserver` binary on `data_dir`, and the address it announced.
async fn spawn_apiserver(data_dir: &Path) -> (Child, String) {
    process::spawn_apiserver(data_dir, NO_SCHEDULER, &[]).await
}

#[tokio::test]
async fn kill_9_right_after_an_acknowledged_write_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_apiserver(dir.path()).await;
    let mut a = admin(&addr).await;
    for i in 0..20 {
        deploy(&mut a, spec(&format!("f{i:02}"), "echo", 64 + i, "")).await;
    }
    for i in (0..20).step_by(3) {
        deploy(&mut a, spec(&format!("f{i:02}"), "hello", 128, "again")).await;
    }
    delete(&mut a, "echo").await;
    let mut want = seen(&addr).await;
    // The last writes, each answered, then SIGKILL at once: no clean stop, no checkpoint.
    let last = deploy(&mut a, spec("last", "spin", 200, "the last one")).await;
    delete(&mut a, "f05").await;
    child.kill().await;

    let place = want
        .records
        .iter()
        .position(|r| r.spec.as_ref().unwrap().name.as_str() > "last")
        .unwrap();
    want.records.insert(place, last);
    want.records
        .retain(|r| r.spec.as_ref().unwrap().name != "f05");
    let (mut child, addr) = spawn_apiserver(dir.path()).await;
    let got = seen(&addr).await;
    assert_eq!(got.records, want.records);
    assert_eq!(got.each, want.records);
    assert_eq!(got.contest.len(), want.records.len());
    let mut a = admin(&addr).await;
    assert!(is_gone(&mut a, "f05").await);
    assert!(is_gone(&mut a, "echo").await);
    child.kill().await;
}
