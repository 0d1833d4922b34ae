//! Optional OpenTelemetry export: one trace per call, a span per hop, sent over OTLP
//! (HTTP/protobuf) to a collector (Jaeger, Tempo, the OpenTelemetry Collector...).
//!
//! Off by default. `--otlp-endpoint http://127.0.0.1:4318` (env [`ENDPOINT_ENV`]) on a
//! component turns it on: [`crate::logging::init_with`] then adds a `tracing-opentelemetry`
//! layer, so every `tracing` span the component enters (the handlers' `invoke`, `acquire`,
//! `create_container`... spans) becomes an OpenTelemetry span of service
//! `faas-<component>`, batched and sent from a thread of its own.
//!
//! The hops are joined with W3C trace context: whoever sends a call puts the current span's
//! `traceparent` in the gRPC metadata ([`inject`], called by
//! [`crate::serve::send_request_id`], so every hop that carries the request id carries the
//! trace too), and each server's handler span takes it as its parent ([`continue_trace`]).
//! The endpoint is handed to every child started with [`crate::launch::Launcher`], so
//! `faas up --otlp-endpoint URL` traces the whole tree.
//!
//! When off, [`inject`] and [`continue_trace`] are one relaxed atomic load, and no layer is
//! installed: nothing is built, buffered or sent.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The environment variable of `--otlp-endpoint` (also what children inherit).
pub const ENDPOINT_ENV: &str = "FAAS_OTLP_ENDPOINT";

/// The tracer the logging layer records spans with.
pub type Tracer = opentelemetry_sdk::trace::SdkTracer;

static ON: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// Whether this process exports spans.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The collector's address this process exports to, once export is on (what children are
/// given).
pub fn endpoint() -> Option<&'static str> {
    ENDPOINT.get().map(String::as_str)
}

/// Checks an endpoint as given on the command line and returns the traces URL to post to:
/// `http://HOST:PORT` (the OTLP/HTTP base, `/v1/traces` appended) or a URL that already ends
/// in `/v1/traces`. Only `http://` is supported (a collector beside the platform).
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(format!(
            "--otlp-endpoint {endpoint:?}: give an http:// URL of an OTLP/HTTP collector, \
             e.g. http://127.0.0.1:4318"
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!(
            "--otlp-endpoint {endpoint:?}: the URL names no host (e.g. http://127.0.0.1:4318)"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(match base.ends_with("/v1/traces") {
        true => base.to_owned(),
        false => format!("{base}/v1/traces"),
    })
}

/// Starts exporting `component`'s spans to `endpoint` and returns the tracer for the
/// logging layer. Called once, by [`crate::logging::init_with`].
pub(crate) fn start(component: &'static str, endpoint: &str) -> Result<Tracer, String> {
    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    // `faas up` runs the API server, scheduler and resource manager in its own process:
    // service `faas`, each span's `target` attribute naming its crate.
    let service = match component {
        "faas" => "faas".to_owned(),
        c => format!("faas-{c}"),
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("faas");
    if PROVIDER.set(provider).is_ok() {
        let _ = ENDPOINT.set(endpoint.trim().to_owned());
        ON.store(true, Ordering::Relaxed);
    }
    Ok(tracer)
}

/// Sends the spans still buffered and stops the exporter: called by every `main` before it
/// returns (a no-op when export is off).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        ON.store(false, Ordering::Relaxed);
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    }
}

/// Puts the current span's trace context (`traceparent`) on an outgoing call's metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Makes `span` (a server handler's span, not yet entered) a child of the trace the caller
/// sent in `metadata`, if it sent one.
pub fn continue_trace(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = tonic::metadata::MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        if let Ok(value) = tonic::metadata::MetadataValue::try_from(value) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_end_in_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url(" http://collector:4318/ ").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        let err = traces_url("127.0.0.1:4318").unwrap_err();
        assert!(err.contains("http://"), "{err}");
        let err = traces_url("https://c:4318").unwrap_err();
        assert!(err.contains("http://"), "{err}");
        let err = traces_url("http:///v1/traces").unwrap_err();
        assert!(err.contains("no host"), "{err}");
    }

    #[test]
    fn when_off_nothing_is_put_on_the_metadata() {
        assert!(!enabled());
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
    }
}
