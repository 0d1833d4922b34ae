#![allow(dead_code, unused_imports)]

//! Command functions through the real API server (fake scheduler and nodes): the code a
//! deploy uploads is on disk as a bundle named by its hash before the deploy is answered, and
//! every call carries `bundle:<hash>` as the contest's handler, so a contest scheduler passes
//! it through to the node unchanged.

include!("support/fakes.rs");

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A platform whose API server keeps its data (and bundles) in a temporary directory.
async fn with_data_dir() -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        // Keys are tested in auth.rs; these calls go without one.
        allow_anonymous: true,
        ..Config::default()
    };
    let p = start(Setup {
        config,
        ..Setup::default()
    })
    .await;
    (p, dir)
}

fn code_file(path: &str, content: &[u8], executable: bool) -> admin::CodeFile {
    admin::CodeFile {
        path: path.into(),
        content: content.to_vec(),
        executable,
    }
}

fn command_spec(name: &str, main: &[u8]) -> admin::FunctionSpec {
    admin::FunctionSpec {
        name: name.into(),
        memory_in_bytes: 128 << 20,
        timeout_in_ms: 5_000,
        command: vec!["python3".into(), "main.py".into()],
        protocol: "http".into(),
        env: [("GREETING".to_string(), "Hello".to_string())].into(),
        code: vec![
            code_file("main.py", main, false),
            code_file("bin/start.sh", b"#!/bin/sh\nexec python3 main.py\n", true),
        ],
        ..Default::default()
    }
}

fn bundle_dir(data: &Path, hash: &str) -> PathBuf {
    data.join("bundles").join(hash)
}

/// Every file of a bundle with its bytes and mode.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, std::fs::read(&path).unwrap(), mode));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_command_functions_calls_carry_its_bundle_which_is_on_disk() {
    let (mut p, data) = with_data_dir().await;
    let record = p
        .deploy(command_spec("py", b"print('hi')\n"))
        .await
        .unwrap();
    let spec = record.spec.unwrap();
    let hash = spec.bundle.clone();
    assert_eq!(hash.len(), 64, "{spec:?}");
    assert!(spec.code.is_empty(), "records never carry the code");
    assert_eq!(spec.handler, "");
    assert_eq!(spec.command, ["python3", "main.py"]);

    // On disk before the deploy was answered, exactly as sent.
    let files = snapshot(&bundle_dir(data.path(), &hash));
    let names: Vec<(&str, u32)> = files.iter().map(|(n, _, m)| (n.as_str(), *m)).collect();
    assert_eq!(
        names,
        [
            ("code/bin/start.sh", 0o755),
            ("code/main.py", 0o644),
            ("function.json", 0o644)
        ]
    );
    assert_eq!(files[1].1, b"print('hi')\n");
    let manifest: serde_json::Value = serde_json::from_slice(&files[2].1).unwrap();
    assert_eq!(
        manifest,
        serde_json::json!({
            "command": ["python3", "main.py"],
            "protocol": "http",
            "env": {"GREETING": "Hello"}
        })
    );

    // The call's handler is the bundle, at the scheduler and at the node.
    let reply = p
        .api
        .invoke_function(invoke("py", "acct", b"{}"))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().body, b"hello world");
    let calls = p.calls();
    let Call::Acquire(acquire) = &calls[0] else {
        panic!("{calls:?}")
    };
    let handler = format!("bundle:{hash}");
    assert_eq!(acquire.function_config.as_ref().unwrap().handler, handler);
    let Call::Invoke(invoked) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(invoked.function_meta.as_ref().unwrap().handler, handler);

    // The contest's list shows the same handler.
    let listed = p.list().await.functions;
    let py = listed.iter().find(|f| f.function_name == "py").unwrap();
    assert_eq!(py.handler, handler);
    p.stop().await;
}

#[tokio::test]
async fn a_published_version_keeps_its_bundle_when_the_code_changes() {
    let (mut p, data) = with_data_dir().await;
    let first = p.deploy(command_spec("py", b"v1")).await.unwrap();
    let first = first.spec.unwrap().bundle;
    let published = p
        .admin
        .publish_version(admin::PublishVersionRequest {
            name: "py".into(),
            spec: None,
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!(published.spec.unwrap().bundle, first);
    let before = snapshot(&bundle_dir(data.path(), &first));

    // The user edits main.py and deploys again.
    let second = p.deploy(command_spec("py", b"v2")).await.unwrap();
    let second = second.spec.unwrap().bundle;
    assert_ne!(second, first);
    let versions = p
        .admin
        .list_versions(admin::ListVersionsRequest { name: "py".into() })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions[0].spec.as_ref().unwrap().bundle, first);
    assert_eq!(
        snapshot(&bundle_dir(data.path(), &first)),
        before,
        "untouched"
    );

    // py:1 still runs the first code; py the second.
    for (name, hash) in [("py:1", &first), ("py", &second)] {
        p.api
            .invoke_function(invoke(name, "acct", b""))
            .await
            .unwrap();
        let acquired = p
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Acquire(a) => Some(a),
                _ => None,
            })
            .next_back()
            .unwrap();
        assert_eq!(
            acquired.function_config.unwrap().handler,
            format!("bundle:{hash}"),
            "{name}"
        );
    }

    // A version republished from its record (definition and hash, no code) is the same.
    let again = p
        .admin
        .publish_version(admin::PublishVersionRequest {
            name: "py".into(),
            spec: versions[0].spec.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created, "unchanged");
    p.stop().await;
}

