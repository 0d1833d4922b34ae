//! `faas describe`'s part about topics and chains: the function's subscriptions (with their
//! filters) and its chain, read from `faas.events.v1.EventAdmin` (absent when the server
//! does not serve it or the key may not read it).

use faas_cli::client::Api;
use faas_proto::events::{GetChainRequest, ListTopicsRequest};
use serde::Serialize;

/// One subscription of the function.
#[derive(Debug, Serialize)]
pub struct SubscriptionJson {
    topic: String,
    /// As subscribed: NAME, NAME:N or NAME:ALIAS.
    function: String,
    filter: Vec<String>,
}

/// A function's subscriptions and chain.
#[derive(Debug, Serialize)]
pub struct EventsJson {
    subscriptions: Vec<SubscriptionJson>,
    on_success: String,
    on_failure: String,
}

impl EventsJson {
    /// Asks the server; `None` when it cannot say.
    pub async fn fetch(api: &Api, name: &str) -> Option<EventsJson> {
        let subs = api
            .event_admin()
            .list_topics(ListTopicsRequest {
                topic: String::new(),
                function: name.to_string(),
            })
            .await
            .ok()?
            .into_inner()
            .subscriptions;
        let chain = api
            .event_admin()
            .get_chain(GetChainRequest {
                function: name.to_string(),
            })
            .await
            .ok()?
            .into_inner();
        Some(EventsJson {
            subscriptions: subs
                .into_iter()
                .map(|s| SubscriptionJson {
                    topic: s.topic,
                    function: s.function,
                    filter: s.filter,
                })
                .collect(),
            on_success: chain.on_success,
            on_failure: chain.on_failure,
        })
    }

    /// The text part; empty when there is nothing to say.
    pub fn render(&self) -> String {
        if self.subscriptions.is_empty() && self.on_success.is_empty() && self.on_failure.is_empty()
        {
            return String::new();
        }
        let mut out = String::from("\ntopics and chain:\n");
        for s in &self.subscriptions {
            let filter = if s.filter.is_empty() {
                "every event".to_string()
            } else {
                s.filter.join(" ")
            };
            out.push_str(&format!(
                "  subscribed to {} as {}: {filter}\n",
                s.topic, s.function
            ));
        }
        out.push_str(&format!(
            "  chain: {}\n",
            crate::topic_cmds::chain::targets(&self.on_success, &self.on_failure)
        ));
        out
    }
}
