//! Test support shared by the components' integration tests (a dev-dependency only, in the
//! spirit of linkerd2-proxy's test support crate).
//!
//! The fakes themselves stay in the suites that use them: each answers what its suite
//! checks (the API server's node answers invocations in scripted ways, the scheduler's
//! counts creates and removals). What they share is written here once:
//!
//! - [`serve_on`] / [`serve`]: a fake's tonic router served on a loopback listener until a
//!   stop signal (or the test's end);
//! - [`InvokeStream`]: the reply stream a fake `NodeService::invoke_function` returns;
//! - [`otlp::Collector`]: an OTLP/HTTP collector that keeps the spans the components export;
//! - [`browser`]: finding headless Chromium (or skipping without it) and starting it;
//! - [`docker`]: the Docker command line, and skipping (or failing in CI) without a daemon;
//! - [`nats`]: a real `nats-server -js` on a free loopback port (skipping, or failing in CI,
//!   without one).

pub mod browser;
pub mod docker;
pub mod nats;
pub mod otlp;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use faas_proto::nodeservoceproto::InvokeFunctionReply;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::server::Router;

/// The stream of replies of a fake node's `InvokeFunction` (its `InvokeFunctionStream`).
pub type InvokeStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<InvokeFunctionReply, Status>> + Send>>;

/// Serves `router` on `listener` (TCP_NODELAY, as the components do) until `stop`
/// completes; the task panics if serving fails. Pass `std::future::pending()` to serve until
/// the test's runtime ends.
pub fn serve_on(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(faas_common::serve::incoming(listener), stop)
            .await
            .expect("a fake server serves");
    })
}

/// Binds 127.0.0.1:0 and [`serve_on`]s it; returns the address and the serving task.
pub async fn serve(
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound address");
    (addr, serve_on(listener, router, stop))
}
