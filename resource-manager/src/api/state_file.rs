//! The state file: the [`StateStore`] of `--state-dir`. Two files live in the directory:
//!
//! - `resource-manager.json`, the saved state, replaced atomically on every change of the
//!   pool: written whole to `resource-manager.json.tmp`, flushed to disk (`fsync`), renamed
//!   over the old file, and the directory flushed too. After a crash the file is the old
//!   state or the new one, never half of each.
//! - `resource-manager.lock`, locked (an exclusive `flock`) while a manager uses the
//!   directory, so two managers never share one state. The kernel drops the lock when its
//!   holder dies, however it dies.
//!
//! A file that cannot be read, does not parse, is of a newer format or of another provider is
//! refused with a message that says what to do; it is never silently replaced. The format
//! (version 1; `null` fields may also be left out):
//!
//! ```json
//! {
//!   "format": "faas-resource-manager-state",
//!   "version": 1,
//!   "provider": "local",
//!   "next_generation": 4,
//!   "nodes": [
//!     {
//!       "id": "node-1", "generation": 1, "state": "reserved", "memory_bytes": 3221225472,
//!       "address": "127.0.0.1", "port": 40411,
//!       "pid": 5120, "process_start": 834110, "container_id": null,
//!       "live_id": "6f0c9e2a-…",
//!       "owner_account": "acct-1",
//!       "started_at_ms": 1767001000000, "reserved_at_ms": 1767001002000,
//!       "released_at_ms": null, "failure": null
//!     }
//!   ]
//! }
//! ```
//!
//! `state` is `ready`, `reserved`, `failed` (reserved, then its process exited or stopped
//! answering; `failure` says how: `{"reason": "exited"|"unresponsive", "detail", "at_ms"}`) or
//! `released` (a usage record). Times are ms since the Unix epoch; `process_start` is the
//! process's start in clock ticks since boot (with the pid it names one process).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::SavedState;
use crate::model::{Failure, FailureReason, Node, NodeEndpoint, NodeHandle, NodeState};
use crate::service::{StateError, StateStore};

/// The `format` field of every state file.
pub const FORMAT: &str = "faas-resource-manager-state";
/// The newest format version this manager reads and the one it writes.
pub const VERSION: u64 = 1;
/// The state file's name in the state directory.
pub const FILE_NAME: &str = "resource-manager.json";
/// The lock file's name in the state directory.
pub const LOCK_NAME: &str = "resource-manager.lock";

#[derive(Serialize, Deserialize)]
struct FileState {
    format: String,
    version: u64,
    provider: String,
    next_generation: u64,
    nodes: Vec<FileNode>,
}

#[derive(Serialize, Deserialize)]
struct FileNode {
    id: String,
    generation: u64,
    state: String,
    memory_bytes: u64,
    address: Option<String>,
    port: Option<u16>,
    pid: Option<u32>,
    process_start: Option<u64>,
    container_id: Option<String>,
    live_id: Option<String>,
    owner_account: Option<String>,
    started_at_ms: i64,
    reserved_at_ms: Option<i64>,
    released_at_ms: Option<i64>,
    failure: Option<FileFailure>,
}

#[derive(Serialize, Deserialize)]
struct FileFailure {
    reason: String,
    detail: String,
    at_ms: i64,
}

impl FileNode {
    fn of(node: &Node) -> FileNode {
        FileNode {
            id: node.id.clone(),
            generation: node.generation,
            state: node.state.as_str().to_string(),
            memory_bytes: node.memory_bytes,
            address: node.endpoint.as_ref().map(|e| e.address.clone()),
            port: node.endpoint.as_ref().map(|e| e.port),
            pid: node.handle.pid,
            process_start: node.handle.process_start,
            container_id: node.handle.container_id.clone(),
            live_id: node.handle.live_id.clone(),
            owner_account: node.owner_account.clone(),
            started_at_ms: node.started_at_ms,
            reserved_at_ms: node.reserved_at_ms,
            released_at_ms: node.released_at_ms,
            failure: node.failure.as_ref().map(|f| FileFailure {
                reason: f.reason.as_str().to_string(),
                detail: f.detail.clone(),
                at_ms: f.at_ms,
            }),
        }
    }

