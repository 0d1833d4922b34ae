//! Schema 2 against real database files: versions, aliases and route policies, the migration
//! of a schema-1 file, and the in-memory fake held to the same behaviour.

use std::collections::BTreeMap;

use super::tests::{function, raw};
use super::*;
use crate::model::Handler;
use crate::model::routing::{
    BreakerConfig, Fallback, FallbackOn, Rule, TargetRef, Weighted, version_name,
};
use crate::store::fake::FakeDao;

fn version(name: &str, n: i64) -> Function {
    let mut v = function(name, 1);
    v.name = version_name(name, n);
    v.revision = n;
    v.handler = if n % 2 == 0 {
        Handler::Sleep
    } else {
        Handler::Hello
    }
    .into();
    v.memory_bytes = 128 * crate::model::MIB * n;
    v.created_at_ms = 1_700_000_100_000 + n;
    v.updated_at_ms = v.created_at_ms;
    v
}

fn weights(pairs: &[(i64, u32)]) -> Vec<Weighted> {
    pairs
        .iter()
        .map(|&(version, weight)| Weighted { version, weight })
        .collect()
}

fn alias(function: &str, name: &str, targets: &[(i64, u32)], previous: &[(i64, u32)]) -> Alias {
    Alias {
        function: function.into(),
        name: name.into(),
        targets: weights(targets),
        previous: weights(previous),
        updated_at_ms: 1_700_000_200_000,
    }
}

/// A policy with every part: a default, rules, a fallback and a breaker.
fn policy() -> RoutePolicy {
    RoutePolicy {
        default: Some(TargetRef::parse("f:live")),
        rules: vec![
            Rule {
                route_id: Some("vip-1".into()),
                target: TargetRef::parse("f:2"),
                ..Rule::default()
            },
            Rule {
                route_id: None,
                route_id_regex: Some("^canary-[0-9]+$".into()),
                fields: BTreeMap::from([
                    ("wareHouseId".into(), "2001".into()),
                    ("ünï \"q\"".into(), "'; DROP TABLE aliases;".into()),
                ]),
                target: TargetRef::parse("g"),
            },
        ],
        fallback: Some(Fallback {
            target: TargetRef::parse("f:1"),
            on: FallbackOn {
                not_found: true,
                error: false,
                timeout: true,
            },
            share_percent: 12.5,
        }),
        breaker: Some(BreakerConfig {
            latency_baseline_ms: 250,
            max_error_percent: 33.3,
            ..BreakerConfig::default()
        }),
    }
}

fn open_seeded(dir: &Path) -> SqliteDao {
    let dao = SqliteDao::open(dir).unwrap();
    dao.load_or_seed(&[function("f", 1), function("g", 1)])
        .unwrap();
    dao
}

/// Stores versions, aliases and a policy of `f` and `g`, out of order.
fn store_routing(dao: &dyn FunctionDao) {
    dao.put_version("f", &version("f", 2)).unwrap();
    dao.put_version("g", &version("g", 1)).unwrap();
    dao.put_version("f", &version("f", 1)).unwrap();
    dao.put_alias(&alias("f", "live", &[(1, 100)], &[]))
        .unwrap();
    dao.put_alias(&alias("g", "beta", &[(1, 100)], &[]))
        .unwrap();
    // Replaced: the previous targets are kept for a rollback.
    dao.put_alias(&alias("f", "live", &[(1, 90), (2, 10)], &[(1, 100)]))
        .unwrap();
    dao.put_alias(&alias("f", "canary", &[(2, 100)], &[]))
        .unwrap();
    dao.put_policy("f", Some(&RoutePolicy::default())).unwrap();
    dao.put_policy("f", Some(&policy())).unwrap();
}

/// What [`Loaded`] holds besides functions.
type Routing = (
    Vec<(String, Function)>,
    Vec<Alias>,
    Vec<(String, RoutePolicy)>,
);

