//! `protocol = "http"`: one long-lived process serving `POST /` on `127.0.0.1:$PORT`.
//!
//! Start: pick a free loopback port, run the command with `PORT` set (stdin /dev/null,
//! stdout and stderr into the log ring), then poll a TCP connect to the port (1 ms, doubling
//! to 5 ms) until it succeeds, the process exits, or `start_timeout_ms` passes (the process
//! is killed). A call: `POST /` with the event as body (`Content-Type: application/json`,
//! `X-Request-Id`), over hyper's pooled HTTP/1.1 client (TCP_NODELAY, kept-alive
//! connections, one per concurrent call); the response body is read up to
//! [`MAX_RESULT_BYTES`]. A broken connection usually means the process died: the call waits
//! briefly for the reaper to say so, and then ends `ContainerExited` (or `OutOfMemory` when
//! the memory guard killed it, or the kernel did for the container's memory cgroup:
//! [`super::cgroup`]).

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use faas_common::text::clip_to;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncRead;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::watch;

use super::cgroup::{CgroupMemory, oom_killed, oom_message};
use super::logs::{Stream, read_lines};
use super::memory::Tracked;
use super::process::{Group, KillOnDrop, environment, spawn};
use super::sys::Exit;
use super::{CallReport, MAX_RESULT_BYTES, MESSAGE_BYTES, Shared, StartError, code};

/// How long a call whose connection broke waits for the process's exit to be known.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long a dead process's last output may take to reach the log ring.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// The longest pause between two readiness probes.
const MAX_PROBE_STEP: Duration = Duration::from_millis(5);

/// The running server of an `http` function.
#[derive(Debug)]
pub struct HttpFunction {
    group: Arc<Group>,
    tracked: Tracked,
    output: OutputCopy,
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    /// The container's memory cgroup when the process started.
    cgroup_before: Option<CgroupMemory>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Copies a process's stdout and stderr into the log ring, line by line.
#[derive(Debug)]
struct OutputCopy {
    /// How many of the two streams have ended.
    ended: watch::Receiver<u8>,
}

impl OutputCopy {
    fn start(shared: &Arc<Shared>, stdout: ChildStdout, stderr: ChildStderr) -> OutputCopy {
        let (tx, ended) = watch::channel(0u8);
        let tx = Arc::new(tx);
        let streams: [(Stream, Box<dyn AsyncRead + Send + Unpin>); 2] = [
            (Stream::Stdout, Box::new(stdout)),
            (Stream::Stderr, Box::new(stderr)),
        ];
        for (stream, reader) in streams {
            let (shared, tx) = (shared.clone(), tx.clone());
            tokio::spawn(async move {
                read_lines(reader, |line| {
                    tracing::debug!(target: "function", stream = stream.as_str(), "{line}");
                    shared.logs.push(stream, None, line);
                })
                .await;
                tx.send_modify(|n| *n += 1);
            });
        }
        OutputCopy { ended }
    }

    /// Waits (briefly) until both streams ended: a dead process's last words are in the
    /// ring, for the message that says why it died.
    async fn closed(&self) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(OUTPUT_GRACE, ended.wait_for(|n| *n >= 2)).await;
    }
}

/// Why an HTTP exchange failed.
enum Broken {
    /// The response body passed [`MAX_RESULT_BYTES`].
    TooLarge,
    /// The connection or the protocol failed (the error chain).
    Exchange(String),
}

/// Why a start did not become ready.
enum NotReady {
    Exited(Exit),
    Timeout,
}

/// Polls a connect to `port` until it succeeds, the group's leader exits, or `timeout`.
async fn wait_ready(group: &Group, port: u16, timeout: Duration) -> Result<(), NotReady> {
    let deadline = faas_common::clock::tokio_instant() + timeout;
    let mut step = Duration::from_millis(1);
    loop {
        if let Some(exit) = group.exit() {
            return Err(NotReady::Exited(exit));
        }
        let left = deadline.saturating_duration_since(faas_common::clock::tokio_instant());
        if left.is_zero() {
            return Err(NotReady::Timeout);
        }
        let connect = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        if let Ok(Ok(_)) = tokio::time::timeout(left, connect).await {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(step.min(left)) => {}
            exit = group.exited() => return Err(NotReady::Exited(exit)),
        }
        step = (step * 2).min(MAX_PROBE_STEP);
    }
}

