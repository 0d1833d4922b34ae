//! The API server's configuration: flags, each also read from an environment variable.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::Error;
use crate::core::retry::{
    DEFAULT_ATTEMPTS, DEFAULT_FIRST_DELAY_MS, DEFAULT_MAX_DELAY_MS, RetryPolicy,
};
use crate::model::FunctionSpec;
use crate::model::keys::{KeyLine, Scope, key_problem};
use crate::service::async_calls::{
    AsyncLimits, DEFAULT_MAX_BYTES, DEFAULT_MAX_KEPT, DEFAULT_RETENTION_MS,
};
use crate::service::file::parse_startup_toml;
use crate::service::file::{DEFAULT_FUNCTIONS_ORIGIN, DEFAULT_FUNCTIONS_TOML};
use crate::service::invoke::DEFAULT_NODE_GRACE;
use crate::service::limits::{Limits, Rule, parse_limits_toml};
use crate::service::parse_functions_toml;
use crate::store::code_dir::load_setup_code;
use crate::store::keys;

/// The contest's API server port.
pub const DEFAULT_PORT: u16 = 10500;
/// The HTTP gateway's port by default.
pub const DEFAULT_HTTP_PORT: u16 = 10800;
/// Default of `--async-concurrency`.
pub const DEFAULT_ASYNC_CONCURRENCY: usize = 64;
/// Default of `--async-function-concurrency`.
pub const DEFAULT_ASYNC_FUNCTION_CONCURRENCY: usize = 16;
/// Where the scheduler listens by default (the contest's port).
pub const DEFAULT_SCHEDULER: &str = "127.0.0.1:10600";
/// The largest event by default: 6 MiB, like the contest's platform.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;
/// The deadline of each call to the scheduler by default (ms; the contest's clients used
/// about 30 s).
pub const DEFAULT_SCHEDULER_TIMEOUT_MS: u64 = 30_000;
/// How long a node call may take beyond the function's timeout, by default (ms).
pub const DEFAULT_NODE_CALL_GRACE_MS: u64 = DEFAULT_NODE_GRACE.as_millis() as u64;