#[tokio::test]
async fn without_a_data_dir_command_functions_are_refused() {
    let mut p = start(Setup::default()).await;
    let status = p.deploy(command_spec("py", b"x")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.message(),
        "function \"py\": command functions need --data-dir: their code is kept there"
    );
    p.stop().await;
}

#[tokio::test]
async fn bad_definitions_are_invalid_arguments_naming_the_field() {
    let (mut p, data) = with_data_dir().await;
    type Change = fn(&mut admin::FunctionSpec);
    let cases: Vec<(Change, &str)> = vec![
        (
            |s| s.protocol.clear(),
            "function \"py\": protocol: give the protocol",
        ),
        (
            |s| s.handler = "hello".into(),
            "function \"py\": handler: give either handler",
        ),
        (
            |s| s.code[0].path = "../escape.py".into(),
            "function \"py\": code[0].path: \"../escape.py\" holds ..",
        ),
        (
            |s| s.start_timeout_ms = 600_001,
            "function \"py\": start_timeout_ms: 600001 ms is out of range",
        ),
        (
            |s| {
                s.env.insert("NOT OK".into(), "1".into());
            },
            "function \"py\": env.NOT OK: is not a variable name",
        ),
        (
            |s| {
                s.command = vec!["/fn".into()];
                s.code.clear();
                s.image = "faas/hello:1".into();
                s.protocol.clear();
            },
            "function \"py\": protocol: give the protocol",
        ),
        (
            |s| {
                s.command.clear();
                s.code.clear();
                s.image = "faas/hello:1".into();
            },
            "function \"py\": command: an image function needs its command",
        ),
    ];
    for (change, says) in cases {
        let mut spec = command_spec("py", b"x");
        change(&mut spec);
        let status = p.deploy(spec).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(says), "{status:?}");
    }
    // An unknown bundle: nothing to reuse.
    let only = admin::FunctionSpec {
        name: "only".into(),
        memory_in_bytes: 128 << 20,
        timeout_in_ms: 1_000,
        bundle: "f".repeat(64),
        ..Default::default()
    };
    let status = p.deploy(only).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Nothing was written for any of them.
    let bundles: Vec<_> = std::fs::read_dir(data.path().join("bundles"))
        .unwrap()
        .collect();
    assert!(bundles.is_empty(), "{bundles:?}");
    p.stop().await;
}

#[tokio::test]
async fn large_code_is_taken_up_to_the_limit_and_a_bundle_reused_by_its_hash() {
    let (mut p, data) = with_data_dir().await;
    // Over the platform's usual 8 MiB message limit: the admin API takes more.
    let mut spec = command_spec("big", b"x");
    spec.code
        .push(code_file("model.bin", &vec![7u8; 12 << 20], false));
    let hash = p.deploy(spec).await.unwrap().spec.unwrap().bundle;
    let model = bundle_dir(data.path(), &hash).join("code/model.bin");
    assert_eq!(std::fs::metadata(model).unwrap().len(), 12 << 20);

    // Another function of the same code, sending only the hash: no upload.
    let reuse = admin::FunctionSpec {
        name: "reuse".into(),
        memory_in_bytes: 128 << 20,
        timeout_in_ms: 1_000,
        bundle: hash.clone(),
        ..Default::default()
    };
    let record = p.deploy(reuse).await.unwrap().spec.unwrap();
    assert_eq!(
        (record.bundle.as_str(), record.command.clone()),
        (
            hash.as_str(),
            vec!["python3".to_string(), "main.py".to_string()]
        )
    );

    // Over the code limit: refused by the rules, with the limit named.
    let mut spec = command_spec("huge", b"x");
    spec.code
        .push(code_file("a.bin", &vec![0u8; 33 << 20], false));
    let status = p.deploy(spec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("over the limit of 32 MiB"),
        "{status:?}"
    );
    p.stop().await;
}
