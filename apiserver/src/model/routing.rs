//! The service layer's data: versions, aliases and a function's route policy (NBF-FaaS's
//! broker, in front of the scheduler). Plain data, no I/O; the rules are in
//! `service::routing`.
//!
//! - A **version** is a frozen copy of a function's definition, numbered 1, 2, 3… per
//!   function. It is stored and called as a function of its own named `NAME:N` (a
//!   [`crate::model::Function`] whose `revision` is N), so the scheduler sees `hello:3` as one
//!   more function and the contest protocol does not change.
//! - An **alias** (`NAME:ALIAS`) points at one or two versions with weights that sum to 100;
//!   it remembers what it pointed at before its last change, for a rollback.
//! - A **route policy** says where a call of plain `NAME` goes (a default target, then rules
//!   tried in order), which fallback serves a call whose target failed or is slow, and the
//!   target's circuit breaker.
//!
//! Every target is written `NAME`, `NAME:N` or `NAME:ALIAS` ([`TargetRef`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Separates a function's name from a version or an alias (`hello:3`, `hello:live`).
pub const QUALIFIER_SEPARATOR: char = ':';
/// The longest alias name, in characters.
pub const MAX_ALIAS_CHARS: usize = 32;
/// The most rules a route table may have.
pub const MAX_RULES: usize = 64;
/// The most versions one alias may point at.
pub const MAX_ALIAS_TARGETS: usize = 2;

/// What follows the `:` of a target, if anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Qualifier {
    /// `NAME`: the function's current definition (or its route table, for a call).
    #[default]
    Latest,
    /// `NAME:N`: a published version.
    Version(i64),
    /// `NAME:ALIAS`: an alias.
    Alias(String),
}

/// A target as calls, rules and fallbacks name it: `NAME`, `NAME:N` or `NAME:ALIAS`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetRef {
    pub function: String,
    pub qualifier: Qualifier,
}

impl TargetRef {
    /// Splits `text` at its first `:`. A qualifier of digits only is a version (`0` and
    /// numbers that overflow are kept as versions, and refused by validation as such);
    /// anything else is an alias. Names and aliases are checked by the registry, not here.
    pub fn parse(text: &str) -> TargetRef {
        match text.split_once(QUALIFIER_SEPARATOR) {
            None => TargetRef::latest(text),
            Some((function, q)) => {
                let qualifier = if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) {
                    Qualifier::Version(q.parse().unwrap_or(i64::MAX))
                } else {
                    Qualifier::Alias(q.to_string())
                };
                TargetRef {
                    function: function.to_string(),
                    qualifier,
                }
            }
        }
    }

    /// `NAME`: the current definition.
    pub fn latest(function: &str) -> TargetRef {
        TargetRef {
            function: function.to_string(),
            qualifier: Qualifier::Latest,
        }
    }

    /// `NAME:N`.
    pub fn version(function: &str, version: i64) -> TargetRef {
        TargetRef {
            function: function.to_string(),
            qualifier: Qualifier::Version(version),
        }
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Qualifier::Latest => f.write_str(&self.function),
            Qualifier::Version(n) => write!(f, "{}{QUALIFIER_SEPARATOR}{n}", self.function),
            Qualifier::Alias(a) => write!(f, "{}{QUALIFIER_SEPARATOR}{a}", self.function),
        }
    }
}

/// The name a published version is stored and scheduled under: `hello:3`.
pub fn version_name(function: &str, version: i64) -> String {
    format!("{function}{QUALIFIER_SEPARATOR}{version}")
}

/// One version an alias sends traffic to, and its share in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weighted {
    pub version: i64,
    pub weight: u32,
}

/// Parses `1=90,2=10` or a single `2` (all traffic); `None` names the first bad part.
pub fn parse_weights(text: &str) -> Result<Vec<Weighted>, String> {
    let text = text.trim();
    if !text.contains('=') && !text.contains(',') {
        let version = text
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is not a version number (give 2, or 1=90,2=10)"))?;
        return Ok(vec![Weighted {
            version,
            weight: 100,
        }]);
    }
    text.split(',')
        .map(|part| {
            let (v, w) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not VERSION=WEIGHT (give 1=90,2=10)"))?;
            let version = v
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{v:?} in {part:?} is not a version number"))?;
            let weight = w
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{w:?} in {part:?} is not a weight from 0 to 100"))?;
            Ok(Weighted { version, weight })
        })
        .collect()
}

/// Writes weights as [`parse_weights`] reads them: `1=90,2=10`.
pub fn show_weights(weights: &[Weighted]) -> String {
    weights
        .iter()
        .map(|w| format!("{}={}", w.version, w.weight))
        .collect::<Vec<_>>()
        .join(",")
}

/// A named pointer at one or two versions of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    /// One or two versions; weights sum to 100.
    pub targets: Vec<Weighted>,
    /// What it pointed at before its last change (empty: never changed).
    pub previous: Vec<Weighted>,
    pub updated_at_ms: i64,
}

