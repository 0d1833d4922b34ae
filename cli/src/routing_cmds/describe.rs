//! `faas describe NAME [-o json]`: everything about one function, as text or JSON (one
//! object). Its version and alias objects are also what `faas versions -o json` and `faas
//! alias list -o json` print.

use super::*;

/// `faas describe NAME [-o json]`.
pub async fn describe(api: &Api, name: &str, json: bool) -> anyhow::Result<()> {
    let reply = describe_reply(api, name).await?;
    let mut described = Described::from_reply(name, reply)?;
    described.events = super::describe_events::EventsJson::fetch(api, name).await;
    if json {
        // Its schedules with their last firings (the text shows them after, as a table).
        if let Ok(schedules) = crate::schedules_cmd::fetch(api, Some(name), 10).await {
            described.schedules = Some(
                schedules
                    .iter()
                    .map(|s| serde_json::to_value(crate::schedules_cmd::schedule_json(s)))
                    .collect::<Result<_, _>>()?,
            );
        }
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
    /// The wire handler: a built-in's name, or `bundle:<sha256>`.
    handler: String,
    /// What runs, in a few words (`python3 main.py (http)`).
    runs: String,
    /// A command or image function's definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<CodeJson>,
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
    /// Its asynchronous calls (absent: the server does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<super::describe_queue::QueueJson>,
    /// Its subscriptions and chain (absent: the server does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<super::describe_events::EventsJson>,
    /// Its schedules, as `faas schedules -o json` prints them (`-o json` only; absent: the
    /// server does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    schedules: Option<Vec<serde_json::Value>>,
    #[serde(skip)]
    raw_versions: Vec<admin::VersionRecord>,
    #[serde(skip)]
    raw_aliases: Vec<admin::AliasRecord>,
}

/// A command or image function's definition, and the bundle that holds it.
#[derive(Debug, Serialize)]
pub(super) struct CodeJson {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    image: String,
    /// 0: the default.
    start_timeout_ms: i64,
    env: std::collections::BTreeMap<String, String>,
    bundle: String,
}

impl CodeJson {
    pub(super) fn of(spec: &admin::FunctionSpec) -> Option<CodeJson> {
        if spec.bundle.is_empty() && spec.command.is_empty() && spec.image.is_empty() {
            return None;
        }
        Some(CodeJson {
            command: spec.command.clone(),
            protocol: spec.protocol.clone(),
            image: spec.image.clone(),
            start_timeout_ms: spec.start_timeout_ms,
            env: spec.env.clone().into_iter().collect(),
            bundle: spec.bundle.clone(),
        })
    }
}

/// The wire handler of `spec`: its built-in, or `bundle:<sha256>`.
pub(super) fn wire_handler(spec: &admin::FunctionSpec) -> String {
    if spec.bundle.is_empty() {
        spec.handler.clone()
    } else {
        format!("bundle:{}", spec.bundle)
    }
}

/// A version as `describe` and `versions -o json` print it.
#[derive(Debug, Serialize)]
pub(super) struct VersionJson {
    version: i64,
    handler: String,
    runs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<CodeJson>,
    memory_mb: i64,
    timeout_ms: i64,
    description: String,
    published_at_ms: i64,
}

/// An alias as `describe` and `alias list -o json` print it.
#[derive(Debug, Serialize)]
pub(super) struct AliasJson {
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

impl VersionJson {
    pub(super) fn of(v: &admin::VersionRecord) -> VersionJson {
        let s = v.spec.clone().unwrap_or_default();
        VersionJson {
            version: v.version,
            handler: wire_handler(&s),
            runs: kinds::runs(&s),
            code: CodeJson::of(&s),
            memory_mb: mib(s.memory_in_bytes),
            timeout_ms: s.timeout_in_ms,
            description: s.description,
            published_at_ms: v.published_at_ms,
        }
    }
}

impl AliasJson {
    pub(super) fn of(a: &admin::AliasRecord) -> AliasJson {
        AliasJson {
            name: a.name.clone(),
            targets: weights_from_admin(a.targets.clone()),
            previous: weights_from_admin(a.previous.clone()),
            updated_at_ms: a.updated_at_ms,
        }
    }
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
            handler: wire_handler(&spec),
            runs: kinds::runs(&spec),
            code: CodeJson::of(&spec),
            name: spec.name,
            memory_mb: mib(spec.memory_in_bytes),
            timeout_ms: spec.timeout_in_ms,
            description: spec.description,
            revision: record.revision,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            versions: reply.versions.iter().map(VersionJson::of).collect(),
            aliases: reply.aliases.iter().map(AliasJson::of).collect(),
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
            queue: reply.queue.map(super::describe_queue::QueueJson::of),
            events: None,
            schedules: None,
            raw_versions: reply.versions,
            raw_aliases: reply.aliases,
        })
    }

    /// The human-readable description.
    fn render(&self) -> String {
        let name = &self.name;
        let runs = match &self.code {
            None => format!("handler {}", self.runs),
            Some(c) if c.image.is_empty() => {
                format!(
                    "command {} | bundle {}",
                    self.runs,
                    kinds::short_hash(&c.bundle)
                )
            }
            Some(c) => format!("{} | bundle {}", self.runs, kinds::short_hash(&c.bundle)),
        };
        let mut out = format!(
            "function {name} (revision {}, updated {} UTC)\n  {runs} | memory {} MiB | timeout {} ms\n",
            self.revision,
            utc(self.updated_at_ms),
            self.memory_mb,
            self.timeout_ms
        );
        if let Some(c) = &self.code {
            let mut more: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if c.start_timeout_ms > 0 {
                more.push(format!("start timeout {} ms", c.start_timeout_ms));
            }
            if !more.is_empty() {
                out.push_str(&format!(
                    "  {}\n",
                    faas_common::text::clip(&more.join(" | "))
                ));
            }
        }
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
        if let Some(q) = &self.queue {
            out.push_str(&q.render());
        }
        if let Some(e) = &self.events {
            out.push_str(&e.render());
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
pub(super) fn policy_summary(p: &RoutePolicy) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use faas_apiserver::service::file::parse_setup_toml;

    #[test]
    fn a_description_shows_every_part() {
        let setup = parse_setup_toml(
            include_str!("../../../deploy/canary.toml"),
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
            queue: Some(admin::AsyncStatus {
                depth: 3,
                oldest_age_ms: 1_500,
                dead_letters: 2,
                retry: Some(admin::AsyncRetry {
                    max_attempts: 4,
                    first_delay_ms: 100,
                    max_delay_ms: 2_000,
                }),
            }),
        };
        let described = Described::from_reply("shop", reply).unwrap();
        let text = described.render();
        assert!(
            text.contains(
                "queued or running 3 | oldest 1500 ms | dead letters 2\n  retries: 4 attempts"
            ),
            "{text}"
        );
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

    #[test]
    fn a_command_function_shows_its_command_and_bundle() {
        let hash = "2b8cbc6472a5618c6a12a020e53de1c3ed7528fcb4e7d98668e1591e4e1e6b57";
        let spec = admin::FunctionSpec {
            name: "py".into(),
            command: vec!["python3".into(), "main.py".into()],
            protocol: "http".into(),
            start_timeout_ms: 10_000,
            env: [("GREETING".to_string(), "Hello".to_string())].into(),
            bundle: hash.into(),
            memory_in_bytes: 128 << 20,
            timeout_in_ms: 5_000,
            ..Default::default()
        };
        let reply = DescribeFunctionReply {
            function: Some(admin::FunctionRecord {
                spec: Some(spec.clone()),
                revision: 3,
                ..Default::default()
            }),
            versions: vec![admin::VersionRecord {
                function: "py".into(),
                version: 1,
                spec: Some(spec),
                published_at_ms: 1_709_210_096_000,
            }],
            ..Default::default()
        };
        let described = Described::from_reply("py", reply).unwrap();
        let text = described.render();
        for want in [
            "  command python3 main.py (http) | bundle 2b8cbc6472a5… | memory 128 MiB | timeout 5000 ms\n",
            "  GREETING=Hello | start timeout 10000 ms\n",
            "  version  handler                memory MiB  timeout ms bundle         published (UTC)",
            "  1        python3 main.py (http)        128        5000 2b8cbc6472a5…  2024-02-29 12:34:56",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        let json = serde_json::to_value(&described).unwrap();
        assert_eq!(json["handler"], format!("bundle:{hash}"));
        assert_eq!(json["runs"], "python3 main.py (http)");
        assert_eq!(json["code"]["bundle"], hash);
        assert_eq!(json["code"]["env"]["GREETING"], "Hello");
        assert_eq!(json["versions"][0]["code"]["bundle"], hash);
    }
}
