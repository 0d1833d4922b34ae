//! The service-layer parts of a deploy file entry (`service::file` documents the format):
//! `[[function.alias]]` and `[function.routes]` (versions: `file_kind.rs`), read into the model
//! and checked with the service layer's rules (`service::routing::validate`) that do not
//! depend on what is deployed. Every error is a [`RegistryError::BadRouting`] whose field is
//! spelled as in the file: `version[1].version`, `alias[0].targets.weight`,
//! `routes.rules[2].route_id_regex`, `routes.fallback.on[1]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::routing::{
    BreakerConfig, Fallback, FallbackOn, Qualifier, RoutePolicy, Rule, TargetRef, Weighted,
    parse_weights,
};
use crate::service::registry::RegistryError;
use crate::service::routing::validate::{
    compile_policy, validate_alias_name, validate_alias_targets,
};

use super::AliasSpec;

/// What a target field asks for when it is empty or missing.
const GIVE_TARGET: &str = "give a target: NAME, NAME:N or NAME:ALIAS";

fn bad(function: &str, field: impl Into<String>, problem: impl Into<String>) -> RegistryError {
    RegistryError::BadRouting {
        function: function.to_string(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// `err` with its field renamed by `rename` (a field of the validator as the file spells it).
fn renamed(err: RegistryError, rename: impl FnOnce(&str) -> String) -> RegistryError {
    match err {
        RegistryError::BadRouting {
            function,
            field,
            problem,
        } => RegistryError::BadRouting {
            field: rename(&field),
            function,
            problem,
        },
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AliasEntry {
    name: Option<String>,
    /// `"1=90,2=10"`, `"2"` or `2`.
    targets: Option<toml::Value>,
}

/// The declared aliases of `function`: valid names, each once, weights that sum to 100
/// (whether the versions exist is the server's to say: it may have more than the file).
pub(super) fn aliases(
    function: &str,
    entries: Vec<AliasEntry>,
) -> Result<Vec<AliasSpec>, RegistryError> {
    let mut out: Vec<AliasSpec> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let field = format!("alias[{i}]");
        let name = e
            .name
            .ok_or_else(|| bad(function, format!("{field}.name"), "give the alias's name"))?;
        validate_alias_name(function, &name)
            .map_err(|err| renamed(err, |_| format!("{field}.name")))?;
        if let Some(first) = out.iter().position(|a| a.name == name) {
            return Err(bad(
                function,
                format!("{field}.name"),
                format!("alias {name:?} is declared twice (first at alias[{first}])"),
            ));
        }
        let give = "give the versions it points at: \"1=90,2=10\", or \"2\" for all traffic";
        let targets = match e.targets {
            None => return Err(bad(function, format!("{field}.targets"), give)),
            Some(toml::Value::String(text)) => parse_weights(&text)
                .map_err(|problem| bad(function, format!("{field}.targets"), problem))?,
            Some(toml::Value::Integer(version)) => vec![Weighted {
                version,
                weight: 100,
            }],
            Some(_) => return Err(bad(function, format!("{field}.targets"), give)),
        };
        validate_alias_targets(function, &targets, |_| true)
            .map_err(|err| renamed(err, |f| format!("{field}.{f}")))?;
        out.push(AliasSpec { name, targets });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesEntry {
    default: Option<String>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
    fallback: Option<FallbackEntry>,
    breaker: Option<BreakerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    route_id: Option<String>,
    route_id_regex: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FallbackEntry {
    target: Option<String>,
    /// Left out: all three.
    on: Option<Vec<String>>,
    #[serde(default)]
    share_percent: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerEntry {
    latency_baseline_ms: Option<i64>,
    margin_ms: Option<i64>,
    max_error_percent: Option<f64>,
    window_ms: Option<i64>,
    min_calls: Option<u32>,
    cooldown_ms: Option<i64>,
    probe_calls: Option<u32>,
}

/// A target as a file names it; empty or missing is refused.
fn target(function: &str, field: String, text: Option<String>) -> Result<TargetRef, RegistryError> {
    match text.filter(|t| !t.is_empty()) {
        None => Err(bad(function, field, GIVE_TARGET)),
        Some(t) => Ok(TargetRef::parse(&t)),
    }
}

/// Whether a target is well formed (whether it exists is the server's to say).
fn well_formed(t: &TargetRef) -> Result<(), String> {
    if t.function.is_empty() {
        return Err(GIVE_TARGET.into());
    }
    match &t.qualifier {
        Qualifier::Latest => Ok(()),
        Qualifier::Version(n) if *n < 1 => Err(format!("{t}: versions are numbered from 1")),
        Qualifier::Version(_) => Ok(()),
        Qualifier::Alias(a) => validate_alias_name(&t.function, a).map_err(|e| match e {
            RegistryError::BadRouting { problem, .. } => format!("{t}: {problem}"),
            other => other.to_string(),
        }),
    }
}

/// A rule's field value: a string, or the text of an integer or a boolean.
fn field_value(function: &str, field: String, value: toml::Value) -> Result<String, RegistryError> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(bad(
            function,
            field,
            "give a string, an integer or a boolean",
        )),
    }
}

fn fallback_on(function: &str, on: Option<Vec<String>>) -> Result<FallbackOn, RegistryError> {
    let Some(on) = on else {
        return Ok(FallbackOn {
            not_found: true,
            error: true,
            timeout: true,
        });
    };
    let mut out = FallbackOn::default();
    for (i, failure) in on.iter().enumerate() {
        match failure.as_str() {
            "not_found" => out.not_found = true,
            "error" => out.error = true,
            "timeout" => out.timeout = true,
            other => {
                return Err(bad(
                    function,
                    format!("routes.fallback.on[{i}]"),
                    format!(
                        "{:?} is not a failure: give not_found, error or timeout",
                        faas_common::text::clip(other)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

impl RoutesEntry {
    /// The route policy of `function` (empty: no policy), checked.
    pub(super) fn into_policy(self, function: &str) -> Result<RoutePolicy, RegistryError> {
        let default = match self.default {
            None => None,
            Some(t) => Some(target(function, "routes.default".into(), Some(t))?),
        };
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.into_iter().enumerate() {
            let mut fields = BTreeMap::new();
            for (key, value) in r.fields {
                let field = format!("routes.rules[{i}].fields.{key}");
                fields.insert(key, field_value(function, field, value)?);
            }
            rules.push(Rule {
                route_id: r.route_id,
                route_id_regex: r.route_id_regex,
                fields,
                target: target(function, format!("routes.rules[{i}].target"), r.target)?,
            });
        }
        let fallback = match self.fallback {
            None => None,
            Some(f) => Some(Fallback {
                target: target(function, "routes.fallback.target".into(), f.target)?,
                on: fallback_on(function, f.on)?,
                share_percent: f.share_percent,
            }),
        };
        if self
            .breaker
            .as_ref()
            .is_some_and(|b| b.margin_ms == Some(0))
        {
            // Proto3 cannot tell 0 from unset: the admin API reads 0 as the default.
            return Err(bad(
                function,
                "routes.breaker.margin_ms",
                "give 1 ms or more (the admin API reads 0 as the default, 100)",
            ));
        }
        let breaker = self.breaker.map(|b| {
            let d = BreakerConfig::default();
            BreakerConfig {
                latency_baseline_ms: b.latency_baseline_ms.unwrap_or(d.latency_baseline_ms),
                margin_ms: b.margin_ms.unwrap_or(d.margin_ms),
                max_error_percent: b.max_error_percent.unwrap_or(d.max_error_percent),
                window_ms: b.window_ms.unwrap_or(d.window_ms),
                min_calls: b.min_calls.unwrap_or(d.min_calls),
                cooldown_ms: b.cooldown_ms.unwrap_or(d.cooldown_ms),
                probe_calls: b.probe_calls.unwrap_or(d.probe_calls),
            }
        });
        let policy = RoutePolicy {
            default,
            rules,
            fallback,
            breaker,
        };
        if policy.is_empty() {
            return Ok(policy);
        }
        compile_policy(function, policy, well_formed, |_| None)
            .map(|compiled| compiled.policy)
            .map_err(|err| renamed(err, |f| format!("routes.{f}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::MIB;
    use crate::model::routing::{
        BreakerConfig, Fallback, FallbackOn, RoutePolicy, Rule, TargetRef, Weighted,
    };
    use crate::service::file::{AliasSpec, VersionSpec, parse_setup_toml};

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
}
