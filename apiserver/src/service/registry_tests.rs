//! The registry's rules and its write-through to the (fake) database.

use super::*;
use crate::store::fake::FakeDao;

fn spec(name: &str) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        handler: "hello".into(),
        memory_bytes: 128 * MIB,
        timeout_ms: 60_000,
        description: "says hello".into(),
        ..Default::default()
    }
}

#[test]
fn names_follow_the_rules() {
    assert!(validate_spec(&spec("a")).is_ok());
    assert!(validate_spec(&spec("Hello_world-2")).is_ok());
    assert!(validate_spec(&spec(&"x".repeat(64))).is_ok());
    assert_eq!(validate_spec(&spec("")), Err(RegistryError::EmptyName));
    let err = validate_spec(&spec(&"x".repeat(65))).unwrap_err();
    assert!(
        matches!(err, RegistryError::NameTooLong { chars: 65, .. }),
        "{err}"
    );
    let err = validate_spec(&spec("a b")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "function name \"a b\" contains ' ': use only letters, digits, '_' and '-'"
    );
    assert!(validate_spec(&spec("héllo")).is_err());
    assert!(validate_spec(&spec("a/b")).is_err());
}

#[test]
fn handler_memory_and_timeout_are_bounded() {
    let mut s = spec("f");
    s.handler = "python3".into();
    let err = validate_spec(&s).unwrap_err();
    assert!(err.to_string().contains("handler \"python3\""), "{err}");

    for (mem, ok) in [
        (64 * MIB, true),
        (3072 * MIB, true),
        (64 * MIB - 1, false),
        (3072 * MIB + 1, false),
        (0, false),
        (-MIB, false),
    ] {
        let mut s = spec("f");
        s.memory_bytes = mem;
        assert_eq!(validate_spec(&s).is_ok(), ok, "memory {mem}");
    }
    let mut s = spec("f");
    s.memory_bytes = 32 * MIB;
    assert_eq!(
        validate_spec(&s).unwrap_err().to_string(),
        "function \"f\": memory of 32 MiB is out of range: give 64 to 3072 MiB"
    );

    for (timeout, ok) in [
        (1, true),
        (900_000, true),
        (0, false),
        (900_001, false),
        (-5, false),
    ] {
        let mut s = spec("f");
        s.timeout_ms = timeout;
        assert_eq!(validate_spec(&s).is_ok(), ok, "timeout {timeout}");
    }
}

