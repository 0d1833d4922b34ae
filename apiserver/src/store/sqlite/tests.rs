//! The SQLite DAO against real database files in temporary directories.

use super::*;
use crate::model::{Handler, MIB};

pub(super) fn function(name: &str, revision: i64) -> Function {
    Function {
        name: name.into(),
        handler: Handler::Echo.into(),
        memory_bytes: 256 * MIB,
        timeout_ms: 1_500,
        description: format!("{name}: ünïcödé, 'quotes' and \"doubles\"; DROP TABLE functions;"),
        revision,
        created_at_ms: 1_700_000_000_000 + revision,
        updated_at_ms: 1_700_000_000_500 + revision,
    }
}

/// A connection of our own to `dir`'s database, bypassing the DAO.
pub(super) fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join(DATABASE_FILE)).unwrap()
}

/// Every file in `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != LOCK_FILE)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Opening `dir` fails with `want`, and leaves every file in it as it was.
fn refused(dir: &Path) -> StoreError {
    let before = snapshot(dir);
    let err = SqliteDao::open(dir).unwrap_err();
    assert_eq!(
        snapshot(dir),
        before,
        "a refused open changed {}",
        dir.display()
    );
    err
}

#[test]
fn a_new_database_is_seeded_once_and_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vec![function("b", 1), function("a", 1)];
    {
        let dao = SqliteDao::open(dir.path()).unwrap();
        let loaded = dao.load_or_seed(&seed).unwrap();
        assert!(loaded.seeded);
        assert_eq!(loaded.functions, vec![function("a", 1), function("b", 1)]);

        let mut big = function("c", 9);
        big.handler = Handler::Memory.into();
        big.memory_bytes = 3072 * MIB;
        big.timeout_ms = 900_000;
        big.description = "d".repeat(1 << 20);
        dao.put_function(&big).unwrap();
        dao.put_function(&function("a", 2)).unwrap();
        assert!(dao.delete_function("b").unwrap());
        assert!(!dao.delete_function("b").unwrap());
    }
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[function("ignored", 1)]).unwrap();
    assert!(!loaded.seeded, "an existing database is not seeded again");
    let names: Vec<_> = loaded.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(loaded.functions[0], function("a", 2));
    let c = &loaded.functions[1];
    assert_eq!(
        (c.handler.clone(), c.memory_bytes, c.timeout_ms),
        (Handler::Memory.into(), 3072 * MIB, 900_000)
    );
    assert_eq!((c.revision, c.description.len()), (9, 1 << 20));
    assert_eq!(
        dao.describe(),
        format!(
            "the database at {}",
            dir.path().join(DATABASE_FILE).display()
        )
    );

    // What the sqlite3 tool sees.
    drop(dao);
    let conn = raw(dir.path());
    let version: i64 = conn.pragma_query_one(None, "user_version").unwrap();
    let id: i64 = conn.pragma_query_one(None, "application_id").unwrap();
    let mode: String = conn.pragma_query_one(None, "journal_mode").unwrap();
    assert_eq!(
        (version, id, mode.as_str()),
        (SCHEMA_VERSION, i64::from(APPLICATION_ID), "wal")
    );
    let revision: i64 = conn
        .query_row("SELECT revision FROM functions WHERE name = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(revision, 2);
}

#[test]
fn a_seed_that_fails_leaves_the_database_new() {
    let dir = tempfile::tempdir().unwrap();
    let dao = SqliteDao::open(dir.path()).unwrap();
    // The same name twice: the second insert fails, and with it the schema and the first.
    let err = dao
        .load_or_seed(&[function("a", 1), function("a", 1)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Write { .. }), "{err}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert!(err.to_string().ends_with("; nothing was changed"), "{err}");
    let version: i64 = raw(dir.path())
        .pragma_query_one(None, "user_version")
        .unwrap();
    assert_eq!(version, 0);
    let loaded = dao.load_or_seed(&[function("a", 1)]).unwrap();
    assert!(loaded.seeded);
    assert_eq!(loaded.functions, vec![function("a", 1)]);
}

#[test]
fn a_write_the_database_refuses_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dao = SqliteDao::open(dir.path()).unwrap();
    dao.load_or_seed(&[function("a", 1)]).unwrap();
    // Revision 0 breaks the table's CHECK: the transaction rolls back.
    let err = dao.put_function(&function("a", 0)).unwrap_err();
    assert!(matches!(err, StoreError::Write { .. }), "{err}");
    assert!(err.to_string().contains("CHECK"), "{err}");
    drop(dao);
    let dao = SqliteDao::open(dir.path()).unwrap();
    assert_eq!(
        dao.load_or_seed(&[]).unwrap().functions,
        vec![function("a", 1)]
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    SqliteDao::open(dir.path())
        .unwrap()
        .load_or_seed(&[function("a", 1)])
        .unwrap();
    raw(dir.path())
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = refused(dir.path());
    let path = dir.path().join(DATABASE_FILE);
    assert_eq!(
        err.to_string(),
        format!(
            "the database at {} was written by a newer version of mini-faas (schema {}, this binary knows {}); use a newer binary or --fresh",
            path.display(),
            SCHEMA_VERSION + 1,
            SCHEMA_VERSION
        )
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let text = "my shopping list\n".repeat(300).into_bytes();
    let binary: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for bytes in [text, binary] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        std::fs::write(&path, &bytes).unwrap();
        let err = refused(dir.path());
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not a mini-faas database (file is not a database); move it away or start with --fresh",
                path.display()
            )
        );
    }
}

