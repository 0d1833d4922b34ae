//! Every rule of a function's kind, through `validate_spec` as a deploy meets it.

use super::*;
use crate::model::MIB;
use crate::service::registry::validate_spec;

fn spec() -> FunctionSpec {
    FunctionSpec {
        name: "f".into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 1_000,
        command: vec!["python3".into(), "main.py".into()],
        protocol: "http".into(),
        ..FunctionSpec::default()
    }
}

fn file(path: &str) -> CodeFile {
    CodeFile {
        path: path.into(),
        content: b"x".to_vec(),
        executable: false,
    }
}

/// `spec` changed by `change` is refused with `field` and a message containing `says`.
fn refused(change: impl FnOnce(&mut FunctionSpec), field: &str, says: &str) {
    let mut s = spec();
    change(&mut s);
    let err = validate_spec(&s).unwrap_err();
    let RegistryError::BadKind {
        field: got,
        problem,
        ..
    } = &err
    else {
        panic!("{field}: not a BadKind: {err}");
    };
    assert_eq!(got, field, "{err}");
    assert!(
        problem.contains(says),
        "{field}: {problem:?} should say {says:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("function \"f\": {field}: ")),
        "{message}"
    );
    assert!(message.len() < 400, "{message}");
}

#[test]
fn the_three_kinds_are_told_apart() {
    let Kind::Bundle(k) = validate_spec(&spec()).unwrap() else {
        panic!("a command function")
    };
    assert_eq!(k.summary(), "python3 main.py (http)");
    assert_eq!((k.image, k.start_timeout_ms), (None, None));

    let mut image = spec();
    image.command = vec!["/hello".into()];
    image.image = "faas/hello:1".into();
    let Kind::Bundle(k) = validate_spec(&image).unwrap() else {
        panic!("an image function")
    };
    assert_eq!(k.summary(), "image faas/hello:1: /hello (http)");

    let mut hello = spec();
    hello.command.clear();
    hello.protocol.clear();
    hello.handler = "hello".into();
    assert_eq!(
        validate_spec(&hello).unwrap(),
        Kind::Builtin(Handler::Hello)
    );

    let mut only = FunctionSpec {
        bundle: "ab".repeat(32),
        ..spec()
    };
    only.command.clear();
    only.protocol.clear();
    assert_eq!(validate_spec(&only).unwrap(), Kind::Stored("ab".repeat(32)));

    let mut none = spec();
    none.command.clear();
    none.protocol.clear();
    assert_eq!(
        validate_spec(&none).unwrap_err().to_string(),
        "function \"f\": give handler (a built-in: hello, echo, sleep, cpu, memory, spin), command (your program, with its code) or image (a local Docker image)"
    );
}

#[test]
fn every_mistake_names_its_field() {
    refused(|s| s.handler = "hello".into(), "handler", "not both");
    refused(
        |s| {
            s.command.clear();
            s.image = "x:1".into();
            s.handler = "hello".into();
        },
        "handler",
        "or image",
    );
    refused(|s| s.command = vec!["".into()], "command[0]", "is empty");
    refused(|s| s.command.push("a\0b".into()), "command[2]", "NUL");
    refused(
        |s| s.command = vec!["x".repeat(MAX_ARG_BYTES + 1)],
        "command[0]",
        "over the limit",
    );
    refused(
        |s| s.command = vec!["a".into(); MAX_COMMAND_ARGS + 1],
        "command",
        "arguments",
    );
    refused(
        |s| s.protocol.clear(),
        "protocol",
        "http (a server on $PORT)",
    );
    refused(
        |s| s.protocol = "grpc".into(),
        "protocol",
        "\"grpc\" is not one of http, exec",
    );
    refused(
        |s| {
            s.image = "faas/x:1".into();
            s.protocol.clear();
        },
        "protocol",
        "give the protocol",
    );
    refused(
        |s| {
            s.command.clear();
            s.image = "faas/x:1".into();
        },
        "command",
        "an image function needs its command",
    );
    for ms in [-1, MAX_START_TIMEOUT_MS + 1, i64::MIN, i64::MAX] {
        refused(
            |s| s.start_timeout_ms = ms,
            "start_timeout_ms",
            "out of range",
        );
    }
    refused(
        |s| {
            s.env.insert("MY VAR".into(), "1".into());
        },
        "env.MY VAR",
        "not a variable name",
    );
    refused(
        |s| {
            s.env.insert("1X".into(), "1".into());
        },
        "env.1X",
        "not a variable name",
    );
    refused(
        |s| {
            s.env.insert("".into(), "1".into());
        },
        "env.",
        "not a variable name",
    );
    refused(
        |s| {
            s.env.insert("PORT".into(), "1".into());
        },
        "env.PORT",
        "set by the platform",
    );
    refused(
        |s| {
            s.env.insert("A".into(), "x\0".into());
        },
        "env.A",
        "NUL",
    );
    refused(|s| s.image = "faas hello".into(), "image", "holds ' '");
    refused(
        |s| {
            s.image = "faas/x:1".into();
            s.code = vec![file("a")];
        },
        "code",
        "in its image",
    );
    refused(|s| s.bundle = "xyz".into(), "bundle", "not a bundle hash");
    refused(
        |s| {
            s.command.clear();
            s.code = vec![file("a")];
        },
        "command",
        "give the command",
    );
}