/// A rule of a route table: every condition given must hold.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rule {
    /// The call's routing id equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<String>,
    /// The call's routing id matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id_regex: Option<String>,
    /// Each field equals its value: a routing parameter of the call, else a top-level field
    /// of the event's JSON object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Where a matching call goes.
    pub target: TargetRef,
}

/// The failures of a target that send its call to the fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FallbackOn {
    /// The target does not exist (a version or alias deleted, a function not deployed).
    pub not_found: bool,
    /// The function failed (its own error, out of memory, its container or node failed).
    pub error: bool,
    /// The function timed out, or its node did not answer in time.
    pub timeout: bool,
}

/// Where a call goes when its target fails, is broken, or is asked to shed load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    pub target: TargetRef,
    pub on: FallbackOn,
    /// Traffic control: this share of calls (percent, 0 to 100) goes to the fallback anyway.
    #[serde(default)]
    pub share_percent: f64,
}

/// The circuit breaker's settings: when a target's recent calls are too slow or fail too
/// often, its calls go to the fallback until probe calls show it healthy again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Opens when the window's p99 latency exceeds this plus `margin_ms`; 0: no latency rule.
    pub latency_baseline_ms: i64,
    pub margin_ms: i64,
    /// Opens when the window's error share exceeds this (percent); 0: no error rule.
    pub max_error_percent: f64,
    /// The sliding window.
    pub window_ms: i64,
    /// Calls the window needs before it judges.
    pub min_calls: u32,
    /// How long the breaker stays open before probing.
    pub cooldown_ms: i64,
    /// How many probe calls decide whether it closes.
    pub probe_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            latency_baseline_ms: 0,
            margin_ms: 100,
            max_error_percent: 0.0,
            window_ms: 10_000,
            min_calls: 20,
            cooldown_ms: 5_000,
            probe_calls: 3,
        }
    }
}

/// A function's route policy: where a call of plain `NAME` goes, and how its targets degrade.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct RoutePolicy {
    /// Where a call of `NAME` goes when no rule matches; `None`: the current definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerConfig>,
}

impl RoutePolicy {
    /// Whether it says nothing (the same as no policy).
    pub fn is_empty(&self) -> bool {
        self.default.is_none()
            && self.rules.is_empty()
            && self.fallback.is_none()
            && self.breaker.is_none()
    }

    /// Every target it names, with the field that names it (for validation messages).
    pub fn targets(&self) -> Vec<(String, &TargetRef)> {
        let mut out = Vec::new();
        if let Some(t) = &self.default {
            out.push(("default".to_string(), t));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            out.push((format!("rules[{i}].target"), &rule.target));
        }
        if let Some(f) = &self.fallback {
            out.push(("fallback.target".to_string(), &f.target));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for text in ["hello", "hello:3", "hello:live", "a-b_c:canary-1"] {
            assert_eq!(TargetRef::parse(text).to_string(), text);
        }
        assert_eq!(TargetRef::parse("hello:3").qualifier, Qualifier::Version(3));
        assert_eq!(
            TargetRef::parse("hello:v3").qualifier,
            Qualifier::Alias("v3".into())
        );
        assert_eq!(
            TargetRef::parse("hello:").qualifier,
            Qualifier::Alias(String::new())
        );
        assert_eq!(
            TargetRef::parse("hello:99999999999999999999").qualifier,
            Qualifier::Version(i64::MAX)
        );
    }

    #[test]
    fn weights_parse_in_both_forms() {
        assert_eq!(
            parse_weights("1=90, 2=10").unwrap(),
            vec![
                Weighted {
                    version: 1,
                    weight: 90
                },
                Weighted {
                    version: 2,
                    weight: 10
                }
            ]
        );
        assert_eq!(
            parse_weights("2").unwrap(),
            vec![Weighted {
                version: 2,
                weight: 100
            }]
        );
        assert_eq!(
            show_weights(&parse_weights("1=90,2=10").unwrap()),
            "1=90,2=10"
        );
        for bad in ["", "x", "1=", "1=90,x=10", "1=-5", "1:90"] {
            assert!(parse_weights(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_policy_round_trips_through_json() {
        let policy = RoutePolicy {
            default: Some(TargetRef::parse("shop:live")),
            rules: vec![Rule {
                route_id_regex: Some("^vip-".into()),
                fields: BTreeMap::from([("wareHouseId".into(), "2001".into())]),
                target: TargetRef::parse("shop:2"),
                ..Rule::default()
            }],
            fallback: Some(Fallback {
                target: TargetRef::parse("shop:1"),
                on: FallbackOn {
                    not_found: true,
                    error: true,
                    timeout: false,
                },
                share_percent: 5.0,
            }),
            breaker: Some(BreakerConfig::default()),
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<RoutePolicy>(&json).unwrap(), policy);
        assert!(!policy.is_empty());
        assert!(RoutePolicy::default().is_empty());
        let fields: Vec<_> = policy.targets().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["default", "rules[0].target", "fallback.target"]);
    }
}