    /// The node this entry describes, checked: `Err` says what is wrong with it.
    fn into_node(self) -> Result<Node, String> {
        let id = self.id;
        let bad = |what: String| Err(format!("node {id:?}: {what}"));
        let state = match NodeState::ALL
            .into_iter()
            .find(|s| s.as_str() == self.state && *s != NodeState::Starting)
        {
            Some(state) => state,
            None => return bad(format!("unknown state {:?}", self.state)),
        };
        let endpoint = match (self.address, self.port) {
            (Some(address), Some(port)) if !address.is_empty() && port != 0 => {
                Some(NodeEndpoint { address, port })
            }
            (None, None) => None,
            _ => return bad("address and port must be given together".into()),
        };
        if matches!(state, NodeState::Ready | NodeState::Reserved) && endpoint.is_none() {
            return bad(format!("a {state} node needs an address and a port"));
        }
        if state != NodeState::Ready
            && (self.owner_account.is_none() || self.reserved_at_ms.is_none())
        {
            return bad(format!(
                "a {state} node needs an owner_account and a reserved_at_ms"
            ));
        }
        if state == NodeState::Released && self.released_at_ms.is_none() {
            return bad("a released node needs a released_at_ms".into());
        }
        let failure = match self.failure {
            None => None,
            Some(f) => match FailureReason::ALL
                .into_iter()
                .find(|r| r.as_str() == f.reason)
            {
                Some(reason) => Some(Failure {
                    reason,
                    detail: f.detail,
                    at_ms: f.at_ms,
                }),
                None => return bad(format!("unknown failure reason {:?}", f.reason)),
            },
        };
        Ok(Node {
            id,
            generation: self.generation,
            memory_bytes: self.memory_bytes,
            state,
            endpoint,
            handle: NodeHandle {
                pid: self.pid,
                process_start: self.process_start,
                container_id: self.container_id,
                live_id: self.live_id,
            },
            owner_account: self.owner_account,
            started_at_ms: self.started_at_ms,
            reserved_at_ms: self.reserved_at_ms,
            released_at_ms: self.released_at_ms,
            failure,
        })
    }
}

/// Encodes `state` as the file's bytes.
fn encode(state: &SavedState, provider: &str) -> Vec<u8> {
    let file = FileState {
        format: FORMAT.to_string(),
        version: VERSION,
        provider: provider.to_string(),
        next_generation: state.next_generation,
        nodes: state.nodes.iter().map(FileNode::of).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("plain data always encodes");
    bytes.push(b'\n');
    bytes
}

/// Decodes the file's bytes, refusing what this manager must not use (see the module docs).
fn decode(bytes: &[u8], path: &Path, provider: &str) -> Result<SavedState, StateError> {
    let path = path.display().to_string();
    let corrupt = |message: String| StateError::Corrupt {
        path: path.clone(),
        message,
    };
    // The version first, so a newer file is reported as newer even if its fields changed.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(corrupt(format!("no \"format\": \"{FORMAT}\"")));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(found) if found > VERSION => {
            return Err(StateError::Newer {
                path,
                found,
                supported: VERSION,
            });
        }
        Some(VERSION) => {}
        _ => return Err(corrupt(format!("no \"version\": {VERSION}"))),
    }
    let file: FileState = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    if file.provider != provider {
        return Err(StateError::OtherProvider {
            path,
            found: file.provider,
            expected: provider.to_string(),
        });
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(file.nodes.len());
    for entry in file.nodes {
        let node = entry.into_node().map_err(corrupt)?;
        if nodes.iter().any(|n| n.id == node.id) {
            return Err(corrupt(format!("node {:?} is listed twice", node.id)));
        }
        nodes.push(node);
    }
    Ok(SavedState {
        next_generation: file.next_generation,
        nodes,
    })
}

/// The saved state of one provider in a state directory, locked for this manager.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    provider: String,
    /// Holds the directory's lock until dropped.
    _lock: File,
}