#[test]
fn a_damaged_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let functions: Vec<Function> = (0..200).map(|i| function(&format!("f{i:03}"), 1)).collect();
    SqliteDao::open(dir.path())
        .unwrap()
        .load_or_seed(&functions)
        .unwrap();
    // Scribble over the table's pages, past the file header.
    let path = dir.path().join(DATABASE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[4096..3 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = refused(dir.path());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{} is not a mini-faas database (damaged: ",
            path.display()
        )),
        "{message}"
    );
    assert!(
        message.ends_with("; move it away or start with --fresh"),
        "{message}"
    );
}

#[test]
fn another_programs_database_is_refused_and_left_alone() {
    type Setup = fn(&Connection);
    let cases: [(Setup, &str); 3] = [
        (
            |c| {
                c.execute_batch(
                    "CREATE TABLE users (id INTEGER); CREATE TABLE orders (id INTEGER);",
                )
                .unwrap()
            },
            "it holds tables orders, users but no mini-faas mark: another program's database",
        ),
        (
            |c| c.pragma_update(None, "application_id", 0x1234).unwrap(),
            "its application id is 0x1234, mini-faas's is 0x4d466153: another program's database",
        ),
        (
            |c| c.pragma_update(None, "user_version", 3).unwrap(),
            "schema version 3 but no mini-faas mark: another program's database",
        ),
    ];
    for (setup, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        setup(&raw(dir.path()));
        let err = refused(dir.path());
        assert_eq!(
            err,
            StoreError::NotOurs {
                path: dir.path().join(DATABASE_FILE),
                reason: reason.into()
            }
        );
    }
}

#[test]
fn a_row_with_an_unknown_handler_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dao = SqliteDao::open(dir.path()).unwrap();
    dao.load_or_seed(&[function("a", 1)]).unwrap();
    raw(dir.path())
        .execute("UPDATE functions SET handler = 'perl' WHERE name = 'a'", [])
        .unwrap();
    let err = dao.load_or_seed(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the database at {} holds a function this binary cannot read (function \"a\" has handler \"perl\", which is not one of hello, echo, sleep, cpu, memory, spin (or bundle:<sha256>)); fix or delete its row with the sqlite3 tool, or start with --fresh",
            dir.path().join(DATABASE_FILE).display()
        )
    );
}

#[test]
fn one_api_server_per_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteDao::open(dir.path()).unwrap();
    let want = StoreError::InUse {
        dir: dir.path().to_path_buf(),
        holder: format!("pid {}", std::process::id()),
    };
    assert_eq!(SqliteDao::open(dir.path()).unwrap_err(), want);
    let announced = std::cell::Cell::new(false);
    let err = remove_database(dir.path(), |_| announced.set(true)).unwrap_err();
    assert_eq!(err, want);
    assert!(
        !announced.get(),
        "nothing is announced that will not happen"
    );
    assert!(
        want.to_string()
            .ends_with("stop it, or give this one another --data-dir"),
        "{want}"
    );
    drop(first);
    SqliteDao::open(dir.path()).unwrap();
}

/// Children started elsewhere in this process share the open lock file until they run their
/// program: without patience, about every other reopen here would be refused as "in use".
#[test]
fn a_lock_a_starting_child_holds_for_a_moment_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut children = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::process::Command::new("true").status().unwrap();
                children += 1;
            }
            children
        }
    });
    let refused = (0..300)
        .filter(|_| SqliteDao::open(dir.path()).is_err())
        .count();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(spawner.join().unwrap() > 0);
    assert_eq!(refused, 0);
}

#[test]
fn remove_database_deletes_only_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    assert_eq!(
        remove_database(&missing, |files| assert!(files.is_empty())).unwrap(),
        Vec::<PathBuf>::new()
    );
    assert!(
        !missing.exists(),
        "nothing is created for nothing to delete"
    );

    let dao = SqliteDao::open(dir.path()).unwrap();
    dao.load_or_seed(&[function("a", 1)]).unwrap();
    let open_files = database_files(dir.path());
    assert!(
        open_files.contains(&dir.path().join("apiserver.db-wal")),
        "{open_files:?}"
    );
    drop(dao);
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let mut announced = Vec::new();
    let removed = remove_database(dir.path(), |files| {
        announced = files.to_vec();
        assert!(files.iter().all(|f| f.exists()), "announced after deleting");
    })
    .unwrap();
    assert_eq!(removed, vec![dir.path().join(DATABASE_FILE)]);
    assert_eq!(announced, removed);
    assert!(database_files(dir.path()).is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
    let loaded = SqliteDao::open(dir.path())
        .unwrap()
        .load_or_seed(&[function("z", 1)])
        .unwrap();
    assert!(loaded.seeded);
}

#[test]
fn unusable_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = SqliteDao::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::DataDir { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot use the data directory {}: ",
            file.display()
        )),
        "{err}"
    );

    std::fs::create_dir(dir.path().join(DATABASE_FILE)).unwrap();
    let err = SqliteDao::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a mini-faas database (it is a directory); move it away or start with --fresh",
            dir.path().join(DATABASE_FILE).display()
        )
    );
}