fn stored_routing() -> Routing {
    (
        vec![
            ("f".into(), version("f", 1)),
            ("f".into(), version("f", 2)),
            ("g".into(), version("g", 1)),
        ],
        vec![
            alias("f", "canary", &[(2, 100)], &[]),
            alias("f", "live", &[(1, 90), (2, 10)], &[(1, 100)]),
            alias("g", "beta", &[(1, 100)], &[]),
        ],
        vec![("f".into(), policy())],
    )
}

fn routing_of(loaded: Loaded) -> Routing {
    (loaded.versions, loaded.aliases, loaded.policies)
}

#[test]
fn versions_aliases_and_policies_round_trip_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let dao = open_seeded(dir.path());
        store_routing(&dao);
        assert_eq!(routing_of(dao.load_or_seed(&[]).unwrap()), stored_routing());
    }
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[function("ignored", 1)]).unwrap();
    assert!(!loaded.seeded);
    assert_eq!(loaded.functions, vec![function("f", 1), function("g", 1)]);
    assert_eq!(routing_of(loaded), stored_routing());

    // What the sqlite3 tool sees: the documented JSON.
    drop(dao);
    let conn = raw(dir.path());
    let (targets, previous): (String, String) = conn
        .query_row(
            "SELECT targets, previous FROM aliases WHERE function = 'f' AND alias = 'live'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        targets,
        r#"[{"version":1,"weight":90},{"version":2,"weight":10}]"#
    );
    assert_eq!(previous, r#"[{"version":1,"weight":100}]"#);
    let canary_previous: String = conn
        .query_row(
            "SELECT previous FROM aliases WHERE alias = 'canary'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(canary_previous, "[]");
    let (share, handler): (f64, String) = conn
        .query_row(
            "SELECT json_extract(policy, '$.fallback.share_percent'), \
             (SELECT handler FROM function_versions WHERE function = 'f' AND version = 2) \
             FROM route_policies WHERE function = 'f'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((share, handler.as_str()), (12.5, "sleep"));
}

#[test]
fn deletes_say_whether_they_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dao = open_seeded(dir.path());
    store_routing(&dao);
    assert!(dao.delete_version("f", 2).unwrap());
    assert!(!dao.delete_version("f", 2).unwrap());
    assert!(!dao.delete_version("nope", 1).unwrap());
    assert!(dao.delete_alias("f", "canary").unwrap());
    assert!(!dao.delete_alias("f", "canary").unwrap());
    assert!(!dao.delete_alias("g", "live").unwrap());
    dao.put_policy("f", None).unwrap();
    dao.put_policy("f", None).unwrap();
    dao.put_policy("nope", None).unwrap();

    let loaded = dao.load_or_seed(&[]).unwrap();
    let versions: Vec<_> = loaded
        .versions
        .iter()
        .map(|(_, v)| v.name.as_str())
        .collect();
    assert_eq!(versions, ["f:1", "g:1"]);
    let aliases: Vec<_> = loaded.aliases.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(aliases, ["live", "beta"]);
    assert_eq!(loaded.policies, vec![]);
    // Another function's, or the function itself, untouched.
    assert_eq!(loaded.functions, vec![function("f", 1), function("g", 1)]);
}

#[test]
fn deleting_a_function_deletes_its_versions_aliases_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let dao = open_seeded(dir.path());
    let on: i64 = dao.conn().pragma_query_one(None, "foreign_keys").unwrap();
    assert_eq!(on, 1, "foreign keys are enforced");
    store_routing(&dao);
    dao.put_policy("g", Some(&RoutePolicy::default())).unwrap();
    assert!(dao.delete_function("f").unwrap());

    let loaded = dao.load_or_seed(&[]).unwrap();
    assert_eq!(loaded.functions, vec![function("g", 1)]);
    assert_eq!(loaded.versions, vec![("g".into(), version("g", 1))]);
    assert_eq!(loaded.aliases, vec![alias("g", "beta", &[(1, 100)], &[])]);
    assert_eq!(loaded.policies, vec![("g".into(), RoutePolicy::default())]);

    // A function deployed again under the name starts with nothing.
    dao.put_function(&function("f", 2)).unwrap();
    let loaded = dao.load_or_seed(&[]).unwrap();
    assert!(loaded.versions.iter().all(|(f, _)| f == "g"));
    assert!(loaded.aliases.iter().all(|a| a.function == "g"));
}