/// How to run the API server.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FAAS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "APISERVER_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The scheduler's host:port.
    #[arg(long, env = "SCHEDULER_ENDPOINT", default_value = DEFAULT_SCHEDULER)]
    pub scheduler: String,
    /// A functions file (TOML, `[[function]]` entries) to load at start instead of the
    /// built-in set (deploy/functions.toml). With --data-dir, only a new database is seeded
    /// from it; an existing one is the source of truth.
    #[arg(long, env = "FAAS_FUNCTIONS")]
    pub functions: Option<PathBuf>,
    /// Keep deployed functions in a SQLite database in this directory (DATA_DIR/apiserver.db),
    /// so a restarted API server serves exactly the functions it had. Unset: memory only.
    #[arg(long, env = "FAAS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The largest event accepted by InvokeFunction, in bytes.
    #[arg(long, env = "FAAS_MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// The longest wait for the scheduler, ms: an acquire that gets no container by then
    /// (or by the caller's own deadline, if sooner) fails with DEADLINE_EXCEEDED.
    #[arg(long, env = "SCHEDULER_TIMEOUT_MS", default_value_t = DEFAULT_SCHEDULER_TIMEOUT_MS)]
    pub scheduler_timeout_ms: u64,
    /// How long a call to a node may take beyond the function's timeout, ms, before it fails
    /// (a node that stopped answering) and its container goes back as `NodeUnavailable`.
    #[arg(long, env = "FAAS_NODE_CALL_GRACE_MS", default_value_t = DEFAULT_NODE_CALL_GRACE_MS)]
    pub node_call_grace_ms: u64,
    /// Port of the Prometheus endpoint (/metrics); unset or 0 turns it off.
    #[arg(long, env = "APISERVER_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// How long a version an alias moved away from keeps its idle containers warm, ms (the
    /// scheduler is asked to hold them), so a rollback within it has no cold start.
    #[arg(long, env = "FAAS_VERSION_GRACE_MS", default_value_t = DEFAULT_VERSION_GRACE_MS)]
    pub version_grace_ms: u64,
    /// A keys file: one key a line, `scope name key` (scope `invoke` or `admin`), mode 0600.
    /// Neither this nor --api-key given: DATA_DIR/keys with --data-dir (made with one admin
    /// key on the first start), else no keys.
    #[arg(long, env = "FAAS_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
    /// One admin key this server accepts (besides --keys-file); 16 to 256 printable ASCII
    /// characters.
    #[arg(long, env = "FAAS_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// The contest mode: calls without a key may invoke and list functions (admin calls
    /// still need an admin key).
    #[arg(long, env = "FAAS_ALLOW_ANONYMOUS_INVOKE")]
    pub allow_anonymous_invoke: bool,
    /// Calls without a key may do everything, admin included (a key presented is still
    /// checked). Without keys, a server on a loopback address is open anyway; on any other
    /// address it refuses to start unless given this.
    #[arg(long, env = "FAAS_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Calls in flight at once per account (InvokeFunction's account_id); 0: unlimited.
    #[arg(long, env = "FAAS_ACCOUNT_CONCURRENCY", default_value_t = DEFAULT_ACCOUNT_CONCURRENCY)]
    pub account_concurrency: u32,
    /// New calls a second per account (a token bucket); 0: unlimited.
    #[arg(long, env = "FAAS_ACCOUNT_RATE", default_value_t = DEFAULT_ACCOUNT_RATE)]
    pub account_rate: u32,
    /// Calls an account may start at once after a quiet spell; 0: --account-rate.
    #[arg(long, env = "FAAS_ACCOUNT_BURST", default_value_t = 0)]
    pub account_burst: u32,
    /// Limits of particular accounts (TOML: `[accounts.NAME]` with `concurrency`, `rate`,
    /// `burst`; a field left out is unlimited), instead of the defaults above.
    #[arg(long, env = "FAAS_ACCOUNT_LIMITS")]
    pub account_limits: Option<PathBuf>,
    /// Serve TLS with this certificate (PEM; the chain, leaf first). Needs --tls-key.
    #[arg(long, env = "FAAS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). Needs --tls-cert.
    #[arg(long, env = "FAAS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Port of the HTTP gateway (`/function/NAME`, `/async-function/NAME`, ...; see
    /// docs/GATEWAY.md), on --host; 0 turns it off. It speaks plain HTTP: with --tls-cert it
    /// stays off unless --http-allow-plaintext.
    #[arg(long, env = "APISERVER_HTTP_PORT", default_value_t = DEFAULT_HTTP_PORT)]
    pub http_port: u16,
    /// Serve the HTTP gateway in plain HTTP even though the gRPC port speaks TLS (behind a
    /// proxy that terminates TLS, or on a trusted network).
    #[arg(long, env = "FAAS_HTTP_ALLOW_PLAINTEXT")]
    pub http_allow_plaintext: bool,
    /// How long a finished asynchronous invocation's result is kept, ms; then it reads as
    /// not found.
    #[arg(long, env = "FAAS_ASYNC_RETENTION_MS", default_value_t = DEFAULT_RETENTION_MS)]
    pub async_retention_ms: u64,
    /// The most asynchronous invocations kept at once, finished or not; a submit when all
    /// of them are queued or running is refused (RESOURCE_EXHAUSTED, HTTP 429).
    #[arg(long, env = "FAAS_ASYNC_MAX_KEPT", default_value_t = DEFAULT_MAX_KEPT)]
    pub async_max_kept: usize,
    /// The most bytes asynchronous invocations keep in all: the events of those not finished
    /// yet and the results of finished ones.
    #[arg(long, env = "FAAS_ASYNC_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub async_max_bytes: u64,
    /// Asynchronous invocations run at once; the others wait, queued.
    #[arg(long, env = "FAAS_ASYNC_CONCURRENCY", default_value_t = DEFAULT_ASYNC_CONCURRENCY)]
    pub async_concurrency: usize,
    /// Asynchronous invocations of one function run at once; its others wait, queued.
    #[arg(long, env = "FAAS_ASYNC_FUNCTION_CONCURRENCY", default_value_t = DEFAULT_ASYNC_FUNCTION_CONCURRENCY)]
    pub async_function_concurrency: usize,
    /// Attempts of an asynchronous invocation whose failure may pass (no capacity, a
    /// timeout, unavailable), the first included, for functions without their own
    /// (`faas retry NAME`); then it is dead-lettered.
    #[arg(long, env = "FAAS_ASYNC_ATTEMPTS", default_value_t = DEFAULT_ATTEMPTS)]
    pub async_attempts: u32,
    /// The bound of the first wait between attempts, ms (doubled each attempt, full jitter).
    #[arg(long, env = "FAAS_ASYNC_FIRST_DELAY_MS", default_value_t = DEFAULT_FIRST_DELAY_MS)]
    pub async_first_delay_ms: u64,
    /// The longest wait between attempts, ms.
    #[arg(long, env = "FAAS_ASYNC_MAX_DELAY_MS", default_value_t = DEFAULT_MAX_DELAY_MS)]
    pub async_max_delay_ms: u64,
    /// Where the asynchronous calls' durable queue lives: `sqlite`, the embedded database
    /// (DATA_DIR/apiserver.db, or memory without --data-dir), or `nats://HOST:PORT`, NATS
    /// JetStream (`nats-server -js`; see `store::jetstream` for what holds).
    #[arg(long, env = "FAAS_QUEUE", default_value = "sqlite", value_parser = parse_queue)]
    pub queue: QueueBackend,
    /// The cluster token sent on every call to the scheduler and the nodes (see
    /// `faas_common::token`).
    #[command(flatten)]
    pub cluster: faas_common::token::TokenArgs,
    /// Log lines: `--log-format text|json` (see `faas_common::logging`).
    #[command(flatten)]
    pub log: faas_common::logging::LogArgs,
}

