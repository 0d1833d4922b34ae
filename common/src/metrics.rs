//! Serves a Prometheus registry as text on `GET /metrics` over plain HTTP/1 (hyper).
//!
//! Each component builds its own `prometheus_client` registry with its business figures and
//! hands it here; the server stops when the shutdown signal fires. Every name starts with
//! [`prefix`] of its component ([`registry`] makes such a registry); [`exposition`] reads
//! the text back (tests and tools).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// The prefix of every metric of `component` (`scheduler`, `node-service`, ...):
/// `faas_` and the component's name with `_` for `-` (`faas_node_service`). The one naming
/// rule of the platform's metrics (README, "Metrics").
pub fn prefix(component: &str) -> String {
    format!("faas_{}", component.replace('-', "_"))
}

/// An empty registry whose metrics are all named [`prefix`]`(component)_...`.
pub fn registry(component: &str) -> Registry {
    Registry::with_prefix(prefix(component))
}

/// The content type of Prometheus' text format as `prometheus_client` writes it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the registry in the text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

fn respond(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    if req.uri().path() == "/metrics" {
        *resp.body_mut() = Full::new(Bytes::from(render(registry)));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(CONTENT_TYPE),
        );
    } else {
        *resp.status_mut() = StatusCode::NOT_FOUND;
        *resp.body_mut() = Full::new(Bytes::from_static(b"see /metrics\n"));
    }
    resp
}

/// Serves `registry` on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&registry, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_registered_metrics_as_text() {
        let mut registry = Registry::default();
        let hits: Counter = Counter::default();
        registry.register("warm_hits", "Warm hits", hits.clone());
        hits.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(serve(listener, Arc::new(registry), shutdown));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("warm_hits_total 3"), "{text}");

        trigger.trigger();
        server.await.unwrap();
    }
}

#[path = "metrics_exposition.rs"]
pub mod exposition;
