//! Reading code directories from a real file system.

use std::os::unix::fs::symlink;

use super::*;

fn write(dir: &Path, rel: &str, content: &[u8], mode: u32) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn paths(code: &CodeDir) -> Vec<(&str, bool)> {
    code.files
        .iter()
        .map(|f| (f.path.as_str(), f.executable))
        .collect()
}

#[test]
fn every_file_is_read_with_its_executable_bit_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "main.py", b"print(1)", 0o644);
    write(d, "bin/run.sh", b"#!/bin/sh", 0o700);
    write(d, ".env", b"A=1", 0o600);
    write(d, "lib/x/y.py", b"", 0o444);
    fs::create_dir_all(d.join("logs/empty")).unwrap();
    symlink("main.py", d.join("alias.py")).unwrap();
    let code = read_code_dir(d).unwrap();
    assert_eq!(
        paths(&code),
        [
            (".env", false),
            ("alias.py", false),
            ("bin/run.sh", true),
            ("lib/x/y.py", false),
            ("main.py", false)
        ]
    );
    assert_eq!(
        code.files[1].content, b"print(1)",
        "a link inside is read as its file"
    );
    assert_eq!(code.empty_dirs, ["logs", "logs/empty"]);
    assert_eq!(code.total_bytes(), 8 + 8 + 9 + 3);
}

#[test]
fn links_out_of_the_directory_and_odd_files_are_refused_by_name() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", b"s", 0o644);
    type Make<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: [(&str, Make); 4] = [
        (
            "outside the code directory",
            Box::new(|d: &Path| symlink(outside.path().join("secret"), d.join("s")).unwrap()),
        ),
        (
            "a broken link",
            Box::new(|d: &Path| symlink(d.join("missing"), d.join("s")).unwrap()),
        ),
        (
            "a symbolic link to a directory",
            Box::new(|d: &Path| {
                fs::create_dir(d.join("real")).unwrap();
                write(d, "real/f", b"", 0o644);
                symlink(d.join("real"), d.join("s")).unwrap();
            }),
        ),
        (
            "outside the code directory",
            Box::new(|d: &Path| {
                // Relative, through the parent both temporary directories share.
                let name = outside.path().file_name().unwrap().to_str().unwrap();
                assert_eq!(outside.path().parent(), d.parent());
                symlink(format!("../{name}/secret"), d.join("s")).unwrap()
            }),
        ),
    ];
    for (says, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path());
        let err = read_code_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(says), "{err} should say {says}");
        assert!(
            err.contains(&dir.path().join("s").display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_fifo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // no mkfifo here: nothing to test with
    }
    let err = read_code_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is not a regular file"), "{err}");
}

#[test]
fn a_missing_directory_or_a_file_is_named() {
    let err = read_code_dir(Path::new("/nonexistent/code")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the code directory /nonexistent/code cannot be read"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f", b"", 0o644);
    let err = read_code_dir(&dir.path().join("f")).unwrap_err();
    assert!(err.to_string().ends_with("is not a directory"), "{err}");
}

#[test]
fn too_much_code_is_refused_before_it_is_read_naming_the_largest() {
    let dir = tempfile::tempdir().unwrap();
    let big = fs::File::create(dir.path().join("model.bin")).unwrap();
    big.set_len(MAX_CODE_BYTES).unwrap();
    write(dir.path(), "main.py", b"x", 0o644);
    let err = read_code_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("over the limit of 32 MiB"), "{err}");
    assert!(
        err.ends_with(&format!(
            "(the largest: model.bin ({MAX_CODE_BYTES} bytes), main.py (1 bytes))"
        )),
        "{err}"
    );
}

#[test]
fn a_setup_reads_its_directories_relative_to_the_file() {
    let base = tempfile::tempdir().unwrap();
    write(base.path(), "fn/v2/main.sh", b"echo 2", 0o755);
    write(base.path(), "fn/cur/main.sh", b"echo cur", 0o755);
    fs::create_dir_all(base.path().join("fn/cur/tmp")).unwrap();
    let text = r#"
        [[function]]
        name = "sh"
        command = ["sh", "main.sh"]
        code = "fn/cur"
        protocol = "exec"
        memory_mb = 128
        timeout_ms = 1000
        [[function.version]]
        version = 1
        handler = "echo"
        [[function.version]]
        version = 2
        command = ["sh", "main.sh"]
        code = "fn/v2"
        protocol = "exec"
    "#;
    let mut setup = crate::service::file::parse_setup_toml(text, "f.toml").unwrap();
    let notes = load_setup_code(&mut setup, "f.toml", base.path()).unwrap();
    let f = &setup.functions[0];
    assert_eq!(f.spec.code[0].content, b"echo cur");
    assert!(f.versions[0].spec.code.is_empty());
    assert_eq!(f.versions[1].spec.code[0].content, b"echo 2");
    assert_eq!(
        notes,
        [
            "sh: code: the directory tmp/ holds no file and is not kept (put a file in it if your program needs it)"
        ]
    );

    let mut missing =
        crate::service::file::parse_setup_toml(&text.replace("fn/v2", "fn/v3"), "f.toml").unwrap();
    let err = load_setup_code(&mut missing, "f.toml", base.path()).unwrap_err();
    let expected = format!(
        "f.toml: entry 1: function \"sh\": version[1].code: the code directory {} cannot be read: No such file or directory (os error 2)",
        base.path().join("fn/v3").display()
    );
    assert_eq!(err.to_string(), expected);
}
