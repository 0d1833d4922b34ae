//! The admin API's service-layer messages ⇄ the model (versions, aliases, route policies,
//! target status), and the routing metadata of an `InvokeFunction` call.
//!
//! Proto3 cannot tell an unset number from 0, so in a `Breaker` message 0 means "the default"
//! for the margin (100 ms), the window (10 s), the calls it needs (20), the cooldown (5 s)
//! and the probes (3); and 0 means "no such rule" for the baseline and the error share.

use faas_proto::admin;
use faas_proto::meta;
use tonic::metadata::MetadataMap;

use crate::api::convert::spec_to_admin;
use crate::model::Function;
use crate::model::routing::{
    Alias, BreakerConfig, Fallback, FallbackOn, RoutePolicy, Rule, TargetRef, Weighted,
};
use crate::service::RegistryError;
use crate::service::routing::{RouteContext, TargetStatus};

/// The routing metadata's limits, written once beside the keys (clients check them too).
pub use faas_proto::meta::{MAX_ROUTE_PARAMS, MAX_ROUTE_VALUE_BYTES};

/// A published version as the admin API's record.
pub fn version_record(function: &str, v: &Function) -> admin::VersionRecord {
    let mut spec = spec_to_admin(v.spec());
    spec.name = function.to_string();
    admin::VersionRecord {
        function: function.to_string(),
        version: v.revision,
        spec: Some(spec),
        published_at_ms: v.created_at_ms,
    }
}

fn weights_to_admin(w: &[Weighted]) -> Vec<admin::AliasWeight> {
    w.iter()
        .map(|w| admin::AliasWeight {
            version: w.version,
            weight: w.weight,
        })
        .collect()
}

/// The admin API's weights as the model's.
pub fn weights_from_admin(w: Vec<admin::AliasWeight>) -> Vec<Weighted> {
    w.into_iter()
        .map(|w| Weighted {
            version: w.version,
            weight: w.weight,
        })
        .collect()
}

/// An alias as the admin API's record.
pub fn alias_record(a: &Alias) -> admin::AliasRecord {
    admin::AliasRecord {
        function: a.function.clone(),
        name: a.name.clone(),
        targets: weights_to_admin(&a.targets),
        previous: weights_to_admin(&a.previous),
        updated_at_ms: a.updated_at_ms,
    }
}

fn target_field(function: &str, field: String, text: &str) -> Result<TargetRef, RegistryError> {
    if text.is_empty() {
        return Err(RegistryError::BadRouting {
            function: function.to_string(),
            field,
            problem: "give a target: NAME, NAME:N or NAME:ALIAS".into(),
        });
    }
    Ok(TargetRef::parse(text))
}

fn or_default<T: PartialEq + Default>(value: T, default: T) -> T {
    if value == T::default() {
        default
    } else {
        value
    }
}

/// The admin API's route policy as the model's (not yet validated). `None` or an empty
/// message: no policy.
pub fn policy_from_admin(
    function: &str,
    policy: Option<admin::RoutePolicy>,
) -> Result<Option<RoutePolicy>, RegistryError> {
    let Some(p) = policy else {
        return Ok(None);
    };
    let default = (!p.default_target.is_empty()).then(|| TargetRef::parse(&p.default_target));
    let mut rules = Vec::with_capacity(p.rules.len());
    for (i, r) in p.rules.into_iter().enumerate() {
        rules.push(Rule {
            route_id: (!r.route_id.is_empty()).then_some(r.route_id),
            route_id_regex: (!r.route_id_regex.is_empty()).then_some(r.route_id_regex),
            fields: r.fields.into_iter().collect(),
            target: target_field(function, format!("rules[{i}].target"), &r.target)?,
        });
    }
    let fallback = match p.fallback {
        None => None,
        Some(f) if f.target.is_empty() => {
            if f.on_not_found || f.on_error || f.on_timeout || f.share_percent != 0.0 {
                return Err(RegistryError::BadRouting {
                    function: function.to_string(),
                    field: "fallback.target".into(),
                    problem: "give a target: NAME, NAME:N or NAME:ALIAS".into(),
                });
            }
            None
        }
        Some(f) => Some(Fallback {
            target: TargetRef::parse(&f.target),
            on: FallbackOn {
                not_found: f.on_not_found,
                error: f.on_error,
                timeout: f.on_timeout,
            },
            share_percent: f.share_percent,
        }),
    };
    let d = BreakerConfig::default();
    let breaker = p.breaker.map(|b| BreakerConfig {
        latency_baseline_ms: b.latency_baseline_ms,
        margin_ms: or_default(b.margin_ms, d.margin_ms),
        max_error_percent: b.max_error_percent,
        window_ms: or_default(b.window_ms, d.window_ms),
        min_calls: or_default(b.min_calls, d.min_calls),
        cooldown_ms: or_default(b.cooldown_ms, d.cooldown_ms),
        probe_calls: or_default(b.probe_calls, d.probe_calls),
    });
    let policy = RoutePolicy {
        default,
        rules,
        fallback,
        breaker,
    };
    Ok((!policy.is_empty()).then_some(policy))
}

