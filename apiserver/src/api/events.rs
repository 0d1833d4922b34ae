//! `faas.events.v1.Events` (emit, scope `invoke`) and `faas.events.v1.EventAdmin`
//! (subscriptions and chains, scope `admin`): topics and chains at the gRPC edge, over the
//! rules of `service::events`, the store (`store::sqlite::events`) and the durable queue
//! ([`AsyncRunner`]). What follows a chained call is `api::chains`.
//!
//! An emit is checked first (the topic's name, the event's size, the account, the key), then
//! reads the topic's subscriptions, keeps those whose function is deployed and whose filter
//! matches, and submits one asynchronous call per subscriber with
//! [`AsyncRunner::submit_all`]: on the SQLite queue in one transaction, so either every
//! subscriber's call is accepted or none is (a full queue refuses the whole emit with
//! `RESOURCE_EXHAUSTED`). Each call's idempotency key is `emit:<emit id>:<function>`, the
//! emit id being the caller's key when given: an emit repeated with the same key answers
//! the first one's calls and submits nothing new. Calls run with the account of the emit.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use faas_proto::events::event_admin_server::EventAdmin;
use faas_proto::events::events_server::Events;
use faas_proto::events::{
    Chain, Delivery, EmitReply, EmitRequest, GetChainRequest, ListTopicsReply, ListTopicsRequest,
    SetChainRequest, SubscribeReply, SubscribeRequest, UnsubscribeReply, UnsubscribeRequest,
};
use tonic::{Request, Response, Status};

use crate::api::async_runner::{AsyncRunner, Extras, now_ms};
use crate::api::front::{Call, FrontError};
use crate::api::invocations::SubmitError;
use crate::error::{events_status, submit_status};
use crate::model::routing::TargetRef;
use crate::service::InvokeError;
use crate::service::events::{
    ChainLinks, EventStore, EventsError, MAX_EMIT_KEY_BYTES, Subscription, find_cycle,
    parse_filter, show_filter, validate_topic,
};

/// Why an emit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

impl EmitError {
    /// Its gRPC status.
    pub fn status(&self) -> Status {
        match self {
            EmitError::Events(e) => events_status(e),
            EmitError::Submit(e) => submit_status(e),
        }
    }
}

/// What an emit did: its id and one call per matching subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub emit_id: String,
    /// (function, invocation id, new).
    pub deliveries: Vec<(String, String, bool)>,
}

/// Topics and chains over the queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventHub {
    pub(crate) runner: AsyncRunner,
    pub(crate) store: Arc<dyn EventStore>,
    /// The functions that may have a chain (a superset: a chain cleared, or deleted with its
    /// function, stays here), so a synchronous call of any other asks no database.
    chained: Arc<RwLock<HashSet<String>>>,
}

fn missing(field: &str, problem: String) -> EventsError {
    EventsError::Missing {
        field: field.to_string(),
        problem,
    }
}

impl EventHub {
    /// The hub over `store` (whose chained functions it reads now).
    pub fn new(runner: AsyncRunner, store: Arc<dyn EventStore>) -> EventHub {
        let chained = store.chained_functions().into_iter().collect();
        EventHub {
            runner,
            store,
            chained: Arc::new(RwLock::new(chained)),
        }
    }

