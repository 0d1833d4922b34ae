//! The broker: routes a call to a concrete function, runs it with the [`Invoker`], and
//! degrades to the fallback when the plan says so.
//!
//! For each call: roll the dice, make the [`plan`], then
//!
//! 1. the primary target is missing → the fallback if the policy falls back `on.not_found`;
//! 2. the traffic share says so → the fallback (`share`);
//! 3. the target's breaker is open → the fallback (`breaker_open`);
//! 4. else run the primary; its latency and outcome go into its breaker; a failure of a kind
//!    the policy falls back on (`error`, `timeout`, `not_found`) → the fallback, within what is
//!    left of the caller's deadline (request id `<id>-fallback`).
//!
//! A fallback call never falls back again. Falling back on `error` or `timeout` runs the call
//! a second time, in the fallback, although the target may have run it: that is what the
//! operator asked for by configuring it. Failures that are the caller's (an empty name, an
//! event too large, no account) never fall back and never count against a breaker.
//!
//! Per concrete target (`hello`, `hello:3`) the router counts calls, errors and fallbacks and
//! keeps the breaker; [`Router::status`] reports them (`faas describe`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::service::invoke::{
    Clock, InvokeError, InvokeRequest, Invoked, Invoker, NodePort, SchedulerPort,
};
use crate::service::routing::breaker::{Admit, Breaker, BreakerState, Transition};
use crate::service::routing::resolve::{Concrete, Dice, FallbackPlan, RouteContext, plan};

/// Appended to the request id of a call the fallback serves.
pub const FALLBACK_SUFFIX: &str = "-fallback";

/// Why the fallback served a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    NotFound,
    Error,
    Timeout,
    BreakerOpen,
    Share,
}

impl FallbackReason {
    /// `not_found`, `error`, `timeout`, `breaker_open` or `share`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::NotFound => "not_found",
            FallbackReason::Error => "error",
            FallbackReason::Timeout => "timeout",
            FallbackReason::BreakerOpen => "breaker_open",
            FallbackReason::Share => "share",
        }
    }

    /// Words for an error message: "it was not found".
    fn describe(self) -> &'static str {
        match self {
            FallbackReason::NotFound => "was not found",
            FallbackReason::Error => "failed",
            FallbackReason::Timeout => "timed out",
            FallbackReason::BreakerOpen => "has its breaker open",
            FallbackReason::Share => "sheds this share of its traffic",
        }
    }
}

/// The fallback served (or tried to serve) a call meant for another target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackNote {
    pub meant_for: String,
    pub reason: FallbackReason,
}

/// What routing did with a call, for the reply's metadata, the metrics and the logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteNote {
    /// The concrete target that ran the call last (`hello:3`), if any ran.
    pub target: Option<String>,
    /// Its version: `3` or `latest`.
    pub version: Option<String>,
    /// How the primary target was chosen: `direct`, `default` or `rule N`.
    pub chosen_by: String,
    pub fallback: Option<FallbackNote>,
    /// Breaker transitions this call caused, with their target.
    pub transitions: Vec<(String, Transition)>,
}

/// A routed call's result and what routing did.
#[derive(Debug)]
pub struct Routed {
    pub result: Result<Invoked, InvokeError>,
    pub note: RouteNote,
}

/// How one concrete target has fared.
#[derive(Debug, Default)]
struct TargetState {
    calls: AtomicU64,
    errors: AtomicU64,
    fallbacks: AtomicU64,
    breaker: Mutex<Option<Breaker>>,
}

/// A concrete target's counts and breaker, as [`Router::status`] reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetStatus {
    pub target: String,
    pub breaker: BreakerState,
    /// How long ago the breaker last changed state, ms (`None`: it never did).
    pub breaker_for_ms: Option<u64>,
    pub calls: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub window_p99_ms: f64,
}

/// The broker in front of the [`Invoker`].
#[derive(Debug)]
pub struct Router<S, N, C> {
    invoker: Invoker<S, N, C>,
    targets: RwLock<HashMap<String, Arc<TargetState>>>,
    dice: Mutex<StdRng>,
}

/// Which failures may go to a fallback: `None` for the caller's own mistakes.
fn classify(err: &InvokeError) -> Option<FallbackReason> {
    match err {
        InvokeError::MissingFunctionName
        | InvokeError::EventTooLarge { .. }
        | InvokeError::MissingAccount => None,
        InvokeError::NotFound { .. } => Some(FallbackReason::NotFound),
        InvokeError::Timeout { .. } | InvokeError::NodeNoAnswer { .. } => {
            Some(FallbackReason::Timeout)
        }
        InvokeError::Retried { last, .. } | InvokeError::FallbackFailed { last, .. } => {
            classify(last)
        }
        _ => Some(FallbackReason::Error),
    }
}

