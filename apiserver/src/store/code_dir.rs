//! Reading a user's code directory (`code = "dir"` in a deploy file) into the files a deploy
//! uploads, with the same limits the API server enforces, so a directory that is too large
//! fails before anything is sent.
//!
//! What is read, and what is refused (nothing is skipped silently):
//!
//! - regular files, at any depth, with their executable bit (any `x` bit of the mode);
//!   hidden ones (`.env`, `.git/…`) too: what is in the directory is what runs;
//! - a symbolic link to a file inside the directory is read as that file; a link that points
//!   outside it, to a directory, or nowhere is refused, naming it;
//! - fifos, sockets and devices are refused; names that are not UTF-8 are refused;
//! - directories without any file cannot be kept (a bundle holds files): they are listed in
//!   [`CodeDir::empty_dirs`] so the caller can say so;
//! - more than [`MAX_CODE_FILES`] files or [`MAX_CODE_BYTES`] in all are refused before any
//!   file is read, naming the largest files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::model::kind::{CodeFile, MAX_CODE_BYTES, MAX_CODE_FILES};
use crate::service::file::Setup;
use crate::service::kind::path_problem;
use crate::service::registry::RegistryError;

/// A code directory, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeDir {
    /// Every file, sorted by path.
    pub files: Vec<CodeFile>,
    /// Directories holding no file at any depth (relative paths): not kept.
    pub empty_dirs: Vec<String>,
}

impl CodeDir {
    /// All the files' bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.content.len() as u64).sum()
    }
}

/// Why a code directory cannot be deployed. Each message names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeDirError {
    #[error("the code directory {} {problem}", dir.display())]
    NotADir { dir: PathBuf, problem: String },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {problem}", path.display())]
    Refused { path: PathBuf, problem: String },
    #[error(
        "the code directory {} holds {total} bytes, over the limit of {} MiB (the largest: {largest})",
        dir.display(),
        MAX_CODE_BYTES >> 20
    )]
    TooLarge {
        dir: PathBuf,
        total: u64,
        largest: String,
    },
    #[error(
        "the code directory {} holds {count} files, over the limit of {MAX_CODE_FILES}",
        dir.display()
    )]
    TooMany { dir: PathBuf, count: usize },
}

/// A file found by the walk, not read yet.
struct Found {
    rel: String,
    /// What to read: the file, or the file a link inside the directory points at.
    source: PathBuf,
    len: u64,
    executable: bool,
}

/// Reads every file below `dir`.
pub fn read_code_dir(dir: &Path) -> Result<CodeDir, CodeDirError> {
    let meta = fs::metadata(dir).map_err(|e| CodeDirError::NotADir {
        dir: dir.to_path_buf(),
        problem: format!("cannot be read: {e}"),
    })?;
    if !meta.is_dir() {
        return Err(CodeDirError::NotADir {
            dir: dir.to_path_buf(),
            problem: "is not a directory".into(),
        });
    }
    let root = fs::canonicalize(dir).map_err(|e| read_error(dir, e))?;
    let mut found = Vec::new();
    let mut empty_dirs = Vec::new();
    walk(&root, &root, "", &mut found, &mut empty_dirs)?;
    if found.len() > MAX_CODE_FILES {
        return Err(CodeDirError::TooMany {
            dir: dir.to_path_buf(),
            count: found.len(),
        });
    }
    let total: u64 = found.iter().map(|f| f.len).sum();
    if total > MAX_CODE_BYTES {
        let mut by_size: Vec<&Found> = found.iter().collect();
        by_size.sort_by_key(|f| std::cmp::Reverse(f.len));
        let largest: Vec<String> = by_size
            .iter()
            .take(3)
            .map(|f| format!("{} ({} bytes)", f.rel, f.len))
            .collect();
        return Err(CodeDirError::TooLarge {
            dir: dir.to_path_buf(),
            total,
            largest: largest.join(", "),
        });
    }
    let mut files = Vec::with_capacity(found.len());
    for f in found {
        let content = fs::read(&f.source).map_err(|e| read_error(&f.source, e))?;
        files.push(CodeFile {
            path: f.rel,
            content,
            executable: f.executable,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    empty_dirs.sort();
    Ok(CodeDir { files, empty_dirs })
}

fn read_error(path: &Path, e: std::io::Error) -> CodeDirError {
    CodeDirError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn refused(path: &Path, problem: impl Into<String>) -> CodeDirError {
    CodeDirError::Refused {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Walks `dir` (`rel` below `root`); returns whether it holds a file at any depth.
fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    found: &mut Vec<Found>,
    empty_dirs: &mut Vec<String>,
) -> Result<bool, CodeDirError> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(|e| read_error(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_error(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    let mut any = false;
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(refused(&path, "the name is not UTF-8: rename it"));
        };
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if let Some(problem) = path_problem(&rel) {
            return Err(refused(&path, problem));
        }
        let kind = entry.file_type().map_err(|e| read_error(&path, e))?;
        if kind.is_dir() {
            if walk(root, &path, &rel, found, empty_dirs)? {
                any = true;
            } else {
                empty_dirs.push(rel);
            }
            continue;
        }
        let source = if kind.is_symlink() {
            let target = fs::canonicalize(&path)
                .map_err(|_| refused(&path, "is a symbolic link to nothing (a broken link)"))?;
            if !target.starts_with(root) {
                return Err(refused(
                    &path,
                    format!(
                        "is a symbolic link to {}, outside the code directory: copy the file in",
                        target.display()
                    ),
                ));
            }
            target
        } else {
            path.clone()
        };
        let meta = fs::metadata(&source).map_err(|e| read_error(&source, e))?;
        if meta.is_dir() {
            return Err(refused(
                &path,
                "is a symbolic link to a directory: a bundle follows links to files only",
            ));
        }
        if !meta.is_file() {
            return Err(refused(
                &path,
                "is not a regular file (a fifo, socket or device): a code directory holds files",
            ));
        }
        found.push(Found {
            rel,
            source,
            len: meta.len(),
            executable: meta.permissions().mode() & 0o111 != 0,
        });
        any = true;
    }
    Ok(any)
}

/// Reads every code directory `setup` names, relative to `base` (the file's directory), into
/// its spec's `code`. Returns notes for people (directories not kept because they hold no
/// file). An error names the file (`origin`), the entry, the function and the field.
pub fn load_setup_code(
    setup: &mut Setup,
    origin: &str,
    base: &Path,
) -> Result<Vec<String>, RegistryError> {
    let mut notes = Vec::new();
    for (i, f) in setup.functions.iter_mut().enumerate() {
        let name = f.spec.name.clone();
        let mut read = |dir: &Path, field: String| -> Result<Vec<CodeFile>, RegistryError> {
            let code = read_code_dir(&base.join(dir)).map_err(|e| RegistryError::InFile {
                origin: origin.to_string(),
                entry: i + 1,
                problem: Box::new(RegistryError::BadKind {
                    name: name.clone(),
                    field: field.clone(),
                    problem: e.to_string(),
                }),
            })?;
            for empty in &code.empty_dirs {
                notes.push(format!(
                    "{name}: {field}: the directory {empty}/ holds no file and is not kept (put a file in it if your program needs it)"
                ));
            }
            Ok(code.files)
        };
        if let Some(dir) = &f.code {
            f.spec.code = read(dir, "code".into())?;
        }
        for (j, v) in f.versions.iter_mut().enumerate() {
            if let Some(dir) = &v.code {
                v.spec.code = read(dir, format!("version[{j}].code"))?;
            }
        }
    }
    Ok(notes)
}

#[cfg(test)]
#[path = "code_dir_tests.rs"]
mod tests;
