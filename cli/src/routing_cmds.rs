//! The service layer's commands (versions, aliases, routes, describe) and `faas deploy FILE`,
//! which applies a whole setup: functions, then versions, then aliases, then routes.

use std::collections::HashMap;

use anyhow::anyhow;
use faas_apiserver::api::convert::spec_to_admin;
use faas_apiserver::api::routing::{policy_from_admin, policy_to_admin, weights_from_admin};
use faas_apiserver::model::routing::{BreakerConfig, RoutePolicy, Weighted, show_weights};
use faas_apiserver::service::file::Setup;
use faas_cli::client::{Api, describe as status_text};
use faas_proto::admin::{
    self, DeleteAliasRequest, DeleteVersionRequest, DeployFunctionRequest, DescribeFunctionReply,
    DescribeFunctionRequest, ListFunctionsRequest, ListVersionsRequest, PublishVersionRequest,
    RollbackAliasRequest, SetAliasRequest, SetRoutesRequest,
};
use serde::Serialize;

/// A failed call as one line: `what: CODE: message`.
fn failed(what: impl std::fmt::Display) -> impl FnOnce(tonic::Status) -> anyhow::Error {
    move |status| anyhow!("{what}: {}", status_text(&status))
}

fn mib(bytes: i64) -> i64 {
    bytes / (1 << 20)
}

fn weights_to_admin(weights: &[Weighted]) -> Vec<admin::AliasWeight> {
    weights
        .iter()
        .map(|w| admin::AliasWeight {
            version: w.version,
            weight: w.weight,
        })
        .collect()
}

/// `1=90,2=10`, or `-` for none.
fn show(weights: &[admin::AliasWeight]) -> String {
    if weights.is_empty() {
        return "-".into();
    }
    show_weights(&weights_from_admin(weights.to_vec()))
}

