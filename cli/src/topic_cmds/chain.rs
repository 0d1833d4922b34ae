//! `faas chain FUNCTION [--on-success F] [--on-failure F] [--clear]`: what runs after the
//! function's asynchronous calls end (`EventAdmin/SetChain`); with no flag, shows it
//! (`GetChain`). A target not deployed is exit 3, a cycle exit 1 (`FAILED_PRECONDITION`,
//! the message names it).

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::events::{GetChainRequest, SetChainRequest};

/// The flags of `faas chain` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct ChainArgs {
    pub function: String,
    /// Invoked with the call's result when it succeeds.
    #[arg(long, value_name = "FUNCTION")]
    pub on_success: Option<String>,
    /// Invoked with the invocation's JSON when it fails for good (after its retries).
    #[arg(long, value_name = "FUNCTION")]
    pub on_failure: Option<String>,
    /// Remove both.
    #[arg(long, conflicts_with_all = ["on_success", "on_failure"])]
    pub clear: bool,
}

/// `faas chain`.
pub async fn chain(api: &Api, args: &ChainArgs) -> anyhow::Result<()> {
    let what = format!("chain {}", args.function);
    let chain = if args.on_success.is_none() && args.on_failure.is_none() && !args.clear {
        api.event_admin()
            .get_chain(GetChainRequest {
                function: args.function.clone(),
            })
            .await
            .map_err(call_failed(what))?
            .into_inner()
    } else {
        api.event_admin()
            .set_chain(SetChainRequest {
                function: args.function.clone(),
                on_success: args.on_success.clone().unwrap_or_default(),
                on_failure: args.on_failure.clone().unwrap_or_default(),
            })
            .await
            .map_err(call_failed(what))?
            .into_inner()
    };
    println!(
        "{}: {}",
        chain.function,
        targets(&chain.on_success, &chain.on_failure)
    );
    Ok(())
}

/// A chain's targets as every command prints them: `on success -> G, on failure -> -`.
pub fn targets(on_success: &str, on_failure: &str) -> String {
    let or_none = |t: &str| if t.is_empty() { "-" } else { t }.to_string();
    format!(
        "on success -> {}, on failure -> {}",
        or_none(on_success),
        or_none(on_failure)
    )
}
