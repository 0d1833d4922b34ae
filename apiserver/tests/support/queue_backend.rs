//! The two homes of the durable queue that the queue tests run against: the embedded
//! database (`--queue sqlite`, in the test's data directory) and NATS JetStream (`--queue
//! nats://…`, a real `nats-server -js` started for the test and killed at its end; see
//! `faas_testkit::nats`). [`on_both_queues!`] makes one test of each, and
//! [`quick_retries`] is the server config of a test that waits for its calls to be retried.

use std::path::Path;

use faas_apiserver::Config;
use faas_apiserver::config::QueueBackend;
use faas_testkit::nats::NatsServer;

/// A server with its data (and so the embedded queue) in `dir`, anonymous calls allowed,
/// and asynchronous calls retried quickly: 1 ms after a failed attempt, backing off to at
/// most `max_delay_ms`.
pub fn quick_retries(dir: &Path, max_delay_ms: u64) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        allow_anonymous: true,
        async_first_delay_ms: 1,
        async_max_delay_ms: max_delay_ms,
        ..Config::default()
    }
}

/// Where a test's queue lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Nats,
}

/// A test's data directory and, on NATS, its server; both gone when dropped.
#[derive(Debug)]
pub struct QueueHome {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub nats: Option<NatsServer>,
}

impl QueueHome {
    /// `None` when the backend is NATS and the machine has no `nats-server` (the test is
    /// skipped with a note; in CI it fails instead).
    pub fn new(backend: Backend) -> Option<QueueHome> {
        let nats = match backend {
            Backend::Sqlite => None,
            Backend::Nats => Some(NatsServer::start()?),
        };
        Some(QueueHome {
            backend,
            dir: tempfile::tempdir().expect("a temporary directory"),
            nats,
        })
    }

    /// The API server's `--queue`.
    pub fn queue(&self) -> QueueBackend {
        match &self.nats {
            Some(n) => QueueBackend::Nats(n.address()),
            None => QueueBackend::Sqlite,
        }
    }

    /// The same as command-line flags.
    pub fn flags(&self) -> Vec<String> {
        match &self.nats {
            Some(n) => vec!["--queue".to_string(), n.url()],
            None => Vec::new(),
        }
    }
}

/// For each `async fn NAME(home: QueueHome)`, a module `NAME` with the tests `sqlite` and
/// `nats`, each handing `NAME` a new home on its backend (the `nats` test skips, or in CI
/// fails, as [`QueueHome::new`] says, when the machine has no `nats-server`). The home is
/// `NAME`'s parameter, so it outlives everything `NAME` starts in it.
#[macro_export]
macro_rules! on_both_queues {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    if let Some(home) = super::QueueHome::new(super::Backend::Sqlite) {
                        super::$name(home).await
                    }
                }
                #[tokio::test]
                async fn nats() {
                    if let Some(home) = super::QueueHome::new(super::Backend::Nats) {
                        super::$name(home).await
                    }
                }
            }
        )*
    };
}
