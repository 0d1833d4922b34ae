//! The container service: runs inside each container and executes one function's built-in
//! handler, serving `faas.container.v1.ContainerService` (Invoke, Status, Bind) and
//! `grpc.health.v1`.
//!
//! - [`memory`]: the counting global allocator, per-request peaks, RSS and the memory-limit
//!   emulation.
//! - [`handlers`]: the built-in handlers (`hello`, `echo`, `sleep`, `cpu`, `memory`, `spin`),
//!   one module each, and the JSON event parsing they share.
//! - [`exec`]: runs one invocation: timeout, cancellation, duration and peak memory, load
//!   counters.
//! - [`binding`]: which function the container runs, fixed once (start-up flags or `Bind`).
//! - [`api`]: the gRPC edge.
//!
//! A container runs exactly one function. Which one is fixed by [`Config`] at start-up, or,
//! for a container started `--unbound` (the node service's warm pool), by its one `Bind`
//! call; the start-up flags are an immediate bind, so both take the same path.

pub mod api;
pub mod binding;
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
    /// Start bound to no function: answer Status, refuse Invoke until one `Bind` call names
    /// the function (how the node service's warm pool starts containers ahead of time).
    #[arg(
        long,
        env = "FAAS_UNBOUND",
        conflicts_with_all = ["function_name", "handler", "memory_bytes", "timeout_ms"]
    )]
    pub unbound: bool,
    /// The function this container runs (required unless `--unbound`).
    #[arg(long, env = "FAAS_FUNCTION_NAME", required_unless_present = "unbound")]
    pub function_name: Option<String>,
    /// The built-in handler that implements the function (hello, echo, sleep, cpu, memory,
    /// spin; required unless `--unbound`).
    #[arg(long, env = "FAAS_HANDLER", required_unless_present = "unbound")]
    pub handler: Option<String>,
    /// The container's memory limit in bytes (emulated: see `memory::budget`).
    #[arg(long, env = "FAAS_MEMORY_BYTES", default_value_t = 268_435_456)]
    pub memory_bytes: u64,
    /// The function's timeout in milliseconds, used when a request does not set one.
    #[arg(long, env = "FAAS_TIMEOUT_MS", default_value_t = binding::DEFAULT_TIMEOUT_MS)]
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
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] binding::SpecError),
    #[error(transparent)]
    Bind(#[from] faas_common::serve::ServeError),
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl Config {
    /// The function the flags name; `None` with `--unbound`.
    pub fn function(&self) -> Option<binding::FunctionConfig> {
        (!self.unbound).then(|| binding::FunctionConfig {
            function_name: self.function_name.clone().unwrap_or_default(),
            handler: self.handler.clone().unwrap_or_default(),
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// Checks the configuration and makes the container's binding: unbound with `--unbound`,
/// else bound right away to the flags' function (the same path a `Bind` call takes).
fn binding(config: &Config) -> Result<Arc<binding::Binding>, Error> {
    let function = config.function();
    let binding = binding::Binding::start(function.as_ref(), config.emulate_memory_limit)?;
    Ok(Arc::new(binding))
}

/// Serves the container service on `listener` until `shutdown` fires.
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let binding = binding(&config)?;
    serve(listener, binding, shutdown).await
}

async fn serve(
    listener: TcpListener,
    binding: Arc<binding::Binding>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<faas_proto::container::container_service_server::ContainerServiceServer<api::ContainerApi>>()
        .await;
    match binding.executor() {
        Some(exec) => tracing::info!(
            function = %exec.spec().function_name,
            handler = exec.spec().handler.as_str(),
            memory_bytes = exec.spec().memory_bytes,
            timeout_ms = exec.spec().timeout_ms,
            emulated_memory_limit = exec.emulates_memory_limit(),
            "container service ready"
        ),
        None => tracing::info!(
            emulated_memory_limit = binding.emulates_memory_limit(),
            "container service ready, unbound (waiting for Bind)"
        ),
    }
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(api::ContainerApi::new(binding).into_server())
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), shutdown.wait())
        .await?;
    Ok(())
}

/// What `main` does: check the configuration (an unknown handler is refused before
/// listening), bind, print the readiness line, serve until SIGINT/SIGTERM.
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    let binding = binding(&config)?;
    let listener = faas_common::serve::bind(&format!("{}:{}", config.host, config.port)).await?;
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let (trigger, shutdown) = faas_common::shutdown::channel();
    tokio::spawn(async move {
        faas_common::shutdown::os_signal().await;
        trigger.trigger();
    });
    faas_common::serve::announce(addr);
    serve(listener, binding, shutdown).await?;
    Ok(())
}
