//! `faas unsubscribe FUNCTION TOPIC` (`EventAdmin/Unsubscribe`; not subscribed: exit 3).

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::events::UnsubscribeRequest;

/// `faas unsubscribe`.
pub async fn unsubscribe(api: &Api, function: &str, topic: &str) -> anyhow::Result<()> {
    api.event_admin()
        .unsubscribe(UnsubscribeRequest {
            topic: topic.to_string(),
            function: function.to_string(),
        })
        .await
        .map_err(call_failed(format!("unsubscribe {function} {topic}")))?;
    println!("{function} unsubscribed from {topic}");
    Ok(())
}