/// Where the asynchronous calls are kept (`--queue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// The embedded database, the default.
    Sqlite,
    /// NATS JetStream at this `host:port`.
    Nats(String),
}

/// `--queue`: `sqlite` or `nats://HOST:PORT`.
pub fn parse_queue(text: &str) -> Result<QueueBackend, String> {
    const WANTED: &str =
        "expected `sqlite` (the embedded database) or `nats://HOST:PORT` (NATS JetStream)";
    if text == "sqlite" {
        return Ok(QueueBackend::Sqlite);
    }
    let Some(address) = text.strip_prefix("nats://") else {
        return Err(format!("{WANTED}, not `{text}`"));
    };
    let port = address
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && !host.contains('/') && !host.contains('@'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port != 0);
    match port {
        Some(_) => Ok(QueueBackend::Nats(address.to_string())),
        None => Err(format!(
            "{WANTED}: `{text}` has no HOST:PORT (a port from 1 to 65535; no user, no path)"
        )),
    }
}

/// Default of `--account-concurrency`: far above what one client of the contest's replay
/// keeps in flight (its driver allows 2000 outstanding in all, over many functions).
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1000;
/// Default of `--account-rate`, calls a second: far above the contest replay's rates.
pub const DEFAULT_ACCOUNT_RATE: u32 = 10_000;

/// A secret flag value: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The keys a server loaded, and where from.
#[derive(Debug)]
pub struct LoadedKeys {
    pub lines: Vec<KeyLine>,
    /// Where they came from, for the log.
    pub origin: String,
    /// The data directory's keys file, when it was made now.
    pub created: Option<PathBuf>,
}

/// Default of `--version-grace-ms`: 10 minutes.
pub const DEFAULT_VERSION_GRACE_MS: u64 = 600_000;

impl Default for Config {
    /// [`Config::local`].
    fn default() -> Self {
        Config::local()
    }
}

impl Config {
    /// The configuration of a local API server, what `apiserver` with no flags runs with:
    /// every flag at clap's own default, written once in the flags above, the environment not
    /// read (a test or `faas up` gets the same server whatever the shell exports).
    pub fn local() -> Config {
        use clap::{Args, FromArgMatches};
        let command =
            Config::augment_args(clap::Command::new("apiserver")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["apiserver"])
            .expect("every flag of the API server has a default");
        Config::from_arg_matches(&matches).expect("clap's defaults make a Config")
    }
}