impl HttpFunction {
    /// Starts the server and waits until it listens (see the module docs).
    pub(crate) async fn start(shared: &Arc<Shared>) -> Result<HttpFunction, StartError> {
        let bundle = &shared.bundle;
        let port = free_port().map_err(StartError::Port)?;
        let cgroup_before = shared.sys.memory_cgroup();
        let spawned = spawn(
            bundle,
            &environment(bundle, Some(port)),
            false,
            shared.sys.clone(),
        )
        .map_err(|error| StartError::Spawn {
            program: format!("{:?}", bundle.command[0]),
            error,
        })?;
        // A start that fails or is abandoned (the future dropped) kills the process.
        let kill = KillOnDrop::new(spawned.group.clone());
        let tracked = shared.guard.track(spawned.group.clone());
        let output = OutputCopy::start(shared, spawned.stdout, spawned.stderr);
        let started = faas_common::clock::tokio_instant();
        match wait_ready(&spawned.group, port, bundle.start_timeout).await {
            Ok(()) => {}
            Err(NotReady::Exited(exit)) => {
                output.closed().await;
                return Err(StartError::Exited {
                    port,
                    status: exit.status.to_string(),
                    last: shared.last_output(),
                });
            }
            Err(NotReady::Timeout) => {
                drop(kill);
                output.closed().await;
                return Err(StartError::NotReady {
                    port,
                    ms: bundle.start_timeout.as_millis(),
                    manifest: bundle
                        .dir
                        .join(super::bundle::MANIFEST)
                        .display()
                        .to_string(),
                    last: shared.last_output(),
                });
            }
        }
        tracing::info!(
            port,
            pid = spawned.group.pid(),
            ready_ms = started.elapsed().as_millis() as u64,
            "the function's server is listening"
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpFunction {
            group: kill.disarm(),
            tracked,
            output,
            client,
            uri: format!("http://127.0.0.1:{port}/")
                .parse()
                .expect("a loopback URI parses"),
            cgroup_before,
        })
    }

    /// Why the process ended, as a call's error (once its last output is in the ring).
    async fn death(&self, shared: &Shared, exit: Exit) -> (&'static str, String) {
        self.output.closed().await;
        if let Some(why) = self.tracked.member().killed_for() {
            (
                code::OUT_OF_MEMORY,
                format!("out of memory: {why}; the function's process was killed"),
            )
        } else if let Some(group) =
            oom_killed(&*shared.sys, self.cgroup_before, exit.status.signal())
        {
            (
                code::OUT_OF_MEMORY,
                oom_message("the function's process", group.limit_bytes),
            )
        } else if shared.stopping.load(Ordering::Acquire) {
            (
                code::CONTAINER_EXITED,
                "the container is stopping; the function's process was stopped during the call"
                    .into(),
            )
        } else {
            (
                code::CONTAINER_EXITED,
                format!(
                    "the function's process exited ({}){}; the container is dead",
                    exit.status,
                    shared.last_output()
                ),
            )
        }
    }

    /// Resolves when the server process has died, with the reason.
    pub(crate) async fn died(&self, shared: &Shared) -> String {
        let exit = self.group.exited().await;
        self.death(shared, exit).await.1
    }

    /// Forwards one call (see the module docs).
    pub(crate) async fn invoke(
        &self,
        shared: &Shared,
        request_id: &str,
        event: Vec<u8>,
        timeout: Duration,
    ) -> CallReport {
        if let Some(exit) = self.group.exit() {
            let (code, message) = self.death(shared, exit).await;
            return CallReport::failed(code, message);
        }
        let _busy = shared.guard.busy();
        let member = self.tracked.member();
        let watch = member.watch();
        let mut request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event)))
            .expect("a POST with fixed parts builds");
        if let Ok(id) = HeaderValue::from_str(request_id) {
            request.headers_mut().insert("x-request-id", id);
        }
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Broken::Exchange(chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESULT_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Broken::TooLarge
                    } else {
                        Broken::Exchange(chain(&*e))
                    }
                })?
                .to_bytes();
            Ok::<(StatusCode, Bytes), Broken>((status, body))
        };
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok((status, body))) if status.is_success() => Ok(body.to_vec()),
            Ok(Ok((status, body))) => Err((
                code::FUNCTION_ERROR,
                format!(
                    "HTTP {status}: {}",
                    clip_to(String::from_utf8_lossy(&body).trim(), MESSAGE_BYTES)
                ),
            )),
            Ok(Err(e)) => Err(self.broken(shared, e).await),
            // Dropping the request closed its connection; the server lives on.
            Err(_) => Err((
                code::TIMEOUT,
                format!("function timed out after {} ms", timeout.as_millis()),
            )),
        };
        CallReport {
            result,
            child_peak_bytes: member.finish(watch, shared.guard.sys()),
            log: String::new(),
        }
    }

    /// A call whose HTTP exchange failed: the process died (usually), or it misbehaved.
    async fn broken(&self, shared: &Shared, broken: Broken) -> (&'static str, String) {
        let error = match broken {
            Broken::TooLarge => {
                return (
                    code::FUNCTION_ERROR,
                    format!("the result is larger than {MAX_RESULT_BYTES} bytes"),
                );
            }
            Broken::Exchange(error) => error,
        };
        match tokio::time::timeout(EXIT_GRACE, self.group.exited()).await {
            Ok(exit) => self.death(shared, exit).await,
            Err(_) => (
                code::FUNCTION_ERROR,
                format!(
                    "the function's HTTP server failed the call: {}",
                    clip_to(&error, MESSAGE_BYTES)
                ),
            ),
        }
    }
}
