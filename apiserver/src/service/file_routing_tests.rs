//! Tests of `file_routing.rs`: a whole setup file, the defaults, and every mistake naming its
//! field as spelled in the file.

use crate::model::MIB;
use crate::model::routing::{
    BreakerConfig, Fallback, FallbackOn, RoutePolicy, Rule, TargetRef, Weighted,
};
use crate::service::file::{AliasSpec, ChainSpec, VersionSpec, parse_setup_toml};

const SHOP: &str = r#"
    [[function]]
    name = "shop"
    handler = "echo"
    memory_mb = 128
    timeout_ms = 1000
    description = "A shop."
"#;

/// The error of `SHOP` followed by `extra`.
fn err(extra: &str) -> String {
    parse_setup_toml(&format!("{SHOP}{extra}"), "shop.toml")
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

/// Asserts the error of `SHOP` + `extra` is `field: problem` in entry 1 of shop.toml.
fn says(extra: &str, field_and_problem: &str) {
    assert_eq!(
        err(extra),
        format!("shop.toml: entry 1: function \"shop\": {field_and_problem}"),
        "{extra}"
    );
}

#[test]
fn a_whole_setup_parses() {
    let text = format!(
        r#"{SHOP}
        [[function.version]]
        version = 1
        handler = "echo"
        [[function.version]]
        version = 2
        handler = "sleep"
        memory_mb = 256
        timeout_ms = 2000
        description = "slower"

        [[function.alias]]
        name = "live"
        targets = "1=90,2=10"
        [[function.alias]]
        name = "canary"
        targets = 2

        [function.routes]
        default = "shop:live"
        [[function.routes.rules]]
        route_id = "vip"
        target = "shop:2"
        [[function.routes.rules]]
        route_id_regex = "^test-"
        fields = {{ wareHouseId = 2001, express = true, region = "eu" }}
        target = "shop:canary"
        [function.routes.fallback]
        target = "shop:1"
        on = ["error", "timeout"]
        share_percent = 5
        [function.routes.breaker]
        latency_baseline_ms = 50
        min_calls = 5

        [[function]]
        name = "plain"
        handler = "hello"
        memory_mb = 64
        timeout_ms = 10
        "#
    );
    let setup = parse_setup_toml(&text, "shop.toml").unwrap();
    assert_eq!(setup.functions.len(), 2);
    let shop = &setup.functions[0];
    assert!(shop.has_routing());
    assert!(!setup.functions[1].has_routing());
    assert_eq!(setup.functions[1].routes, None);
    let v1 = shop.spec.clone();
    assert_eq!(
        shop.versions,
        vec![
            VersionSpec {
                version: 1,
                spec: v1.clone(),
                code: None,
            },
            VersionSpec {
                version: 2,
                spec: crate::model::FunctionSpec {
                    handler: "sleep".into(),
                    memory_bytes: 256 * MIB,
                    timeout_ms: 2000,
                    description: "slower".into(),
                    ..v1
                },
                code: None,
            },
        ]
    );
    let w = |version, weight| Weighted { version, weight };
    assert_eq!(
        shop.aliases,
        vec![
            AliasSpec {
                name: "live".into(),
                targets: vec![w(1, 90), w(2, 10)]
            },
            AliasSpec {
                name: "canary".into(),
                targets: vec![w(2, 100)]
            },
        ]
    );
    let want = RoutePolicy {
        default: Some(TargetRef::parse("shop:live")),
        rules: vec![
            Rule {
                route_id: Some("vip".into()),
                target: TargetRef::parse("shop:2"),
                ..Rule::default()
            },
            Rule {
                route_id_regex: Some("^test-".into()),
                fields: [
                    ("wareHouseId", "2001"),
                    ("express", "true"),
                    ("region", "eu"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                target: TargetRef::parse("shop:canary"),
                ..Rule::default()
            },
        ],
        fallback: Some(Fallback {
            target: TargetRef::parse("shop:1"),
            on: FallbackOn {
                not_found: false,
                error: true,
                timeout: true,
            },
            share_percent: 5.0,
        }),
        breaker: Some(BreakerConfig {
            latency_baseline_ms: 50,
            min_calls: 5,
            ..BreakerConfig::default()
        }),
    };
    assert_eq!(shop.routes.as_ref(), Some(&want));
}

#[test]
fn defaults_a_fallback_on_every_failure_and_an_empty_routes_table_clears() {
    let setup = parse_setup_toml(
        &format!("{SHOP}[function.routes.fallback]\ntarget = \"other\"\n"),
        "f.toml",
    )
    .unwrap();
    let fallback = setup.functions[0].routes.clone().unwrap().fallback.unwrap();
    assert_eq!(
        fallback.on,
        FallbackOn {
            not_found: true,
            error: true,
            timeout: true
        }
    );
    assert_eq!(fallback.share_percent, 0.0);
    let setup = parse_setup_toml(&format!("{SHOP}[function.routes]\n"), "f.toml").unwrap();
    assert_eq!(setup.functions[0].routes, Some(RoutePolicy::default()));
    // The canary file of the repository parses.
    let canary = include_str!("../../../deploy/canary.toml");
    let setup = parse_setup_toml(canary, "deploy/canary.toml").unwrap();
    assert!(setup.functions.iter().any(|f| f.has_routing()));
}

#[test]
fn every_version_mistake_names_its_field() {
    says(
        "[[function.version]]\nhandler = \"echo\"\n",
        "version[0].version: give the version's number (1, 2, 3…)",
    );
    says(
        "[[function.version]]\nversion = 1\n",
        "version[0].handler: give the version's handler (or its command or image)",
    );
    says(
        "[[function.version]]\nversion = 0\nhandler = \"echo\"\n",
        "version[0].version: give 1 or more, got 0",
    );
    says(
        "[[function.version]]\nversion = 2\nhandler = \"echo\"\n[[function.version]]\nversion = 1\nhandler = \"echo\"\n",
        "version[1].version: 1 after 2: list versions in increasing order, each once",
    );
    says(
        "[[function.version]]\nversion = 1\nhandler = \"echo\"\n[[function.version]]\nversion = 1\nhandler = \"echo\"\n",
        "version[1].version: 1 after 1: list versions in increasing order, each once",
    );
    says(
        "[[function.version]]\nversion = 1\nmemory_mb = 4096\nhandler = \"echo\"\n",
        "version[0]: memory of 4096 MiB is out of range: give 64 to 3072 MiB",
    );
    let e = err("[[function.version]]\nversion = 1\nhandler = \"perl\"\n");
    assert!(
        e.contains("version[0]: handler \"perl\" is not a built-in handler"),
        "{e}"
    );
    let e = err("[[function.version]]\nversion = 1\nname = \"x\"\nhandler = \"echo\"\n");
    assert!(e.contains("unknown field `name`"), "{e}");
}

#[test]
fn every_alias_mistake_names_its_field() {
    says(
        "[[function.alias]]\ntargets = \"1\"\n",
        "alias[0].name: give the alias's name",
    );
    says(
        "[[function.alias]]\nname = \"3\"\ntargets = \"1\"\n",
        "alias[0].name: alias \"3\" must start with a letter (NAME:3 is version 3)",
    );
    says(
        "[[function.alias]]\nname = \"live\"\ntargets = \"1\"\n[[function.alias]]\nname = \"live\"\ntargets = \"2\"\n",
        "alias[1].name: alias \"live\" is declared twice (first at alias[0])",
    );
    let give = "give the versions it points at: \"1=90,2=10\", or \"2\" for all traffic";
    says(
        "[[function.alias]]\nname = \"live\"\n",
        &format!("alias[0].targets: {give}"),
    );
    says(
        "[[function.alias]]\nname = \"live\"\ntargets = 1.5\n",
        &format!("alias[0].targets: {give}"),
    );
    says(
        "[[function.alias]]\nname = \"live\"\ntargets = \"1=90,x=10\"\n",
        "alias[0].targets: \"x\" in \"x=10\" is not a version number",
    );
    says(
        "[[function.alias]]\nname = \"live\"\ntargets = \"1=90,2=20\"\n",
        "alias[0].targets.weight: weights must sum to 100, they sum to 110",
    );
    says(
        "[[function.alias]]\nname = \"live\"\ntargets = \"1=50,1=50\"\n",
        "alias[0].targets[1].version: version 1 is named twice",
    );
    let e = err("[[function.alias]]\nname = \"live\"\nversions = \"1\"\n");
    assert!(e.contains("unknown field `versions`"), "{e}");
}

#[test]
fn every_route_mistake_names_its_field() {
    let give = "give a target: NAME, NAME:N or NAME:ALIAS";
    says(
        "[function.routes]\ndefault = \"\"\n",
        &format!("routes.default: {give}"),
    );
    says(
        "[function.routes]\ndefault = \"shop:0\"\n",
        "routes.default: shop:0: versions are numbered from 1",
    );
    says(
        "[function.routes]\ndefault = \"shop:\"\n",
        "routes.default: shop:: the alias name cannot be empty",
    );
    says(
        "[[function.routes.rules]]\nroute_id = \"vip\"\n",
        &format!("routes.rules[0].target: {give}"),
    );
    says(
        "[[function.routes.rules]]\ntarget = \"shop:1\"\n",
        "routes.rules[0]: a rule needs a condition: route_id, route_id_regex or fields",
    );
    says(
        "[[function.routes.rules]]\nroute_id = \"\"\ntarget = \"shop:1\"\n",
        "routes.rules[0].route_id: cannot be empty (leave it out to match any routing id)",
    );
    let e = err(
        "[[function.routes.rules]]\nroute_id = \"a\"\ntarget = \"shop:1\"\n[[function.routes.rules]]\nroute_id_regex = \"(x\"\ntarget = \"shop:1\"\n",
    );
    assert!(
        e.starts_with("shop.toml: entry 1: function \"shop\": routes.rules[1].route_id_regex: \"(x\" is not a valid regular expression"),
        "{e}"
    );
    says(
        "[[function.routes.rules]]\nfields = { a = 1.5 }\ntarget = \"shop:1\"\n",
        "routes.rules[0].fields.a: give a string, an integer or a boolean",
    );
    says(
        "[function.routes.fallback]\non = [\"error\"]\n",
        &format!("routes.fallback.target: {give}"),
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop:1\"\non = [\"error\", \"errors\"]\n",
        "routes.fallback.on[1]: \"errors\" is not a failure: give not_found, error or timeout",
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop:1\"\nshare_percent = 120\n",
        "routes.fallback.share_percent: give 0 to 100, got 120",
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop\"\n",
        "routes.fallback.target: shop is also the default target: a fallback must be another target",
    );
    says(
        "[function.routes.breaker]\nlatency_baseline_ms = 50\n",
        "routes.breaker: a breaker needs fallback.target: an open breaker sends calls there",
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop:1\"\n[function.routes.breaker]\nmargin_ms = 5\n",
        "routes.breaker: give latency_baseline_ms or max_error_percent (or both): with neither it never opens",
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop:1\"\n[function.routes.breaker]\nlatency_baseline_ms = 50\nwindow_ms = 5\n",
        "routes.breaker.window_ms: give 100 to 3600000 ms, got 5",
    );
    says(
        "[function.routes.fallback]\ntarget = \"shop:1\"\n[function.routes.breaker]\nlatency_baseline_ms = 50\nmargin_ms = 0\n",
        "routes.breaker.margin_ms: give 1 ms or more (the admin API reads 0 as the default, 100)",
    );
    for (extra, key) in [
        ("[function.routes]\nrule = []\n", "rule"),
        (
            "[function.routes.fallback]\ntarget = \"shop:1\"\nwhen = []\n",
            "when",
        ),
        ("[function.routes.breaker]\nlatency_ms = 5\n", "latency_ms"),
        (
            "[[function.routes.rules]]\nroute = \"x\"\ntarget = \"shop:1\"\n",
            "route",
        ),
    ] {
        let e = err(extra);
        assert!(e.starts_with("shop.toml: "), "{e}");
        assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
    }
}

#[test]
fn a_chain_parses_is_left_alone_when_absent_and_names_its_bad_target() {
    let chain = |extra: &str| {
        parse_setup_toml(&format!("{SHOP}{extra}"), "shop.toml")
            .unwrap()
            .functions[0]
            .chain
            .clone()
    };
    assert_eq!(chain(""), None);
    assert_eq!(
        chain("[function.chain]\non_success = \"ship\"\non_failure = \"alert\"\n"),
        Some(ChainSpec {
            on_success: "ship".into(),
            on_failure: "alert".into(),
        })
    );
    // An empty table: the chain is cleared.
    assert_eq!(chain("[function.chain]\n"), Some(ChainSpec::default()));
    says(
        "[function.chain]\non_failure = \"no way\"\n",
        "chain.on_failure: function name \"no way\" contains ' ': use only letters, digits, '_' and '-'",
    );
    assert!(err("[function.chain]\nthen = \"ship\"\n").contains("unknown field `then`"));
}
