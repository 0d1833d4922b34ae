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
#[path = "file_routing_tests.rs"]
mod tests;