#[test]
fn a_builtin_takes_none_of_the_command_fields() {
    let builtin = |change: fn(&mut FunctionSpec)| {
        move |s: &mut FunctionSpec| {
            s.command.clear();
            s.protocol.clear();
            s.handler = "echo".into();
            change(s);
        }
    };
    refused(
        builtin(|s| s.protocol = "http".into()),
        "protocol",
        "takes no protocol",
    );
    refused(
        builtin(|s| s.start_timeout_ms = 5),
        "start_timeout_ms",
        "takes no",
    );
    refused(
        builtin(|s| {
            s.env.insert("A".into(), "b".into());
        }),
        "env",
        "takes no env",
    );
    refused(
        builtin(|s| s.code = vec![file("a")]),
        "code",
        "takes no code",
    );
    refused(
        builtin(|s| s.bundle = "ab".repeat(32)),
        "bundle",
        "takes no bundle",
    );
}

#[test]
fn code_paths_are_plain_relative_paths_each_once() {
    let ok = vec![
        file("main.py"),
        file("lib/util.py"),
        file(".env"),
        file("a b/c..d"),
    ];
    let mut s = spec();
    s.code = ok;
    assert!(validate_spec(&s).is_ok());

    for (path, says) in [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "holds .."),
        ("a/../../x", "holds .."),
        ("./x", "holds ."),
        ("a//b", "an empty part"),
        ("a/", "an empty part"),
        ("a\0b", "NUL"),
    ] {
        refused(
            |s| s.code = vec![file("ok.py"), file(path)],
            "code[1].path",
            says,
        );
    }
    refused(
        |s| s.code = vec![file(&"x".repeat(MAX_CODE_PATH_BYTES + 1))],
        "code[0].path",
        "over the limit",
    );
    refused(
        |s| s.code = vec![file("a.py"), file("b.py"), file("a.py")],
        "code[2].path",
        "given twice",
    );
    refused(
        |s| s.code = vec![file("lib/x/y.py"), file("lib")],
        "code[0].path",
        "inside \"lib\", which is a file",
    );
}

#[test]
fn code_is_bounded_in_files_and_bytes() {
    refused(
        |s| {
            s.code = (0..=MAX_CODE_FILES)
                .map(|i| file(&format!("f{i}")))
                .collect();
        },
        "code",
        "files, over the limit of 10000",
    );
    let half = (MAX_CODE_BYTES / 2 + 1) as usize;
    refused(
        |s| {
            s.code = vec![
                CodeFile {
                    path: "a".into(),
                    content: vec![0; half],
                    executable: false,
                },
                CodeFile {
                    path: "b".into(),
                    content: vec![0; half],
                    executable: false,
                },
            ];
        },
        "code",
        "over the limit of 32 MiB",
    );
}