/// The write's reason, or a panic for any other error.
fn write_refusal(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Write { reason, .. }) => reason,
        other => panic!("not a refused write: {other:?}"),
    }
}

#[test]
fn versions_are_immutable_and_rows_need_their_function() {
    let dir = tempfile::tempdir().unwrap();
    let dao = open_seeded(dir.path());
    dao.put_version("f", &version("f", 1)).unwrap();
    let mut changed = version("f", 1);
    changed.handler = Handler::Spin.into();
    let err = dao.put_version("f", &changed).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the database at {} cannot be written (version 1 of f exists; versions are immutable); nothing was changed",
            dir.path().join(DATABASE_FILE).display()
        )
    );
    for (result, want) in [
        (
            dao.put_version("nope", &version("nope", 1)),
            "there is no function nope",
        ),
        (
            dao.put_alias(&alias("nope", "live", &[(1, 100)], &[])),
            "there is no function nope",
        ),
        (
            dao.put_policy("nope", Some(&policy())),
            "there is no function nope",
        ),
        (
            dao.put_version("f", &version("g", 2)),
            "a version of f with revision 2 must be named f:2, not g:2",
        ),
    ] {
        assert_eq!(write_refusal(result), want);
    }
    let reason = write_refusal(dao.put_version("f", &version("f", 0)));
    assert!(reason.contains("CHECK"), "{reason}");

    let loaded = dao.load_or_seed(&[]).unwrap();
    assert_eq!(loaded.versions, vec![("f".into(), version("f", 1))]);
    assert_eq!((loaded.aliases, loaded.policies), (vec![], vec![]));
}

#[test]
fn a_policy_that_would_not_load_again_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let dao = open_seeded(dir.path());
    let mut bad = policy();
    bad.fallback.as_mut().unwrap().share_percent = f64::NAN;
    let reason = write_refusal(dao.put_policy("f", Some(&bad)));
    assert!(
        reason.starts_with("the route policy of f cannot be stored: "),
        "{reason}"
    );
    assert_eq!(dao.load_or_seed(&[]).unwrap().policies, vec![]);
}

/// Inserts `f` (a built-in) as a binary of schema 1 or 2 did: without the kind columns.
pub(super) fn insert_old(tx: &Transaction<'_>, f: &Function) {
    tx.execute(
        "INSERT INTO functions (name, handler, memory_bytes, timeout_ms, description, revision, \
         created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            f.name,
            f.handler.as_str(),
            f.memory_bytes,
            f.timeout_ms,
            f.description,
            f.revision,
            f.created_at_ms,
            f.updated_at_ms
        ],
    )
    .unwrap();
}

#[test]
fn a_schema_1_database_gains_the_new_tables_and_keeps_its_functions() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What a binary of schema 1 wrote.
        let mut conn = raw(dir.path());
        let tx = conn.transaction().unwrap();
        tx.execute_batch(schema::MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        insert_old(&tx, &function("old", 3));
        tx.commit().unwrap();
    }
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[function("seed", 1)]).unwrap();
    assert!(!loaded.seeded, "a migrated database is not seeded");
    assert_eq!(loaded.functions, vec![function("old", 3)]);
    assert_eq!(routing_of(loaded), (vec![], vec![], vec![]));
    let schema: i64 = dao.conn().pragma_query_one(None, "user_version").unwrap();
    assert_eq!(schema, SCHEMA_VERSION);

    dao.put_version("old", &version("old", 1)).unwrap();
    dao.put_alias(&alias("old", "live", &[(1, 100)], &[]))
        .unwrap();
    dao.put_policy("old", Some(&policy())).unwrap();
    drop(dao);
    let dao = SqliteDao::open(dir.path()).unwrap();
    let loaded = dao.load_or_seed(&[]).unwrap();
    assert_eq!(loaded.versions, vec![("old".into(), version("old", 1))]);
    assert_eq!(loaded.aliases.len(), 1);
    assert_eq!(loaded.policies, vec![("old".into(), policy())]);
}

