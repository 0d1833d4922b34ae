//! From the name a call gives to the concrete function that runs it: pure, no I/O, the dice
//! as an argument (so a test replays a seeded run exactly).
//!
//! 1. `NAME:N` is version N. `NAME:ALIAS` picks one of the alias's versions by weight: by a
//!    stable hash of the caller's routing key when it gives one (one user sticks to one
//!    version), else by the dice.
//! 2. Plain `NAME` of a function with a route policy tries its rules in order (routing id
//!    equal, routing id matching a regex, fields equal to routing parameters or the event's
//!    JSON fields); the first that matches names the target, else the policy's default;
//!    without a policy (or default) it is the function's current definition. A rule's or
//!    default's target is resolved by step 1 only: route tables do not chain.
//! 3. The policy of the function the call names also gives the fallback (resolved the same
//!    way) and the breaker settings. A fallback that resolves to the very target it protects
//!    is dropped.

use std::sync::Arc;

use crate::model::Function;
use crate::model::routing::{BreakerConfig, FallbackOn, Qualifier, TargetRef};
use crate::service::registry::Registry;
use crate::service::routing::validate::CompiledPolicy;

/// What a caller says about routing, besides the name (gRPC metadata, `faas invoke` flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteContext {
    /// The routing id (a business identity) rules match on.
    pub route_id: Option<String>,
    /// Routing parameters (`key=value`) rules' fields match on before the event's.
    pub params: Vec<(String, String)>,
    /// Calls with the same key pick the same version of a weighted alias.
    pub routing_key: Option<String>,
}

impl RouteContext {
    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.route_id.is_none() && self.params.is_empty() && self.routing_key.is_none()
    }
}

/// The random numbers one call's routing may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dice {
    /// 0 to 99: which version of a weighted alias (unless a routing key decides).
    pub alias: u32,
    /// 0 to 100 (exclusive): whether the call goes to the fallback as its traffic share.
    pub share: f64,
}

/// A function that can run: the current definition or a version.
#[derive(Clone, Debug, PartialEq)]
pub struct Concrete {
    pub function: Arc<Function>,
    /// The version, `None` for the current definition.
    pub version: Option<i64>,
}

impl Concrete {
    /// The name the scheduler and the metrics know it by: `hello` or `hello:3`.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    /// The version as the reply's `x-faas-version` says it: `3` or `latest`.
    pub fn version_label(&self) -> String {
        self.version
            .map_or_else(|| "latest".to_string(), |v| v.to_string())
    }
}

/// A target that could not be resolved: what it was, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub target: String,
    pub why: String,
}

/// Where a call goes, and where it goes when that fails.
#[derive(Clone, Debug)]
pub struct Plan {
    pub primary: Result<Concrete, Missing>,
    /// How the primary was chosen: `direct`, `default` or `rule N` (1-based).
    pub chosen_by: String,
    pub fallback: Option<FallbackPlan>,
    pub breaker: Option<BreakerConfig>,
}

/// The fallback of a plan.
#[derive(Clone, Debug)]
pub struct FallbackPlan {
    pub target: Result<Concrete, Missing>,
    pub on: FallbackOn,
    pub share_percent: f64,
}

/// FNV-1a: a hash that is the same in every process (the standard library's is seeded).
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Resolves `target` to a concrete function (step 1 of the module docs).
pub fn resolve_target(
    registry: &Registry,
    target: &TargetRef,
    ctx: &RouteContext,
    dice: Dice,
) -> Result<Concrete, Missing> {
    let missing = |why: String| Missing {
        target: target.to_string(),
        why,
    };
    let f = &target.function;
    match &target.qualifier {
        Qualifier::Latest => registry
            .table
            .get(f)
            .map(|function| Concrete {
                function,
                version: None,
            })
            .ok_or_else(|| missing("the function is not deployed".into())),
        Qualifier::Version(n) => registry
            .routing
            .get(f)
            .and_then(|r| r.versions.get(n).cloned())
            .map(|function| Concrete {
                function,
                version: Some(*n),
            })
            .ok_or_else(|| missing(format!("version {n} of {f} does not exist"))),
        Qualifier::Alias(a) => {
            let routing = registry.routing.get(f);
            let alias = routing
                .as_ref()
                .and_then(|r| r.aliases.get(a))
                .ok_or_else(|| missing(format!("alias {a} of {f} does not exist")))?;
            let roll = match &ctx.routing_key {
                Some(key) => {
                    let mut keyed = Vec::with_capacity(key.len() + a.len() + 1);
                    keyed.extend_from_slice(a.as_bytes());
                    keyed.push(0);
                    keyed.extend_from_slice(key.as_bytes());
                    (stable_hash(&keyed) % 100) as u32
                }
                None => dice.alias % 100,
            };
            let mut upto = 0;
            let picked = alias
                .targets
                .iter()
                .find(|t| {
                    upto += t.weight;
                    roll < upto
                })
                .or(alias.targets.last())
                .ok_or_else(|| missing(format!("alias {a} of {f} points nowhere")))?;
            resolve_target(registry, &TargetRef::version(f, picked.version), ctx, dice)
        }
    }
}

