//! The rules versions, aliases and route policies must follow. Every refusal names the field
//! as the admin API and the TOML file spell it, and says what to give instead.
//!
//! - An alias name: 1 to [`MAX_ALIAS_CHARS`] of `a-z A-Z 0-9 _ -`, starting with a letter
//!   (so it can never be read as a version number).
//! - Alias targets: one or two existing versions of the function, each named once, weights
//!   summing to 100.
//! - A route policy: every target exists; a rule has at least one condition, a regular
//!   expression compiles (within a size limit); at most [`MAX_RULES`] rules; a fallback differs
//!   from the default and has a share from 0 to 100; a breaker has a fallback to send calls
//!   to, at least one rule (latency or errors), and settings in range; and fallbacks between
//!   functions form no cycle.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use crate::model::routing::{
    BreakerConfig, MAX_ALIAS_CHARS, MAX_ALIAS_TARGETS, MAX_RULES, RoutePolicy, TargetRef, Weighted,
};
use crate::service::registry::RegistryError;

/// The most a compiled regular expression may take (a rule is matched on every call).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The longest window and cooldown a breaker may have (one hour).
pub const MAX_BREAKER_MS: i64 = 3_600_000;

/// A route policy whose regular expressions are compiled, ready for every call.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub policy: RoutePolicy,
    /// `regexes[i]`: rule i's `route_id_regex`, compiled.
    pub regexes: Vec<Option<Regex>>,
}

fn bad(function: &str, field: impl Into<String>, problem: impl Into<String>) -> RegistryError {
    RegistryError::BadRouting {
        function: function.to_string(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks an alias's name.
pub fn validate_alias_name(function: &str, alias: &str) -> Result<(), RegistryError> {
    let field = "alias";
    if alias.is_empty() {
        return Err(bad(function, field, "the alias name cannot be empty"));
    }
    if alias.chars().count() > MAX_ALIAS_CHARS {
        return Err(bad(
            function,
            field,
            format!("alias names are at most {MAX_ALIAS_CHARS} characters"),
        ));
    }
    if !alias.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad(
            function,
            field,
            format!(
                "alias {:?} must start with a letter (NAME:3 is version 3)",
                faas_common::text::clip(alias)
            ),
        ));
    }
    if let Some(c) = alias
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(bad(
            function,
            field,
            format!("alias contains {c:?}: use only letters, digits, '_' and '-'"),
        ));
    }
    Ok(())
}