/// Unix ms as `2025-01-31 12:00:00` (UTC); `-` for 0.
pub fn utc(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    let secs = unix_ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `faas publish NAME`.
pub async fn publish(api: &Api, name: &str) -> anyhow::Result<()> {
    let reply = api
        .admin()
        .publish_version(PublishVersionRequest {
            name: name.to_string(),
            spec: None,
            version: 0,
        })
        .await
        .map_err(failed(format!("publish {name}")))?
        .into_inner();
    let version = reply.version.map_or(0, |v| v.version);
    println!("published {name} version {version}");
    Ok(())
}

/// `faas versions NAME`: the table; with `delete`, deletes that version instead.
pub async fn versions(api: &Api, name: &str, delete: Option<i64>) -> anyhow::Result<()> {
    if let Some(n) = delete {
        api.admin()
            .delete_version(DeleteVersionRequest {
                name: name.to_string(),
                version: n,
            })
            .await
            .map_err(failed(format!("delete {name}:{n}")))?;
        println!("{name}: version {n} deleted");
        return Ok(());
    }
    let list = api
        .admin()
        .list_versions(ListVersionsRequest {
            name: name.to_string(),
        })
        .await
        .map_err(failed(format!("versions of {name}")))?
        .into_inner()
        .versions;
    print!("{}", listing(&list, versions_table, no_versions(name), ""));
    Ok(())
}

fn no_versions(name: &str) -> String {
    format!("{name} has no versions yet: faas publish {name} freezes its current definition")
}

fn no_aliases(name: &str) -> String {
    format!("{name} has no aliases: faas alias set {name} ALIAS 1=90,2=10 makes one")
}

/// `table` of `items`, or the line `none` when there are none.
fn listing<T>(items: &[T], table: fn(&[T], &str) -> String, none: String, indent: &str) -> String {
    if items.is_empty() {
        format!("{indent}{none}\n")
    } else {
        table(items, indent)
    }
}

fn versions_table(list: &[admin::VersionRecord], indent: &str) -> String {
    let mut out = format!(
        "{indent}{:<8} {:<8} {:>10} {:>11}  {:<19}  description\n",
        "version", "handler", "memory MiB", "timeout ms", "published (UTC)"
    );
    for v in list {
        let spec = v.spec.clone().unwrap_or_default();
        out.push_str(&format!(
            "{indent}{:<8} {:<8} {:>10} {:>11}  {:<19}  {}\n",
            v.version,
            spec.handler,
            mib(spec.memory_in_bytes),
            spec.timeout_in_ms,
            utc(v.published_at_ms),
            faas_common::text::clip(&spec.description)
        ));
    }
    out
}

/// `faas alias set NAME ALIAS WEIGHTS`.
pub async fn alias_set(
    api: &Api,
    name: &str,
    alias: &str,
    targets: &[Weighted],
) -> anyhow::Result<()> {
    // To say "unchanged": the server answers a set that moves nothing with the alias as it
    // is. A failure here is the set's to report.
    let before = describe_reply(api, name).await.ok().and_then(|d| {
        d.aliases
            .into_iter()
            .find(|a| a.name == alias)
            .map(|a| a.targets)
    });
    let reply = api
        .admin()
        .set_alias(SetAliasRequest {
            function: name.to_string(),
            alias: alias.to_string(),
            targets: weights_to_admin(targets),
        })
        .await
        .map_err(failed(format!("alias {name}:{alias}")))?
        .into_inner();
    let record = reply.alias.unwrap_or_default();
    let was = if reply.created {
        "created".to_string()
    } else if before.is_some_and(|b| b == record.targets) {
        "unchanged".to_string()
    } else {
        format!("was {}", show(&record.previous))
    };
    println!("{name}:{alias} → {} ({was})", show(&record.targets));
    Ok(())
}

async fn describe_reply(api: &Api, name: &str) -> anyhow::Result<DescribeFunctionReply> {
    Ok(api
        .admin()
        .describe_function(DescribeFunctionRequest {
            name: name.to_string(),
        })
        .await
        .map_err(failed(format!("describe {name}")))?
        .into_inner())
}

/// `faas alias list NAME`.
pub async fn alias_list(api: &Api, name: &str) -> anyhow::Result<()> {
    let reply = describe_reply(api, name).await?;
    print!(
        "{}",
        listing(&reply.aliases, aliases_table, no_aliases(name), "")
    );
    Ok(())
}

fn aliases_table(list: &[admin::AliasRecord], indent: &str) -> String {
    let mut out = format!(
        "{indent}{:<16} {:<12} {:<12} updated (UTC)\n",
        "alias", "targets", "previous"
    );
    for a in list {
        out.push_str(&format!(
            "{indent}{:<16} {:<12} {:<12} {}\n",
            a.name,
            show(&a.targets),
            show(&a.previous),
            utc(a.updated_at_ms)
        ));
    }
    out
}

/// `faas alias delete NAME ALIAS`.
pub async fn alias_delete(api: &Api, name: &str, alias: &str) -> anyhow::Result<()> {
    api.admin()
        .delete_alias(DeleteAliasRequest {
            function: name.to_string(),
            alias: alias.to_string(),
        })
        .await
        .map_err(failed(format!("delete {name}:{alias}")))?;
    println!("{name}:{alias}: deleted");
    Ok(())
}

/// `faas rollback NAME ALIAS`: `shop:live → 1=100 (was 1=90,2=10) in 0.4 ms`.
pub async fn rollback(api: &Api, name: &str, alias: &str) -> anyhow::Result<()> {
    let reply = api
        .admin()
        .rollback_alias(RollbackAliasRequest {
            function: name.to_string(),
            alias: alias.to_string(),
        })
        .await
        .map_err(failed(format!("rollback {name}:{alias}")))?
        .into_inner();
    let record = reply.alias.unwrap_or_default();
    println!(
        "{name}:{alias} → {} (was {}) in {:.1} ms",
        show(&record.targets),
        show(&record.previous),
        reply.took_us as f64 / 1000.0
    );
    Ok(())
}

/// `faas routes clear NAME`.
pub async fn routes_clear(api: &Api, name: &str) -> anyhow::Result<()> {
    api.admin()
        .set_routes(SetRoutesRequest {
            function: name.to_string(),
            routes: None,
        })
        .await
        .map_err(failed(format!("routes of {name}")))?;
    println!("{name}: routes cleared (calls of {name} go to its current definition)");
    Ok(())
}

/// `faas describe NAME [--json]`.
pub async fn describe(api: &Api, name: &str, json: bool) -> anyhow::Result<()> {
    let reply = describe_reply(api, name).await?;
    let described = Described::from_reply(name, reply)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&described)?);
    } else {
        print!("{}", described.render());
    }
    Ok(())
}