impl StateFile {
    /// Opens (creating it if needed) the state directory `dir` for the `provider` provider
    /// and takes its lock.
    pub fn open(dir: &Path, provider: &str) -> Result<StateFile, StateError> {
        let unwritable = |path: &Path, e: std::io::Error| StateError::Unwritable {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| unwritable(dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| unwritable(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    dir: dir.display().to_string(),
                    lock: lock_path.display().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(unwritable(&lock_path, e)),
        }
        Ok(StateFile {
            path: dir.join(FILE_NAME),
            temp: dir.join(format!("{FILE_NAME}.tmp")),
            dir: dir.to_path_buf(),
            provider: provider.to_string(),
            _lock: lock,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for StateFile {
    fn load(&self) -> Result<Option<SavedState>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StateError::Unreadable {
                    path: self.path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        decode(&bytes, &self.path, &self.provider).map(Some)
    }

    fn save(&self, state: &SavedState) -> Result<(), StateError> {
        let bytes = encode(state, &self.provider);
        let write = || -> std::io::Result<()> {
            let mut temp = File::create(&self.temp)?;
            temp.write_all(&bytes)?;
            temp.sync_all()?;
            drop(temp);
            std::fs::rename(&self.temp, &self.path)?;
            // The rename is durable once the directory is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| StateError::Unwritable {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "faas-rm-state-{name}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> SavedState {
        let mut reserved = Node::starting("node-1".into(), 1, 3 << 30, 1_000);
        reserved.state = NodeState::Reserved;
        reserved.endpoint = Some(NodeEndpoint {
            address: "127.0.0.1".into(),
            port: 40411,
        });
        reserved.handle = NodeHandle {
            pid: Some(5120),
            process_start: Some(834_110),
            container_id: None,
            live_id: Some("live-1".into()),
        };
        reserved.owner_account = Some("acct-1".into());
        reserved.reserved_at_ms = Some(2_000);
        let mut failed = reserved.clone();
        failed.id = "node-2".into();
        failed.generation = 2;
        failed.state = NodeState::Failed;
        failed.failure = Some(Failure {
            reason: FailureReason::Unresponsive,
            detail: "no answer".into(),
            at_ms: 3_000,
        });
        let mut released = reserved.clone();
        released.id = "node-3".into();
        released.generation = 3;
        released.state = NodeState::Released;
        released.released_at_ms = Some(4_000);
        let mut ready = Node::starting("node-4".into(), 4, 3 << 30, 1_000);
        ready.state = NodeState::Ready;
        ready.endpoint = Some(NodeEndpoint {
            address: "::1".into(),
            port: 1,
        });
        SavedState {
            next_generation: 5,
            nodes: vec![reserved, failed, released, ready],
        }
    }

    #[test]
    fn a_saved_state_reads_back_the_same_and_a_missing_file_is_none() {
        let dir = TempDir::new("roundtrip");
        let file = StateFile::open(&dir.0, "local").unwrap();
        assert_eq!(file.load().unwrap(), None, "no file yet");
        file.save(&sample()).unwrap();
        assert_eq!(file.load().unwrap(), Some(sample()));
        assert!(!dir.0.join(format!("{FILE_NAME}.tmp")).exists(), "renamed");
        file.save(&SavedState::default()).unwrap();
        assert_eq!(file.load().unwrap(), Some(SavedState::default()));
    }

    #[test]
    fn a_second_manager_cannot_take_the_directory_until_the_first_lets_go() {
        let dir = TempDir::new("lock");
        let first = StateFile::open(&dir.0, "local").unwrap();
        let err = StateFile::open(&dir.0, "local").unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains("another resource manager"),
            "{err}"
        );
        drop(first);
        StateFile::open(&dir.0, "local").unwrap();
    }

    /// Writes `text` as the state file and returns what loading it says.
    fn load_text(text: &str, provider: &str) -> StateError {
        let dir = TempDir::new("bad");
        let file = StateFile::open(&dir.0, provider).unwrap();
        std::fs::write(file.path(), text).unwrap();
        let err = file.load().unwrap_err();
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            text,
            "a refused file is left as it is"
        );
        err
    }

    #[test]
    fn corrupt_newer_and_foreign_files_are_refused_and_left_alone() {
        /// Loads `text` as `provider`'s state file: refused, saying `needle`.
        fn refused(text: &str, provider: &str, needle: &str) -> StateError {
            let err = load_text(text, provider);
            assert!(err.to_string().contains(needle), "{needle:?} not in: {err}");
            err
        }
        let err = refused(
            "{\"format\": \"faas-resource-",
            "local",
            "is corrupt (not JSON",
        );
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("move it away"), "{err}");
        refused("", "local", "is corrupt (not JSON");
        refused("{\"version\": 1}", "local", "is corrupt (no \"format\"");

        let newer =
            format!("{{\"format\": \"{FORMAT}\", \"version\": 7, \"something\": \"else\"}}");
        let err = refused(&newer, "local", "format version 7, newer than");
        assert!(
            matches!(
                err,
                StateError::Newer {
                    found: 7,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );

        let text = String::from_utf8(encode(&sample(), "docker")).unwrap();
        let err = refused(&text, "local", "--provider docker");
        assert!(matches!(err, StateError::OtherProvider { .. }), "{err}");
        for (from, to, needle) in [
            (
                "\"reserved\"",
                "\"borrowed\"",
                "node \"node-1\": unknown state \"borrowed\"",
            ),
            ("\"node-2\"", "\"node-1\"", "listed twice"),
            (
                "\"port\": 40411",
                "\"port\": null",
                "address and port must be given together",
            ),
        ] {
            let err = refused(&text.replace(from, to), "docker", needle);
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        }
    }

    #[test]
    fn an_unreadable_file_is_refused() {
        let dir = TempDir::new("unreadable");
        let file = StateFile::open(&dir.0, "local").unwrap();
        // A directory where the file should be cannot be read as one.
        std::fs::create_dir(file.path()).unwrap();
        let err = file.load().unwrap_err();
        assert!(matches!(err, StateError::Unreadable { .. }), "{err}");
        let err = file.save(&sample()).unwrap_err();
        assert!(matches!(err, StateError::Unwritable { .. }), "{err}");
    }
}