#[test]
fn absurd_input_is_refused_and_never_echoed_whole() {
    let huge = "x".repeat(1 << 20);
    let mut cases = vec![
        spec(&huge),
        spec(&format!("{huge} with a space")),
        spec(&"é".repeat(300)),
    ];
    let mut s = spec("f");
    s.handler = huge.clone();
    cases.push(s);
    for memory_bytes in [0, -1, i64::MIN, 1_000_000_000_000_000_000, i64::MAX] {
        let mut s = spec("f");
        s.memory_bytes = memory_bytes;
        cases.push(s);
    }
    for timeout_ms in [-1, i64::MIN, 24 * 3_600_000 + 1, i64::MAX] {
        let mut s = spec("f");
        s.timeout_ms = timeout_ms;
        cases.push(s);
    }
    for s in cases {
        let err = validate_spec(&s).unwrap_err();
        let message = err.to_string();
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
    }
    let mut s = spec("f");
    s.handler = huge;
    let message = validate_spec(&s).unwrap_err().to_string();
    assert!(message.contains("(1048576 bytes)"), "{message}");
    assert!(
        message.ends_with("(one of hello, echo, sleep, cpu, memory, spin)"),
        "{message}"
    );
    let message = Registry::new()
        .get(&"y".repeat(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(message.len() < 200, "{message}");
}

#[test]
fn deploy_creates_then_replaces_with_the_next_revision() {
    let registry = Registry::new();
    let first = registry.deploy(spec("hello"), 1_000).unwrap();
    assert!(first.created);
    assert_eq!(first.function.revision, 1);
    assert_eq!(
        (first.function.created_at_ms, first.function.updated_at_ms),
        (1_000, 1_000)
    );

    let mut changed = spec("hello");
    changed.memory_bytes = 256 * MIB;
    changed.handler = "echo".into();
    let second = registry.deploy(changed, 2_000).unwrap();
    assert!(!second.created);
    assert_eq!(second.function.revision, 2);
    assert_eq!(second.function.handler, Handler::Echo);
    assert_eq!(second.function.memory_bytes, 256 * MIB);
    assert_eq!(
        (second.function.created_at_ms, second.function.updated_at_ms),
        (1_000, 2_000)
    );
    assert_eq!(registry.get("hello").unwrap(), second.function);
    assert_eq!(registry.len(), 1);
}

#[test]
fn an_invalid_redeploy_leaves_the_function_as_it_was() {
    let registry = Registry::new();
    registry.deploy(spec("f"), 1).unwrap();
    let mut bad = spec("f");
    bad.timeout_ms = 0;
    assert!(registry.deploy(bad, 2).is_err());
    let f = registry.get("f").unwrap();
    assert_eq!((f.revision, f.timeout_ms), (1, 60_000));
}

#[test]
fn get_delete_and_list() {
    let registry = Registry::new();
    for name in ["zeta", "alpha", "mid"] {
        registry.deploy(spec(name), 5).unwrap();
    }
    let names: Vec<_> = registry.list().iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);

    assert_eq!(registry.delete("mid").unwrap().name, "mid");
    let err = registry.delete("mid").unwrap_err();
    assert_eq!(err.to_string(), "function mid not found");
    let err = registry.get("mid").unwrap_err();
    assert_eq!(err, RegistryError::NotFound { name: "mid".into() });
    assert_eq!(registry.get(""), Err(RegistryError::EmptyName));
    assert_eq!(registry.len(), 2);

    // A deleted name starts again at revision 1.
    assert_eq!(
        registry.deploy(spec("mid"), 9).unwrap().function.revision,
        1
    );
}

fn stored(name: &str, revision: i64) -> Function {
    Function {
        name: name.into(),
        handler: Handler::Echo.into(),
        memory_bytes: 256 * MIB,
        timeout_ms: 1_000,
        description: String::new(),
        revision,
        created_at_ms: 100,
        updated_at_ms: 200,
    }
}

fn open(dao: &Arc<FakeDao>, seed: Vec<FunctionSpec>) -> Opened {
    Registry::open(dao.clone(), seed, 1_000).unwrap()
}

#[test]
fn open_seeds_a_new_store_and_keeps_an_existing_one() {
    let dao = Arc::new(FakeDao::default());
    let opened = open(&dao, vec![spec("hello")]);
    assert!(opened.seeded);
    let hello = opened.registry.get("hello").unwrap();
    assert_eq!((hello.revision, hello.created_at_ms), (1, 1_000));
    assert_eq!(dao.rows(), vec![(*hello).clone()]);

    let dao = Arc::new(FakeDao::holding([stored("f", 7)]));
    let opened = open(&dao, vec![spec("hello")]);
    assert!(!opened.seeded);
    let registry = opened.registry;
    assert_eq!(
        registry.get("hello"),
        Err(RegistryError::NotFound {
            name: "hello".into()
        })
    );
    assert_eq!(*registry.get("f").unwrap(), stored("f", 7));
    // Revisions go on from what was stored, and the creation time stays.
    let f = registry.deploy(spec("f"), 5_000).unwrap().function;
    assert_eq!(
        (f.revision, f.created_at_ms, f.updated_at_ms),
        (8, 100, 5_000)
    );
    assert_eq!(dao.rows(), vec![(*f).clone()]);
    registry.delete("f").unwrap();
    assert!(dao.rows().is_empty());
    assert!(registry.is_empty());
}

#[test]
fn a_write_the_store_refuses_changes_nothing() {
    let dao = Arc::new(FakeDao::default());
    let registry = open(&dao, vec![spec("kept")]).registry;
    let before = registry.list();
    dao.fail_writes(true);

    let err = registry.deploy(spec("new"), 2_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "function \"new\" was not deployed: the database at /fake/apiserver.db cannot be written (database or disk is full); nothing was changed"
    );
    assert!(matches!(
        err,
        RegistryError::NotSaved {
            action: "deployed",
            ..
        }
    ));
    let mut changed = spec("kept");
    changed.timeout_ms = 5;
    assert!(registry.deploy(changed.clone(), 2_000).is_err());
    let err = registry.delete("kept").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("function \"kept\" was not deleted: "),
        "{err}"
    );
    assert_eq!(registry.list(), before);
    assert_eq!(
        registry.get("new"),
        Err(RegistryError::NotFound { name: "new".into() })
    );

    // Nothing half-done is left behind: the next write starts from the same state.
    dao.fail_writes(false);
    let kept = registry.deploy(changed, 3_000).unwrap().function;
    assert_eq!((kept.revision, kept.timeout_ms), (2, 5));
    assert_eq!(dao.rows(), vec![(*kept).clone()]);
}

#[test]
fn a_stored_function_that_breaks_the_rules_refuses_the_start() {
    let mut tiny = stored("tiny", 1);
    tiny.memory_bytes = MIB;
    let dao = Arc::new(FakeDao::holding([stored("a", 1), tiny]));
    let err = Registry::open(dao, vec![], 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the fake database: function \"tiny\": memory of 1 MiB is out of range: give 64 to 3072 MiB; fix or delete its row with the sqlite3 tool, or start with --fresh"
    );
    // An invalid start-up function is refused before the store is touched.
    let dao = Arc::new(FakeDao::default());
    let mut bad = spec("bad");
    bad.handler = "perl".into();
    assert!(Registry::open(dao.clone(), vec![bad], 0).is_err());
    assert_eq!(dao.calls(), 0);
}

#[test]
fn concurrent_deploys_of_one_name_each_get_their_own_revision() {
    let dao = Arc::new(FakeDao::default());
    let registry = Arc::new(open(&dao, vec![]).registry);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| registry.deploy(spec("f"), i).unwrap().function.revision)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut revisions: Vec<i64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
    let f = registry.get("f").unwrap();
    assert_eq!(f.revision, 200);
    assert_eq!(dao.rows(), vec![(*f).clone()]);
}
