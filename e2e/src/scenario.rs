//! Built-in scenarios: the `contest` load, modelled on the 2020 mini-faas contest's online load
//! (`shared/workloads/contest.md`), scalable to fit a small machine.
//!
//! ## The 15 functions
//!
//! The burst gap, burst size and 20-minute call total of each function are the contestants'
//! reconstruction. The contest gives the set of durations (about 12 ms, 173 ms, 320 ms, 354 ms,
//! 510 ms, 1.1–1.6 s, 3.1–4.4 s, 8.2 s, 12.1 s), the memory sizes (128, 256, 512 MiB) and the
//! kinds (helloworld, CPU-intensive, memory-intensive, sleep), but not which function had
//! which; this module assigns them plausibly: frequent functions are short, rare ones long,
//! CPU- and memory-heavy ones get the larger memory (the contest's CPU share follows memory).
//! Every function has the contest's 60 s timeout. Ranges are drawn uniformly per call
//! (input-dependent durations).
//!
//! | fn | body | limit MiB | duration | gap s | per burst | calls/20 min | active | starts at | calls per burst used |
//! |---|---|---|---|---|---|---|---|---|---|
//! | f1 | `hello` | 128 | 12 ms | 2.5 | 5 | 2610 | 100% | 0% | 5.44 |
//! | f2 | `sleep` | 256 | 173 ms | 5 | 20 | 4284 | 89% | 5% | 20 |
//! | f3 | `spin` (CPU) | 512 | 320 ms | 4 | 8 | 1440 | 60% | 0% | 8 |
//! | f4 | `sleep` | 128 | 354 ms | 2.5 | 18 | 4750 | 55% | 40% | 18 |
//! | f5 | `memory` | 512 | 510 ms | 3 | 7 | 1130 | 40% | 30% | 7 |
//! | f6 | `spin` (CPU) | 256 | 1.1–1.6 s | 2.5 | 5 | 1920 | 80% | 10% | 5 |
//! | f7 | `memory` | 512 | 1.1–1.6 s | 3 | 3 | 653 | 54% | 45% | 3 |
//! | f8 | `sleep` | 256 | 3.1–4.4 s | 8 | 7 | 822 | 78% | 20% | 7 |
//! | f9 | `spin` (CPU) | 512 | 8.2 s | 49 | 10 | 240 | 98% | 2% | 10 |
//! | f10 | `sleep` | 128 | 3.1–4.4 s | 50 | 20 | 460 | 96% | 4% | 20 |
//! | f11 | `sleep` | 128 | 12.1 s | 270 | 10 | 40 | 90% | 5% | 10 |
//! | f12 | `spin` (CPU) | 512 | 12.1 s | 290 | 10 | 40 | 97% | 3% | 10 |
//! | f13 | `hello` | 256 | 12 ms | 50 | 5 | 1100 | 100% | 0% | 45.8 |
//! | f14 | `spin` (CPU) | 256 | 173 ms | 2.5 | 5 | 1216 | 51% | 25% | 5 |
//! | f15 | `memory` | 512 | 8.2 s | 360 | 10 | 40 | 100% | 0% | 12 |
//!
//! How the columns become a schedule: the call total and the gap are kept; a function is
//! active for the share of the run that its total needs at its burst size
//! (`calls × gap / per-burst / 20 min`, at most 100%), starting at the listed share of the
//! run. When even the whole run is too short for the total at the listed size (f1, f13, f15:
//! the reconstruction does not add up there), the bursts grow instead ("calls per burst
//! used"). The first burst comes at a random phase within one gap of the window's start, so a
//! short run still sees the rare functions about as often as the full run would. A burst's
//! calls are spread evenly over [`ScenarioOptions::burst_spread_ms`]. The totals add up to
//! 20,745 calls in 20 minutes (17.3 per second; the contest's "about 73,000 invocations" per
//! run is not reproduced by the reconstructed table).
//!
//! Memory touched per call: `hello` 1.5–5 MiB and `sleep` 2–5 MiB (the contest's development
//! functions), `spin` 4–16 MiB, `memory` 40–60% of its limit (contestants called a function
//! memory-heavy from 30% up). The limit itself is never scaled: it is the scheduler's packing
//! input against 3 GiB nodes and stays as in the contest.
//!
//! ## Scaling to a small machine
//!
//! [`ScenarioOptions::duration_ms`] is the length of the run; activity windows are shares of
//! it, gaps are real seconds, so a shorter run is a time-compressed plot of the same load at
//! the same call rate. [`ScenarioOptions::full`] is the contest unscaled: 20 minutes, 20,745
//! calls, and its `spin` functions alone ask for about 5,700 CPU-seconds (4.8 cores busy on
//! average), far beyond a 2-core machine that also runs the platform.
//!
//! The default ([`ScenarioOptions::default`]) is a 2-minute run that 2 cores serve with room
//! for the platform itself: `size_scale` 0.5 (about 1,040 calls, 8.6 per second), `duration_scale`
//! 0.1 (the CPU work of `spin` bodies is then about 29 CPU-seconds in 120 s, a quarter of one
//! core on average; the longest body is 1.2 s), `memory_scale` 0.25 (a `memory` call touches
//! 51–77 MiB), `time_scale` 1.

