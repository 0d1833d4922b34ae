//! `faas topics [TOPIC] [--function NAME]`: the subscriptions, by topic then function, with
//! their filters (`EventAdmin/ListTopics`).

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::events::ListTopicsRequest;

use crate::output::{OutputArgs, print_json};
use crate::routing_cmds::utc;

/// The flags of `faas topics` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct TopicsArgs {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this function's subscriptions.
    #[arg(long)]
    pub function: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `faas topics`.
pub async fn topics(api: &Api, args: &TopicsArgs) -> anyhow::Result<()> {
    let subs = api
        .event_admin()
        .list_topics(ListTopicsRequest {
            topic: args.topic.clone().unwrap_or_default(),
            function: args.function.clone().unwrap_or_default(),
        })
        .await
        .map_err(call_failed("topics"))?
        .into_inner()
        .subscriptions;
    if args.output.is_json() {
        for s in &subs {
            print_json(&serde_json::json!({
                "topic": s.topic,
                "function": s.function,
                "filter": s.filter,
                "created_at_ms": s.created_at_ms,
            }))?;
        }
        return Ok(());
    }
    if subs.is_empty() {
        println!("no subscriptions");
        return Ok(());
    }
    println!(
        "{:<32}  {:<32}  {:<23}  FILTER",
        "TOPIC", "FUNCTION", "SINCE"
    );
    for s in &subs {
        let filter = if s.filter.is_empty() {
            "-".to_string()
        } else {
            s.filter.join(" ")
        };
        println!(
            "{:<32}  {:<32}  {:<23}  {filter}",
            s.topic,
            s.function,
            utc(s.created_at_ms)
        );
    }
    Ok(())
}
