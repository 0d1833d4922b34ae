//! The API server: the platform's front door.
//!
//! It serves the contest's `apiserverproto.APIServer` (`InvokeFunction`, `ListFunctions`), the
//! platform's `faas.admin.v1.Admin` (deploy, get, list and delete functions) and
//! `grpc.health.v1` on one port. An invocation acquires a container from the scheduler, runs
//! the function on the container's node and always gives the container back; a call whose
//! event provably never reached the function runs once more on another container.
//!
//! Layers: [`model`] (functions, invocations) → [`store`] (the in-memory function table, and
//! the SQLite DAO behind `--data-dir`) → [`core`] (pure rules: access, limits) → [`service`]
//! (registry rules, read from memory and written through to the database; the functions
//! file; the invocation chain behind [`service::ports`]) → [`api`] (tonic servers and
//! clients, metrics, the clock). [`error`] holds the errors and the one mapping to gRPC
//! statuses.
//!
//! With `--data-dir DIR`, deployed functions are kept in `DIR/apiserver.db` (SQLite): the
//! first start stores the start-up functions there, every later start serves exactly what
//! the database holds, and an acknowledged deploy or delete is on disk before it is answered.
//!
//! A function is a built-in handler, or the user's own code: a `command` with its `code`, or
//! an `image` (`model::kind`). Such code is kept as a *bundle*, an immutable directory
//! `DIR/bundles/<sha256>/` (`function.json` and `code/`) written atomically before the
//! database row that names it (`store::bundles`), and read by the nodes. On the wire its
//! handler is `bundle:<sha256>`, so the contest's scheduler passes it through unchanged.
//! Without a data directory such functions are refused: there is nowhere to keep the code.
//!
//! Besides gRPC, an HTTP gateway on `--http-port` (default 10800) serves the OpenFaaS
//! gateway's conventions (`POST /function/NAME`, `POST /async-function/NAME`,
//! `GET /invocations/ID`, `/functions`, `/metrics`, `/healthz`; `docs/GATEWAY.md`), and
//! asynchronous invocations (`faas.invoke.v1.Invocations`) are kept in memory for
//! `--async-retention-ms`. Every door goes through the same invoke path (`api::front`).
//! Topics and chains (`faas.events.v1`, `POST /topics/TOPIC`; `api::events`,
//! `service::events`) deliver events through that same queue.

pub mod api;
pub mod config;
pub mod core;
pub mod error;
pub mod model;
pub mod service;
pub mod store;

use faas_common::shutdown::Shutdown;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::Error;
pub use model::{Function, FunctionSpec, Handler};
pub use service::{RegistryError, parse_functions_toml, validate_spec};
pub use store::StoreError;
pub use store::sqlite::{DATABASE_FILE, database_files, remove_database};

/// Checks, without loading it, that the database in `data_dir` can be used: no other API
/// server uses the directory, and the file is new or a mini-faas database of a schema this
/// binary knows, undamaged. What `faas up` checks before it starts anything. Creates the
/// directory and an empty database if there is none; blocks on the file.
pub fn check_data_dir(data_dir: &std::path::Path) -> Result<(), StoreError> {
    store::SqliteDao::open(data_dir).map(drop)
}

/// Serves the API server's gRPC port on `listener` until `shutdown` fires (no HTTP gateway:
/// [`serve_with`] serves one on a listener of the caller's).
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    api::server::App::new(config)
        .await?
        .serve(listener, shutdown)
        .await
}

/// Serves the gRPC port on `listener` and, when given, the HTTP gateway on `http` (a test
/// binds 127.0.0.1:0), until `shutdown` fires.
pub async fn serve_with(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: Config,
    shutdown: Shutdown,
) -> Result<(), Error> {
    api::server::App::new(config)
        .await?
        .serve_with(listener, http, shutdown)
        .await
}

/// What `apiserver` (and `faas apiserver`) does: load the functions, bind host:port (and the
/// HTTP gateway's `--http-port`), announce
/// the address, serve until SIGINT/SIGTERM, stop cleanly.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr();
    let scheduler = config.scheduler.clone();
    if config.http_port != 0
        && let Err(why) = config.http_allowed()
    {
        tracing::warn!("the http gateway stays off: {why}");
    }
    let http_addr = config.http_addr();
    let app = api::server::App::new(config).await?;
    let listener = faas_common::serve::bind(&addr).await?;
    // Bound before the readiness line: a client that read it can use both ports.
    let http = match http_addr {
        Some(addr) => Some(faas_common::serve::bind(&addr).await?),
        None => None,
    };
    let local = listener.local_addr()?;
    faas_common::serve::announce(local);
    tracing::info!(addr = %local, scheduler = %scheduler, "apiserver listening");
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    app.serve_with(listener, http, shutdown).await?;
    Ok(())
}
