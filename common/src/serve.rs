//! Serving and connecting over TCP the way every component does it: TCP_NODELAY on both
//! sides (without it a small gRPC call can wait 40 ms), and one readiness line on stdout
//! so a parent process learns the port a child bound without polling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};

/// The line prefix a component prints on stdout once it listens: `FAAS_LISTENING 127.0.0.1:port`.
pub const READY_PREFIX: &str = "FAAS_LISTENING";

/// The largest gRPC message every server and client on the invoke path encodes and decodes
/// (tonic's default is 4 MiB): the documented event limit (6 MiB) plus room for the other
/// fields, so an event the API server accepts passes every hop. Set it on each generated
/// server and client with `.max_decoding_message_size(MAX_MESSAGE_BYTES)` and
/// `.max_encoding_message_size(MAX_MESSAGE_BYTES)`.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Errors of binding or connecting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("bad endpoint {addr:?}: {message}")]
    Endpoint { addr: String, message: String },
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
}

/// Binds a TCP listener on `addr` (`host:port`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Turns a bound listener into the incoming stream tonic serves, with TCP_NODELAY.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Prints the readiness line for a parent process and flushes stdout.
pub fn announce(addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{READY_PREFIX} {addr}");
    let _ = out.flush();
}

/// Parses a readiness line, if `line` is one.
pub fn parse_announce(line: &str) -> Option<SocketAddr> {
    line.strip_prefix(READY_PREFIX)?.trim().parse().ok()
}

fn endpoint(addr: &str) -> Result<Endpoint, ServeError> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| ServeError::Endpoint {
            addr: addr.to_string(),
            message: e.to_string(),
        })?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// Connects a gRPC channel to `addr` (`host:port` or a URI) now, failing if nothing answers.
pub async fn connect(addr: &str) -> Result<Channel, ServeError> {
    endpoint(addr)?
        .connect()
        .await
        .map_err(|e| ServeError::Connect {
            addr: addr.to_string(),
            message: format!("{e:?}"),
        })
}

/// A gRPC channel to `addr` that connects on first use and reconnects after failures.
pub fn connect_lazy(addr: &str) -> Result<Channel, ServeError> {
    Ok(endpoint(addr)?.connect_lazy())
}

/// Lazily connected channels by endpoint (`host:port` or a URI, as [`connect_lazy`] takes
/// it): the one cache of every client that talks to many nodes. A channel is made on first
/// use and shared by every later call to the same endpoint (it reconnects by itself after a
/// failure); lookups take a read lock only, so concurrent calls do not wait on each other.
/// Whatever a caller puts around a channel (the cluster token's interceptor, deadlines) it
/// puts per call: the cache holds plain channels.
#[derive(Debug, Default)]
pub struct ChannelCache {
    channels: RwLock<HashMap<String, Channel>>,
}

impl ChannelCache {
    /// An empty cache.
    pub fn new() -> ChannelCache {
        ChannelCache::default()
    }

    /// The channel to `endpoint`, made (without connecting) on first use.
    pub fn get(&self, endpoint: &str) -> Result<Channel, ServeError> {
        if let Some(channel) = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
        {
            return Ok(channel.clone());
        }
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = connect_lazy(endpoint)?;
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// Drops the channel of every endpoint for which `keep` says false (endpoints that are
    /// gone, or broken for good); a later [`ChannelCache::get`] makes a fresh one.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.channels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|endpoint, _| keep(endpoint));
    }

    /// How many endpoints have a channel.
    pub fn len(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no endpoint has a channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caller's deadline from a `grpc-timeout` header value (`<1-8 digits><H|M|S|m|u|n>`);
/// `None` when it is malformed.
pub fn parse_grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if !value.is_ascii() || value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC metadata key that carries the API server's request id through every hop of a
/// call (API server → scheduler, → node service → container service), so every component's
/// log lines about the call carry the same id (each handler enters a span with a
/// `request_id` field). The contest's messages keep their own `request_id` fields.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id a call carries in its metadata ([`REQUEST_ID`]), or `fallback` (usually
/// the message's own `request_id`) when it has none, an unreadable one or an overlong one
/// (over 256 bytes). Borrows: nothing is allocated.
pub fn request_id<'a>(metadata: &'a tonic::metadata::MetadataMap, fallback: &'a str) -> &'a str {
    metadata
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .unwrap_or(fallback)
}

/// Puts `id` on `request` as its [`REQUEST_ID`]; an empty id, or one that is not valid
/// metadata (not visible ASCII), is left off. When spans are exported ([`crate::trace`]),
/// also puts the current span's trace context on it, so the next hop joins the trace.
pub fn send_request_id<T>(request: &mut tonic::Request<T>, id: &str) {
    crate::trace::inject(request.metadata_mut());
    if id.is_empty() {
        return;
    }
    if let Ok(value) = tonic::metadata::MetadataValue::try_from(id) {
        request.metadata_mut().insert(REQUEST_ID, value);
    }
}

/// The deadline the caller of a gRPC request sent (its `grpc-timeout` header), if any.
pub fn client_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_channel_cache_makes_one_channel_per_endpoint_and_forgets_evicted_ones() {
        let cache = ChannelCache::new();
        assert!(cache.is_empty());
        cache.get("127.0.0.1:1").unwrap();
        cache.get("127.0.0.1:1").unwrap();
        cache.get("127.0.0.1:2").unwrap();
        assert_eq!(cache.len(), 2);
        assert!(matches!(
            cache.get("not a uri\n"),
            Err(ServeError::Endpoint { .. })
        ));
        assert_eq!(cache.len(), 2);
        cache.retain(|endpoint| endpoint == "127.0.0.1:2");
        assert_eq!(cache.len(), 1);
        cache.get("127.0.0.1:1").unwrap();
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_request_id_travels_in_metadata_and_falls_back_to_the_message() {
        let mut request = tonic::Request::new(());
        assert_eq!(request_id(request.metadata(), "msg"), "msg");
        send_request_id(&mut request, "");
        assert_eq!(request_id(request.metadata(), "msg"), "msg");
        send_request_id(&mut request, "bad\nid");
        assert_eq!(request_id(request.metadata(), "msg"), "msg");
        send_request_id(&mut request, "req-1");
        assert_eq!(request_id(request.metadata(), "msg"), "req-1");
        send_request_id(&mut request, "req-2");
        assert_eq!(request_id(request.metadata(), "msg"), "req-2");
        let long = "r".repeat(257);
        send_request_id(&mut request, &long);
        assert_eq!(request_id(request.metadata(), "msg"), "msg");
    }

    #[test]
    fn announce_line_round_trips() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let line = format!("{READY_PREFIX} {addr}");
        assert_eq!(parse_announce(&line), Some(addr));
        assert_eq!(parse_announce("hello"), None);
        assert_eq!(parse_announce("FAAS_LISTENING nonsense"), None);
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        use std::time::Duration;
        let cases = [
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("5S", Some(Duration::from_secs(5))),
            ("1500m", Some(Duration::from_millis(1500))),
            ("250u", Some(Duration::from_micros(250))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("0m", Some(Duration::ZERO)),
            ("123456789m", None),
            ("m", None),
            ("", None),
            ("5s", None),
            ("-5S", None),
            ("5 S", None),
            ("５S", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_grpc_timeout(text), want, "{text:?}");
        }
    }
}
