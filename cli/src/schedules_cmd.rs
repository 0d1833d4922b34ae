//! `faas schedules [FUNCTION]` and `faas schedule add|rm|pause|resume`: timers, a function's
//! cron schedules (`faas.schedules.v1.Schedules`, scope admin).
//!
//! - `schedules [FUNCTION]` lists them: id, function, cron, time zone, catch-up rule, the
//!   next fire time, and the last firing with its outcome (the queued call's state:
//!   `succeeded`, `failed`, `dead`, `queued`, `running`; `refused` when the queue did not take
//!   it). `-o json` prints one object per schedule with its last firings.
//! - `schedule add FUNCTION --cron "*/10 * * * * *" [--tz Europe/Paris] [--event JSON]
//!   [--catch-up once|skip] [--paused]` makes one and prints its id. The cron expression has
//!   seconds: 6 fields (`sec min hour day month weekday`) or 7 (and a year).
//! - `schedule rm ID` deletes one; `schedule pause ID` / `schedule resume ID` stop and start
//!   it (a resumed schedule fires from its next slot: nothing missed while paused fires).
//! - `faas describe NAME` ends with the function's schedules, when it has any.

use faas_cli::client::Api;
use faas_cli::exit::call_failed;
use faas_proto::schedules::{
    CreateScheduleRequest, DeleteScheduleRequest, FiringRecord, ListSchedulesRequest,
    PauseScheduleRequest, ScheduleRecord,
};
use serde::Serialize;

use crate::output::{OutputArgs, print_json};
use crate::routing_cmds::utc;
use crate::target::Target;

/// The function's schedules under `faas describe NAME` (text only; nothing when it has none
/// or the server does not say).
pub async fn describe_section(api: &Api, name: &str) {
    let Ok(schedules) = fetch(api, Some(name), 1).await else {
        return;
    };
    if schedules.is_empty() {
        return;
    }
    println!("Schedules:");
    print_table(&schedules);
}

/// `faas schedule ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ScheduleCommand {
    /// Fire an event at a function on a cron schedule (with seconds).
    Add {
        #[command(flatten)]
        args: AddArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a schedule and its firings.
    #[command(alias = "delete")]
    Rm {
        /// The schedule's id (faas schedules lists them).
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a schedule firing (it is kept).
    Pause {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Start a paused schedule again, from its next slot.
    Resume {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// The flags of `faas schedule add`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AddArgs {
    /// The function (a plain name).
    pub function: String,
    /// Six fields, seconds first (`sec min hour day month weekday`), or seven with a year:
    /// "*/10 * * * * *" is every 10 s, "0 30 9 * * MON-FRI" weekdays at 9:30.
    #[arg(long)]
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// The event each firing sends (JSON or any text).
    #[arg(long, default_value = "")]
    pub event: String,
    /// Slots missed while the API server was down: skip them, or fire the latest once.
    #[arg(long, value_parser = ["once", "skip"], default_value = "skip")]
    pub catch_up: String,
    /// Make it paused.
    #[arg(long)]
    pub paused: bool,
}

/// One schedule as `-o json` prints it.
#[derive(Debug, Serialize)]
struct ScheduleJson<'a> {
    id: &'a str,
    function: &'a str,
    cron: &'a str,
    tz: &'a str,
    catch_up: &'a str,
    enabled: bool,
    next_fire_ms: i64,
    firings: Vec<FiringJson<'a>>,
}

#[derive(Debug, Serialize)]
struct FiringJson<'a> {
    slot_ms: i64,
    fired_at_ms: i64,
    invocation_id: &'a str,
    request_id: &'a str,
    outcome: &'a str,
    catch_up: bool,
    error: &'a str,
}

/// One schedule as `-o json` prints it (`faas schedules`, and `faas describe`'s
/// `schedules`).
pub fn schedule_json(s: &ScheduleRecord) -> impl Serialize + '_ {
    ScheduleJson {
        id: &s.id,
        function: &s.function,
        cron: &s.cron,
        tz: &s.tz,
        catch_up: &s.catch_up,
        enabled: s.enabled,
        next_fire_ms: s.next_fire_ms,
        firings: s.firings.iter().map(firing_json).collect(),
    }
}