use crate::workload::{
    Arrivals, EventBuilder, FunctionProfile, HandlerKind, MIB, ValueModel, Workload,
    WorkloadBuilder, WorkloadError,
};

/// The contest's run length: 20 minutes.
pub const CONTEST_RUN_MS: u64 = 20 * 60 * 1000;
/// The contest functions' timeout.
pub const CONTEST_TIMEOUT_MS: u64 = 60_000;
/// Names of the built-in scenarios.
pub const SCENARIOS: &[&str] = &["contest"];

/// One reconstructed contest function (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContestFunction {
    pub name: &'static str,
    pub handler: HandlerKind,
    pub memory_mib: u64,
    /// Duration range, ms (equal bounds: fixed).
    pub duration_ms: (f64, f64),
    /// Seconds between bursts.
    pub gap_s: f64,
    /// Calls per burst, as reconstructed.
    pub per_burst: f64,
    /// Calls in 20 minutes, as reconstructed.
    pub calls: u64,
    /// Where the active window starts, as a share of the run.
    pub start_share: f64,
}

impl ContestFunction {
    /// The share of the run the function is active (at most 1).
    pub fn active_share(&self) -> f64 {
        (self.calls as f64 * self.gap_s / self.per_burst / (CONTEST_RUN_MS as f64 / 1000.0))
            .min(1.0)
    }

    /// The mean burst size used: the listed one, or larger when the whole run at the listed
    /// size cannot reach the call total.
    pub fn burst_size(&self) -> f64 {
        if self.active_share() < 1.0 {
            self.per_burst
        } else {
            let needed = self.calls as f64 * self.gap_s / (CONTEST_RUN_MS as f64 / 1000.0);
            needed.max(self.per_burst)
        }
    }

    /// Memory one call touches, MiB, before scaling.
    pub fn touched_mb(&self) -> (f64, f64) {
        match self.handler {
            HandlerKind::Hello | HandlerKind::Echo => (1.5, 5.0),
            HandlerKind::Sleep => (2.0, 5.0),
            HandlerKind::Spin | HandlerKind::Cpu => (4.0, 16.0),
            HandlerKind::Memory => (0.4 * self.memory_mib as f64, 0.6 * self.memory_mib as f64),
        }
    }
}

/// One table row; positional on purpose so the table below reads like the module's table.
#[allow(clippy::too_many_arguments)]
const fn cf(
    name: &'static str,
    handler: HandlerKind,
    memory_mib: u64,
    duration_ms: (f64, f64),
    gap_s: f64,
    per_burst: f64,
    calls: u64,
    start_share: f64,
) -> ContestFunction {
    ContestFunction {
        name,
        handler,
        memory_mib,
        duration_ms,
        gap_s,
        per_burst,
        calls,
        start_share,
    }
}

use HandlerKind::{Hello, Memory, Sleep, Spin};

/// The 15 reconstructed contest functions (see the module's table).
pub const CONTEST_FUNCTIONS: [ContestFunction; 15] = [
    cf("f1", Hello, 128, (12.0, 12.0), 2.5, 5.0, 2610, 0.0),
    cf("f2", Sleep, 256, (173.0, 173.0), 5.0, 20.0, 4284, 0.05),
    cf("f3", Spin, 512, (320.0, 320.0), 4.0, 8.0, 1440, 0.0),
    cf("f4", Sleep, 128, (354.0, 354.0), 2.5, 18.0, 4750, 0.40),
    cf("f5", Memory, 512, (510.0, 510.0), 3.0, 7.0, 1130, 0.30),
    cf("f6", Spin, 256, (1100.0, 1600.0), 2.5, 5.0, 1920, 0.10),
    cf("f7", Memory, 512, (1100.0, 1600.0), 3.0, 3.0, 653, 0.45),
    cf("f8", Sleep, 256, (3100.0, 4400.0), 8.0, 7.0, 822, 0.20),
    cf("f9", Spin, 512, (8200.0, 8200.0), 49.0, 10.0, 240, 0.02),
    cf("f10", Sleep, 128, (3100.0, 4400.0), 50.0, 20.0, 460, 0.04),
    cf("f11", Sleep, 128, (12100.0, 12100.0), 270.0, 10.0, 40, 0.05),
    cf("f12", Spin, 512, (12100.0, 12100.0), 290.0, 10.0, 40, 0.03),
    cf("f13", Hello, 256, (12.0, 12.0), 50.0, 5.0, 1100, 0.0),
    cf("f14", Spin, 256, (173.0, 173.0), 2.5, 5.0, 1216, 0.25),
    cf("f15", Memory, 512, (8200.0, 8200.0), 360.0, 10.0, 40, 0.0),
];