/// What `faas describe` shows, and its `--json`.
#[derive(Debug, Serialize)]
struct Described {
    name: String,
    handler: String,
    memory_mb: i64,
    timeout_ms: i64,
    description: String,
    revision: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    versions: Vec<VersionJson>,
    aliases: Vec<AliasJson>,
    /// Absent: calls of NAME go to its current definition.
    routes: Option<RoutesJson>,
    targets: Vec<TargetJson>,
    #[serde(skip)]
    raw_versions: Vec<admin::VersionRecord>,
    #[serde(skip)]
    raw_aliases: Vec<admin::AliasRecord>,
}

#[derive(Debug, Serialize)]
struct VersionJson {
    version: i64,
    handler: String,
    memory_mb: i64,
    timeout_ms: i64,
    description: String,
    published_at_ms: i64,
}

#[derive(Debug, Serialize)]
struct AliasJson {
    name: String,
    targets: Vec<Weighted>,
    previous: Vec<Weighted>,
    updated_at_ms: i64,
}

#[derive(Debug, Serialize)]
struct RoutesJson {
    default: Option<String>,
    rules: Vec<RuleJson>,
    fallback: Option<FallbackJson>,
    breaker: Option<BreakerConfig>,
}

#[derive(Debug, Serialize)]
struct RuleJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    route_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_id_regex: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    fields: std::collections::BTreeMap<String, String>,
    target: String,
}

#[derive(Debug, Serialize)]
struct FallbackJson {
    target: String,
    on: Vec<&'static str>,
    share_percent: f64,
}

#[derive(Debug, Serialize)]
struct TargetJson {
    target: String,
    breaker: String,
    breaker_since_ms: i64,
    calls: u64,
    errors: u64,
    fallbacks: u64,
    window_p99_ms: f64,
}