    /// Runs `f` on the store off the runtime's workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EventStore) -> T + Send + 'static,
    ) -> T {
        on_store(&self.store, f).await
    }

    /// What follows calls of chained functions: the runner's delivery hooks and the front's
    /// after-call, holding the runner weakly (the runner and the front hold them).
    pub fn chains(&self) -> crate::api::chains::Chains {
        crate::api::chains::Chains {
            store: self.store.clone(),
            chained: self.chained.clone(),
            runner: self.runner.downgrade(),
        }
    }

    fn registry(&self) -> &crate::service::Registry {
        self.runner.front().router().invoker().registry()
    }

    /// Why `target` (`NAME`, `NAME:N`, `NAME:ALIAS`) cannot be called, if it cannot.
    fn check_target(&self, field: &str, target: &str) -> Result<TargetRef, EventsError> {
        if target.is_empty() {
            return Err(EventsError::Bad {
                field: field.to_string(),
                problem: "cannot be empty: give a deployed function".into(),
            });
        }
        let t = TargetRef::parse(target);
        let registry = self.registry();
        registry
            .routing
            .target_exists(&registry.table, &t)
            .map_err(|why| missing(field, format!("{why}; deploy it first (faas deploy)")))?;
        Ok(t)
    }

    /// Delivers `event` to the subscribers of `topic` (see the module docs).
    pub async fn emit(
        &self,
        topic: &str,
        event: Vec<u8>,
        account_id: String,
        idempotency_key: &str,
    ) -> Result<Emitted, EmitError> {
        validate_topic(topic)?;
        if idempotency_key.len() > MAX_EMIT_KEY_BYTES {
            return Err(EventsError::Bad {
                field: "idempotency_key".into(),
                problem: format!(
                    "{} bytes, more than {MAX_EMIT_KEY_BYTES}",
                    idempotency_key.len()
                ),
            }
            .into());
        }
        let limit = self.runner.front().max_event_bytes();
        let refused = if event.len() > limit {
            Some(InvokeError::EventTooLarge {
                size: event.len(),
                limit,
            })
        } else if account_id.is_empty() {
            Some(InvokeError::MissingAccount)
        } else {
            None
        };
        if let Some(e) = refused {
            return Err(SubmitError::from(FrontError::Invoke(e)).into());
        }
        let emit_id = if idempotency_key.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            idempotency_key.to_string()
        };
        let wanted = topic.to_string();
        let subs = self
            .blocking(move |s| s.subscriptions(Some(&wanted), None))
            .await;
        let registry = self.registry();
        let mut parsed = None;
        let chosen: Vec<Subscription> = subs
            .into_iter()
            .filter(|s| registry.get(s.function()).is_ok() && s.matches(&event, &mut parsed))
            .collect();
        let calls = chosen
            .iter()
            .map(|s| {
                let call = Call {
                    account_id: account_id.clone(),
                    function_name: s.target.clone(),
                    event: event.clone(),
                    ..Call::default()
                };
                let extras = Extras {
                    idempotency_key: Some(format!("emit:{emit_id}:{}", s.target)),
                    ..Extras::default()
                };
                (call, extras)
            })
            .collect();
        let submitted = self.runner.submit_all(calls).await?;
        let new = submitted.iter().filter(|s| s.new).count() as u64;
        if new > 0 {
            self.runner.front().metrics().events.delivered(topic, new);
        }
        tracing::info!(topic, emit_id = %emit_id, deliveries = submitted.len(), new, "event emitted");
        Ok(Emitted {
            emit_id,
            deliveries: chosen
                .into_iter()
                .zip(submitted)
                .map(|(s, d)| (s.target, d.id, d.new))
                .collect(),
        })
    }

    /// Subscribes `function` to `topic` with `filter` (`FIELD=VALUE` pairs).
    pub async fn subscribe(
        &self,
        topic: &str,
        function: &str,
        filter: &[String],
    ) -> Result<(Subscription, bool), EventsError> {
        validate_topic(topic)?;
        let filter = parse_filter(filter)?;
        self.check_target("function", function)?;
        let sub = Subscription {
            topic: topic.to_string(),
            target: function.to_string(),
            filter,
            created_at_ms: now_ms(),
        };
        let kept = sub.clone();
        let created = self.blocking(move |s| s.subscribe(&kept)).await?;
        Ok((sub, created))
    }

    /// Sets `function`'s chain (empty targets clear it).
    pub async fn set_chain(&self, function: &str, links: ChainLinks) -> Result<(), EventsError> {
        let t = self.check_target("function", function)?;
        if t.qualifier != Default::default() {
            return Err(EventsError::Bad {
                field: "function".into(),
                problem: format!("{function:?}: a chain belongs to a function's plain name"),
            });
        }
        for (field, target) in [
            ("on_success", &links.on_success),
            ("on_failure", &links.on_failure),
        ] {
            let Some(target) = target else { continue };
            if target.contains(':') {
                return Err(EventsError::Bad {
                    field: field.into(),
                    problem: format!("{target:?}: a chain target is a function's plain name"),
                });
            }
            self.check_target(field, target)?;
        }
        let name = function.to_string();
        let ok = links.on_success.clone();
        self.blocking(move |s| {
            let check = |graph: &std::collections::HashMap<String, Vec<String>>| match find_cycle(
                &name, graph,
            ) {
                None => Ok(()),
                Some(cycle) => {
                    let second = cycle.split(" -> ").nth(1).map(str::to_string);
                    let field = if second.is_some() && second == ok {
                        "on_success"
                    } else {
                        "on_failure"
                    };
                    Err(EventsError::Cycle {
                        field: field.into(),
                        cycle,
                    })
                }
            };
            s.set_chain(&name, &links, now_ms(), &check)
        })
        .await?;
        self.chained
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(function.to_string());
        Ok(())
    }
}

