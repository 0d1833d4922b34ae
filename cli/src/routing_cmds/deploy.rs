//! `faas deploy FILE`: a whole setup, applied in order and idempotently.

use super::describe::policy_summary;
use super::*;

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