/// Checks an alias's targets; `exists(version)` says whether a version exists.
pub fn validate_alias_targets(
    function: &str,
    targets: &[Weighted],
    exists: impl Fn(i64) -> bool,
) -> Result<(), RegistryError> {
    let field = "targets";
    if targets.is_empty() || targets.len() > MAX_ALIAS_TARGETS {
        return Err(bad(
            function,
            field,
            format!(
                "an alias points at 1 or {MAX_ALIAS_TARGETS} versions, got {} (give 2, or 1=90,2=10)",
                targets.len()
            ),
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        if !exists(t.version) {
            return Err(bad(
                function,
                format!("targets[{i}].version"),
                format!(
                    "version {} of {function} does not exist (faas versions {function} lists them)",
                    t.version
                ),
            ));
        }
        if targets[..i].iter().any(|o| o.version == t.version) {
            return Err(bad(
                function,
                format!("targets[{i}].version"),
                format!("version {} is named twice", t.version),
            ));
        }
    }
    let sum: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if sum != 100 {
        return Err(bad(
            function,
            "targets.weight",
            format!("weights must sum to 100, they sum to {sum}"),
        ));
    }
    Ok(())
}

/// Checks `policy` for `function` and compiles it. `exists(target)` says why a target does
/// not exist (`Err`); `fallback_of(function)` gives another function's fallback target (for
/// the cycle check).
pub fn compile_policy(
    function: &str,
    policy: RoutePolicy,
    exists: impl Fn(&TargetRef) -> Result<(), String>,
    fallback_of: impl Fn(&str) -> Option<String>,
) -> Result<CompiledPolicy, RegistryError> {
    if policy.rules.len() > MAX_RULES {
        return Err(bad(
            function,
            "rules",
            format!("at most {MAX_RULES} rules, got {}", policy.rules.len()),
        ));
    }
    for (field, target) in policy.targets() {
        exists(target).map_err(|problem| bad(function, field, problem))?;
    }
    let mut regexes = Vec::with_capacity(policy.rules.len());
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.route_id.is_none() && rule.route_id_regex.is_none() && rule.fields.is_empty() {
            return Err(bad(
                function,
                format!("rules[{i}]"),
                "a rule needs a condition: route_id, route_id_regex or fields",
            ));
        }
        if rule.route_id.as_deref() == Some("") {
            return Err(bad(
                function,
                format!("rules[{i}].route_id"),
                "cannot be empty (leave it out to match any routing id)",
            ));
        }
        if let Some(key) = rule.fields.keys().find(|k| k.is_empty()) {
            return Err(bad(
                function,
                format!("rules[{i}].fields"),
                format!("a field name cannot be empty ({key:?})"),
            ));
        }
        let regex = match &rule.route_id_regex {
            None => None,
            Some(pattern) => Some(
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        let first = e.to_string();
                        let first = first.lines().last().unwrap_or("").trim().to_string();
                        bad(
                            function,
                            format!("rules[{i}].route_id_regex"),
                            format!(
                                "{:?} is not a valid regular expression: {first}",
                                faas_common::text::clip(pattern)
                            ),
                        )
                    })?,
            ),
        };
        regexes.push(regex);
    }
    if let Some(fallback) = &policy.fallback {
        let share = fallback.share_percent;
        if !(share.is_finite() && (0.0..=100.0).contains(&share)) {
            return Err(bad(
                function,
                "fallback.share_percent",
                format!("give 0 to 100, got {share}"),
            ));
        }
        let default = policy
            .default
            .clone()
            .unwrap_or_else(|| TargetRef::latest(function));
        if fallback.target == default {
            return Err(bad(
                function,
                "fallback.target",
                format!(
                    "{} is also the default target: a fallback must be another target",
                    fallback.target
                ),
            ));
        }
        check_cycle(function, &fallback.target.function, fallback_of)?;
    }
    if let Some(breaker) = &policy.breaker {
        if policy.fallback.is_none() {
            return Err(bad(
                function,
                "breaker",
                "a breaker needs fallback.target: an open breaker sends calls there",
            ));
        }
        validate_breaker(function, breaker)?;
    }
    Ok(CompiledPolicy { policy, regexes })
}

fn validate_breaker(function: &str, b: &BreakerConfig) -> Result<(), RegistryError> {
    let field = |name: &str| format!("breaker.{name}");
    if b.latency_baseline_ms < 0 || b.latency_baseline_ms > MAX_BREAKER_MS {
        return Err(bad(
            function,
            field("latency_baseline_ms"),
            format!("give 0 (no latency rule) to {MAX_BREAKER_MS} ms"),
        ));
    }
    if !(b.max_error_percent.is_finite() && (0.0..=100.0).contains(&b.max_error_percent)) {
        return Err(bad(
            function,
            field("max_error_percent"),
            "give 0 (no error rule) to 100",
        ));
    }
    if b.latency_baseline_ms == 0 && b.max_error_percent == 0.0 {
        return Err(bad(
            function,
            "breaker",
            "give latency_baseline_ms or max_error_percent (or both): with neither it never opens",
        ));
    }
    if !(0..=MAX_BREAKER_MS).contains(&b.margin_ms) {
        return Err(bad(
            function,
            field("margin_ms"),
            format!("give 0 to {MAX_BREAKER_MS} ms"),
        ));
    }
    for (name, value) in [("window_ms", b.window_ms), ("cooldown_ms", b.cooldown_ms)] {
        if !(100..=MAX_BREAKER_MS).contains(&value) {
            return Err(bad(
                function,
                field(name),
                format!("give 100 to {MAX_BREAKER_MS} ms, got {value}"),
            ));
        }
    }
    if !(1..=10_000).contains(&b.min_calls) {
        return Err(bad(function, field("min_calls"), "give 1 to 10000"));
    }
    if !(1..=100).contains(&b.probe_calls) {
        return Err(bad(function, field("probe_calls"), "give 1 to 100"));
    }
    Ok(())
}

