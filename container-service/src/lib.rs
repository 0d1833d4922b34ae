//! The container service: runs inside each container and executes one function, a built-in
//! handler or the user's own command (a *command function*, `--bundle`), serving
//! `faas.container.v1.ContainerService` (Invoke, Status, Bind, Logs) and `grpc.health.v1`.
//!
//! - [`memory`]: the counting global allocator, per-request peaks, RSS and the memory-limit
//!   emulation.
//! - [`handlers`]: the built-in handlers (`hello`, `echo`, `sleep`, `cpu`, `memory`, `spin`),
//!   one module each, and the JSON event parsing they share.
//! - [`exec`]: runs one invocation: timeout, cancellation, duration and peak memory, load
//!   counters.
//! - [`binding`]: which function the container runs, fixed once (start-up flags or `Bind`).
//! - [`watchdog`]: a command function: its bundle, its processes (`http` server or one
//!   `exec` process per call), their memory, their output.
//! - [`api`]: the gRPC edge.
//!
//! A container runs exactly one function. Which one is fixed by [`Config`] at start-up, or,
//! for a container started `--unbound` (the node service's warm pool), by its one `Bind`
//! call; the start-up flags are an immediate bind, so both take the same path.
//!
//! With `--bundle`, the container service announces itself (the readiness line, health
//! SERVING) only once the function is ready, exits non-zero with a one-line reason when the
//! function cannot start, and stops (exit non-zero) when the function's long-lived process
//! dies: to the node, a container whose function died is a container that died.

pub mod api;
pub mod binding;
pub mod exec;
pub mod handlers;
pub mod memory;
pub mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
        conflicts_with_all = ["function_name", "handler", "bundle", "memory_bytes", "timeout_ms"]
    )]
    pub unbound: bool,
    /// The function this container runs (required unless `--unbound`).
    /// Any value, even one starting with `-` (names may): never an option of its own.
    #[arg(
        long,
        env = "FAAS_FUNCTION_NAME",
        required_unless_present = "unbound",
        allow_hyphen_values = true
    )]
    pub function_name: Option<String>,
    /// The built-in handler that implements the function (hello, echo, sleep, cpu, memory,
    /// spin; required unless `--unbound` or `--bundle`).
    /// Any value, even one starting with `-`: never an option of its own.
    #[arg(
        long,
        env = "FAAS_HANDLER",
        required_unless_present_any = ["unbound", "bundle"],
        allow_hyphen_values = true
    )]
    pub handler: Option<String>,
    /// A command function instead of a built-in handler: the bundle directory holding
    /// `function.json` and the user's files (see `watchdog::bundle`).
    #[arg(long, env = "FAAS_BUNDLE", conflicts_with = "handler")]
    pub bundle: Option<PathBuf>,
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
    /// Port of the Prometheus `/metrics` endpoint, on `--host` (0 or unset = off; see
    /// `api::metrics`).
    #[arg(long, env = "CONTAINER_SERVICE_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Log lines: `--log-format text|json` (see `faas_common::logging`).
    #[command(flatten)]
    pub log: faas_common::logging::LogArgs,
}