/// Whether `rule` number `i` of `policy` matches the call; `event` is parsed at most once.
fn rule_matches(
    policy: &CompiledPolicy,
    i: usize,
    ctx: &RouteContext,
    event: &[u8],
    parsed: &mut Option<Option<serde_json::Value>>,
) -> bool {
    let rule = &policy.policy.rules[i];
    if let Some(id) = &rule.route_id
        && ctx.route_id.as_deref() != Some(id.as_str())
    {
        return false;
    }
    if let Some(regex) = &policy.regexes[i] {
        match &ctx.route_id {
            Some(id) if regex.is_match(id) => {}
            _ => return false,
        }
    }
    fields_match(&rule.fields, &ctx.params, event, parsed)
}

/// Whether every field of `fields` equals its value: a routing parameter in `params`, else a
/// top-level field of the event's JSON object (`event` is parsed at most once, into
/// `parsed`). A rule's `fields`, and a topic subscription's filter (`service::events`).
pub fn fields_match(
    fields: &std::collections::BTreeMap<String, String>,
    params: &[(String, String)],
    event: &[u8],
    parsed: &mut Option<Option<serde_json::Value>>,
) -> bool {
    fields.iter().all(|(key, want)| {
        if let Some((_, have)) = params.iter().find(|(k, _)| k == key) {
            return have == want;
        }
        let doc = parsed.get_or_insert_with(|| serde_json::from_slice(event).ok());
        match doc.as_ref().and_then(|d| d.get(key)) {
            Some(serde_json::Value::String(s)) => s == want,
            // `2001` and `true` match "2001" and "true".
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                serde_json::from_str::<serde_json::Value>(want).is_ok_and(|w| w == *v)
            }
            _ => false,
        }
    })
}

/// The plan for a call of `name` (see the module docs). `None`: the function is not deployed
/// (nothing to fall back on either).
pub fn plan(
    registry: &Registry,
    name: &str,
    ctx: &RouteContext,
    event: &[u8],
    dice: Dice,
) -> Option<Plan> {
    let called = TargetRef::parse(name);
    let routing = registry.routing.get(&called.function);
    let policy = routing.as_ref().and_then(|r| r.policy.clone());
    registry.table.get(&called.function)?;
    let (target, chosen_by) = match (&called.qualifier, &policy) {
        (Qualifier::Latest, Some(policy)) => {
            let mut parsed = None;
            match (0..policy.policy.rules.len())
                .find(|i| rule_matches(policy, *i, ctx, event, &mut parsed))
            {
                Some(i) => (
                    policy.policy.rules[i].target.clone(),
                    format!("rule {}", i + 1),
                ),
                None => match &policy.policy.default {
                    Some(default) => (default.clone(), "default".to_string()),
                    None => (called.clone(), "direct".to_string()),
                },
            }
        }
        _ => (called.clone(), "direct".to_string()),
    };
    let primary = resolve_target(registry, &target, ctx, dice);
    let fallback = policy
        .as_ref()
        .and_then(|p| p.policy.fallback.as_ref())
        .map(|f| FallbackPlan {
            target: resolve_target(registry, &f.target, ctx, dice),
            on: f.on,
            share_percent: f.share_percent,
        })
        .filter(|f| match (&f.target, &primary) {
            (Ok(fb), Ok(p)) => fb.name() != p.name(),
            _ => true,
        });
    Some(Plan {
        primary,
        chosen_by,
        fallback,
        breaker: policy.and_then(|p| p.policy.breaker.clone()),
    })
}
