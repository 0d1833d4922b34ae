//! The bundles directory (`--bundles-dir`): the API server's `DATA_DIR/bundles`, where each
//! bundle is `<sha256>/function.json` (and optionally `<sha256>/code/`).
//!
//! The node reads `function.json` once per create, and only the two fields that decide how
//! the container starts (see [`crate::model::bundle`]); it does not second-guess the rest,
//! which the container service checks (an unknown field, a bad `command`, …) and reports as
//! the reason it exits. A file that is not a JSON object, a `start_timeout_ms` that is not a
//! whole number of 1 to 600000 ms, or an `image` that is not a non-empty string is refused
//! here, with the path and the field.
//!
//! The directory must exist when the node starts (a typo in the flag is an early exit, not a
//! refusal of every bundle later). Its path is made absolute then: it travels to the
//! container service as `--bundle`, and to Docker as the source of a bind mount.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faas_common::text::clip;
use serde_json::Value;

use crate::model::bundle::{Bundle, DEFAULT_START_TIMEOUT_MS, MANIFEST, MAX_START_TIMEOUT_MS};
use crate::service::{BundleError, Bundles};

/// The largest `function.json` read (the container service's limit too).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Bundles as directories under one directory.
#[derive(Clone, Debug)]
pub struct DirBundles {
    dir: PathBuf,
}

impl DirBundles {
    /// The bundles under `dir`, which must be a directory; `flag` names the setting in the
    /// error.
    pub fn open(flag: &str, dir: &Path) -> Result<DirBundles, String> {
        let dir = std::path::absolute(dir).map_err(|e| format!("{flag} {}: {e}", dir.display()))?;
        if !dir.is_dir() {
            return Err(format!(
                "{flag} {} is not a directory (it should be the API server's DATA_DIR/bundles)",
                dir.display()
            ));
        }
        Ok(DirBundles { dir })
    }

    /// The directory, absolute.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Bundles for DirBundles {
    fn find(&self, hash: &str) -> Result<Bundle, BundleError> {
        let dir = self.dir.join(hash);
        let manifest = dir.join(MANIFEST);
        let not_here = || BundleError::NotHere {
            hash: hash.to_string(),
            dir: self.dir.display().to_string(),
        };
        let invalid = |problem: String| BundleError::Invalid {
            hash: hash.to_string(),
            problem: format!("{}: {problem}", manifest.display()),
        };
        let meta = std::fs::metadata(&manifest).map_err(|_| not_here())?;
        if !meta.is_file() {
            return Err(not_here());
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "the file is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| invalid(e.to_string()))?;
        let (start_timeout, image) = parse(&text).map_err(invalid)?;
        Ok(Bundle {
            hash: hash.to_string(),
            dir,
            start_timeout,
            image,
        })
    }
}

/// `start_timeout_ms` (or its default) and `image` of a `function.json`'s text.
fn parse(text: &str) -> Result<(Duration, Option<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("the file must hold a JSON object".into());
    };
    let start_timeout_ms = match map.get("start_timeout_ms") {
        None => DEFAULT_START_TIMEOUT_MS,
        Some(v) => v
            .as_u64()
            .filter(|ms| (1..=MAX_START_TIMEOUT_MS).contains(ms))
            .ok_or_else(|| {
                format!(
                    "start_timeout_ms must be a whole number of 1 to {MAX_START_TIMEOUT_MS} \
                     ms, got {}",
                    clip(&v.to_string())
                )
            })?,
    };
    let image = match map.get("image") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(v) => {
            return Err(format!(
                "image must be a non-empty string such as \"name:tag\", got {}",
                clip(&v.to_string())
            ));
        }
    };
    Ok((Duration::from_millis(start_timeout_ms), image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_start_timeout_and_the_image_are_read() {
        let (t, image) = parse(r#"{"command": ["x"], "protocol": "http", "other": 1}"#).unwrap();
        assert_eq!((t, image), (Duration::from_secs(10), None));
        let (t, image) =
            parse(r#"{"start_timeout_ms": 2500, "image": "fn:1", "command": []}"#).unwrap();
        assert_eq!(
            (t, image.as_deref()),
            (Duration::from_millis(2500), Some("fn:1"))
        );
        for (bad, says) in [
            ("[1]", "JSON object"),
            ("{", "not valid JSON"),
            (r#"{"start_timeout_ms": 0}"#, "start_timeout_ms must be"),
            (r#"{"start_timeout_ms": 600001}"#, "got 600001"),
            (r#"{"start_timeout_ms": "5"}"#, "start_timeout_ms must be"),
            (r#"{"start_timeout_ms": 1.5}"#, "start_timeout_ms must be"),
            (r#"{"image": ""}"#, "image must be"),
            (r#"{"image": 7}"#, "got 7"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bundle_is_found_by_its_hash_or_refused_saying_where_it_was_looked_for() {
        let root = std::env::temp_dir().join(format!("faas-bundles-{}", uuid::Uuid::new_v4()));
        let hash = "ab".repeat(32);
        std::fs::create_dir_all(root.join(&hash)).unwrap();
        std::fs::write(
            root.join(&hash).join(MANIFEST),
            r#"{"command": ["sh"], "protocol": "exec", "start_timeout_ms": 100}"#,
        )
        .unwrap();
        let bundles = DirBundles::open("--bundles-dir", &root).unwrap();
        let b = bundles.find(&hash).unwrap();
        assert_eq!(b.dir, root.join(&hash));
        assert!(b.dir.is_absolute());
        assert_eq!(b.start_timeout, Duration::from_millis(100));

        let other = "cd".repeat(32);
        let err = bundles.find(&other).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "bundle {other} is not on this node: there is no {}/{other}/function.json (is \
                 --bundles-dir the API server's DATA_DIR/bundles?)",
                root.display()
            )
        );
        // A directory without function.json is not a bundle either.
        std::fs::create_dir_all(root.join(&other)).unwrap();
        assert!(matches!(
            bundles.find(&other),
            Err(BundleError::NotHere { .. })
        ));
        std::fs::write(root.join(&other).join(MANIFEST), "[]").unwrap();
        let err = bundles.find(&other).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("bundle {other} cannot run: ")),
            "{err}"
        );
        assert!(
            err.ends_with("function.json: the file must hold a JSON object"),
            "{err}"
        );

        let missing = root.join("nope");
        let err = DirBundles::open("--bundles-dir", &missing).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