impl Config {
    /// The functions to start with, and where they came from. A command function's code
    /// directory is read now (relative to the file), so its bundle can be written when the
    /// database is seeded.
    pub fn load_functions(&self) -> Result<(Vec<FunctionSpec>, String), Error> {
        match &self.functions {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|reason| Error::ReadFunctions {
                        path: path.clone(),
                        reason,
                    })?;
                let origin = path.display().to_string();
                let mut setup = parse_startup_toml(&text, &origin)?;
                let base = path.parent().unwrap_or(std::path::Path::new("."));
                for note in load_setup_code(&mut setup, &origin, base)? {
                    tracing::warn!("{note}");
                }
                let specs = setup.functions.into_iter().map(|f| f.spec).collect();
                Ok((specs, origin))
            }
            None => Ok((
                parse_functions_toml(DEFAULT_FUNCTIONS_TOML, DEFAULT_FUNCTIONS_ORIGIN)?,
                DEFAULT_FUNCTIONS_ORIGIN.to_string(),
            )),
        }
    }

    /// The keys this server accepts: those of --keys-file and --api-key; neither given,
    /// those of DATA_DIR/keys (made with one admin key when missing); else none.
    pub fn load_keys(&self) -> Result<LoadedKeys, Error> {
        let mut lines = Vec::new();
        let mut origins = Vec::new();
        let mut created = None;
        if let Some(path) = &self.keys_file {
            lines = keys::read_keys_file(path)?;
            origins.push(path.display().to_string());
        }
        if let Some(key) = &self.api_key {
            if let Some(reason) = key_problem(key.expose()) {
                return Err(Error::Startup(format!(
                    "--api-key (FAAS_API_KEY): {reason}"
                )));
            }
            lines.push(KeyLine {
                scope: Scope::Admin,
                name: "api-key".to_string(),
                key: key.expose().to_string(),
            });
            origins.push("--api-key".to_string());
        }
        if origins.is_empty()
            && let Some(dir) = &self.data_dir
        {
            let (found, made) = keys::ensure_keys_file(dir)?;
            lines = found;
            let path = keys::keys_path(dir);
            origins.push(path.display().to_string());
            created = made.then_some(path);
        }
        Ok(LoadedKeys {
            lines,
            origin: origins.join(" and "),
            created,
        })
    }

    /// The admin key a client on this machine uses with a server of this configuration
    /// (`faas up`'s): the first admin key of [`Config::load_keys`], if any.
    pub fn client_key(&self) -> Result<Option<String>, Error> {
        let loaded = self.load_keys()?;
        Ok(first_admin_key(&loaded.lines))
    }

    /// Every account's limits: the defaults of the flags, and the accounts of
    /// --account-limits.
    pub fn load_limits(&self) -> Result<Limits, Error> {
        let own = match &self.account_limits {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Startup(format!(
                        "cannot read --account-limits {}: {e}",
                        path.display()
                    ))
                })?;
                parse_limits_toml(&text, &path.display().to_string()).map_err(Error::Startup)?
            }
            None => HashMap::new(),
        };
        let default = Rule {
            concurrency: self.account_concurrency,
            rate: self.account_rate,
            burst: self.account_burst,
        };
        Ok(Limits::new(default, own))
    }

    /// `host:port` to listen on.
    pub fn listen_addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// `host:port` of the HTTP gateway, when it is on: `--http-port` not 0, and not plain
    /// HTTP beside a TLS port unless `--http-allow-plaintext`.
    pub fn http_addr(&self) -> Option<String> {
        (self.http_port != 0 && self.http_allowed().is_ok())
            .then(|| host_port(&self.host, self.http_port))
    }

    /// Whether the gateway may serve plain HTTP: not when the gRPC port speaks TLS, unless
    /// told `--http-allow-plaintext`; the refusal says what to do.
    pub fn http_allowed(&self) -> Result<(), String> {
        if self.tls_cert.is_some() && !self.http_allow_plaintext {
            return Err(
                "the HTTP gateway speaks plain HTTP only, and this server serves gRPC with TLS (--tls-cert): give --http-allow-plaintext to serve it anyway (behind a TLS-terminating proxy), or --http-port 0 to keep it off"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// The platform's retry settings of asynchronous invocations (attempts at least 1, the
    /// maximum delay at least the first).
    pub fn async_retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.async_attempts.max(1),
            first_delay_ms: self.async_first_delay_ms,
            max_delay_ms: self.async_max_delay_ms.max(self.async_first_delay_ms),
        }
    }

    /// The bounds of the asynchronous invocations' store.
    pub fn async_limits(&self) -> AsyncLimits {
        AsyncLimits {
            max_kept: self.async_max_kept.max(1),
            max_bytes: self.async_max_bytes,
            retention_ms: self.async_retention_ms,
        }
    }
}

