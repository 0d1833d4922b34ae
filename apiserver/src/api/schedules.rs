//! `faas.schedules.v1.Schedules`: the gRPC door of timers (the firing task is
//! `api::timers`, the rule `core::timers`). Served behind the `admin` scope, like the other
//! calls that change what the platform runs.
//!
//! Bad input is refused with the status `crate::error::schedule_status` chooses, naming the
//! field: `INVALID_ARGUMENT` "cron: …", "tz: …", "catch_up: …", "event: …", "function: …";
//! `NOT_FOUND` for a function not deployed or an unknown schedule id.

use faas_proto::schedules::schedules_server::Schedules;
use faas_proto::schedules::{
    CreateScheduleRequest, DeleteScheduleReply, DeleteScheduleRequest, FiringRecord,
    ListSchedulesReply, ListSchedulesRequest, PauseScheduleRequest, ScheduleRecord,
};
use tonic::{Request, Response, Status};

use crate::api::timers::{Listed, NewSchedule, Timers};
use crate::error::schedule_status;
use crate::service::async_calls::{Invocation, State};
use crate::service::timers::Firing;

/// Firings listed per schedule when the request says 0.
const DEFAULT_FIRINGS: usize = 5;

/// `faas.schedules.v1.Schedules`.
#[derive(Clone, Debug)]
pub struct SchedulesService {
    timers: Timers,
}

impl SchedulesService {
    pub fn new(timers: Timers) -> SchedulesService {
        SchedulesService { timers }
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A firing as listed: its outcome is its invocation's state in the queue.
fn firing_record(f: Firing, invocation: Option<Invocation>) -> FiringRecord {
    let (outcome, request_id, error) = match (&invocation, f.invocation_id.is_empty()) {
        (_, true) => ("refused".to_string(), String::new(), f.error.clone()),
        (None, false) => ("forgotten".to_string(), String::new(), String::new()),
        (Some(inv), false) => {
            let (request_id, error) = match &inv.outcome {
                Some(o) => (
                    o.request_id.clone(),
                    match (&o.result, inv.state) {
                        (Err((code, message)), State::Failed | State::Dead | State::Queued) => {
                            format!("{code}: {message}")
                        }
                        _ => String::new(),
                    },
                ),
                None => (String::new(), String::new()),
            };
            (inv.state.as_str().to_string(), request_id, error)
        }
    };
    FiringRecord {
        slot_ms: ms(f.slot_ms),
        fired_at_ms: ms(f.fired_at_ms),
        invocation_id: f.invocation_id,
        catch_up: f.catch_up,
        outcome,
        request_id,
        error,
    }
}

fn record(listed: Listed) -> ScheduleRecord {
    let s = listed.schedule;
    ScheduleRecord {
        id: s.id,
        function: s.function,
        cron: s.cron,
        tz: s.tz,
        event: s.event,
        catch_up: s.catch_up.as_str().to_string(),
        enabled: s.enabled,
        created_at_ms: ms(s.created_at_ms),
        next_fire_ms: listed.next_ms.map_or(0, ms),
        firings: listed
            .firings
            .into_iter()
            .map(|(f, inv)| firing_record(f, inv))
            .collect(),
    }
}

#[tonic::async_trait]
impl Schedules for SchedulesService {
    async fn create_schedule(
        &self,
        request: Request<CreateScheduleRequest>,
    ) -> Result<Response<ScheduleRecord>, Status> {
        let req = request.into_inner();
        let made = self
            .timers
            .create(NewSchedule {
                function: req.function,
                cron: req.cron,
                tz: req.tz,
                event: req.event,
                catch_up: req.catch_up,
                paused: req.paused,
            })
            .await
            .map_err(|e| schedule_status(&e))?;
        let listed = self
            .timers
            .list(Some(made.function.clone()), 0)
            .await
            .map_err(|e| schedule_status(&e))?
            .into_iter()
            .find(|l| l.schedule.id == made.id);
        let listed = listed.unwrap_or(Listed {
            schedule: made,
            next_ms: None,
            firings: Vec::new(),
        });
        Ok(Response::new(record(listed)))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesReply>, Status> {
        let req = request.into_inner();
        let firings = match req.firings {
            0 => DEFAULT_FIRINGS,
            n => n as usize,
        };
        let function = (!req.function.is_empty()).then_some(req.function);
        let listed = self
            .timers
            .list(function, firings)
            .await
            .map_err(|e| schedule_status(&e))?;
        Ok(Response::new(ListSchedulesReply {
            schedules: listed.into_iter().map(record).collect(),
        }))
    }

    async fn delete_schedule(
        &self,
        request: Request<DeleteScheduleRequest>,
    ) -> Result<Response<DeleteScheduleReply>, Status> {
        let id = request.into_inner().id;
        self.timers
            .delete(&id)
            .await
            .map_err(|e| schedule_status(&e))?;
        Ok(Response::new(DeleteScheduleReply {}))
    }

    async fn pause_schedule(
        &self,
        request: Request<PauseScheduleRequest>,
    ) -> Result<Response<ScheduleRecord>, Status> {
        let req = request.into_inner();
        let listed = self
            .timers
            .pause(&req.id, req.paused)
            .await
            .map_err(|e| schedule_status(&e))?;
        Ok(Response::new(record(listed)))
    }
}
