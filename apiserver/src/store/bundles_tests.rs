//! The bundle directory on a real file system: whole or absent, never rewritten.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use super::*;

const HASH: &str = "5e1f0c3c9b0a1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c";

fn files() -> Vec<CodeFile> {
    vec![
        CodeFile {
            path: "main.py".into(),
            content: b"print('hi')\n".to_vec(),
            executable: false,
        },
        CodeFile {
            path: "bin/deep/run.sh".into(),
            content: b"#!/bin/sh\n".to_vec(),
            executable: true,
        },
        CodeFile {
            path: "empty".into(),
            content: Vec::new(),
            executable: false,
        },
    ]
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_bundle_is_written_whole_with_its_modes_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirBundles::open(&dir.path().join("bundles")).unwrap();
    assert_eq!(store.manifest(HASH).unwrap(), None);
    assert!(store.put(HASH, b"{}\n", &files()).unwrap());
    let b = store.path(HASH);
    assert_eq!(names(&b), ["code", "function.json"]);
    assert_eq!(fs::read(b.join("function.json")).unwrap(), b"{}\n");
    assert_eq!(fs::read(b.join("code/main.py")).unwrap(), b"print('hi')\n");
    assert_eq!(mode(&b.join("code/main.py")), 0o644);
    assert_eq!(mode(&b.join("code/bin/deep/run.sh")), 0o755);
    assert_eq!(fs::read(b.join("code/empty")).unwrap(), b"");
    assert_eq!(store.manifest(HASH).unwrap().unwrap(), b"{}\n");
    assert_eq!(
        names(&dir.path().join("bundles")),
        [HASH],
        "no temporary left"
    );

    // No files: function.json alone, no code directory.
    let other = "1".repeat(64);
    assert!(store.put(&other, b"{\"protocol\":\"exec\"}", &[]).unwrap());
    assert_eq!(names(&store.path(&other)), ["function.json"]);
}

#[test]
fn an_existing_bundle_is_reused_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirBundles::open(dir.path()).unwrap();
    assert!(store.put(HASH, b"{}\n", &files()).unwrap());
    let main = store.path(HASH).join("code/main.py");
    let before = fs::metadata(&main).unwrap().modified().unwrap();
    // Even other bytes under the same name are not written: the name is the content.
    assert!(!store.put(HASH, b"other", &[]).unwrap());
    assert_eq!(
        fs::read(store.path(HASH).join("function.json")).unwrap(),
        b"{}\n"
    );
    assert_eq!(fs::metadata(&main).unwrap().modified().unwrap(), before);
    assert_eq!(names(dir.path()), [HASH]);
}

#[test]
fn a_write_that_fails_midway_leaves_no_half_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirBundles::open(dir.path()).unwrap();
    store.fail_after_files.store(1, Ordering::SeqCst);
    let err = store.put(HASH, b"{}\n", &files()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot store the bundle {}",
            store.path(HASH).display()
        )),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("(injected failure); nothing was changed"),
        "{err}"
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    assert_eq!(store.manifest(HASH).unwrap(), None);
    // The next write of it succeeds.
    store.fail_after_files.store(usize::MAX, Ordering::SeqCst);
    assert!(store.put(HASH, b"{}\n", &files()).unwrap());
}

#[test]
fn what_a_crash_left_half_written_is_removed_at_open_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    // A crash between the first file and the rename.
    let tmp = dir.path().join(format!(".tmp-{HASH}-1234"));
    fs::create_dir_all(tmp.join("code")).unwrap();
    fs::write(tmp.join("function.json"), b"{}\n").unwrap();
    fs::write(tmp.join("code/main.py"), b"print(").unwrap();
    let done = "2".repeat(64);
    fs::create_dir_all(dir.path().join(&done)).unwrap();
    fs::write(dir.path().join(&done).join("function.json"), b"{}").unwrap();

    let store = DirBundles::open(dir.path()).unwrap();
    assert_eq!(
        store.manifest(HASH).unwrap(),
        None,
        "never under its final name"
    );
    assert_eq!(
        names(dir.path()),
        [done],
        "the leftover is gone, the bundle kept"
    );
    assert!(store.put(HASH, b"{}\n", &files()).unwrap());
    assert_eq!(
        fs::read(store.path(HASH).join("code/main.py")).unwrap(),
        b"print('hi')\n"
    );
}

#[test]
fn only_hashes_name_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirBundles::open(dir.path()).unwrap();
    for bad in ["../etc", "", &"A".repeat(64), &"a".repeat(63)] {
        assert!(store.put(bad, b"{}", &[]).is_err(), "{bad}");
        assert!(store.manifest(bad).is_err(), "{bad}");
    }
    assert!(names(dir.path()).is_empty());
}

#[test]
fn concurrent_writers_of_one_bundle_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(DirBundles::open(dir.path()).unwrap());
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.put(HASH, b"{}\n", &files()).unwrap())
        })
        .collect();
    let wrote: usize = writers
        .into_iter()
        .map(|w| usize::from(w.join().unwrap()))
        .sum();
    assert_eq!(wrote, 1, "exactly one wrote it");
    assert_eq!(names(dir.path()), [HASH]);
    assert_eq!(
        names(&store.path(HASH).join("code")),
        ["bin", "empty", "main.py"]
    );
}
