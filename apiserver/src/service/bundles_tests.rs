//! Deploying and publishing command functions through the registry, over a real bundle
//! directory and the fake database.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::model::MIB;
use crate::model::kind::CodeFile;
use crate::store::DirBundles;
use crate::store::dao::StoreError;
use crate::store::fake::FakeDao;

fn file(path: &str, content: &str, executable: bool) -> CodeFile {
    CodeFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        executable,
    }
}

fn command_spec(name: &str, code: Vec<CodeFile>) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 5_000,
        command: vec!["python3".into(), "main.py".into()],
        protocol: "http".into(),
        code,
        ..FunctionSpec::default()
    }
}

fn main_py(text: &str) -> Vec<CodeFile> {
    vec![
        file("main.py", text, false),
        file("bin/start.sh", "#!/bin/sh\n", true),
    ]
}

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    dao: Arc<FakeDao>,
    registry: Registry,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundles");
    let bundles: Arc<dyn BundleStore> = Arc::new(DirBundles::open(&root).unwrap());
    let dao = Arc::new(FakeDao::default());
    let registry = Registry::open_with(dao.clone(), Some(bundles), vec![], 0)
        .unwrap()
        .registry;
    Setup {
        _dir: dir,
        root,
        dao,
        registry,
    }
}

fn hash_of(f: &Function) -> String {
    f.handler
        .bundle()
        .expect("a bundle function")
        .hash()
        .to_string()
}

/// Every file below `dir` with its bytes and mode, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_command_function_is_stored_as_its_bundle_before_the_database() {
    let s = setup();
    let f = s
        .registry
        .deploy(command_spec("py", main_py("print(1)")), 10)
        .unwrap()
        .function;
    let hash = hash_of(&f);
    assert_eq!(f.handler.as_str(), format!("bundle:{hash}"));
    let kind = &f.handler.bundle().unwrap().kind;
    assert_eq!(
        hash,
        bundle_hash(&manifest(kind), &main_py("print(1)")),
        "the name is the content's hash"
    );
    let files = tree(&s.root.join(&hash));
    let names: Vec<(&str, u32)> = files.iter().map(|(n, _, m)| (n.as_str(), *m)).collect();
    assert_eq!(
        names,
        [
            ("code/bin/start.sh", 0o755),
            ("code/main.py", 0o644),
            ("function.json", 0o644)
        ]
    );
    assert_eq!(files[1].1, b"print(1)");
    assert_eq!(parse_manifest(&files[2].1).unwrap(), *kind);
    // The database holds the definition and the hash, never the code.
    let row = &s.dao.rows()[0];
    assert_eq!(row.handler, f.handler);
    assert!(row.spec().code.is_empty());
    assert_eq!(row.spec().bundle, hash);
}

#[test]
fn a_published_version_keeps_its_bundle_when_the_source_changes() {
    let s = setup();
    let v1 = s
        .registry
        .deploy(command_spec("py", main_py("print(1)")), 10)
        .unwrap()
        .function;
    let (version, created) = s.registry.publish("py", None, None, 20).unwrap();
    assert!(created);
    let first = hash_of(&v1);
    assert_eq!(hash_of(&version), first);
    let before = tree(&s.root.join(&first));

    // The user edits a file and deploys again: a new bundle for the current definition.
    let current = s
        .registry
        .deploy(command_spec("py", main_py("print(2)")), 30)
        .unwrap()
        .function;
    let second = hash_of(&current);
    assert_ne!(second, first);
    assert_eq!(hash_of(&s.registry.get("py:1").unwrap()), first);
    assert_eq!(
        tree(&s.root.join(&first)),
        before,
        "version 1's bundle is untouched"
    );
    assert_eq!(tree(&s.root.join(&second))[1].1, b"print(2)");
    assert_eq!(hash_of(&s.dao.versions()[0].1), first);

    // Deploying the same code again reuses the bundle as it is.
    let again = s
        .registry
        .deploy(command_spec("py", main_py("print(1)")), 40)
        .unwrap()
        .function;
    assert_eq!(hash_of(&again), first);
    assert_eq!(tree(&s.root.join(&first)), before);
}

