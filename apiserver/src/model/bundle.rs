//! A bundle's content and its name: the canonical `function.json`, and the SHA-256 that
//! names the bundle's directory. Pure functions: the API server (which writes bundles) and
//! `faas deploy` (which tells "unchanged" from "changed" without uploading) compute the same.
//!
//! # `function.json`
//!
//! [`manifest`] writes a [`BundleKind`] as JSON with a fixed key order and without the fields
//! left at their defaults, so one definition always gives the same bytes:
//!
//! ```json
//! {
//!   "command": ["python3", "main.py"],
//!   "protocol": "http",
//!   "start_timeout_ms": 10000,
//!   "env": {"GREETING": "Hello"},
//!   "image": "faas/hello:1"
//! }
//! ```
//!
//! (`command` is left out when empty: an image function running its image's own command;
//! `start_timeout_ms`, `env` and `image` when not given.) The container service reads it.
//!
//! # The hash
//!
//! [`bundle_hash`] is the SHA-256 of one unambiguous byte string, in lowercase hex:
//!
//! ```text
//! "mini-faas bundle 1\n"
//! u64 length of function.json, function.json
//! u64 number of files
//! for each file, sorted by path (bytewise):
//!     u64 length of the path, the path, 1 byte executable (0 or 1), u64 length, content
//! ```
//!
//! Every integer is 8 bytes big-endian. Each field is length-prefixed, so no two different
//! bundles encode alike (a path cannot run into its content), and the order of the files as
//! given does not matter. A changed byte, executable bit, path, or definition changes the
//! hash; nothing else does (not the time, the owner or the other permission bits).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::kind::{BundleKind, CodeFile, Protocol};

/// The name of the definition file at a bundle's root.
pub const MANIFEST_FILE: &str = "function.json";
/// The directory of the user's files inside a bundle (present when there are files).
pub const CODE_DIR: &str = "code";
/// What the hashed encoding starts with: its version.
const DOMAIN: &[u8] = b"mini-faas bundle 1\n";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_timeout_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

/// `kind`'s `function.json`, always the same bytes for the same definition.
pub fn manifest(kind: &BundleKind) -> Vec<u8> {
    let m = Manifest {
        command: kind.command.clone(),
        protocol: kind.protocol.as_str().to_string(),
        start_timeout_ms: kind.start_timeout_ms,
        env: kind.env.clone(),
        image: kind.image.clone(),
    };
    // Serializing strings, numbers and string maps cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The definition a `function.json` holds (not yet checked against the rules: the caller
/// validates it as it would a deploy). Only what [`manifest`] writes is read.
pub fn parse_manifest(bytes: &[u8]) -> Result<BundleKind, String> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let protocol = Protocol::parse(&m.protocol)
        .ok_or_else(|| format!("protocol {:?} is not http or exec", m.protocol))?;
    Ok(BundleKind {
        command: m.command,
        protocol,
        image: m.image,
        start_timeout_ms: m.start_timeout_ms,
        env: m.env,
    })
}

fn put_len(h: &mut Sha256, n: usize) {
    h.update((n as u64).to_be_bytes());
}