/// How to scale the contest scenario (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioOptions {
    /// Length of the run, ms (the contest's is 1,200,000).
    pub duration_ms: u64,
    /// Multiplies the gaps between bursts (2.0: bursts half as often).
    pub time_scale: f64,
    /// Multiplies the burst sizes (0.5: half the calls); fractional sizes are rounded at
    /// random so that the mean holds.
    pub size_scale: f64,
    /// Multiplies the functions' durations.
    pub duration_scale: f64,
    /// Multiplies the memory a call touches (not the containers' limits).
    pub memory_scale: f64,
    /// A quiet time before the first call, ms (the contest had about 40 s).
    pub lead_in_ms: u64,
    /// The calls of one burst are spread evenly over this many ms.
    pub burst_spread_ms: f64,
    /// The seed of every random draw.
    pub seed: u64,
}

impl Default for ScenarioOptions {
    /// A 2-minute run that a 2-core machine serves (see the module documentation).
    fn default() -> Self {
        ScenarioOptions {
            duration_ms: 2 * 60 * 1000,
            time_scale: 1.0,
            size_scale: 0.5,
            duration_scale: 0.1,
            memory_scale: 0.25,
            lead_in_ms: 0,
            burst_spread_ms: 50.0,
            seed: 1,
        }
    }
}

impl ScenarioOptions {
    /// The contest unscaled: 20 minutes, every size, duration and memory as listed.
    pub fn full() -> Self {
        ScenarioOptions {
            duration_ms: CONTEST_RUN_MS,
            size_scale: 1.0,
            duration_scale: 1.0,
            memory_scale: 1.0,
            ..ScenarioOptions::default()
        }
    }

    fn validate(&self) -> Result<(), WorkloadError> {
        if self.duration_ms == 0 {
            return Err(WorkloadError::InvalidOption {
                name: "duration_ms",
                reason: "the run must last more than 0 ms".into(),
            });
        }
        for (name, v) in [
            ("time_scale", self.time_scale),
            ("size_scale", self.size_scale),
            ("duration_scale", self.duration_scale),
            ("memory_scale", self.memory_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(WorkloadError::InvalidOption {
                    name,
                    reason: format!("must be a finite number above 0, got {v}"),
                });
            }
        }
        if !(self.burst_spread_ms.is_finite() && self.burst_spread_ms >= 0.0) {
            return Err(WorkloadError::InvalidOption {
                name: "burst_spread_ms",
                reason: format!("must be a finite number >= 0, got {}", self.burst_spread_ms),
            });
        }
        Ok(())
    }
}

/// Builds a built-in scenario by name (see [`SCENARIOS`]).
pub fn build(name: &str, options: &ScenarioOptions) -> Result<Workload, WorkloadError> {
    match name {
        "contest" => contest(options),
        other => Err(WorkloadError::InvalidOption {
            name: "scenario",
            reason: format!(
                "unknown scenario {other:?}; built in: {}",
                SCENARIOS.join(", ")
            ),
        }),
    }
}