/// Refuses a fallback from `function` to `to` when `to`'s fallbacks lead back to `function`.
/// A fallback to another version of the same function is not a cycle (it is the usual case:
/// a canary degrading to the stable version).
fn check_cycle(
    function: &str,
    to: &str,
    fallback_of: impl Fn(&str) -> Option<String>,
) -> Result<(), RegistryError> {
    let mut path = vec![function.to_string()];
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut next = Some(to.to_string());
    while let Some(current) = next {
        if current == *path.last().unwrap_or(&String::new()) {
            // A fallback within one function.
            break;
        }
        path.push(current.clone());
        if current == function {
            return Err(bad(
                function,
                "fallback.target",
                format!("{} is a cycle of fallbacks", path.join(" → ")),
            ));
        }
        if seen.insert(current.clone(), ()).is_some() {
            break;
        }
        next = fallback_of(&current);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::{Fallback, FallbackOn, Rule};

    fn exists_all(_: &TargetRef) -> Result<(), String> {
        Ok(())
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    fn fallback(target: &str) -> Option<Fallback> {
        Some(Fallback {
            target: TargetRef::parse(target),
            on: FallbackOn {
                error: true,
                ..FallbackOn::default()
            },
            share_percent: 0.0,
        })
    }

    fn err(r: Result<CompiledPolicy, RegistryError>) -> String {
        r.map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn alias_names_and_targets() {
        assert!(validate_alias_name("f", "live").is_ok());
        assert!(validate_alias_name("f", "canary-2_b").is_ok());
        for (alias, says) in [
            ("", "cannot be empty"),
            ("3", "must start with a letter"),
            ("a b", "contains ' '"),
            (&"x".repeat(33), "at most 32"),
        ] {
            let e = validate_alias_name("f", alias).unwrap_err().to_string();
            assert!(e.contains(says), "{alias:?}: {e}");
            assert!(e.starts_with("function \"f\": alias: "), "{e}");
        }
        let w = |version, weight| Weighted { version, weight };
        let exists = |v: i64| v <= 3;
        assert!(validate_alias_targets("f", &[w(1, 90), w(2, 10)], exists).is_ok());
        assert!(validate_alias_targets("f", &[w(3, 100)], exists).is_ok());
        for (targets, says) in [
            (vec![], "1 or 2 versions"),
            (vec![w(1, 50), w(2, 30), w(3, 20)], "1 or 2 versions"),
            (
                vec![w(1, 90), w(2, 20)],
                "targets.weight: weights must sum to 100, they sum to 110",
            ),
            (
                vec![w(1, 50), w(1, 50)],
                "targets[1].version: version 1 is named twice",
            ),
            (
                vec![w(9, 100)],
                "targets[0].version: version 9 of f does not exist",
            ),
        ] {
            let e = validate_alias_targets("f", &targets, exists).unwrap_err();
            assert!(matches!(e, RegistryError::BadRouting { .. }));
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn every_policy_mistake_names_its_field() {
        let missing = |t: &TargetRef| {
            if t.function == "gone" {
                Err(format!("function {} is not deployed", t.function))
            } else {
                Ok(())
            }
        };
        let rule = |target: &str| Rule {
            route_id: Some("vip".into()),
            target: TargetRef::parse(target),
            ..Rule::default()
        };
        let policy = RoutePolicy {
            rules: vec![rule("f:1"), rule("gone:2")],
            ..RoutePolicy::default()
        };
        assert_eq!(
            err(compile_policy("f", policy, missing, none)),
            "function \"f\": rules[1].target: function gone is not deployed"
        );
        let policy = RoutePolicy {
            rules: vec![Rule {
                target: TargetRef::parse("f:1"),
                ..Rule::default()
            }],
            ..RoutePolicy::default()
        };
        assert!(
            err(compile_policy("f", policy, exists_all, none))
                .contains("rules[0]: a rule needs a condition")
        );
        let policy = RoutePolicy {
            rules: vec![Rule {
                route_id_regex: Some("(unclosed".into()),
                target: TargetRef::parse("f:1"),
                ..Rule::default()
            }],
            ..RoutePolicy::default()
        };
        let e = err(compile_policy("f", policy, exists_all, none));
        assert!(e.starts_with("function \"f\": rules[0].route_id_regex: \"(unclosed\" is not a valid regular expression"), "{e}");
        let policy = RoutePolicy {
            default: Some(TargetRef::parse("f:live")),
            fallback: fallback("f:live"),
            ..RoutePolicy::default()
        };
        assert!(
            err(compile_policy("f", policy, exists_all, none))
                .contains("fallback.target: f:live is also the default")
        );
        let mut policy = RoutePolicy {
            fallback: fallback("f:1"),
            ..RoutePolicy::default()
        };
        policy.fallback.as_mut().unwrap().share_percent = 101.0;
        assert!(
            err(compile_policy("f", policy, exists_all, none)).contains("fallback.share_percent")
        );
        let policy = RoutePolicy {
            breaker: Some(BreakerConfig {
                latency_baseline_ms: 50,
                ..BreakerConfig::default()
            }),
            ..RoutePolicy::default()
        };
        assert!(
            err(compile_policy("f", policy, exists_all, none))
                .contains("breaker: a breaker needs fallback.target")
        );
        for (broken, field) in [
            (
                BreakerConfig::default(),
                "breaker: give latency_baseline_ms or max_error_percent",
            ),
            (
                BreakerConfig {
                    latency_baseline_ms: 50,
                    window_ms: 5,
                    ..BreakerConfig::default()
                },
                "breaker.window_ms",
            ),
            (
                BreakerConfig {
                    latency_baseline_ms: 50,
                    probe_calls: 0,
                    ..BreakerConfig::default()
                },
                "breaker.probe_calls",
            ),
            (
                BreakerConfig {
                    max_error_percent: f64::NAN,
                    ..BreakerConfig::default()
                },
                "breaker.max_error_percent",
            ),
            (
                BreakerConfig {
                    latency_baseline_ms: -1,
                    ..BreakerConfig::default()
                },
                "breaker.latency_baseline_ms",
            ),
        ] {
            let policy = RoutePolicy {
                fallback: fallback("f:1"),
                breaker: Some(broken),
                ..RoutePolicy::default()
            };
            let e = err(compile_policy("f", policy, exists_all, none));
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn a_cycle_of_fallbacks_is_refused_but_a_fallback_within_a_function_is_not() {
        // g falls back to h, h to f: f falling back to g closes the circle.
        let others = |f: &str| match f {
            "g" => Some("h".to_string()),
            "h" => Some("f".to_string()),
            _ => None,
        };
        let policy = RoutePolicy {
            fallback: fallback("g:1"),
            ..RoutePolicy::default()
        };
        assert_eq!(
            err(compile_policy("f", policy, exists_all, others)),
            "function \"f\": fallback.target: f → g → h → f is a cycle of fallbacks"
        );
        let policy = RoutePolicy {
            default: Some(TargetRef::parse("f:live")),
            fallback: fallback("f:1"),
            ..RoutePolicy::default()
        };
        assert!(compile_policy("f", policy, exists_all, others).is_ok());
        // A chain that ends elsewhere is fine.
        let policy = RoutePolicy {
            fallback: fallback("k:1"),
            ..RoutePolicy::default()
        };
        assert!(
            compile_policy("f", policy, exists_all, |f: &str| (f == "k")
                .then(|| "g".to_string()))
            .is_ok()
        );
    }
}