#[test]
fn a_row_this_binary_cannot_read_refuses_the_load_and_is_named() {
    let cases = [
        (
            "UPDATE aliases SET targets = '[{\"version\":1}]' WHERE alias = 'live'",
            "the targets of alias \"live\" of function \"f\" (table aliases) is not JSON this binary can read: missing field `weight`",
        ),
        (
            "UPDATE aliases SET previous = 'oops' WHERE alias = 'canary'",
            "the previous of alias \"canary\" of function \"f\" (table aliases) is not JSON this binary can read: expected value",
        ),
        (
            "UPDATE route_policies SET policy = '{\"rules\": 7}' WHERE function = 'f'",
            "the route policy of function \"f\" (table route_policies) is not JSON this binary can read: invalid type",
        ),
        (
            "UPDATE function_versions SET handler = 'perl' WHERE function = 'g'",
            "version 1 of function \"g\" (table function_versions) has handler \"perl\", which is not one of hello, echo, sleep, cpu, memory, spin (or bundle:<sha256>)",
        ),
    ];
    for (sql, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let dao = open_seeded(dir.path());
        store_routing(&dao);
        raw(dir.path()).execute(sql, []).unwrap();
        let err = dao.load_or_seed(&[]).unwrap_err();
        let StoreError::BadRow { path, reason } = &err else {
            panic!("{sql}: {err}");
        };
        assert_eq!(path, &dir.path().join(DATABASE_FILE));
        assert!(reason.starts_with(want), "{sql}: {reason}");
        assert!(
            err.to_string()
                .ends_with("; fix or delete its row with the sqlite3 tool, or start with --fresh"),
            "{err}"
        );
    }
}

/// The service's unit tests use the fake: it must answer as the database does.
#[test]
fn the_fake_behaves_like_the_database() {
    fn script(dao: &dyn FunctionDao) -> (Loaded, Vec<Result<bool, String>>) {
        let seed = [function("f", 1), function("g", 1)];
        assert!(dao.load_or_seed(&seed).unwrap().seeded);
        store_routing(dao);
        let reason = |e: StoreError| match e {
            StoreError::Write { reason, .. } => reason,
            other => panic!("{other}"),
        };
        let unit = |r: Result<(), StoreError>| r.map(|()| true).map_err(reason);
        let outcomes = vec![
            unit(dao.put_version("f", &version("f", 1))),
            unit(dao.put_version("f", &version("g", 3))),
            unit(dao.put_version("nope", &version("nope", 1))),
            unit(dao.put_alias(&alias("nope", "a", &[(1, 100)], &[]))),
            unit(dao.put_policy("nope", Some(&policy()))),
            unit(dao.put_policy("nope", None)),
            dao.delete_version("f", 2).map_err(reason),
            dao.delete_version("f", 2).map_err(reason),
            dao.delete_alias("f", "canary").map_err(reason),
            dao.delete_alias("f", "canary").map_err(reason),
            dao.delete_function("g").map_err(reason),
        ];
        (dao.load_or_seed(&[]).unwrap(), outcomes)
    }
    let dir = tempfile::tempdir().unwrap();
    let real = script(&SqliteDao::open(dir.path()).unwrap());
    let fake = FakeDao::default();
    assert_eq!(script(&fake), real);
    assert_eq!(real.0.versions, vec![("f".into(), version("f", 1))]);
    assert_eq!(fake.versions(), real.0.versions);
    assert_eq!(fake.aliases(), real.0.aliases);
    assert_eq!(fake.policies(), real.0.policies);

    fake.fail_writes(true);
    let reason = write_refusal(fake.put_alias(&alias("f", "x", &[(1, 100)], &[])));
    assert_eq!(reason, "database or disk is full");
    fake.freeze();
    let frozen = std::panic::catch_unwind(|| fake.delete_alias("f", "live"));
    assert!(frozen.is_err(), "a frozen fake panics");
}