#[test]
fn a_bundle_is_reused_by_its_hash_alone_or_with_its_definition() {
    let s = setup();
    let f = s
        .registry
        .deploy(command_spec("py", main_py("x")), 1)
        .unwrap()
        .function;
    let hash = hash_of(&f);

    // The record sent back (definition and hash, no code): the same function.
    let mut record = f.spec();
    record.name = "copy".into();
    let copy = s.registry.deploy(record.clone(), 2).unwrap().function;
    assert_eq!(copy.handler, f.handler);

    // Only the hash: the definition is read from the bundle.
    let only = FunctionSpec {
        name: "only".into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 1_000,
        bundle: hash.clone(),
        ..FunctionSpec::default()
    };
    let only = s.registry.deploy(only, 3).unwrap().function;
    assert_eq!(only.handler, f.handler);
    // Publishing a version from it keeps the hash too.
    let (v, _) = s
        .registry
        .publish("only", Some(only.spec()), Some(1), 4)
        .unwrap();
    assert_eq!(hash_of(&v), hash);

    // Another definition under the same hash is refused, and so is an unknown hash.
    let mut other = record.clone();
    other.protocol = "exec".into();
    let err = s.registry.deploy(other, 5).unwrap_err();
    assert!(
        matches!(&err, RegistryError::BadKind { field, .. } if field == "bundle"),
        "{err}"
    );
    let mut unknown = record.clone();
    unknown.bundle = "0".repeat(64);
    let err = s.registry.deploy(unknown, 6).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "function \"copy\": bundle {} is not on this server: send the code with it (faas deploy FILE does)",
            "0".repeat(64)
        )
    );
    // Code and a hash that is not its own.
    let mut wrong = command_spec("py", main_py("y"));
    wrong.bundle = hash.clone();
    let err = s.registry.deploy(wrong, 7).unwrap_err();
    assert!(err.to_string().contains("leave bundle empty"), "{err}");
}

#[test]
fn without_a_bundle_store_command_functions_are_refused() {
    let registry = Registry::new();
    let err = registry
        .deploy(command_spec("py", main_py("x")), 1)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "function \"py\": command functions need --data-dir: their code is kept there"
    );
    assert!(registry.is_empty());
    // Built-ins need none.
    let hello = FunctionSpec {
        name: "hello".into(),
        handler: "hello".into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 1_000,
        ..FunctionSpec::default()
    };
    registry.deploy(hello, 1).unwrap();
}

/// A bundle store whose writes fail, as a full disk would.
#[derive(Debug)]
struct FullDisk;

impl BundleStore for FullDisk {
    fn put(&self, hash: &str, _: &[u8], _: &[CodeFile]) -> Result<bool, StoreError> {
        Err(StoreError::Bundle {
            path: format!("/data/bundles/{hash}").into(),
            reason: "No space left on device".into(),
        })
    }
    fn manifest(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn describe(&self) -> String {
        "a full disk".into()
    }
}

#[test]
fn a_bundle_that_cannot_be_written_leaves_the_database_untouched() {
    let dao = Arc::new(FakeDao::default());
    let registry = Registry::open_with(dao.clone(), Some(Arc::new(FullDisk)), vec![], 0)
        .unwrap()
        .registry;
    let calls = dao.calls();
    let err = registry
        .deploy(command_spec("py", main_py("x")), 1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotSaved {
                action: "deployed",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("(No space left on device); nothing was changed"),
        "{err}"
    );
    assert_eq!(dao.calls(), calls, "the database was not written");
    assert!(registry.is_empty());
}

#[test]
fn seeded_command_functions_get_their_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundles");
    let bundles: Arc<dyn BundleStore> = Arc::new(DirBundles::open(&root).unwrap());
    let dao = Arc::new(FakeDao::default());
    let opened = Registry::open_with(
        dao.clone(),
        Some(bundles.clone()),
        vec![command_spec("py", main_py("seed"))],
        0,
    )
    .unwrap();
    assert!(opened.seeded);
    let f = opened.registry.get("py").unwrap();
    assert!(root.join(hash_of(&f)).join("code/main.py").is_file());
    // Opened again over what it stored: the same function, its bundle found.
    let again = Registry::open_with(dao, Some(bundles), vec![], 0).unwrap();
    assert_eq!(again.registry.get("py").unwrap(), f);
}
