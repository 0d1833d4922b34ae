//! Topics' and chains' Prometheus figures (README, "Metrics"): calls an emit submitted, by
//! topic (only topics with a subscriber get a label: a topic nobody listens to delivers
//! nothing), and chain steps submitted, by the function whose call ended and which end
//! (`success` / `failure`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainLabels {
    function: String,
    on: String,
}

/// The figures.
#[derive(Debug, Default)]
pub struct EventMetrics {
    deliveries: Family<TopicLabels, Counter>,
    chain_steps: Family<ChainLabels, Counter>,
}

impl EventMetrics {
    /// The figures, registered in `registry`.
    pub fn register(registry: &mut Registry) -> EventMetrics {
        let m = EventMetrics::default();
        registry.register(
            "topic_deliveries",
            "Asynchronous calls an emit submitted to the topic's subscribers (a repeated emit's calls not counted again)",
            m.deliveries.clone(),
        );
        registry.register(
            "chain_steps",
            "Asynchronous calls a chain submitted, by the function whose call ended and on (success, failure)",
            m.chain_steps.clone(),
        );
        m
    }

    /// `n` new calls for the subscribers of `topic`.
    pub fn delivered(&self, topic: &str, n: u64) {
        self.deliveries
            .get_or_create(&TopicLabels {
                topic: topic.to_string(),
            })
            .inc_by(n);
    }

    /// One chain step after `function`'s call ended `on`.
    pub fn chain_step(&self, function: &str, on: &str) {
        self.chain_steps
            .get_or_create(&ChainLabels {
                function: function.to_string(),
                on: on.to_string(),
            })
            .inc();
    }
}