/// The first admin key of a keys file's lines.
pub fn first_admin_key(lines: &[KeyLine]) -> Option<String> {
    lines
        .iter()
        .find(|l| l.scope == Scope::Admin)
        .map(|l| l.key.clone())
}

/// `host:port`, with an IPv6 literal host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    /// `Config::local` is clap's defaults: the same as parsing just the program's name, with
    /// the contest's address.
    #[test]
    fn local_is_claps_defaults() {
        let local = Config::local();
        assert_eq!(local.listen_addr(), "127.0.0.1:10500");
        assert_eq!(local.http_addr().as_deref(), Some("127.0.0.1:10800"));
        assert_eq!(local.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(local.async_concurrency, DEFAULT_ASYNC_CONCURRENCY);
        assert_eq!(local.functions, None);
        assert!(!local.allow_anonymous);
    }

    #[test]
    fn defaults_match_the_contest() {
        let cli = Cli::try_parse_from(["apiserver"]).unwrap();
        assert_eq!(cli.config, Config::default());
        assert_eq!(cli.config.listen_addr(), "127.0.0.1:10500");
        assert_eq!(cli.config.http_addr().as_deref(), Some("127.0.0.1:10800"));
        assert_eq!(host_port("::", 1), "[::]:1");
    }

    #[test]
    fn a_functions_file_brings_the_code_it_names() {
        let config = Config {
            functions: Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../deploy/user-functions.toml"),
            ),
            ..Config::default()
        };
        let (specs, _) = config.load_functions().unwrap();
        let py = specs.iter().find(|s| s.name == "py-hello").unwrap();
        assert!(py.code.iter().any(|f| f.path == "main.py"), "{:?}", py.code);
        // Each example directory holds the function.json its author wrote: the file says
        // the same (what the container service reads is the one the API server writes).
        for spec in &specs {
            let json = spec
                .code
                .iter()
                .find(|f| f.path == "function.json")
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&json.content).unwrap();
            assert_eq!(
                json["command"],
                serde_json::json!(spec.command),
                "{}",
                spec.name
            );
            assert_eq!(json["protocol"], spec.protocol.as_str(), "{}", spec.name);
            let start = json["start_timeout_ms"].as_i64().unwrap_or(0);
            assert_eq!(start, spec.start_timeout_ms, "{}", spec.name);
            let env: std::collections::BTreeMap<String, String> =
                serde_json::from_value(json["env"].clone()).unwrap_or_default();
            assert_eq!(env, spec.env, "{}", spec.name);
        }
        // Memory only, there is nowhere to keep it.
        let err = crate::service::Registry::with_functions(specs, 0).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("command functions need --data-dir: their code is kept there"),
            "{err}"
        );
    }

    #[test]
    fn the_gateway_stays_off_in_plain_http_beside_tls() {
        let tls = Config {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..Config::default()
        };
        assert_eq!(tls.http_addr(), None);
        assert!(
            tls.http_allowed()
                .unwrap_err()
                .contains("--http-allow-plaintext")
        );
        let told = Config {
            http_allow_plaintext: true,
            ..tls
        };
        assert_eq!(told.http_addr().as_deref(), Some("127.0.0.1:10800"));
        let off = Config {
            http_port: 0,
            ..Config::default()
        };
        assert_eq!(off.http_addr(), None);
    }

    #[test]
    fn a_missing_functions_file_is_named() {
        let config = Config {
            functions: Some("/nonexistent/functions.toml".into()),
            ..Config::default()
        };
        let err = config.load_functions().unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/functions.toml"),
            "{err}"
        );
    }

    #[test]
    fn the_queue_is_sqlite_or_a_nats_address_and_a_bad_one_names_the_flag() {
        assert_eq!(Config::local().queue, QueueBackend::Sqlite);
        let parse =
            |v: &str| Cli::try_parse_from(["apiserver", "--queue", v]).map(|c| c.config.queue);
        assert_eq!(
            parse("nats://127.0.0.1:4222").unwrap(),
            QueueBackend::Nats("127.0.0.1:4222".into())
        );
        assert_eq!(
            parse("nats://nats:4222").unwrap(),
            QueueBackend::Nats("nats:4222".into())
        );
        for bad in [
            "postgres",
            "nats://",
            "nats://host",
            "nats://:4222",
            "nats://h:0",
            "nats://h:99999",
            "nats://u@h:1",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("--queue") && err.contains("nats://HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }
}