/// A route policy as the admin API's.
pub fn policy_to_admin(p: &RoutePolicy) -> admin::RoutePolicy {
    admin::RoutePolicy {
        default_target: p
            .default
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        rules: p
            .rules
            .iter()
            .map(|r| admin::RouteRule {
                route_id: r.route_id.clone().unwrap_or_default(),
                route_id_regex: r.route_id_regex.clone().unwrap_or_default(),
                fields: r.fields.clone().into_iter().collect(),
                target: r.target.to_string(),
            })
            .collect(),
        fallback: p.fallback.as_ref().map(|f| admin::Fallback {
            target: f.target.to_string(),
            on_not_found: f.on.not_found,
            on_error: f.on.error,
            on_timeout: f.on.timeout,
            share_percent: f.share_percent,
        }),
        breaker: p.breaker.as_ref().map(|b| admin::Breaker {
            latency_baseline_ms: b.latency_baseline_ms,
            margin_ms: b.margin_ms,
            max_error_percent: b.max_error_percent,
            window_ms: b.window_ms,
            min_calls: b.min_calls,
            cooldown_ms: b.cooldown_ms,
            probe_calls: b.probe_calls,
        }),
    }
}

/// A target's status as the admin API's, its breaker's last change as Unix ms.
pub fn target_status(s: &TargetStatus, now_unix_ms: i64) -> admin::TargetStatus {
    admin::TargetStatus {
        target: s.target.clone(),
        breaker: s.breaker.as_str().to_string(),
        breaker_since_ms: s.breaker_for_ms.map_or(0, |ago| {
            now_unix_ms.saturating_sub(i64::try_from(ago).unwrap_or(0))
        }),
        calls: s.calls,
        errors: s.errors,
        fallbacks: s.fallbacks,
        window_p99_ms: s.window_p99_ms,
    }
}

/// The routing a caller asked for in `InvokeFunction`'s metadata; a value that is not
/// printable ASCII, too long, or a parameter without `=` is refused with a message naming
/// the key.
pub fn route_context(map: &MetadataMap) -> Result<RouteContext, String> {
    let text = |key: &str, value: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>| {
        let s = value
            .to_str()
            .map_err(|_| format!("metadata {key} must be printable ASCII"))?;
        if s.len() > MAX_ROUTE_VALUE_BYTES {
            return Err(format!(
                "metadata {key} is {} bytes, over the limit of {MAX_ROUTE_VALUE_BYTES}",
                s.len()
            ));
        }
        Ok(s.to_string())
    };
    let one = |key: &str| -> Result<Option<String>, String> {
        map.get(key).map(|v| text(key, v)).transpose()
    };
    let mut params = Vec::new();
    for value in map.get_all(meta::ROUTE_PARAM).iter() {
        if params.len() == MAX_ROUTE_PARAMS {
            return Err(format!(
                "metadata {}: at most {MAX_ROUTE_PARAMS} routing parameters",
                meta::ROUTE_PARAM
            ));
        }
        let s = text(meta::ROUTE_PARAM, value)?;
        let (k, v) = s
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| {
                format!(
                    "metadata {}: {:?} is not key=value",
                    meta::ROUTE_PARAM,
                    faas_common::text::clip(&s)
                )
            })?;
        params.push((k.to_string(), v.to_string()));
    }
    Ok(RouteContext {
        route_id: one(meta::ROUTE_ID)?,
        params,
        routing_key: one(meta::ROUTING_KEY)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_zeros_mean_defaults_and_empty_means_no_policy() {
        let p = policy_from_admin(
            "f",
            Some(admin::RoutePolicy {
                fallback: Some(admin::Fallback {
                    target: "f:1".into(),
                    on_error: true,
                    ..admin::Fallback::default()
                }),
                breaker: Some(admin::Breaker {
                    latency_baseline_ms: 50,
                    ..admin::Breaker::default()
                }),
                ..admin::RoutePolicy::default()
            }),
        )
        .unwrap()
        .unwrap();
        let b = p.breaker.clone().unwrap();
        assert_eq!((b.margin_ms, b.window_ms, b.min_calls), (100, 10_000, 20));
        let back = policy_from_admin("f", Some(policy_to_admin(&p)))
            .unwrap()
            .unwrap();
        assert_eq!(back, p);
        assert_eq!(
            policy_from_admin("f", Some(admin::RoutePolicy::default())).unwrap(),
            None
        );
        assert_eq!(policy_from_admin("f", None).unwrap(), None);
        let e = policy_from_admin(
            "f",
            Some(admin::RoutePolicy {
                rules: vec![admin::RouteRule {
                    route_id: "x".into(),
                    ..admin::RouteRule::default()
                }],
                ..admin::RoutePolicy::default()
            }),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "function \"f\": rules[0].target: give a target: NAME, NAME:N or NAME:ALIAS"
        );
    }

    #[test]
    fn route_metadata_is_read_and_checked() {
        let mut map = MetadataMap::new();
        map.insert(meta::ROUTE_ID, "vip-7".parse().unwrap());
        map.append(meta::ROUTE_PARAM, "wareHouseId=2001".parse().unwrap());
        map.append(meta::ROUTE_PARAM, "region=eu".parse().unwrap());
        map.insert(meta::ROUTING_KEY, "user-1".parse().unwrap());
        let ctx = route_context(&map).unwrap();
        assert_eq!(ctx.route_id.as_deref(), Some("vip-7"));
        assert_eq!(
            ctx.params,
            vec![
                ("wareHouseId".into(), "2001".into()),
                ("region".into(), "eu".into())
            ]
        );
        assert_eq!(ctx.routing_key.as_deref(), Some("user-1"));
        assert!(route_context(&MetadataMap::new()).unwrap().is_empty());

        let mut bad = MetadataMap::new();
        bad.append(meta::ROUTE_PARAM, "novalue".parse().unwrap());
        assert!(
            route_context(&bad)
                .unwrap_err()
                .contains("is not key=value")
        );
        let mut long = MetadataMap::new();
        long.insert(meta::ROUTE_ID, "x".repeat(300).parse().unwrap());
        assert!(
            route_context(&long)
                .unwrap_err()
                .contains("over the limit of 256")
        );
    }
}
