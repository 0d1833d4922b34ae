//! Topics and chains (issue 20, parts 3 and 4): the event sources in front of the durable
//! queue. Plain rules here; the gRPC edge is `api::events`, the delivery `api::chains`, the
//! tables `store::sqlite::events`.
//!
//! # Topics
//!
//! A function subscribes to a topic by name, optionally with a filter: `FIELD=VALUE` pairs
//! that must all hold on the event's top-level JSON fields, the rule language of a route's
//! `fields` (the same matcher, `service::routing::resolve::fields_match`: `"2001"` matches
//! the number `2001`). An emit delivers the event to every subscriber whose filter matches,
//! each as one asynchronous call through the queue, with the idempotency key
//! `emit:<emit id>:<function>`, all stored in one transaction (all or none). A topic nobody
//! listens to is not an error: the emit answers no delivery.
//!
//! A topic name is 1 to [`MAX_TOPIC_CHARS`] of `a-z A-Z 0-9 _ - .` (so it fits a URL path,
//! `POST /topics/TOPIC`, and a metric label unchanged).
//!
//! # Chains
//!
//! A function may name a target for when its call (asynchronous, or synchronous: then the
//! step is queued after the reply) succeeds (invoked with the
//! result as its event) and one for when it fails for good (after its last retry: failed, or
//! dead-lettered; invoked with the invocation's JSON). Targets are deployed functions; the
//! graph over every function's two edges has no cycle ([`find_cycle`]), checked when a chain
//! is set. Each step runs with the request id of the first call, so one trace shows the
//! whole chain.
//!
//! # Deleting a function
//!
//! Its subscriptions go with it, and so does every chain edge that names it (as the source
//! or the target): the tables reference `functions` with `ON DELETE CASCADE`. A server
//! without a data directory keeps them in memory without that reference; there an emit skips
//! a subscriber that is not deployed, and a chain to a function no longer deployed is skipped.

use std::collections::{BTreeMap, HashMap};

use crate::model::routing::TargetRef;

/// The longest topic name, in characters.
pub const MAX_TOPIC_CHARS: usize = 128;
/// The most `FIELD=VALUE` pairs a filter may have.
pub const MAX_FILTER_FIELDS: usize = 32;
/// The longest caller idempotency key of an emit, in bytes (the call's key adds the
/// function's name to it and must stay within the queue's 256).
pub const MAX_EMIT_KEY_BYTES: usize = 128;

/// One function's subscription to a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// As subscribed: `NAME`, `NAME:N` or `NAME:ALIAS`.
    pub target: String,
    /// FIELD → VALUE, every one must hold; empty: every event.
    pub filter: BTreeMap<String, String>,
    pub created_at_ms: u64,
}

impl Subscription {
    /// The plain function name of the target.
    pub fn function(&self) -> &str {
        let len = TargetRef::parse(&self.target).function.len();
        &self.target[..len]
    }

    /// Whether the event passes the filter.
    pub fn matches(&self, event: &[u8], parsed: &mut Option<Option<serde_json::Value>>) -> bool {
        crate::service::routing::resolve::fields_match(&self.filter, &[], event, parsed)
    }
}

/// Which end of a call a chain edge follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum On {
    Success,
    Failure,
}

impl On {
    /// `success` / `failure`, as the database and the metrics write it.
    pub fn as_str(self) -> &'static str {
        match self {
            On::Success => "success",
            On::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<On> {
        [On::Success, On::Failure]
            .into_iter()
            .find(|o| o.as_str() == text)
    }

    /// The request's field that names it.
    pub fn field(self) -> &'static str {
        match self {
            On::Success => "on_success",
            On::Failure => "on_failure",
        }
    }
}

/// What runs after a function's asynchronous call ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainLinks {
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

impl ChainLinks {
    pub fn get(&self, on: On) -> Option<&str> {
        match on {
            On::Success => self.on_success.as_deref(),
            On::Failure => self.on_failure.as_deref(),
        }
    }
}

/// Why a subscription, a chain or an emit is refused; each names its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// A field is malformed.
    #[error("{field}: {problem}")]
    Bad { field: String, problem: String },
    /// A function a field names is not deployed.
    #[error("{field}: {problem}")]
    Missing { field: String, problem: String },
    /// Nothing to remove.
    #[error("{0}")]
    NotSubscribed(String),
    /// The chain would loop.
    #[error(
        "{field}: the chain {cycle} is a cycle; chains must end (clear an edge with faas chain FUNCTION --on-success '' first)"
    )]
    Cycle { field: String, cycle: String },
    /// The database failed: nothing changed.
    #[error("the events store failed ({0}); nothing changed, try again")]
    Store(String),
}

