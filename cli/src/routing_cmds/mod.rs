//! The service layer's commands (versions, aliases, routes, describe) and `faas deploy FILE`,
//! which applies a whole setup: functions, then versions, then aliases, then routes.

use std::collections::HashMap;

use anyhow::anyhow;
use faas_apiserver::api::convert::spec_to_admin;
use faas_apiserver::api::routing::{policy_from_admin, policy_to_admin, weights_from_admin};
use faas_apiserver::model::routing::{BreakerConfig, RoutePolicy, Weighted, show_weights};
use faas_apiserver::service::file::Setup;
use faas_cli::client::Api;
use faas_proto::admin::{
    self, DeleteAliasRequest, DeleteVersionRequest, DeployFunctionRequest, DescribeFunctionReply,
    DescribeFunctionRequest, ListFunctionsRequest, ListVersionsRequest, PublishVersionRequest,
    RollbackAliasRequest, SetAliasRequest, SetRoutesRequest,
};
use serde::Serialize;

// A failed call as one line, `what: CODE: message`, with its status kept for the exit code.
use faas_cli::exit::call_failed as failed;

use crate::output::{mib, print_json};

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

/// `faas versions NAME`: the table (or a JSON array); with `delete`, deletes that version
/// instead.
pub async fn versions(
    api: &Api,
    name: &str,
    delete: Option<i64>,
    json: bool,
) -> anyhow::Result<()> {
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
    if json {
        let list: Vec<describe::VersionJson> = list.iter().map(describe::VersionJson::of).collect();
        return print_json(&list);
    }
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
    let specs: Vec<admin::FunctionSpec> = list
        .iter()
        .map(|v| v.spec.clone().unwrap_or_default())
        .collect();
    // A published version keeps its bundle: the bundle column shows it did.
    let columns = kinds::KindColumns::of(&specs);
    let mut out = format!(
        "{indent}{:<8} {} {:>10} {:>11}{}  {:<19}  description\n",
        "version",
        columns.handler_head,
        "memory MiB",
        "timeout ms",
        columns.bundle_head,
        "published (UTC)"
    );
    for ((v, spec), (runs, bundle)) in list.iter().zip(&specs).zip(&columns.rows) {
        out.push_str(&format!(
            "{indent}{:<8} {runs} {:>10} {:>11}{bundle}  {:<19}  {}\n",
            v.version,
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

/// `faas alias list NAME` (`json`: one array).
pub async fn alias_list(api: &Api, name: &str, json: bool) -> anyhow::Result<()> {
    let reply = describe_reply(api, name).await?;
    if json {
        let list: Vec<describe::AliasJson> =
            reply.aliases.iter().map(describe::AliasJson::of).collect();
        return print_json(&list);
    }
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

mod deploy;
mod describe;
mod describe_events;
mod describe_queue;
mod kinds;
mod upload;

pub use deploy::deploy;
pub use describe::describe;
pub use kinds::functions;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_735_689_599_999), "2024-12-31 23:59:59");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56");
    }
}
