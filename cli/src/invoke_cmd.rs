//! `faas invoke NAME [--event JSON | --event-file FILE] [-v] [--route-id ID] [--route K=V]
//! [--routing-key KEY] [--async]`: one call of a function, its body on stdout.
//!
//! The routing flags become the call's routing metadata (`faas_proto::meta`), checked here
//! before anything is sent (a value that cannot travel is bad input, exit 4). `-v` prints on
//! stderr what the platform reports beside the body: request id, latencies, cold start,
//! placement, and the version and target that served the call. A failed call prints the
//! server's code and message as one line and exits with the code of its kind
//! (`faas_cli::exit`). `--async` hands the call to [`crate::async_cmds::submit`] instead.

use std::path::PathBuf;

use anyhow::Context;
use faas_cli::client::{DEFAULT_ACCOUNT, RouteReply, RouteRequest, parse_route_param};
use faas_cli::exit::{self, call_failed};

use crate::target::Target;

/// The flags of `faas invoke` (beside the [`Target`]'s).
#[derive(clap::Args, Clone, Debug)]
pub struct InvokeArgs {
    /// The function: NAME (its routes, else its current definition), NAME:N (version N)
    /// or NAME:ALIAS.
    pub name: String,
    /// The event (JSON or any text).
    #[arg(long, default_value = "")]
    pub event: String,
    /// Read the event from a file instead.
    #[arg(long, conflicts_with = "event")]
    pub event_file: Option<PathBuf>,
    #[arg(long, env = "FAAS_ACCOUNT", default_value = DEFAULT_ACCOUNT)]
    pub account: String,
    /// Also print the request id, latency, cold start and placement, and the version and
    /// target that served the call (and the fallback's reason, when it served it).
    #[arg(long, short)]
    pub verbose: bool,
    /// The call's routing id, matched by route rules' route_id and route_id_regex.
    #[arg(long, value_name = "ID")]
    pub route_id: Option<String>,
    /// A routing parameter, matched by route rules' fields (repeatable).
    #[arg(long = "route", value_name = "KEY=VALUE", value_parser = parse_route_param)]
    pub routes: Vec<(String, String)>,
    /// Calls with the same routing key go to the same version of a weighted alias.
    #[arg(long, value_name = "KEY")]
    pub routing_key: Option<String>,
    /// Run it in the background: print its invocation id at once (`faas result ID`
    /// fetches the result).
    #[arg(long = "async")]
    pub run_async: bool,
    /// With --async: a repeated submit with the same key (for this function and account)
    /// prints the first call's id instead of making another.
    #[arg(long, value_name = "KEY", requires = "run_async")]
    pub idempotency_key: Option<String>,
    /// With --async: where the result goes when the call succeeds: a function (invoked
    /// asynchronously with it) or an http:// URL on loopback (POSTed).
    #[arg(long, value_name = "FUNCTION|URL", requires = "run_async")]
    pub on_success: Option<String>,
    /// With --async: where the result goes when the call fails for good.
    #[arg(long, value_name = "FUNCTION|URL", requires = "run_async")]
    pub on_failure: Option<String>,
}

/// `faas invoke`.
pub async fn invoke(args: &InvokeArgs, target: &Target) -> anyhow::Result<()> {
    let event = match &args.event_file {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(exit::bad_input)?,
        None => args.event.clone().into_bytes(),
    };
    let route = RouteRequest {
        route_id: args.route_id.clone(),
        params: args.routes.clone(),
        routing_key: args.routing_key.clone(),
    };
    // Refused here, before anything is sent, with the flag named.
    route
        .metadata()
        .map_err(|e| exit::bad_input(anyhow::Error::msg(e)))?;
    let api = target.api().await?;
    let (name, account, verbose) = (&args.name, &args.account, args.verbose);
    if args.run_async {
        let extras = crate::async_cmds::Extras {
            idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
            on_success: args.on_success.clone().unwrap_or_default(),
            on_failure: args.on_failure.clone().unwrap_or_default(),
        };
        let call = crate::async_cmds::AsyncCall {
            account,
            name,
            event,
            route: &route,
            extras,
        };
        return crate::async_cmds::submit(&api, call, verbose).await;
    }
    match api.invoke_routed(account, name, event, &route).await {
        Ok(out) => {
            if verbose {
                eprintln!(
                    "request {} | server {} ms | acquire {} ms | cold {} | node {} | container {}",
                    out.request_id,
                    out.server_latency_ms,
                    out.acquire_ms.map_or("?".into(), |v| format!("{v:.2}")),
                    out.cold.map_or("?".into(), |v| v.to_string()),
                    out.node_id.as_deref().unwrap_or("?"),
                    out.container_id.as_deref().unwrap_or("?"),
                );
                for line in out.route.lines() {
                    eprintln!("{line}");
                }
            }
            println!("{}", String::from_utf8_lossy(&out.body));
            Ok(())
        }
        Err(status) => {
            if verbose {
                for line in RouteReply::from_metadata(status.metadata()).lines() {
                    eprintln!("{line}");
                }
            }
            Err(call_failed("")(status))
        }
    }
}