impl<S: SchedulerPort, N: NodePort, C: Clock> Router<S, N, C> {
    /// A router over `invoker`; `seed` makes its dice repeatable (tests), else they are
    /// seeded from the operating system.
    pub fn new(invoker: Invoker<S, N, C>, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Router {
            invoker,
            targets: RwLock::new(HashMap::new()),
            dice: Mutex::new(rng),
        }
    }

    /// The invoker it runs calls with.
    pub fn invoker(&self) -> &Invoker<S, N, C> {
        &self.invoker
    }

    fn now_ms(&self) -> u64 {
        self.invoker.clock().monotonic_nanos() / 1_000_000
    }

    fn roll(&self) -> Dice {
        let mut rng = self.dice.lock().unwrap_or_else(PoisonError::into_inner);
        Dice {
            alias: rng.random_range(0..100),
            share: rng.random_range(0.0..100.0),
        }
    }

    fn target(&self, name: &str) -> Arc<TargetState> {
        if let Some(state) = self
            .targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return state.clone();
        }
        self.targets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Routes and runs one call (see the module docs).
    pub async fn invoke(&self, req: InvokeRequest, ctx: &RouteContext) -> Routed {
        let mut note = RouteNote {
            chosen_by: "direct".into(),
            ..RouteNote::default()
        };
        // Nothing to route: the invoker gives the error a bad request deserves.
        if req.function_name.is_empty() {
            let result = self.invoker.invoke(req).await;
            return Routed { result, note };
        }
        let started = self.invoker.clock().monotonic_nanos();
        let dice = self.roll();
        let Some(plan) = plan(
            self.invoker.registry(),
            &req.function_name,
            ctx,
            &req.event,
            dice,
        ) else {
            let result = Err(InvokeError::NotFound {
                name: req.function_name.clone(),
            });
            return Routed { result, note };
        };
        note.chosen_by = plan.chosen_by.clone();
        let usable_fallback = plan.fallback.as_ref().filter(|f| f.target.is_ok());
        let primary = match plan.primary {
            Ok(primary) => primary,
            Err(missing) => {
                if let Some(fb) = usable_fallback.filter(|f| f.on.not_found) {
                    let note_for = FallbackNote {
                        meant_for: missing.target.clone(),
                        reason: FallbackReason::NotFound,
                    };
                    return self.fall_back(fb, req, started, note_for, None, note).await;
                }
                let result = Err(InvokeError::NotFound {
                    name: format!("{} ({})", missing.target, missing.why),
                });
                return Routed { result, note };
            }
        };
        let state = self.target(primary.name());
        let skip = |reason| FallbackNote {
            meant_for: primary.name().to_string(),
            reason,
        };
        if let Some(fb) =
            usable_fallback.filter(|f| f.share_percent > 0.0 && dice.share < f.share_percent)
        {
            state.fallbacks.fetch_add(1, Ordering::Relaxed);
            let why = skip(FallbackReason::Share);
            return self.fall_back(fb, req, started, why, None, note).await;
        }
        let admit = match (&plan.breaker, usable_fallback) {
            (Some(config), Some(_)) => {
                let now = self.now_ms();
                let mut slot = state.breaker.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_none_or(|b| b.config() != config) {
                    // New, or its settings changed: start closed with the new ones.
                    *slot = Some(Breaker::new(config.clone(), now));
                }
                let breaker = slot.as_mut().expect("set just above");
                let (admit, moved) = breaker.admit(now);
                note.transitions
                    .extend(moved.map(|t| (primary.name().to_string(), t)));
                admit
            }
            _ => Admit::Call,
        };
        if admit == Admit::Fallback
            && let Some(fb) = usable_fallback
        {
            state.fallbacks.fetch_add(1, Ordering::Relaxed);
            let why = skip(FallbackReason::BreakerOpen);
            return self.fall_back(fb, req, started, why, None, note).await;
        }

        // Keep the request for the fallback only when there is one.
        let (call, spare) = match usable_fallback {
            Some(_) => (
                InvokeRequest {
                    function_name: primary.name().to_string(),
                    ..req.clone()
                },
                Some(req),
            ),
            None => (
                InvokeRequest {
                    function_name: primary.name().to_string(),
                    ..req
                },
                None,
            ),
        };
        let call_started = self.invoker.clock().monotonic_nanos();
        let result = self.invoker.invoke(call).await;
        let class = result.as_ref().err().and_then(classify);
        state.calls.fetch_add(1, Ordering::Relaxed);
        if class.is_some() {
            state.errors.fetch_add(1, Ordering::Relaxed);
        }
        let caller_fault = result.is_err() && class.is_none();
        if admit != Admit::Fallback && plan.breaker.is_some() && !caller_fault {
            let now_nanos = self.invoker.clock().monotonic_nanos();
            let latency_ms = now_nanos.saturating_sub(call_started) as f64 / 1e6;
            let mut breaker = state.breaker.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = breaker.as_mut() {
                let moved = b.record(admit, now_nanos / 1_000_000, latency_ms, result.is_ok());
                note.transitions
                    .extend(moved.map(|t| (primary.name().to_string(), t)));
            }
        }
        match (result, class, usable_fallback, spare) {
            (Err(e), Some(reason), Some(fb), Some(req)) if falls_back_on(fb, reason) => {
                state.fallbacks.fetch_add(1, Ordering::Relaxed);
                let why = skip(reason);
                self.fall_back(fb, req, started, why, Some(e), note).await
            }
            (result, _, _, _) => {
                note.target = Some(primary.name().to_string());
                note.version = Some(primary.version_label());
                Routed { result, note }
            }
        }
    }