/// The contest scenario (see the module documentation).
pub fn contest(options: &ScenarioOptions) -> Result<Workload, WorkloadError> {
    options.validate()?;
    let run = options.duration_ms as f64;
    let lead = options.lead_in_ms;
    let mut b = WorkloadBuilder::new("contest", lead + options.duration_ms);
    b.description(format!(
        "contest scenario (2020 mini-faas, reconstructed): {:.1} min run, lead-in {} ms, \
         time_scale {}, size_scale {}, duration_scale {}, memory_scale {}, seed {}",
        run / 60_000.0,
        lead,
        options.time_scale,
        options.size_scale,
        options.duration_scale,
        options.memory_scale,
        options.seed
    ));
    for c in CONTEST_FUNCTIONS {
        let (dlo, dhi) = c.duration_ms;
        let (mlo, mhi) = c.touched_mb();
        let ds = options.duration_scale;
        let ms = options.memory_scale;
        let profile = FunctionProfile {
            name: c.name.to_string(),
            handler: c.handler,
            memory_bytes: c.memory_mib * MIB,
            timeout_ms: CONTEST_TIMEOUT_MS,
            duration_ms: if dlo == dhi {
                ValueModel::Fixed(dlo * ds)
            } else {
                ValueModel::uniform(dlo * ds, dhi * ds)?
            },
            memory_mb: ValueModel::uniform(mlo * ms, mhi * ms)?,
            event: EventBuilder::Handler,
            origin: Some(format!(
                "contest {}: {} of {} MiB, every {} s x {}, {} calls/20 min",
                c.name, c.handler, c.memory_mib, c.gap_s, c.per_burst, c.calls
            )),
        };
        let f = b.function(profile);
        let share = c.active_share();
        let start_share = c.start_share.min(1.0 - share);
        let start = lead + (start_share * run) as u64;
        let end = lead + ((start_share + share) * run).ceil() as u64;
        b.stream(
            f,
            Arrivals::Bursts {
                every_ms: c.gap_s * 1000.0 * options.time_scale,
                size: c.burst_size() * options.size_scale,
                spread_ms: options.burst_spread_ms,
            },
            start,
            end,
        );
    }
    b.build(options.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_totals_are_kept_in_a_full_run() {
        let total: u64 = CONTEST_FUNCTIONS.iter().map(|c| c.calls).sum();
        assert_eq!(total, 20_745);
        let w = contest(&ScenarioOptions::full()).unwrap();
        let calls = w.calls_per_function();
        for (c, &n) in CONTEST_FUNCTIONS.iter().zip(&calls) {
            let want = c.calls as f64;
            // One burst more or less than the mean, plus rounding of fractional bursts.
            let slack = c.burst_size() * 1.5 + 0.05 * want;
            assert!(
                (n as f64 - want).abs() <= slack,
                "{}: {n} calls, want about {want}",
                c.name
            );
        }
        assert!(w.invocations.iter().all(|i| i.at_ms < CONTEST_RUN_MS));
        assert!(w.functions.iter().all(|f| f.timeout_ms == 60_000));
        assert!(
            w.functions
                .iter()
                .all(|f| [128, 256, 512].contains(&(f.memory_bytes / MIB)))
        );
    }

    #[test]
    fn burst_sizes_follow_the_rules() {
        let f1 = &CONTEST_FUNCTIONS[0];
        assert_eq!(f1.active_share(), 1.0);
        assert!((f1.burst_size() - 5.4375).abs() < 1e-9);
        let f3 = &CONTEST_FUNCTIONS[2];
        assert!((f3.active_share() - 0.6).abs() < 1e-9);
        assert_eq!(f3.burst_size(), 8.0);
    }

    #[test]
    fn default_fits_two_cores() {
        let o = ScenarioOptions::default();
        let w = contest(&o).unwrap();
        let n = w.invocations.len();
        assert!((800..1400).contains(&n), "{n} calls");
        let spin_ms: u64 = w
            .invocations
            .iter()
            .filter(|i| w.functions[i.function].handler == HandlerKind::Spin)
            .map(|i| i.expected_duration_ms)
            .sum();
        let cores = spin_ms as f64 / o.duration_ms as f64;
        assert!(cores < 0.5, "spin bodies keep {cores} cores busy");
        let max_ms = w.invocations.iter().map(|i| i.expected_duration_ms).max();
        assert!(max_ms <= Some(1210));
        // Every function shows up, even the rare ones.
        assert!(w.calls_per_function().iter().all(|&c| c > 0));
    }

    #[test]
    fn same_seed_same_workload() {
        let o = ScenarioOptions::default();
        assert_eq!(contest(&o).unwrap(), contest(&o).unwrap());
        let other = ScenarioOptions {
            seed: 2,
            ..o.clone()
        };
        assert_ne!(
            contest(&o).unwrap().invocations,
            contest(&other).unwrap().invocations
        );
    }

    #[test]
    fn events_carry_scaled_durations() {
        let w = contest(&ScenarioOptions::default()).unwrap();
        let f9 = w.function_index("f9").unwrap();
        let inv = w.invocations.iter().find(|i| i.function == f9).unwrap();
        assert_eq!(inv.expected_duration_ms, 820);
        let v: serde_json::Value = serde_json::from_slice(&inv.event).unwrap();
        assert_eq!(v["ms"], 820);
        assert!(v["mb"].as_u64().unwrap() <= 4);
    }

    #[test]
    fn bad_options_are_refused() {
        let o = ScenarioOptions {
            size_scale: 0.0,
            ..ScenarioOptions::default()
        };
        assert!(matches!(
            contest(&o),
            Err(WorkloadError::InvalidOption {
                name: "size_scale",
                ..
            })
        ));
        assert!(build("nope", &ScenarioOptions::default()).is_err());
        let lead = ScenarioOptions {
            lead_in_ms: 40_000,
            ..ScenarioOptions::default()
        };
        let w = build("contest", &lead).unwrap();
        assert!(w.invocations[0].at_ms >= 40_000);
        assert_eq!(w.duration_ms, 160_000);
    }
}