fn firing_json(f: &FiringRecord) -> FiringJson<'_> {
    FiringJson {
        slot_ms: f.slot_ms,
        fired_at_ms: f.fired_at_ms,
        invocation_id: &f.invocation_id,
        request_id: &f.request_id,
        outcome: &f.outcome,
        catch_up: f.catch_up,
        error: &f.error,
    }
}

/// The schedules of `function` (all when `None`).
pub async fn fetch(
    api: &Api,
    function: Option<&str>,
    firings: u32,
) -> anyhow::Result<Vec<ScheduleRecord>> {
    Ok(api
        .schedules()
        .list_schedules(ListSchedulesRequest {
            function: function.unwrap_or_default().to_string(),
            firings,
        })
        .await
        .map_err(call_failed("schedules"))?
        .into_inner()
        .schedules)
}

/// Prints `schedules` as a table.
pub fn print_table(schedules: &[ScheduleRecord]) {
    println!(
        "{:<36}  {:<16}  {:<18}  {:<14}  {:<7}  {:<23}  LAST FIRE",
        "ID", "FUNCTION", "CRON", "TZ", "CATCHUP", "NEXT FIRE"
    );
    for s in schedules {
        let next = if s.enabled {
            utc(s.next_fire_ms)
        } else {
            "paused".to_string()
        };
        let last = s.firings.first().map_or("-".to_string(), |f| {
            format!("{} {}", utc(f.slot_ms), f.outcome)
        });
        println!(
            "{:<36}  {:<16}  {:<18}  {:<14}  {:<7}  {:<23}  {last}",
            s.id, s.function, s.cron, s.tz, s.catch_up, next
        );
    }
}

/// `faas schedules [FUNCTION]`.
pub async fn list(api: &Api, function: Option<&str>, output: &OutputArgs) -> anyhow::Result<()> {
    let schedules = fetch(api, function, if output.is_json() { 10 } else { 1 }).await?;
    if output.is_json() {
        for s in &schedules {
            print_json(&schedule_json(s))?;
        }
        return Ok(());
    }
    if schedules.is_empty() {
        match function {
            Some(f) => println!("no schedules for {f} (faas schedule add {f} --cron ...)"),
            None => println!("no schedules (faas schedule add FUNCTION --cron ...)"),
        }
        return Ok(());
    }
    print_table(&schedules);
    Ok(())
}

/// `faas schedule ...`.
pub async fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Add { args, target } => {
            let made = target
                .api()
                .await?
                .schedules()
                .create_schedule(CreateScheduleRequest {
                    function: args.function.clone(),
                    cron: args.cron,
                    tz: args.tz,
                    event: args.event.into_bytes(),
                    catch_up: args.catch_up,
                    paused: args.paused,
                })
                .await
                .map_err(call_failed(format!("schedule add {}", args.function)))?
                .into_inner();
            println!("{}", made.id);
            eprintln!(
                "{} fires {:?} ({}); next {}",
                made.function,
                made.cron,
                made.tz,
                if made.enabled {
                    utc(made.next_fire_ms)
                } else {
                    "paused".into()
                }
            );
        }
        ScheduleCommand::Rm { id, target } => {
            target
                .api()
                .await?
                .schedules()
                .delete_schedule(DeleteScheduleRequest { id: id.clone() })
                .await
                .map_err(call_failed(format!("schedule rm {id}")))?;
            eprintln!("schedule {id} deleted");
        }
        ScheduleCommand::Pause { id, target } => pause(&target, id, true).await?,
        ScheduleCommand::Resume { id, target } => pause(&target, id, false).await?,
    }
    Ok(())
}

async fn pause(target: &Target, id: String, paused: bool) -> anyhow::Result<()> {
    let verb = if paused { "pause" } else { "resume" };
    let s = target
        .api()
        .await?
        .schedules()
        .pause_schedule(PauseScheduleRequest {
            id: id.clone(),
            paused,
        })
        .await
        .map_err(call_failed(format!("schedule {verb} {id}")))?
        .into_inner();
    eprintln!(
        "schedule {id} {}",
        if s.enabled {
            format!("resumed; next {}", utc(s.next_fire_ms))
        } else {
            "paused".into()
        }
    );
    Ok(())
}
