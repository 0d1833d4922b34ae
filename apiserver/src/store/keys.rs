//! Keys files on disk: reading one (refused when other users may read it) and making the
//! data directory's `keys` file on a first start.
//!
//! `DATA_DIR/keys` is made once, with mode 0600 and one admin key named `faas-up`: 32 bytes
//! from the operating system's random number generator, as 64 hex digits. It is created with
//! `O_EXCL`, so of two starts racing only one writes it and both then read the same key;
//! later starts read it and never change it (delete it to make a new key).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::keys::{KeyError, KeyLine, Scope, parse_keys};

/// The keys file's name in the data directory.
pub const KEYS_FILE: &str = "keys";
/// The name of the admin key made on a first start.
pub const FIRST_KEY_NAME: &str = "faas-up";

/// Why a keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the keys file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the keys file {} may be read by other users (mode {mode:04o}): run chmod 600 {}",
        path.display(),
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("cannot create the keys file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Parse(#[from] KeyError),
}

/// The keys file of a data directory.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_FILE)
}

/// A new key: 32 bytes from the OS random number generator, as 64 lowercase hex digits.
pub fn new_key() -> Result<String, KeysError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeysError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads and parses a keys file, refusing one that group or others may read or write.
pub fn read_keys_file(path: &Path) -> Result<Vec<KeyLine>, KeysError> {
    let read = |source| KeysError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = file.metadata().map_err(read)?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeysError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::io::read_to_string(file).map_err(read)?;
    Ok(parse_keys(&text, &path.display().to_string())?)
}

/// The keys of `DATA_DIR/keys`, made with one admin key first if there is no such file.
/// Also says whether it was made now.
pub fn ensure_keys_file(data_dir: &Path) -> Result<(Vec<KeyLine>, bool), KeysError> {
    let path = keys_path(data_dir);
    let create = |source| KeysError::Create {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(create)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok((read_keys_file(&path)?, false));
        }
        Err(e) => return Err(create(e)),
    };
    let line = KeyLine {
        scope: Scope::Admin,
        name: FIRST_KEY_NAME.to_string(),
        key: new_key()?,
    };
    let text = format!(
        "# mini-faas API keys: `scope name key` a line; scope invoke or admin. Keep this file\n\
         # mode 0600. `faas` commands on this machine read the first admin key from here.\n{}\n",
        line.to_line()
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(create)?;
    Ok((vec![line], true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_makes_a_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let (made, created) = ensure_keys_file(dir.path()).unwrap();
        assert!(created);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].scope, Scope::Admin);
        assert_eq!(made[0].key.len(), 64);
        assert!(made[0].key.bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mode = std::fs::metadata(keys_path(dir.path())).unwrap().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = ensure_keys_file(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again, made);
        assert_ne!(new_key().unwrap(), new_key().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn a_keys_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "admin a 0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_keys_file(&path).unwrap_err().to_string();
        assert!(err.contains("(mode 0644): run chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_keys_file(&path).unwrap()[0].name, "a");
        let err = read_keys_file(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read the keys file"));
    }
}
