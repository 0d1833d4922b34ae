//! `faas deploy FILE`: a whole setup, applied in order and idempotently.

use super::describe::policy_summary;
use super::upload::{Prepared, check_size, known_bundles};
use super::*;
use faas_apiserver::service::file::ChainSpec;
use faas_proto::events::{GetChainRequest, SetChainRequest};

/// `faas deploy FILE`: every function's definition, then the versions, then the aliases,
/// then the routes, then the chains (once every function of the file exists, so a chain may
/// name a function declared after it); one line each. What is already as the file says is left alone (and
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
    let mut known = known_bundles(deployed.values().filter_map(|r| r.spec.as_ref()));
    for f in &setup.functions {
        let name = &f.spec.name;
        let prepared = Prepared::new(&f.spec)?;
        if let Some(current) = deployed
            .get(name)
            .filter(|c| c.spec.as_ref() == Some(&prepared.record))
        {
            println!("{name}: unchanged (revision {})", current.revision);
            continue;
        }
        let spec = prepared.to_send(&known);
        let note = prepared.note(&spec);
        let request = DeployFunctionRequest {
            function: Some(spec),
        };
        check_size(&format!("deploy {name}"), &request)?;
        let reply = admin
            .deploy_function(request)
            .await
            .map_err(failed(format!("deploy {name}")))?
            .into_inner();
        let record = reply.function.unwrap_or_default();
        known.extend(known_bundles(record.spec.as_ref()));
        let verb = if reply.created { "created" } else { "updated" };
        println!("{name}: {verb} (revision {}{note})", record.revision);
    }
    for f in &setup.functions {
        let name = &f.spec.name;
        if f.versions.iter().any(|v| !v.spec.code.is_empty()) {
            // Versions whose code the server holds are published by their hash.
            let versions = admin
                .list_versions(ListVersionsRequest { name: name.clone() })
                .await
                .map_err(failed(format!("versions of {name}")))?
                .into_inner()
                .versions;
            known.extend(known_bundles(
                versions.iter().filter_map(|v| v.spec.as_ref()),
            ));
        }
        for v in &f.versions {
            let n = v.version;
            let prepared = Prepared::new(&v.spec)?;
            let request = PublishVersionRequest {
                name: name.clone(),
                spec: Some(prepared.to_send(&known)),
                version: n,
            };
            check_size(&format!("publish {name}:{n}"), &request)?;
            let reply = admin
                .publish_version(request)
                .await
                .map_err(failed(format!("publish {name}:{n}")))?
                .into_inner();
            let verb = if reply.created {
                "published"
            } else {
                "unchanged"
            };
            known.extend(prepared.hash);
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
    for f in &setup.functions {
        if let Some(chain) = &f.chain {
            deploy_chain(api, &f.spec.name, chain).await?;
        }
    }
    Ok(())
}

/// Sets `name`'s chain to `want` unless it already is (`EventAdmin/GetChain`, `SetChain`).
async fn deploy_chain(api: &Api, name: &str, want: &ChainSpec) -> anyhow::Result<()> {
    let mut events = api.event_admin();
    let current = events
        .get_chain(GetChainRequest {
            function: name.to_string(),
        })
        .await
        .map_err(failed(format!("chain of {name}")))?
        .into_inner();
    let show = crate::topic_cmds::chain::targets;
    let wanted = show(&want.on_success, &want.on_failure);
    if current.on_success == want.on_success && current.on_failure == want.on_failure {
        println!("{name}: chain unchanged ({wanted})");
        return Ok(());
    }
    events
        .set_chain(SetChainRequest {
            function: name.to_string(),
            on_success: want.on_success.clone(),
            on_failure: want.on_failure.clone(),
        })
        .await
        .map_err(failed(format!("chain of {name}")))?;
    let was = show(&current.on_success, &current.on_failure);
    println!("{name}: chain set ({wanted}; was {was})");
    Ok(())
}
