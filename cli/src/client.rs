//! Calls to the API server as a user makes them. The client itself is the one in
//! `faas_e2e::live::client` (the live driver uses it too; re-exported here, so these paths
//! keep working): invoke (with the platform's metadata read back, and the service layer's
//! routing metadata sent and read back), list and deploy functions.
//!
//! Every call carries the caller's key, when it has one, as the gRPC metadata
//! `authorization: Bearer KEY` ([`BearerKey`], an interceptor on every client). Where the
//! key comes from is [`find_key`]'s business: `--api-key` / `FAAS_API_KEY`, else the admin
//! key `faas up` wrote to `DATA_DIR/keys`, which is only ever sent to an API server on this
//! machine (a loopback address). An `https://` address, or `--tls-ca FILE`, connects with TLS
//! ([`Connect`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::exit;

pub use faas_e2e::live::client::{
    AdminApi, Api, BadKey, BearerKey, FallbackReply, InvocationsApi, InvokeOutcome, KeyedChannel,
    MAX_REPLY_BYTES, RouteReply, RouteRequest, describe, parse_route_param,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The account the command line uses when none is given.
pub const DEFAULT_ACCOUNT: &str = "faas-cli";

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub addr: String,
    /// The key every call carries.
    pub key: Option<String>,
    /// Trust the certificates this CA (PEM) signed; implies TLS. Without it an `https://`
    /// address trusts the system's roots.
    pub tls_ca: Option<PathBuf>,
}

impl Connect {
    /// A channel to the API server: plaintext, or TLS for `https://` or a CA file. An API
    /// server that cannot be reached is an [`exit::Unreachable`] (one line, exit code 5).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = self.addr.as_str();
        let tls = addr.starts_with("https://") || self.tls_ca.is_some();
        let uri = match addr.strip_prefix("http://") {
            Some(rest) if tls => anyhow::bail!(
                "{addr}: --tls-ca asks for TLS, the address for plaintext; give https://{rest}"
            ),
            _ if addr.contains("://") => addr.to_string(),
            _ => format!("{}://{addr}", if tls { "https" } else { "http" }),
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| exit::bad_input(anyhow::anyhow!("bad API server address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if tls {
            let config = match &self.tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("cannot read --tls-ca {}", path.display()))?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(config)
                .with_context(|| format!("cannot use TLS with {addr}"))?;
        }
        let shown = if tls {
            format!("{uri} (TLS)")
        } else {
            addr.to_string()
        };
        endpoint
            .connect()
            .await
            .map_err(|e| anyhow::Error::new(exit::Unreachable::new(&shown, &e)))
    }
}

/// Whether `addr` (`host:port`, or a URI) names this machine: a loopback IP or `localhost`.
pub fn is_local(addr: &str) -> bool {
    let rest = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The key a command uses with the API server at `addr`: `given` (`--api-key` or
/// `FAAS_API_KEY`), else, for an API server on this machine, the first admin key of
/// `DATA_DIR/keys` (the one `faas up` wrote) when that file exists; else none.
pub fn find_key(
    addr: &str,
    given: Option<&str>,
    data_dir: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(key) = given.filter(|k| !k.is_empty()) {
        return Ok(Some(key.to_string()));
    }
    let Some(dir) = data_dir.filter(|_| is_local(addr)) else {
        return Ok(None);
    };
    let path = faas_apiserver::store::keys::keys_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let lines = faas_apiserver::store::keys::read_keys_file(&path)?;
    Ok(faas_apiserver::config::first_admin_key(&lines))
}

/// Connects to the API server at `addr`; every call carries `key`.
pub async fn connect_with_key(addr: &str, key: Option<&str>) -> anyhow::Result<Api> {
    connect_to(&Connect {
        addr: addr.to_string(),
        key: key.map(str::to_string),
        tls_ca: None,
    })
    .await
}

/// Connects as `target` says (TLS, key).
pub async fn connect_to(target: &Connect) -> anyhow::Result<Api> {
    let channel = target.channel().await?;
    Ok(Api::keyed(channel, target.key.as_deref())?)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