    /// Runs the call in the fallback, within what is left of the caller's deadline.
    async fn fall_back(
        &self,
        fb: &FallbackPlan,
        req: InvokeRequest,
        started: u64,
        why: FallbackNote,
        first: Option<InvokeError>,
        mut note: RouteNote,
    ) -> Routed {
        let Ok(target) = &fb.target else {
            unreachable!("only usable fallbacks are taken");
        };
        note.fallback = Some(why.clone());
        let spent = Duration::from_nanos(
            self.invoker
                .clock()
                .monotonic_nanos()
                .saturating_sub(started),
        );
        let deadline = req.deadline.map(|d| d.saturating_sub(spent));
        if deadline.is_some_and(|d| d.is_zero())
            && let Some(first) = first
        {
            // The caller has stopped waiting: what the target said is the answer.
            return Routed {
                result: Err(first),
                note,
            };
        }
        tracing::info!(
            meant_for = %why.meant_for,
            fallback = %target.name(),
            reason = why.reason.as_str(),
            "the fallback serves the call"
        );
        let state = self.target(target.name());
        let result = self
            .invoker
            .invoke(InvokeRequest {
                request_id: format!("{}{FALLBACK_SUFFIX}", req.request_id),
                function_name: target.name().to_string(),
                deadline,
                ..req
            })
            .await;
        state.calls.fetch_add(1, Ordering::Relaxed);
        if result.as_ref().err().and_then(classify).is_some() {
            state.errors.fetch_add(1, Ordering::Relaxed);
        }
        note.target = Some(target.name().to_string());
        note.version = Some(Concrete::version_label(target));
        let result = result.map_err(|last| InvokeError::FallbackFailed {
            target: why.meant_for.clone(),
            reason: why.reason.describe(),
            last: Box::new(last),
        });
        Routed { result, note }
    }

    /// Counts and breaker states of `function`'s concrete targets (`NAME`, `NAME:N`), sorted.
    pub fn status(&self, function: &str) -> Vec<TargetStatus> {
        let prefix = format!("{function}:");
        let now = self.now_ms();
        let mut out: Vec<TargetStatus> = self
            .targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(name, _)| *name == function || name.starts_with(&prefix))
            .map(|(name, state)| {
                let mut breaker = state.breaker.lock().unwrap_or_else(PoisonError::into_inner);
                let (state_now, since, p99) = match breaker.as_mut() {
                    Some(b) => {
                        let (s, since) = b.state();
                        (s, Some(now.saturating_sub(since)), b.window_p99_ms(now))
                    }
                    None => (BreakerState::Closed, None, 0.0),
                };
                TargetStatus {
                    target: name.clone(),
                    breaker: state_now,
                    breaker_for_ms: since,
                    calls: state.calls.load(Ordering::Relaxed),
                    errors: state.errors.load(Ordering::Relaxed),
                    fallbacks: state.fallbacks.load(Ordering::Relaxed),
                    window_p99_ms: p99,
                }
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }
}

fn falls_back_on(fb: &FallbackPlan, reason: FallbackReason) -> bool {
    match reason {
        FallbackReason::NotFound => fb.on.not_found,
        FallbackReason::Error => fb.on.error,
        FallbackReason::Timeout => fb.on.timeout,
        FallbackReason::BreakerOpen | FallbackReason::Share => true,
    }
}
