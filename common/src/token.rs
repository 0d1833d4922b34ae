//! The cluster token: how the platform's components know each other from strangers.
//!
//! When a token is configured, the resource manager, the scheduler and the node services
//! accept a call only when it carries the gRPC metadata [`METADATA_KEY`]
//! (`x-faas-cluster-token: TOKEN`); `grpc.health.v1` stays open. Without a token configured
//! they accept anyone, as the contest's components do (listen only on loopback then).
//!
//! - [`TokenArgs`]: the flags every component flattens into its `Config`:
//!   `--cluster-token-file FILE` (env `FAAS_CLUSTER_TOKEN_FILE`, read when the flags are
//!   parsed) or the token itself in env `FAAS_CLUSTER_TOKEN` (also `--cluster-token`, which
//!   `ps` shows: prefer the other two).
//! - [`ClusterGate`]: the server side, a tonic interceptor wrapped around each protected
//!   service ([`ClusterGate::guard`]). It compares in constant time and never logs a token.
//! - [`ClusterAuth`]: the client side, a tonic interceptor that adds the token to every
//!   call; [`ClusterAuth::channel`] wraps a channel with it ([`AuthChannel`]).
//! - [`ClusterToken::load_or_create`]: what `faas up` does with `DATA_DIR/cluster-token`.
//!
//! A child process never inherits the token's environment variables
//! ([`crate::launch::Launcher::command`] removes them): a parent hands it over on purpose,
//! so a function's process cannot read it from its environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The gRPC metadata key that carries the cluster token.
pub const METADATA_KEY: &str = "x-faas-cluster-token";
/// The environment variable that holds the token itself.
pub const ENV: &str = "FAAS_CLUSTER_TOKEN";
/// The environment variable that names a file holding the token.
pub const FILE_ENV: &str = "FAAS_CLUSTER_TOKEN_FILE";
/// The file `faas up` keeps the token in, inside its data directory.
pub const FILE_NAME: &str = "cluster-token";
/// The fewest characters a token may have.
pub const MIN_LEN: usize = 16;
/// The most characters a token may have.
pub const MAX_LEN: usize = 1024;

/// How to get the token, for the messages of a refused call.
const HOW_TO_GET_IT: &str = "send it as gRPC metadata `x-faas-cluster-token`; the platform's \
    components read it from --cluster-token-file or FAAS_CLUSTER_TOKEN, and `faas up` keeps it \
    in DATA_DIR/cluster-token";

/// A cluster token: printable ASCII, no spaces, 16 to 1024 characters. Its `Debug` never
/// shows it, and two tokens compare in constant time.
#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

impl PartialEq for ClusterToken {
    fn eq(&self, other: &ClusterToken) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for ClusterToken {}

impl std::str::FromStr for ClusterToken {
    type Err = String;

    /// Checks a token (surrounding whitespace, e.g. a file's newline, is ignored).
    fn from_str(text: &str) -> Result<ClusterToken, String> {
        let token = text.trim();
        if token.len() < MIN_LEN || token.len() > MAX_LEN {
            return Err(format!(
                "a cluster token has {MIN_LEN} to {MAX_LEN} characters, this one {} (make one \
                 with `openssl rand -hex 32`)",
                token.len()
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a cluster token is printable ASCII without spaces (make one with `openssl \
                 rand -hex 32`)"
                    .to_string(),
            );
        }
        Ok(ClusterToken(token.into()))
    }
}

impl ClusterToken {
    /// A new token: 32 bytes from the operating system's random source, as 64 hex digits.
    pub fn generate() -> std::io::Result<ClusterToken> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(ClusterToken(hex.into()))
    }

    /// Reads the token in `path` (one line).
    pub fn read(path: &Path) -> Result<ClusterToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the cluster token file {}: {e}", path.display()))?;
        text.parse()
            .map_err(|e| format!("the cluster token file {}: {e}", path.display()))
    }

