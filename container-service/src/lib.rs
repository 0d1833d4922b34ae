//! The container service: runs inside each container and executes one function's built-in
//! handler, serving `faas.container.v1.ContainerService` (Invoke, Status) and `grpc.health.v1`.
//!
//! - [`memory`]: the counting global allocator, per-request peaks, RSS and the memory-limit
//!   emulation.
//! - [`handlers`]: the built-in handlers (`hello`, `echo`, `sleep`, `cpu`, `memory`, `spin`),
//!   one module each, and the JSON event parsing they share.
//! - [`exec`]: runs one invocation: timeout, cancellation, duration and peak memory, load
//!   counters.
//! - [`api`]: the gRPC edge.
//!
//! A container runs exactly one function; which one is fixed by [`Config`] at start-up.

pub mod api;
pub mod exec;
pub mod handlers;
pub mod memory;

use std::sync::Arc;

use faas_common::shutdown::Shutdown;
use tokio::net::TcpListener;

/// The counting allocator is what makes `max_memory_usage_in_bytes` a measurement: it is
/// installed by this library so that every binary running a container (`container-service`
/// and the multi-call `faas container-service`) measures the same way.
#[global_allocator]
static ALLOCATOR: memory::alloc::CountingAlloc = memory::alloc::CountingAlloc;

/// Configuration of one container: where to listen and which function it runs.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the readiness line tells which).
    #[arg(long, env = "CONTAINER_SERVICE_PORT", default_value_t = 0)]
    pub port: u16,
    /// The function this container runs.
    #[arg(long, env = "FAAS_FUNCTION_NAME")]
    pub function_name: String,
    /// The built-in handler that implements the function (hello, echo, sleep, cpu, memory, spin).
    #[arg(long, env = "FAAS_HANDLER")]
    pub handler: String,
    /// The container's memory limit in bytes (emulated: see `memory::budget`).
    #[arg(long, env = "FAAS_MEMORY_BYTES", default_value_t = 268_435_456)]
    pub memory_bytes: u64,
    /// The function's timeout in milliseconds, used when a request does not set one.
    #[arg(long, env = "FAAS_TIMEOUT_MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// Whether to emulate the memory limit (refuse allocations past it with `OutOfMemory`).
    /// Turn it off in a real container (`--emulate-memory-limit false`): the cgroup limit and
    /// the kernel's OOM killer act instead.
    #[arg(
        long,
        env = "FAAS_EMULATE_MEMORY_LIMIT",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub emulate_memory_limit: bool,
}

/// Errors of starting or serving the container service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown handler {name:?}: this container service knows {known}")]
    UnknownHandler { name: String, known: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Bind(#[from] faas_common::serve::ServeError),
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Checks the configuration and builds the executor for it.
fn executor(config: &Config) -> Result<Arc<exec::Executor>, Error> {
    let kind: handlers::HandlerKind =
        config.handler.parse().map_err(|_| Error::UnknownHandler {
            name: config.handler.clone(),
            known: handlers::HandlerKind::NAMES.join(", "),
        })?;
    if config.function_name.trim().is_empty() {
        return Err(Error::InvalidConfig(
            "--function-name must not be empty".into(),
        ));
    }
    if config.memory_bytes == 0 {
        return Err(Error::InvalidConfig("--memory-bytes must be > 0".into()));
    }
    if config.timeout_ms == 0 {
        return Err(Error::InvalidConfig("--timeout-ms must be > 0".into()));
    }
    let spec = exec::FunctionSpec {
        function_name: config.function_name.clone(),
        handler: kind,
        memory_bytes: config.memory_bytes,
        timeout_ms: config.timeout_ms,
    };
    Ok(Arc::new(exec::Executor::with_emulation(
        spec,
        config.emulate_memory_limit,
    )))
}

/// Serves the container service on `listener` until `shutdown` fires.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let exec = executor(&config)?;
    serve(listener, exec, shutdown).await
}

async fn serve(
    listener: TcpListener,
    exec: Arc<exec::Executor>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<faas_proto::container::container_service_server::ContainerServiceServer<api::ContainerApi>>()
        .await;
    tracing::info!(
        function = %exec.spec().function_name,
        handler = exec.spec().handler.as_str(),
        memory_bytes = exec.spec().memory_bytes,
        timeout_ms = exec.spec().timeout_ms,
        emulated_memory_limit = exec.emulates_memory_limit(),
        "container service ready"
    );
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(api::ContainerApi::new(exec).into_server())
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait())
        .await?;
    Ok(())
}

/// What `main` does: check the configuration (an unknown handler is refused before
/// listening), bind, print the readiness line, serve until SIGINT/SIGTERM.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    let exec = executor(&config)?;
    let listener = faas_common::serve::bind(&format!("{}:{}", config.host, config.port)).await?;
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        trigger.trigger();
    });
    faas_common::serve::announce(addr);
    serve(listener, exec, shutdown).await?;
    Ok(())
}
