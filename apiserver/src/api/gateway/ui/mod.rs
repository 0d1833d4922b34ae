//! The live dashboard at `/ui`: what the platform is doing, pushed to the browser as it
//! happens (server-sent events), from what the API server already knows.
//!
//! | route | what | key scope |
//! |---|---|---|
//! | `GET /ui` (and `/ui/app.js`, `/ui/app.css`) | the page: plain HTML, JS and CSS compiled into the binary (`include_str!`), no CDN | none: it holds no data |
//! | `GET /ui/events` | `text/event-stream`: a `state` event every [`STATE_EVERY`], a `decision` event per scheduler decision | admin |
//! | `GET /ui/state` | one `state`, as JSON (for `curl` and scripts) | admin |
//!
//! Who may look: the data routes need the **admin** scope, the rule of `/metrics` and of
//! `faas.admin.v1.Admin` (the dashboard shows every account's traffic, nodes and
//! containers); the key travels as `Authorization: Bearer KEY`. A browser's `EventSource`
//! cannot send that header, so the page reads the stream with `fetch` instead and takes the
//! key from the address's fragment (`/ui#key=KEY`, never sent to the server or written in
//! its logs) or from a field on the page; a server that needs no key (loopback, no keys)
//! needs none here either.
//!
//! A `state` is: the nodes the scheduler holds with their containers (as `Admin/ListNodes`
//! reads them: [`crate::api::cluster::list_nodes`]), the deployed functions, and the traffic
//! figures of this server's registry ([`figures`]: calls per second, latency, cold starts,
//! calls and breaker per target). A `decision` is one of the scheduler's decisions with the
//! policy's reason (`faas.decisions.v1.Decisions/Follow`, through
//! [`crate::api::decisions::DecisionsProxy`]). What cannot be read (a scheduler that is down)
//! is said in the `state`'s `problems`, never left out silently. Every stream ends when the
//! server shuts down.

pub mod figures;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use faas_common::shutdown::Shutdown;
use faas_common::token::{AuthChannel, ClusterAuth};
use faas_proto::admin::ListNodesRequest;
use faas_proto::decisions::DecisionEntry;
use faas_proto::scheduler_admin::scheduler_admin_client::SchedulerAdminClient;
use futures::{Stream, StreamExt};
use tonic::transport::Channel;

use crate::api::decisions::DecisionsProxy;
use crate::api::gateway::{Gateway, error_response, json};
use crate::model::keys::Scope;
use figures::Figures;

/// How often a `state` event is pushed.
pub const STATE_EVERY: Duration = Duration::from_secs(1);

/// How many past decisions a new page is sent first.
pub const PAST_DECISIONS: u32 = 50;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// What the dashboard reads beyond the gateway's front: the scheduler (its nodes and its
/// decisions) and the cluster token for the nodes.
#[derive(Clone, Debug)]
pub struct Ui {
    scheduler: SchedulerAdminClient<AuthChannel>,
    decisions: DecisionsProxy,
    auth: ClusterAuth,
    shutdown: Shutdown,
}

impl Ui {
    /// The dashboard asking the scheduler on `scheduler` (with the cluster token of `auth`);
    /// its streams end when `shutdown` fires.
    pub fn new(scheduler: Channel, auth: ClusterAuth, shutdown: Shutdown) -> Ui {
        Ui {
            scheduler: SchedulerAdminClient::new(auth.channel(scheduler.clone())),
            decisions: DecisionsProxy::new(scheduler, &auth, shutdown.clone()),
            auth,
            shutdown,
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'",
        ),
    );
    response
}

/// `GET /ui`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The dashboard's sources, or 503 when this gateway was built without them.
fn sources(gateway: &Gateway, headers: &HeaderMap) -> Result<Arc<Ui>, Box<Response>> {
    gateway
        .authorize(headers, Scope::Admin)
        .map_err(|e| Box::new(error_response(e)))?;
    gateway.ui.clone().ok_or_else(|| {
        Box::new(error_response(crate::api::gateway::HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this gateway has no dashboard sources (it was started without a scheduler)",
        )))
    })
}

