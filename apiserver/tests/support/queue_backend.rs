//! The two homes of the durable queue that the queue tests run against: the embedded
//! database (`--queue sqlite`, in the test's data directory) and NATS JetStream (`--queue
//! nats://…`, a real `nats-server -js` started for the test and killed at its end; see
//! `faas_testkit::nats`). [`on_both_queues!`] makes one test of each.

use faas_apiserver::config::QueueBackend;
use faas_testkit::nats::NatsServer;

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

/// For each `async fn NAME(backend: Backend)`, a module `NAME` with the tests `sqlite` and
/// `nats`.
#[macro_export]
macro_rules! on_both_queues {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(super::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn nats() {
                    super::$name(super::Backend::Nats).await
                }
            }
        )*
    };
}