fn bad(field: &str, problem: impl Into<String>) -> EventsError {
    EventsError::Bad {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Checks a topic name (see the module docs).
pub fn validate_topic(topic: &str) -> Result<(), EventsError> {
    let chars = topic.chars().count();
    if chars == 0 {
        return Err(bad("topic", "cannot be empty"));
    }
    if chars > MAX_TOPIC_CHARS {
        return Err(bad(
            "topic",
            format!("{chars} characters, over the limit of {MAX_TOPIC_CHARS}"),
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(bad(
            "topic",
            format!(
                "{:?} contains {c:?}: use only letters, digits, '_', '-' and '.'",
                faas_common::text::clip(topic)
            ),
        ));
    }
    Ok(())
}

/// Parses `FIELD=VALUE` pairs (`filter[i]` names the bad one).
pub fn parse_filter(pairs: &[String]) -> Result<BTreeMap<String, String>, EventsError> {
    if pairs.len() > MAX_FILTER_FIELDS {
        return Err(bad(
            "filter",
            format!("at most {MAX_FILTER_FIELDS} fields, got {}", pairs.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        let field = format!("filter[{i}]");
        let Some((key, value)) = pair.split_once('=') else {
            return Err(bad(
                &field,
                format!(
                    "{:?} is not FIELD=VALUE (give type=order)",
                    faas_common::text::clip(pair)
                ),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(bad(
                &field,
                format!(
                    "{:?} has no field name before '='",
                    faas_common::text::clip(pair)
                ),
            ));
        }
        if out.insert(key.to_string(), value.to_string()).is_some() {
            return Err(bad(&field, format!("field {key:?} is given twice")));
        }
    }
    Ok(out)
}

/// A filter as `FIELD=VALUE` pairs (what [`parse_filter`] reads).
pub fn show_filter(filter: &BTreeMap<String, String>) -> Vec<String> {
    filter.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The first cycle of the chain graph (`edges`: function → its targets), as
/// `a -> b -> a`, looking from `start`.
pub fn find_cycle(start: &str, edges: &HashMap<String, Vec<String>>) -> Option<String> {
    fn walk(
        node: &str,
        edges: &HashMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle.join(" -> "));
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = walk(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    walk(start, edges, &mut Vec::new(), &mut Default::default())
}

/// The chain graph: each function and the targets its chain names.
pub type ChainGraph = HashMap<String, Vec<String>>;
/// What [`EventStore::set_chain`] asks about the graph with the new chain in it.
pub type GraphCheck<'a> = &'a dyn Fn(&ChainGraph) -> Result<(), EventsError>;

/// Keeps subscriptions, chains and the request ids of chain steps. Every write is one
/// committed transaction.
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps `sub` (replacing the function's earlier one on the topic); true when new.
    fn subscribe(&self, sub: &Subscription) -> Result<bool, EventsError>;
    /// False when there was none.
    fn unsubscribe(&self, topic: &str, target: &str) -> Result<bool, EventsError>;
    /// Subscriptions, by topic then target; `topic` / `function` (plain name) narrow it.
    fn subscriptions(&self, topic: Option<&str>, function: Option<&str>) -> Vec<Subscription>;
    /// Sets `function`'s chain in one transaction that first asks `check` about the whole
    /// graph with it (function → targets), so two writers cannot close a cycle between them.
    fn set_chain(
        &self,
        function: &str,
        links: &ChainLinks,
        now_ms: u64,
        check: GraphCheck<'_>,
    ) -> Result<(), EventsError>;
    fn chain(&self, function: &str) -> ChainLinks;
    /// Every function with a chain (read once at start).
    fn chained_functions(&self) -> Vec<String>;
    /// Records that the call `invocation_id` is a chain step of the request `request_id`.
    fn remember_step(&self, invocation_id: &str, request_id: &str, now_ms: u64);
    /// The first request id of the chain the call is a step of.
    fn step_request_id(&self, invocation_id: &str) -> Option<String>;
    /// The call finished: its step record is not needed any more.
    fn forget_step(&self, invocation_id: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut g: HashMap<String, Vec<String>> = HashMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().push(b.to_string());
        }
        g
    }

    #[test]
    fn cycles_are_named_from_the_start() {
        assert_eq!(
            find_cycle("a", &graph(&[("a", "b"), ("b", "a")])).as_deref(),
            Some("a -> b -> a")
        );
        assert_eq!(
            find_cycle("a", &graph(&[("a", "a")])).as_deref(),
            Some("a -> a")
        );
        assert_eq!(
            find_cycle(
                "a",
                &graph(&[("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")])
            ),
            None
        );
        assert_eq!(
            find_cycle("x", &graph(&[("x", "b"), ("b", "c"), ("c", "b")])).as_deref(),
            Some("b -> c -> b")
        );
    }

    #[test]
    fn topics_and_filters_are_checked() {
        validate_topic("orders.created-v1_x").unwrap();
        for bad in ["", "a/b", "a b", "é", &"t".repeat(129)] {
            let e = validate_topic(bad).unwrap_err().to_string();
            assert!(e.starts_with("topic: "), "{e}");
        }
        let f = parse_filter(&["type=order".into(), "n=2".into()]).unwrap();
        assert_eq!(show_filter(&f), ["n=2", "type=order"]);
        let e = parse_filter(&["type=a".into(), "nope".into()]).unwrap_err();
        assert!(e.to_string().starts_with("filter[1]: "), "{e}");
        assert!(parse_filter(&["=x".into()]).is_err());
        assert!(parse_filter(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn a_filter_matches_the_events_fields_as_a_route_rule_does() {
        let sub = Subscription {
            topic: "t".into(),
            target: "f:live".into(),
            filter: parse_filter(&["type=order".into(), "n=2".into()]).unwrap(),
            created_at_ms: 0,
        };
        assert_eq!(sub.function(), "f");
        let matches = |e: &[u8]| sub.matches(e, &mut None);
        assert!(matches(br#"{"type":"order","n":2}"#));
        assert!(!matches(br#"{"type":"refund","n":2}"#));
        assert!(!matches(br#"{"type":"order"}"#));
        assert!(!matches(b"not json"));
        let all = Subscription {
            filter: BTreeMap::new(),
            ..sub
        };
        assert!(all.matches(b"not json", &mut None));
    }
}