/// Errors of starting or serving the container service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] binding::SpecError),
    /// Not a `#[source]`: the message already says it all, in one line (a source would be
    /// printed again under "Caused by").
    #[error("cannot start the function: {0}")]
    Start(watchdog::StartError),
    #[error("the function died: {0}")]
    FunctionDied(String),
    #[error(transparent)]
    Bind(#[from] faas_common::serve::ServeError),
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl From<watchdog::StartError> for Error {
    fn from(e: watchdog::StartError) -> Error {
        Error::Start(e)
    }
}

impl Config {
    /// The function the flags name; `None` with `--unbound` (with `--bundle`, its handler
    /// is empty).
    pub fn function(&self) -> Option<binding::FunctionConfig> {
        (!self.unbound).then(|| binding::FunctionConfig {
            function_name: self.function_name.clone().unwrap_or_default(),
            handler: self.handler.clone().unwrap_or_default(),
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// How long a stopping container lets calls in flight finish before it kills a command
/// function's processes (the node kills a container 2 s after asking it to stop).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Checks the configuration and makes the container's binding: unbound with `--unbound`,
/// else bound right away to the flags' function (the same path a `Bind` call takes). With
/// `--bundle`, starts the function and returns once it is ready; dropping the future kills
/// what it started.
async fn binding(config: &Config) -> Result<Arc<binding::Binding>, Error> {
    let function = config.function();
    let (Some(dir), Some(function)) = (&config.bundle, &function) else {
        let binding = binding::Binding::start(function.as_ref(), config.emulate_memory_limit)?;
        return Ok(Arc::new(binding));
    };
    // The name and sizes are refused before any process starts.
    function.check_limits()?;
    let limits = watchdog::Limits {
        memory_bytes: function.memory_bytes,
        enforce_memory: config.emulate_memory_limit,
    };
    let watchdog = watchdog::Watchdog::start(dir, limits).await?;
    let spec = exec::FunctionSpec {
        function_name: function.function_name.clone(),
        kind: exec::FunctionKind::Command(Arc::new(watchdog)),
        memory_bytes: function.memory_bytes,
        timeout_ms: function.timeout_ms,
    };
    let exec = exec::Executor::with_emulation(spec, config.emulate_memory_limit);
    Ok(Arc::new(binding::Binding::bound(exec)))
}

/// Serves the container service on `listener` until `shutdown` fires (or, for a command
/// function, until its process dies: then the result is [`Error::FunctionDied`]).
pub async fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let metrics = listen_metrics(&config).await?;
    let binding = tokio::select! {
        binding = binding(&config) => binding?,
        // Stopped while the function was starting: dropping the start killed it.
        () = shutdown.clone().wait() => return Ok(()),
    };
    serve(listener, metrics, binding, shutdown).await
}

/// The metrics listener, when `--metrics-port` asks for one.
async fn listen_metrics(config: &Config) -> Result<Option<TcpListener>, Error> {
    match config.metrics_port.filter(|p| *p != 0) {
        Some(port) => Ok(Some(
            faas_common::serve::bind(&format!("{}:{port}", config.host)).await?,
        )),
        None => Ok(None),
    }
}

async fn serve(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    binding: Arc<binding::Binding>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    if let Some(metrics) = metrics {
        tracing::info!(addr = ?metrics.local_addr().ok(), "metrics endpoint");
        let registry = Arc::new(api::metrics::registry(binding.clone()));
        tokio::spawn(faas_common::metrics::serve(
            metrics,
            registry,
            shutdown.clone(),
        ));
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<faas_proto::container::container_service_server::ContainerServiceServer<api::ContainerApi>>()
        .await;
    let watchdog = binding
        .executor()
        .and_then(|exec| exec.spec().watchdog().cloned());
    match binding.executor() {
        Some(exec) => tracing::info!(
            function = %exec.spec().function_name,
            runs = %exec.spec().describe(),
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
    // The server stops when asked to, or when the function's process died.
    let died = std::sync::OnceLock::new();
    let stop = async {
        match &watchdog {
            None => shutdown.clone().wait().await,
            Some(w) => tokio::select! {
                () = shutdown.clone().wait() => {}
                reason = w.died() => {
                    tracing::error!("the function died, the container stops: {reason}");
                    let _ = died.set(reason);
                }
            },
        }
    };
    let server = tonic::transport::Server::builder()
        .add_routes(faas_proto::reflection::routes(&[
            faas_proto::container::container_service_server::SERVICE_NAME,
        ]))
        .add_service(health_service)
        .add_service(api::ContainerApi::new(binding).into_server())
        .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), stop);
    tokio::pin!(server);
    // Calls in flight get a grace period, then the function's processes are killed (their
    // calls end at once), so the server's graceful stop never waits for a long call.
    let kill_after_grace = async {
        shutdown.clone().wait().await;
        tokio::time::sleep(STOP_GRACE).await;
        if let Some(w) = &watchdog {
            w.stop();
        }
    };
    let served = tokio::select! {
        served = &mut server => served,
        () = kill_after_grace => server.await,
    };
    if let Some(w) = &watchdog {
        w.stop();
    }
    served?;
    match died.get().cloned() {
        Some(reason) => Err(Error::FunctionDied(reason)),
        None => Ok(()),
    }
}

/// What `main` does: check the configuration (an unknown handler is refused before
/// listening), start a command function and wait until it is ready, bind, print the
/// readiness line, serve until SIGINT/SIGTERM (or until a command function's process dies:
/// then it fails, and the binary exits non-zero).
pub async fn main_with(config: Config) -> anyhow::Result<()> {
    let (trigger, shutdown) = faas_common::shutdown::channel();
    let mut signal = Box::pin(faas_common::shutdown::os_signal());
    // Polled once here, so the handlers are installed before a function process starts (a
    // SIGTERM during the start then stops it cleanly).
    let _ = futures::poll!(signal.as_mut());
    tokio::spawn(async move {
        signal.await;
        trigger.trigger();
    });
    let metrics = listen_metrics(&config).await?;
    let binding = tokio::select! {
        binding = binding(&config) => binding?,
        // Stopped while the function was starting: dropping the start killed it.
        () = shutdown.clone().wait() => return Ok(()),
    };
    let listener = faas_common::serve::bind(&format!("{}:{}", config.host, config.port)).await?;
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    faas_common::serve::announce(addr);
    serve(listener, metrics, binding, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: super::Config,
    }

    #[test]
    fn a_name_or_handler_that_looks_like_an_option_is_a_value() {
        let args = ["cs", "--function-name", "--help", "--handler", "--version"];
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.config.function_name.as_deref(), Some("--help"));
        assert_eq!(cli.config.handler.as_deref(), Some("--version"));
    }
}