fn routes_json(p: RoutePolicy) -> RoutesJson {
    RoutesJson {
        default: p.default.map(|t| t.to_string()),
        rules: p
            .rules
            .into_iter()
            .map(|r| RuleJson {
                route_id: r.route_id,
                route_id_regex: r.route_id_regex,
                fields: r.fields,
                target: r.target.to_string(),
            })
            .collect(),
        fallback: p.fallback.map(|f| FallbackJson {
            target: f.target.to_string(),
            on: [
                (f.on.not_found, "not_found"),
                (f.on.error, "error"),
                (f.on.timeout, "timeout"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect(),
            share_percent: f.share_percent,
        }),
        breaker: p.breaker,
    }
}

impl Described {
    fn from_reply(name: &str, reply: DescribeFunctionReply) -> anyhow::Result<Described> {
        let record = reply.function.unwrap_or_default();
        let spec = record.spec.unwrap_or_default();
        let routes = policy_from_admin(name, reply.routes)
            .map_err(|e| anyhow!("the server described routes this command cannot read: {e}"))?
            .map(routes_json);
        Ok(Described {
            name: spec.name,
            handler: spec.handler,
            memory_mb: mib(spec.memory_in_bytes),
            timeout_ms: spec.timeout_in_ms,
            description: spec.description,
            revision: record.revision,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            versions: reply
                .versions
                .iter()
                .map(|v| {
                    let s = v.spec.clone().unwrap_or_default();
                    VersionJson {
                        version: v.version,
                        handler: s.handler,
                        memory_mb: mib(s.memory_in_bytes),
                        timeout_ms: s.timeout_in_ms,
                        description: s.description,
                        published_at_ms: v.published_at_ms,
                    }
                })
                .collect(),
            aliases: reply
                .aliases
                .iter()
                .map(|a| AliasJson {
                    name: a.name.clone(),
                    targets: weights_from_admin(a.targets.clone()),
                    previous: weights_from_admin(a.previous.clone()),
                    updated_at_ms: a.updated_at_ms,
                })
                .collect(),
            routes,
            targets: reply
                .targets
                .into_iter()
                .map(|t| TargetJson {
                    target: t.target,
                    breaker: t.breaker,
                    breaker_since_ms: t.breaker_since_ms,
                    calls: t.calls,
                    errors: t.errors,
                    fallbacks: t.fallbacks,
                    window_p99_ms: t.window_p99_ms,
                })
                .collect(),
            raw_versions: reply.versions,
            raw_aliases: reply.aliases,
        })
    }

    /// The human-readable description.
    fn render(&self) -> String {
        let name = &self.name;
        let mut out = format!(
            "function {name} (revision {}, updated {} UTC)\n  handler {} | memory {} MiB | timeout {} ms\n",
            self.revision,
            utc(self.updated_at_ms),
            self.handler,
            self.memory_mb,
            self.timeout_ms
        );
        if !self.description.is_empty() {
            out.push_str(&format!(
                "  {}\n",
                faas_common::text::clip(&self.description)
            ));
        }
        out.push_str("\nversions:\n");
        out.push_str(&listing(
            &self.raw_versions,
            versions_table,
            no_versions(name),
            "  ",
        ));
        out.push_str("\naliases:\n");
        out.push_str(&listing(
            &self.raw_aliases,
            aliases_table,
            no_aliases(name),
            "  ",
        ));
        out.push_str("\nroutes:\n");
        match &self.routes {
            None => out.push_str(&format!(
                "  none: calls of {name} go to its current definition\n"
            )),
            Some(r) => out.push_str(&render_routes(name, r)),
        }
        out.push_str("\ntargets (since the API server started):\n");
        if self.targets.is_empty() {
            out.push_str("  no calls yet\n");
        } else {
            out.push_str(&format!(
                "  {:<24} {:<10} {:>8} {:>8} {:>10} {:>14}  breaker changed (UTC)\n",
                "target", "breaker", "calls", "errors", "fallbacks", "window p99 ms"
            ));
            for t in &self.targets {
                out.push_str(&format!(
                    "  {:<24} {:<10} {:>8} {:>8} {:>10} {:>14.1}  {}\n",
                    t.target,
                    t.breaker,
                    t.calls,
                    t.errors,
                    t.fallbacks,
                    t.window_p99_ms,
                    utc(t.breaker_since_ms)
                ));
            }
        }
        out
    }
}

fn render_routes(name: &str, r: &RoutesJson) -> String {
    let mut out = format!(
        "  default    {}\n",
        r.default
            .as_deref()
            .map_or(format!("{name} (the current definition)"), str::to_string)
    );
    for (i, rule) in r.rules.iter().enumerate() {
        let mut conditions = Vec::new();
        if let Some(id) = &rule.route_id {
            conditions.push(format!("route_id = {id:?}"));
        }
        if let Some(re) = &rule.route_id_regex {
            conditions.push(format!("route_id matches {re:?}"));
        }
        for (k, v) in &rule.fields {
            conditions.push(format!("{k} = {v:?}"));
        }
        out.push_str(&format!(
            "  rule {:<5} {} → {}\n",
            i + 1,
            conditions.join(" and "),
            rule.target
        ));
    }
    if let Some(f) = &r.fallback {
        let on = if f.on.is_empty() {
            "no failure".to_string()
        } else {
            f.on.join(", ")
        };
        out.push_str(&format!(
            "  fallback   {} on {on}; share {}%\n",
            f.target, f.share_percent
        ));
    } else {
        out.push_str("  fallback   none\n");
    }
    if let Some(b) = &r.breaker {
        let mut when = Vec::new();
        if b.latency_baseline_ms > 0 {
            when.push(format!(
                "p99 > {} ms ({} + {})",
                b.latency_baseline_ms + b.margin_ms,
                b.latency_baseline_ms,
                b.margin_ms
            ));
        }
        if b.max_error_percent > 0.0 {
            when.push(format!("errors > {}%", b.max_error_percent));
        }
        out.push_str(&format!(
            "  breaker    opens when {} over {} ms (at least {} calls); stays open {} ms, then {} probe calls\n",
            when.join(" or "),
            b.window_ms,
            b.min_calls,
            b.cooldown_ms,
            b.probe_calls
        ));
    } else {
        out.push_str("  breaker    none\n");
    }
    out
}

/// What a route policy says, in a few words: `default shop:live, 3 rules, fallback shop:1,
/// breaker`.
fn policy_summary(p: &RoutePolicy) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &p.default {
        parts.push(format!("default {d}"));
    }
    match p.rules.len() {
        0 => {}
        1 => parts.push("1 rule".into()),
        n => parts.push(format!("{n} rules")),
    }
    if let Some(f) = &p.fallback {
        parts.push(format!("fallback {}", f.target));
    }
    if p.breaker.is_some() {
        parts.push("breaker".into());
    }
    parts.join(", ")
}

/// `faas deploy FILE`: every function's definition, then the versions, then the aliases,
/// then the routes; one line each. What is already as the file says is left alone (and
/// said to be unchanged), so applying a file twice changes nothing.
pub async fn deploy(api: &Api, setup: &Setup) -> anyhow::Result<()> {
    let mut admin = api.admin();
    let deployed: HashMap<String, admin::FunctionRecord> = admin
        .list_functions(ListFunctionsRequest {})
        .await
        .map_err(failed("list the deployed functions"))?
        .into_inner()
        .functions
        .into_iter()
        .filter_map(|f| Some((f.spec.clone()?.name, f)))
        .collect();
    for f in &setup.functions {
        let name = &f.spec.name;
        let spec = spec_to_admin(f.spec.clone());
        if let Some(current) = deployed
            .get(name)
            .filter(|c| c.spec.as_ref() == Some(&spec))
        {
            println!("{name}: unchanged (revision {})", current.revision);
            continue;
        }
        let reply = admin
            .deploy_function(DeployFunctionRequest {
                function: Some(spec),
            })
            .await
            .map_err(failed(format!("deploy {name}")))?
            .into_inner();
        let revision = reply.function.map_or(0, |f| f.revision);
        let verb = if reply.created { "created" } else { "updated" };
        println!("{name}: {verb} (revision {revision})");
    }
    for f in &setup.functions {
        let name = &f.spec.name;
        for v in &f.versions {
            let n = v.version;
            let reply = admin
                .publish_version(PublishVersionRequest {
                    name: name.clone(),
                    spec: Some(spec_to_admin(v.spec.clone())),
                    version: n,
                })
                .await
                .map_err(failed(format!("publish {name}:{n}")))?
                .into_inner();
            let verb = if reply.created {
                "published"
            } else {
                "unchanged"
            };
            println!("{name}: version {n} {verb}");
        }
    }
    // What the server has now, to leave alone what the file does not change.
    let mut before: HashMap<&str, DescribeFunctionReply> = HashMap::new();
    for f in setup
        .functions
        .iter()
        .filter(|f| !f.aliases.is_empty() || f.routes.is_some())
    {
        before.insert(&f.spec.name, describe_reply(api, &f.spec.name).await?);
    }
    for f in &setup.functions {
        let name = &f.spec.name;
        for a in &f.aliases {
            let alias = &a.name;
            let want = weights_to_admin(&a.targets);
            let current = before
                .get(name.as_str())
                .and_then(|d| d.aliases.iter().find(|r| r.name == *alias));
            if current.is_some_and(|c| c.targets == want) {
                println!("{name}: alias {alias} unchanged ({})", show(&want));
                continue;
            }
            admin
                .set_alias(SetAliasRequest {
                    function: name.clone(),
                    alias: alias.clone(),
                    targets: want.clone(),
                })
                .await
                .map_err(failed(format!("alias {name}:{alias}")))?;
            let was = current.map_or("created".to_string(), |c| {
                format!("was {}", show(&c.targets))
            });
            println!("{name}: alias {alias} → {} ({was})", show(&want));
        }
    }
    for f in &setup.functions {
        let name = &f.spec.name;
        let Some(policy) = &f.routes else { continue };
        let want = (!policy.is_empty()).then(|| policy_to_admin(policy));
        if before.get(name.as_str()).is_some_and(|d| d.routes == want) {
            println!("{name}: routes unchanged");
            continue;
        }
        admin
            .set_routes(SetRoutesRequest {
                function: name.clone(),
                routes: want,
            })
            .await
            .map_err(failed(format!("routes of {name}")))?;
        if policy.is_empty() {
            println!("{name}: routes cleared");
        } else {
            println!("{name}: routes set ({})", policy_summary(policy));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_apiserver::service::file::parse_setup_toml;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_735_689_599_999), "2024-12-31 23:59:59");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56");
    }

    #[test]
    fn a_description_shows_every_part() {
        let setup = parse_setup_toml(
            include_str!("../../deploy/canary.toml"),
            "deploy/canary.toml",
        )
        .unwrap();
        let shop = &setup.functions[0];
        let policy = shop.routes.clone().unwrap();
        assert_eq!(
            policy_summary(&policy),
            "default shop:live, 3 rules, fallback shop:1, breaker"
        );
        let spec = spec_to_admin(shop.spec.clone());
        let reply = DescribeFunctionReply {
            function: Some(admin::FunctionRecord {
                spec: Some(spec.clone()),
                revision: 2,
                created_at_ms: 1_709_210_096_000,
                updated_at_ms: 1_709_210_096_000,
            }),
            versions: vec![admin::VersionRecord {
                function: "shop".into(),
                version: 1,
                spec: Some(spec),
                published_at_ms: 1_709_210_096_000,
            }],
            aliases: vec![admin::AliasRecord {
                function: "shop".into(),
                name: "live".into(),
                targets: weights_to_admin(&shop.aliases[0].targets),
                previous: vec![],
                updated_at_ms: 1_709_210_096_000,
            }],
            routes: Some(policy_to_admin(&policy)),
            targets: vec![admin::TargetStatus {
                target: "shop:1".into(),
                breaker: "closed".into(),
                breaker_since_ms: 0,
                calls: 9,
                errors: 1,
                fallbacks: 0,
                window_p99_ms: 1.25,
            }],
        };
        let described = Described::from_reply("shop", reply).unwrap();
        let text = described.render();
        for want in [
            "function shop (revision 2, updated 2024-02-29 12:34:56 UTC)",
            "handler echo | memory 128 MiB | timeout 1000 ms",
            "1        echo            128        1000  2024-02-29 12:34:56",
            "live             1=90,2=10    -            2024-02-29 12:34:56",
            "  default    shop:live\n",
            "  rule 1     route_id = \"vip\" → shop:2\n",
            "  rule 2     route_id matches \"^test-\" → shop:2\n",
            "  rule 3     wareHouseId = \"2001\" → shop:2\n",
            "  fallback   shop:1 on not_found, error, timeout; share 0%\n",
            "  breaker    opens when p99 > 150 ms (50 + 100) or errors > 50% over 10000 ms (at least 20 calls); stays open 5000 ms, then 3 probe calls\n",
            "shop:1                   closed            9        1          0            1.2  -",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&described).unwrap()).unwrap();
        assert_eq!(json["routes"]["default"], "shop:live");
        assert_eq!(json["routes"]["rules"][2]["fields"]["wareHouseId"], "2001");
        assert_eq!(json["routes"]["fallback"]["on"][1], "error");
        assert_eq!(json["aliases"][0]["targets"][1]["weight"], 10);
        assert_eq!(json["targets"][0]["calls"], 9);
        assert!(json.get("raw_versions").is_none());

        let empty = Described::from_reply(
            "bare",
            DescribeFunctionReply {
                function: Some(admin::FunctionRecord {
                    spec: Some(admin::FunctionSpec {
                        name: "bare".into(),
                        ..admin::FunctionSpec::default()
                    }),
                    ..admin::FunctionRecord::default()
                }),
                ..DescribeFunctionReply::default()
            },
        )
        .unwrap()
        .render();
        for want in [
            "  bare has no versions yet: faas publish bare freezes its current definition\n",
            "  bare has no aliases: faas alias set bare ALIAS 1=90,2=10 makes one\n",
            "none: calls of bare go to its current definition",
            "no calls yet",
        ] {
            assert!(empty.contains(want), "{want:?} missing in\n{empty}");
        }
    }
}