/// Runs `f` on `store` off the runtime's workers (a write waits for an `fsync`).
pub(crate) async fn on_store<T: Send + 'static>(
    store: &Arc<dyn EventStore>,
    f: impl FnOnce(&dyn EventStore) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .expect("an events store operation does not panic")
}

fn subscription_reply(s: Subscription) -> faas_proto::events::Subscription {
    faas_proto::events::Subscription {
        filter: show_filter(&s.filter),
        topic: s.topic,
        function: s.target,
        created_at_ms: i64::try_from(s.created_at_ms).unwrap_or(i64::MAX),
    }
}

fn some(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl Events for EventHub {
    async fn emit(&self, request: Request<EmitRequest>) -> Result<Response<EmitReply>, Status> {
        let req = request.into_inner();
        let done = EventHub::emit(
            self,
            &req.topic,
            req.event,
            req.account_id,
            &req.idempotency_key,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(Response::new(EmitReply {
            emit_id: done.emit_id,
            deliveries: done
                .deliveries
                .into_iter()
                .map(|(function, invocation_id, created)| Delivery {
                    function,
                    invocation_id,
                    created,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl EventAdmin for EventHub {
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<SubscribeReply>, Status> {
        let req = request.into_inner();
        let (sub, created) = EventHub::subscribe(self, &req.topic, &req.function, &req.filter)
            .await
            .map_err(|e| events_status(&e))?;
        tracing::info!(topic = %sub.topic, function = %sub.target, created, "subscribed");
        Ok(Response::new(SubscribeReply {
            subscription: Some(subscription_reply(sub)),
            created,
        }))
    }

    async fn unsubscribe(
        &self,
        request: Request<UnsubscribeRequest>,
    ) -> Result<Response<UnsubscribeReply>, Status> {
        let req = request.into_inner();
        validate_topic(&req.topic).map_err(|e| events_status(&e))?;
        let (topic, function) = (req.topic.clone(), req.function.clone());
        let removed = self
            .blocking(move |s| s.unsubscribe(&topic, &function))
            .await
            .map_err(|e| events_status(&e))?;
        if !removed {
            let e = EventsError::NotSubscribed(format!(
                "{:?} is not subscribed to {:?} (faas topics lists the subscriptions)",
                faas_common::text::clip(&req.function),
                req.topic
            ));
            return Err(events_status(&e));
        }
        Ok(Response::new(UnsubscribeReply {}))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsReply>, Status> {
        let req = request.into_inner();
        let subs = self
            .blocking(move |s| {
                s.subscriptions(some(req.topic).as_deref(), some(req.function).as_deref())
            })
            .await;
        Ok(Response::new(ListTopicsReply {
            subscriptions: subs.into_iter().map(subscription_reply).collect(),
        }))
    }

    async fn set_chain(
        &self,
        request: Request<SetChainRequest>,
    ) -> Result<Response<Chain>, Status> {
        let req = request.into_inner();
        let links = ChainLinks {
            on_success: some(req.on_success.clone()),
            on_failure: some(req.on_failure.clone()),
        };
        EventHub::set_chain(self, &req.function, links)
            .await
            .map_err(|e| events_status(&e))?;
        tracing::info!(function = %req.function, on_success = %req.on_success, on_failure = %req.on_failure, "chain set");
        Ok(Response::new(Chain {
            function: req.function,
            on_success: req.on_success,
            on_failure: req.on_failure,
        }))
    }

    async fn get_chain(
        &self,
        request: Request<GetChainRequest>,
    ) -> Result<Response<Chain>, Status> {
        let function = request.into_inner().function;
        self.check_target("function", &function)
            .map_err(|e| events_status(&e))?;
        let name = function.clone();
        let links = self.blocking(move |s| s.chain(&name)).await;
        Ok(Response::new(Chain {
            function,
            on_success: links.on_success.unwrap_or_default(),
            on_failure: links.on_failure.unwrap_or_default(),
        }))
    }
}
