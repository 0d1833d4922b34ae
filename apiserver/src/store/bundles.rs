//! Where the code of command and image functions is kept: `DATA_DIR/bundles/<sha256>/`, one
//! immutable directory per bundle, read by the nodes (`--bundles-dir`).
//!
//! ```text
//! DATA_DIR/bundles/
//!   3f2a…c9/              a bundle, named by its hash (model::bundle)
//!     function.json       what runs (command, protocol, …)
//!     code/               the user's files, with their executable bits (when there are any)
//!   .tmp-3f2a…c9-<uuid>/  a bundle being written (never read by anyone)
//! ```
//!
//! # Atomic, and never rewritten
//!
//! A node may start a container from a bundle at any moment, so a bundle directory exists
//! whole or not at all. [`DirBundles::put`] writes into a temporary directory beside the final
//! one, syncs every file and directory to disk, and only then renames it to its hash (a
//! rename within one directory is atomic), and syncs the parent so the rename itself is on
//! disk. A bundle whose hash is already there is reused as it is: its name is its content, so
//! there is nothing to write. Two writers of one hash race harmlessly: the second rename
//! fails on the existing directory and its temporary one is removed.
//!
//! A crash mid-write leaves a `.tmp-*` directory and never a half bundle under a hash. Such
//! leftovers are removed by [`DirBundles::open`], which the API server calls only while it
//! holds the data directory's lock (`store::sqlite`), so no other writer is at work then.
//!
//! The registry writes a function's bundle *before* its database row: a stored function
//! always names a bundle that is on disk.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::bundle::{CODE_DIR, MANIFEST_FILE};
use crate::model::kind::{CodeFile, is_bundle_hash};
use crate::store::dao::StoreError;

/// The bundles' directory inside the data directory.
pub const BUNDLES_DIR: &str = "bundles";
/// What a bundle being written is named before its hash: `.tmp-<hash>-<uuid>`.
const TMP_PREFIX: &str = ".tmp-";

/// Durable, content-addressed storage of bundles.
pub trait BundleStore: Send + Sync + Debug + 'static {
    /// Stores bundle `hash` (`function.json` = `manifest`, `code/` = `files`) unless a bundle
    /// of that hash is there; whether it wrote it. Blocks on the disk.
    fn put(&self, hash: &str, manifest: &[u8], files: &[CodeFile]) -> Result<bool, StoreError>;

    /// The `function.json` of bundle `hash`; `None` when there is no such bundle.
    fn manifest(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The store, as messages name it.
    fn describe(&self) -> String;
}

/// Bundles in a directory (`DATA_DIR/bundles`).
#[derive(Debug)]
pub struct DirBundles {
    root: PathBuf,
    /// Tests: fail the write after this many files, as a crash would stop it.
    #[cfg(test)]
    pub(crate) fail_after_files: std::sync::atomic::AtomicUsize,
}

impl DirBundles {
    /// Opens (creating it if needed) the bundles directory `root` and removes what writes a
    /// crash interrupted. Call it only while holding the data directory's lock.
    pub fn open(root: &Path) -> Result<DirBundles, StoreError> {
        let err = |reason: String| StoreError::DataDir {
            dir: root.to_path_buf(),
            reason,
        };
        fs::create_dir_all(root).map_err(|e| err(e.to_string()))?;
        for entry in fs::read_dir(root).map_err(|e| err(e.to_string()))? {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing a bundle a crash left half written");
                fs::remove_dir_all(&path)
                    .map_err(|e| err(format!("cannot remove {}: {e}", path.display())))?;
            }
        }
        Ok(DirBundles {
            root: root.to_path_buf(),
            #[cfg(test)]
            fail_after_files: std::sync::atomic::AtomicUsize::new(usize::MAX),
        })
    }

    /// The bundles directory inside `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> PathBuf {
        data_dir.join(BUNDLES_DIR)
    }

    /// The directory of bundle `hash` (whether or not it exists).
    pub fn path(&self, hash: &str) -> PathBuf {
        self.root.join(hash)
    }

    fn check_hash(&self, hash: &str) -> Result<(), StoreError> {
        if is_bundle_hash(hash) {
            return Ok(());
        }
        Err(StoreError::Bundle {
            path: self.root.clone(),
            reason: format!("{:?} is not a bundle hash", faas_common::text::clip(hash)),
        })
    }

    /// Writes the whole bundle into `tmp`, every file and directory synced.
    fn stage(&self, tmp: &Path, manifest: &[u8], files: &[CodeFile]) -> std::io::Result<()> {
        fs::create_dir(tmp)?;
        write_file(&tmp.join(MANIFEST_FILE), manifest, false)?;
        let mut dirs = BTreeSet::from([tmp.to_path_buf()]);
        if !files.is_empty() {
            let code = tmp.join(CODE_DIR);
            fs::create_dir(&code)?;
            for (written, f) in files.iter().enumerate() {
                self.injected_failure(written)?;
                let path = code.join(&f.path);
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(&code)) {
                    dirs.insert(d.to_path_buf());
                    dir = d.parent();
                }
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                write_file(&path, &f.content, f.executable)?;
            }
        }
        // Children before parents, so each directory's entries are on disk before the name
        // that leads to it.
        let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn injected_failure(&self, written: usize) -> std::io::Result<()> {
        if written
            >= self
                .fail_after_files
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(std::io::Error::other("injected failure"));
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn injected_failure(&self, _written: usize) -> std::io::Result<()> {
        Ok(())
    }
}

/// Creates `path` with `content`, mode 0755 or 0644, and syncs it.
fn write_file(path: &Path, content: &[u8], executable: bool) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    // The umask may have taken bits away: the bundle says what they are.
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BundleStore for DirBundles {
    fn put(&self, hash: &str, manifest: &[u8], files: &[CodeFile]) -> Result<bool, StoreError> {
        self.check_hash(hash)?;
        let target = self.path(hash);
        if target.is_dir() {
            return Ok(false);
        }
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{hash}-{}", uuid::Uuid::new_v4()));
        let failed = |e: std::io::Error| {
            let _ = fs::remove_dir_all(&tmp);
            StoreError::Bundle {
                path: target.clone(),
                reason: e.to_string(),
            }
        };
        self.stage(&tmp, manifest, files).map_err(failed)?;
        if let Err(e) = fs::rename(&tmp, &target) {
            if target.is_dir() {
                // Another write of the same content won the race.
                let _ = fs::remove_dir_all(&tmp);
                return Ok(false);
            }
            return Err(failed(e));
        }
        sync_dir(&self.root).map_err(|e| StoreError::Bundle {
            path: target.clone(),
            reason: format!("cannot sync {}: {e}", self.root.display()),
        })?;
        Ok(true)
    }

    fn manifest(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_hash(hash)?;
        let path = self.path(hash).join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Bundle {
                path,
                reason: e.to_string(),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("the bundles in {}", self.root.display())
    }
}

#[cfg(test)]
#[path = "bundles_tests.rs"]
mod tests;