    /// The token in `path`, or a new one written there (mode 0600) when there is no file:
    /// one token per data directory, kept across restarts (nodes of a crashed run still
    /// hold it when a restarted resource manager takes them back).
    pub fn load_or_create(path: &Path) -> Result<ClusterToken, String> {
        if path.exists() {
            return ClusterToken::read(path);
        }
        let token = ClusterToken::generate()
            .map_err(|e| format!("cannot make a cluster token (/dev/urandom): {e}"))?;
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(file, "{}", token.expose())?;
            file.sync_all()
        };
        write().map_err(|e| {
            format!(
                "cannot write the cluster token file {}: {e}",
                path.display()
            )
        })?;
        Ok(token)
    }

    /// The token itself, to hand to a child process or write to its file. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that depends only on this token's length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut diff = expected.len() ^ presented.len();
        for (i, e) in expected.iter().enumerate() {
            diff |= usize::from(e ^ presented.get(i).copied().unwrap_or(0));
        }
        std::hint::black_box(diff) == 0
    }

    fn metadata(&self) -> AsciiMetadataValue {
        // Checked printable ASCII at construction: always a valid metadata value.
        let mut value = MetadataValue::try_from(self.expose())
            .unwrap_or_else(|_| MetadataValue::from_static("invalid"));
        value.set_sensitive(true);
        value
    }
}

/// The flags that configure a component's cluster token (flatten into its `Config`).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenArgs {
    /// A file holding the cluster token (read at start). Set (or FAAS_CLUSTER_TOKEN):
    /// the component takes calls only with gRPC metadata `x-faas-cluster-token`, and sends
    /// it on its own calls to the other components. Unset: it accepts anyone (listen only
    /// on loopback then).
    #[arg(long, env = FILE_ENV, value_parser = read_token_file)]
    pub cluster_token_file: Option<ClusterToken>,
    /// The cluster token itself (prefer the environment variable or the file: a flag shows
    /// in `ps`).
    #[arg(long, env = ENV, hide_env_values = true, conflicts_with = "cluster_token_file")]
    pub cluster_token: Option<ClusterToken>,
}

fn read_token_file(path: &str) -> Result<ClusterToken, String> {
    ClusterToken::read(&PathBuf::from(path))
}

impl TokenArgs {
    /// Configured with `token`, as if given by a flag (for embedding and tests).
    pub fn with(token: Option<ClusterToken>) -> TokenArgs {
        TokenArgs {
            cluster_token_file: None,
            cluster_token: token,
        }
    }

    /// The configured token, if any.
    pub fn token(&self) -> Option<&ClusterToken> {
        self.cluster_token_file
            .as_ref()
            .or(self.cluster_token.as_ref())
    }

    /// The server side for `component` ("resource manager", "scheduler", "node service").
    pub fn gate(&self, component: &'static str) -> ClusterGate {
        ClusterGate {
            component,
            token: self.token().cloned(),
        }
    }

    /// The client side: adds the token, if any, to every call.
    pub fn auth(&self) -> ClusterAuth {
        ClusterAuth::new(self.token())
    }
}

/// The server side: refuses calls without the configured token (see the module docs).
#[derive(Clone, Debug)]
pub struct ClusterGate {
    component: &'static str,
    token: Option<ClusterToken>,
}

impl ClusterGate {
    /// A gate for `component` that checks `token` (none: every call passes).
    pub fn new(component: &'static str, token: Option<ClusterToken>) -> ClusterGate {
        ClusterGate { component, token }
    }

    /// `service` behind this gate (a generated `…Server`; its health stays unwrapped).
    pub fn guard<S>(&self, service: S) -> InterceptedService<S, ClusterGate> {
        InterceptedService::new(service, self.clone())
    }

    /// Whether a call with `metadata` may pass; the refusal says why and how to fix it.
    pub fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let component = self.component;
        match metadata.get(METADATA_KEY) {
            None => Err(Status::unauthenticated(format!(
                "this {component} requires the cluster token: {HOW_TO_GET_IT}"
            ))),
            Some(sent) if token.matches(sent.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated(format!(
                "the cluster token sent to this {component} is wrong: send the token its \
                 platform was started with ({FILE_NAME} in `faas up`'s data directory, or the \
                 FAAS_CLUSTER_TOKEN the components were given)"
            ))),
        }
    }
}