/// The bundle's name: the SHA-256 (lowercase hex) of `manifest` and `files` as the module
/// documentation encodes them. The files may come in any order.
pub fn bundle_hash(manifest: &[u8], files: &[CodeFile]) -> String {
    let mut sorted: Vec<&CodeFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut h = Sha256::new();
    h.update(DOMAIN);
    put_len(&mut h, manifest.len());
    h.update(manifest);
    put_len(&mut h, sorted.len());
    for f in sorted {
        put_len(&mut h, f.path.len());
        h.update(f.path.as_bytes());
        h.update([u8::from(f.executable)]);
        put_len(&mut h, f.content.len());
        h.update(&f.content);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kind::is_bundle_hash;

    fn kind() -> BundleKind {
        BundleKind {
            command: vec!["python3".into(), "main.py".into()],
            protocol: Protocol::Http,
            image: None,
            start_timeout_ms: Some(10_000),
            env: BTreeMap::from([("GREETING".into(), "Hello".into())]),
        }
    }

    fn file(path: &str, content: &str, executable: bool) -> CodeFile {
        CodeFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            executable,
        }
    }

    fn files() -> Vec<CodeFile> {
        vec![
            file("main.py", "print('hi')\n", false),
            file("bin/run.sh", "#!/bin/sh\n", true),
        ]
    }

    #[test]
    fn the_manifest_is_canonical_json_the_container_service_reads() {
        let text = String::from_utf8(manifest(&kind())).unwrap();
        assert_eq!(
            text,
            "{\n  \"command\": [\n    \"python3\",\n    \"main.py\"\n  ],\n  \"protocol\": \"http\",\n  \"start_timeout_ms\": 10000,\n  \"env\": {\n    \"GREETING\": \"Hello\"\n  }\n}\n"
        );
        assert_eq!(parse_manifest(text.as_bytes()).unwrap(), kind());
        let bare = BundleKind {
            command: vec![],
            protocol: Protocol::Exec,
            image: Some("faas/x:1".into()),
            start_timeout_ms: None,
            env: BTreeMap::new(),
        };
        let text = String::from_utf8(manifest(&bare)).unwrap();
        assert_eq!(
            text,
            "{\n  \"protocol\": \"exec\",\n  \"image\": \"faas/x:1\"\n}\n"
        );
        assert_eq!(parse_manifest(text.as_bytes()).unwrap(), bare);
        assert!(parse_manifest(b"{\"protocol\": \"grpc\"}").is_err());
        assert!(parse_manifest(b"{\"protocol\": \"http\", \"x\": 1}").is_err());
    }

    #[test]
    fn the_hash_is_stable_across_runs_and_orders() {
        let m = manifest(&kind());
        let h = bundle_hash(&m, &files());
        assert!(is_bundle_hash(&h), "{h}");
        // Written down once: a change of the encoding changes every bundle's name, so it must
        // be deliberate (and bump the DOMAIN version).
        assert_eq!(
            h,
            "2b8cbc6472a5618c6a12a020e53de1c3ed7528fcb4e7d98668e1591e4e1e6b57"
        );
        let mut reversed = files();
        reversed.reverse();
        assert_eq!(bundle_hash(&m, &reversed), h);
        assert_eq!(
            bundle_hash(&m, &[]),
            bundle_hash(&m, &[]),
            "no files: still one name"
        );
    }

    #[test]
    fn any_byte_bit_path_or_definition_changes_the_hash() {
        let m = manifest(&kind());
        let base = bundle_hash(&m, &files());
        let mut seen = std::collections::HashSet::from([base.clone()]);
        let mut changed = |files: Vec<CodeFile>, manifest: &[u8]| {
            let h = bundle_hash(manifest, &files);
            assert!(seen.insert(h.clone()), "a change kept the hash {h}");
        };
        let mut f = files();
        f[0].content.push(b' ');
        changed(f, &m);
        let mut f = files();
        f[0].content[0] ^= 1;
        changed(f, &m);
        let mut f = files();
        f[1].executable = false;
        changed(f, &m);
        let mut f = files();
        f[0].path = "main2.py".into();
        changed(f, &m);
        let mut f = files();
        f.pop();
        changed(f, &m);
        let mut f = files();
        f.push(file("empty", "", false));
        changed(f, &m);
        // A path cannot run into its content: "ab" + "c" differs from "a" + "bc".
        changed(vec![file("ab", "c", false)], &m);
        changed(vec![file("a", "bc", false)], &m);
        let mut k = kind();
        k.protocol = Protocol::Exec;
        changed(files(), &manifest(&k));
        let mut k = kind();
        k.env.insert("A".into(), "b".into());
        changed(files(), &manifest(&k));
    }
}
