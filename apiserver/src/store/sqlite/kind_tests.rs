//! Schema 3 against real database files: command and image functions (and versions) round
//! trip exactly, a schema-2 database migrates with its rows as the built-ins they were, and
//! a kind this binary cannot read is named.

use std::collections::BTreeMap;

use super::routing_tests::insert_old;
use super::tests::{function, raw};
use super::*;
use crate::model::kind::{BundleKind, BundleRef, HandlerRef, Protocol};
use crate::model::routing::version_name;

fn bundle(hash_digit: char, kind: BundleKind) -> HandlerRef {
    let hash: String = std::iter::repeat_n(hash_digit, 64).collect();
    HandlerRef::Bundle(Box::new(BundleRef::new(&hash, kind)))
}

fn python() -> BundleKind {
    BundleKind {
        command: vec!["python3".into(), "main.py".into(), "--greeting='hi'".into()],
        protocol: Protocol::Http,
        image: None,
        start_timeout_ms: Some(10_000),
        env: BTreeMap::from([
            ("GREETING".into(), "Hello, \"you\"".into()),
            ("EMPTY".into(), String::new()),
        ]),
    }
}

fn image() -> BundleKind {
    BundleKind {
        command: vec![],
        protocol: Protocol::Exec,
        image: Some("faas/hello:1".into()),
        start_timeout_ms: None,
        env: BTreeMap::new(),
    }
}

fn command_function(name: &str, revision: i64, handler: HandlerRef) -> Function {
    Function {
        handler,
        ..function(name, revision)
    }
}

#[test]
fn command_and_image_functions_and_versions_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let py = command_function("py", 1, bundle('a', python()));
    let img = command_function("img", 2, bundle('b', image()));
    let mut v1 = command_function("py", 1, bundle('c', python()));
    v1.name = version_name("py", 1);
    v1.updated_at_ms = v1.created_at_ms; // a version's time is when it was published
    {
        let dao = SqliteDao::open(dir.path()).unwrap();
        dao.load_or_seed(&[function("hello", 1)]).unwrap();
        dao.put_function(&py).unwrap();
        dao.put_function(&img).unwrap();
        dao.put_version("py", &v1).unwrap();
        // A function that turns back into a built-in loses its kind columns.
        dao.put_function(&command_function("back", 1, bundle('d', image())))
            .unwrap();
        dao.put_function(&function("back", 2)).unwrap();
    }
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[]).unwrap();
    assert_eq!(
        loaded.functions,
        vec![function("back", 2), function("hello", 1), img, py]
    );
    assert_eq!(loaded.versions, vec![("py".to_string(), v1)]);
    let nulls: i64 = dao
        .conn()
        .query_row(
            "SELECT count(*) FROM functions WHERE command IS NULL AND protocol IS NULL \
             AND image IS NULL AND start_timeout_ms IS NULL AND env IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 2, "built-ins keep NULL kind columns");
    let (handler, command): (String, String) = dao
        .conn()
        .query_row(
            "SELECT handler, command FROM functions WHERE name = 'py'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(handler, format!("bundle:{}", "a".repeat(64)));
    assert_eq!(command, r#"["python3","main.py","--greeting='hi'"]"#);
}

#[test]
fn a_schema_2_database_migrates_and_its_rows_stay_built_ins() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What a binary of schema 2 wrote: a function and a published version.
        let mut conn = raw(dir.path());
        let tx = conn.transaction().unwrap();
        tx.execute_batch(schema::MIGRATIONS[0]).unwrap();
        tx.execute_batch(schema::MIGRATIONS[1]).unwrap();
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        tx.pragma_update(None, "user_version", 2).unwrap();
        insert_old(&tx, &function("old", 3));
        tx.execute(
            "INSERT INTO function_versions (function, version, handler, memory_bytes, \
             timeout_ms, description, published_at_ms) VALUES ('old', 1, 'sleep', 134217728, \
             1000, 'v1', 42)",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[function("seed", 1)]).unwrap();
    assert!(!loaded.seeded, "a migrated database is not seeded");
    assert_eq!(loaded.functions, vec![function("old", 3)]);
    let (_, v1) = &loaded.versions[0];
    assert_eq!(v1.handler, crate::model::Handler::Sleep);
    assert_eq!((v1.name.as_str(), v1.created_at_ms), ("old:1", 42));
    let schema: i64 = dao.conn().pragma_query_one(None, "user_version").unwrap();
    assert_eq!(schema, SCHEMA_VERSION, "brought up to the latest schema");

    // The migrated database takes command functions.
    let py = command_function("old", 4, bundle('e', python()));
    dao.put_function(&py).unwrap();
    drop(dao);
    let dao = SqliteDao::open(dir.path()).unwrap();
    assert_eq!(dao.load_or_seed(&[]).unwrap().functions, vec![py]);
}

#[test]
fn a_kind_this_binary_cannot_read_is_named() {
    for (update, says) in [
        (
            "UPDATE functions SET handler = 'bundle:xyz' WHERE name = 'a'",
            "function \"a\" has handler \"bundle:xyz\", whose bundle hash is not 64 lowercase hex digits",
        ),
        (
            "UPDATE functions SET protocol = 'grpc' WHERE name = 'a'",
            "function \"a\" has protocol \"grpc\", not http or exec",
        ),
        (
            "UPDATE functions SET command = 'python3 main.py' WHERE name = 'a'",
            "function \"a\" has a command that is not a JSON array of strings",
        ),
        (
            "UPDATE functions SET env = '[1]' WHERE name = 'a'",
            "function \"a\" has an env that is not a JSON object of strings",
        ),
        (
            "UPDATE functions SET handler = 'echo' WHERE name = 'a'",
            "function \"a\" has the built-in handler echo and a command, protocol or image",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let dao = SqliteDao::open(dir.path()).unwrap();
            dao.load_or_seed(&[command_function("a", 1, bundle('f', python()))])
                .unwrap();
        }
        raw(dir.path()).execute(update, []).unwrap();
        let dao = SqliteDao::open(dir.path()).unwrap();
        let err = dao.load_or_seed(&[]).unwrap_err().to_string();
        assert!(err.contains(says), "{update}: {err}");
    }
}