impl Interceptor for ClusterGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

/// The client side: adds the cluster token, if any, to every call.
#[derive(Clone, Debug, Default)]
pub struct ClusterAuth {
    value: Option<AsciiMetadataValue>,
}

/// A channel whose calls carry the cluster token (what every platform client uses).
pub type AuthChannel = InterceptedService<Channel, ClusterAuth>;

impl ClusterAuth {
    /// Sends `token` (none: nothing is added).
    pub fn new(token: Option<&ClusterToken>) -> ClusterAuth {
        ClusterAuth {
            value: token.map(ClusterToken::metadata),
        }
    }

    /// `channel`, its calls carrying the token.
    pub fn channel(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }

    /// Adds the token to one request's metadata (for a request built by hand).
    pub fn apply<T>(&self, request: &mut Request<T>) {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(METADATA_KEY, value.clone());
        }
    }
}

impl Interceptor for ClusterAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.apply(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tonic::Code;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn token() -> ClusterToken {
        TOKEN.parse().unwrap()
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenArgs,
    }

    #[test]
    fn tokens_are_checked_compared_whole_and_never_shown() {
        assert_eq!(token(), format!("  {TOKEN}\n").parse().unwrap());
        assert!(token().matches(TOKEN.as_bytes()));
        assert!(!token().matches(&TOKEN.as_bytes()[..31]));
        assert!(!token().matches(format!("{TOKEN}0").as_bytes()));
        assert!(!token().matches(b""));
        assert!("short".parse::<ClusterToken>().is_err());
        let err = "0123456789 abcdef0123".parse::<ClusterToken>().unwrap_err();
        assert!(err.contains("without spaces"), "{err}");
        assert!(!format!("{:?}", token()).contains(TOKEN));
        let generated = ClusterToken::generate().unwrap();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated, ClusterToken::generate().unwrap());
    }

    #[test]
    fn the_gate_refuses_a_missing_or_wrong_token_with_different_messages() {
        let gate = ClusterGate::new("scheduler", Some(token()));
        let mut request = Request::new(());
        let missing = gate.check(request.metadata()).unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        assert!(
            missing
                .message()
                .starts_with("this scheduler requires the cluster token"),
            "{}",
            missing.message()
        );
        request
            .metadata_mut()
            .insert(METADATA_KEY, "not-the-token-at-all".parse().unwrap());
        let wrong = gate.check(request.metadata()).unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
        assert!(wrong.message().contains("is wrong"), "{}", wrong.message());
        assert!(!wrong.message().contains(TOKEN));

        let mut request = Request::new(());
        ClusterAuth::new(Some(&token())).apply(&mut request);
        assert!(gate.check(request.metadata()).is_ok());
        assert!(
            ClusterGate::new("scheduler", None)
                .check(Request::new(()).metadata())
                .is_ok(),
            "no token configured: anyone passes"
        );
        let mut plain = Request::new(());
        ClusterAuth::default().apply(&mut plain);
        assert!(plain.metadata().get(METADATA_KEY).is_none());
    }

    #[test]
    fn the_token_comes_from_a_file_or_the_flag_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let made = ClusterToken::load_or_create(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ClusterToken::load_or_create(&path).unwrap(), made, "kept");

        let file = path.to_str().unwrap();
        let args = Cli::try_parse_from(["c", "--cluster-token-file", file])
            .unwrap()
            .args;
        assert_eq!(args.token(), Some(&made));
        let args = Cli::try_parse_from(["c", "--cluster-token", TOKEN])
            .unwrap()
            .args;
        assert_eq!(args.token(), Some(&token()));
        assert!(
            Cli::try_parse_from(["c", "--cluster-token-file", file, "--cluster-token", TOKEN])
                .is_err()
        );
        let missing = dir.path().join("nope");
        let err = Cli::try_parse_from(["c", "--cluster-token-file", missing.to_str().unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot read the cluster token file"), "{err}");
        assert!(!format!("{args:?}").contains(TOKEN));
    }
}
