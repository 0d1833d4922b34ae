//! `faas subscribe FUNCTION TOPIC [--filter FIELD=VALUE ...]` (`EventAdmin/Subscribe`).

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::events::SubscribeRequest;

/// The flags of `faas subscribe` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct SubscribeArgs {
    /// The function: NAME, NAME:N or NAME:ALIAS.
    pub function: String,
    pub topic: String,
    /// Only events whose top-level JSON field FIELD equals VALUE (repeatable: all must
    /// hold), as a route rule's fields.
    #[arg(long, value_name = "FIELD=VALUE")]
    pub filter: Vec<String>,
}

/// `faas subscribe`.
pub async fn subscribe(api: &Api, args: &SubscribeArgs) -> anyhow::Result<()> {
    let reply = api
        .event_admin()
        .subscribe(SubscribeRequest {
            topic: args.topic.clone(),
            function: args.function.clone(),
            filter: args.filter.clone(),
        })
        .await
        .map_err(call_failed(format!(
            "subscribe {} {}",
            args.function, args.topic
        )))?
        .into_inner();
    let filter = reply
        .subscription
        .map(|s| s.filter.join(" "))
        .unwrap_or_default();
    let what = if reply.created {
        "subscribed"
    } else {
        "resubscribed"
    };
    let filter = if filter.is_empty() {
        "every event".to_string()
    } else {
        format!("events with {filter}")
    };
    println!("{} {what} to {}: {filter}", args.function, args.topic);
    Ok(())
}
