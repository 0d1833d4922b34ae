//! `faas emit TOPIC`: one event to a topic's subscribers (`Events/Emit`).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use faas_cli::client::{Api, DEFAULT_ACCOUNT};
use faas_cli::exit::{self, call_failed};
use faas_proto::events::EmitRequest;

use crate::output::{OutputArgs, print_json};

/// The flags of `faas emit` (beside `--apiserver`).
#[derive(clap::Args, Clone, Debug)]
pub struct EmitArgs {
    /// The topic: 1 to 128 of a-z A-Z 0-9 _ - .
    pub topic: String,
    /// The event (JSON, for subscribers' filters to match).
    #[arg(long, default_value = "")]
    pub event: String,
    /// Read the event from a file instead (`-`: standard input).
    #[arg(long, conflicts_with = "event")]
    pub event_file: Option<PathBuf>,
    #[arg(long, env = "FAAS_ACCOUNT", default_value = DEFAULT_ACCOUNT)]
    pub account: String,
    /// An emit repeated with the same key delivers nothing twice (prints the first calls).
    #[arg(long, value_name = "KEY", default_value = "")]
    pub idempotency_key: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `faas emit`.
pub async fn emit(api: &Api, args: &EmitArgs) -> anyhow::Result<()> {
    let event = match &args.event_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the event from standard input")
                .map_err(exit::bad_input)?;
            buf
        }
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(exit::bad_input)?,
        None => args.event.clone().into_bytes(),
    };
    let reply = api
        .events()
        .emit(EmitRequest {
            topic: args.topic.clone(),
            event,
            account_id: args.account.clone(),
            idempotency_key: args.idempotency_key.clone(),
        })
        .await
        .map_err(call_failed(format!("emit {}", args.topic)))?
        .into_inner();
    if args.output.is_json() {
        for d in &reply.deliveries {
            print_json(&serde_json::json!({
                "emit_id": reply.emit_id,
                "function": d.function,
                "invocation_id": d.invocation_id,
                "created": d.created,
            }))?;
        }
        return Ok(());
    }
    for d in &reply.deliveries {
        println!("{}  {}", d.function, d.invocation_id);
    }
    if reply.deliveries.is_empty() {
        eprintln!("no subscriber of {} matched: nothing delivered", args.topic);
    }
    Ok(())
}