/// One reading of everything but the decisions: `figures` is this reading's registry, to
/// be compared with `earlier` taken `seconds` before.
async fn state(
    gateway: &Gateway,
    ui: &Ui,
    figures: &Figures,
    earlier: &Figures,
    seconds: f64,
) -> serde_json::Value {
    let now_ms = faas_common::clock::now_ms();
    let mut problems = Vec::new();
    let nodes = match crate::api::cluster::list_nodes(
        Some(ui.scheduler.clone()),
        &ui.auth,
        ListNodesRequest::default(),
        now_ms,
    )
    .await
    {
        Ok(reply) => reply.nodes,
        Err(status) => {
            problems.push(format!("nodes: {}", status.message()));
            Vec::new()
        }
    };
    let nodes: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            let containers: Vec<_> = n
                .containers
                .into_iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.container_id,
                        "function": c.function_name,
                        "state": c.state,
                        "in_flight": c.in_flight,
                        "idle_for_ms": c.idle_for_ms,
                        "memory_limit_bytes": c.memory_limit_in_bytes,
                        "memory_used_bytes": c.memory_used_in_bytes,
                    })
                })
                .collect();
            serde_json::json!({
                "id": n.node_id,
                "address": n.address,
                "state": n.state,
                "total_bytes": n.total_memory_in_bytes,
                "used_bytes": n.used_memory_in_bytes,
                "committed_bytes": n.committed_memory_in_bytes,
                "error": n.error,
                "containers": containers,
            })
        })
        .collect();
    let deployed = crate::api::gateway::info::deployed(gateway);
    let mut out = figures.rates_since(earlier, seconds);
    out["at_ms"] = now_ms.into();
    out["nodes"] = nodes.into();
    out["deployed"] = deployed.into();
    out["problems"] = problems.into();
    out
}

fn read_figures(gateway: &Gateway) -> Figures {
    Figures::parse(&faas_common::metrics::render(
        &gateway.front().metrics().registry(),
    ))
}

/// `GET /ui/state`: one state, as JSON.
pub async fn one_state(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let ui = match sources(&gateway, &headers) {
        Ok(ui) => ui,
        Err(response) => return *response,
    };
    let figures = read_figures(&gateway);
    let value = state(&gateway, &ui, &figures, &figures, 1.0).await;
    json(StatusCode::OK, &value)
}

/// A decision as the page reads it.
pub fn decision_json(d: &DecisionEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": d.seq,
        "at_ms": d.at_unix_ms,
        "kind": d.kind,
        "function": d.function,
        "node": d.node,
        "container": d.container,
        "request": d.request,
        "reason": d.reason,
    })
}

fn event(name: &'static str, value: &serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(value.to_string()))
}

/// The `state` events: one now, then one every [`STATE_EVERY`].
fn states(gateway: Arc<Gateway>, ui: Arc<Ui>) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = (read_figures(&gateway), faas_common::clock::instant());
    futures::stream::unfold(
        (gateway, ui, first, true),
        |(gateway, ui, (earlier, at), first)| async move {
            if !first {
                tokio::time::sleep(STATE_EVERY).await;
            }
            let figures = read_figures(&gateway);
            let seconds = at.elapsed().as_secs_f64();
            let value = state(&gateway, &ui, &figures, &earlier, seconds).await;
            let next = (figures, faas_common::clock::instant());
            Some((event("state", &value), (gateway, ui, next, false)))
        },
    )
}

/// The `decision` events (the latest [`PAST_DECISIONS`] first); a scheduler that cannot be
/// followed is one `problem` event, tried again after a pause, from the last decision seen.
fn decisions(ui: Arc<Ui>) -> impl Stream<Item = Result<Event, Infallible>> {
    let last = Arc::new(AtomicU64::new(0));
    futures::stream::unfold((ui, last, false), |(ui, last, retry)| async move {
        if retry {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let after = last.load(Ordering::Relaxed);
        let limit = if after == 0 { PAST_DECISIONS } else { 0 };
        let events = match ui.decisions.follow(after, limit).await {
            Ok(stream) => {
                let seen = last.clone();
                stream
                    .take_while(|item| std::future::ready(item.is_ok()))
                    .filter_map(move |item| {
                        let value = item.ok().map(|d| {
                            seen.fetch_max(d.seq, Ordering::Relaxed);
                            event("decision", &decision_json(&d))
                        });
                        std::future::ready(value)
                    })
                    .boxed()
            }
            Err(status) => {
                let value =
                    serde_json::json!({ "problem": format!("decisions: {}", status.message()) });
                futures::stream::iter([event("problem", &value)]).boxed()
            }
        };
        Some((events, (ui, last, true)))
    })
    .flatten()
}

/// `GET /ui/events`: the dashboard's stream.
pub async fn events(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let ui = match sources(&gateway, &headers) {
        Ok(ui) => ui,
        Err(response) => return *response,
    };
    let shutdown = ui.shutdown.clone();
    let stream = futures::stream::select(states(gateway, ui.clone()), decisions(ui))
        .take_until(shutdown.wait());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
