//! The Azure Functions 2021 per-invocation format (Zhang et al., SOSP 2021):
//! `app,func,end_timestamp,duration`, one row per invocation, in any order and any column
//! order. Times are seconds from the trace's start; an invocation started at
//! `end_timestamp - duration` (clamped at 0). A function is the pair `app` + `func` (`func`
//! is unique only within its app). The trace has no memory data: functions replay with the
//! smallest limit and touch no extra memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::Rng;

use super::csv::CsvFile;
use super::{
    ATTRIBUTION_2021, Candidate, TraceError, TraceOptions, function_rng, replay_names, select,
};
use crate::workload::{
    EventBuilder, FunctionProfile, Invocation, MIB, Percentiles, ValueModel, Workload,
};

/// The columns a 2021 file must have.
pub const COLUMNS: [&str; 4] = ["app", "func", "end_timestamp", "duration"];

/// Whether a header is the 2021 format's.
pub fn is_2021_header(header: &[String]) -> bool {
    COLUMNS.iter().all(|c| header.iter().any(|h| h == c))
}

/// The single `*.csv` file in `dir` whose header is the 2021 format's, if any.
pub fn find(dir: &Path) -> Result<Option<PathBuf>, TraceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Io {
        file: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for e in entries {
        let e = e.map_err(|source| TraceError::Io {
            file: dir.to_path_buf(),
            source,
        })?;
        let p = e.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "csv") {
            let f = CsvFile::open(&p)?;
            if is_2021_header(&f.header) {
                found.push(p);
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(TraceError::Ambiguous {
            dir: dir.to_path_buf(),
            kind: "2021 invocation",
            files: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// One invocation of the trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceInvocation {
    /// Index into [`Azure2021Trace::functions`].
    pub function: usize,
    pub start_s: f64,
    pub duration_s: f64,
}

/// A function of the trace: `app` and `func` hashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppFunc {
    pub app: String,
    pub func: String,
}

/// A 2021 trace, sorted by start time.
#[derive(Clone, Debug, PartialEq)]
pub struct Azure2021Trace {
    pub source: String,
    /// Functions in order of their first call.
    pub functions: Vec<AppFunc>,
    /// Sorted by `start_s` (ties keep file order).
    pub invocations: Vec<TraceInvocation>,
}

impl Azure2021Trace {
    /// Reads a 2021 file.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let file = CsvFile::open(path)?;
        let [app, func, end, dur] = COLUMNS.map(|c| file.require(c));
        let (app, func, end, dur) = (app?, func?, end?, dur?);
        let mut rows = Vec::new();
        file.for_each_row(|row| {
            let end_s = row.number(end, "end_timestamp")?;
            let duration_s = row.number(dur, "duration")?;
            rows.push((
                AppFunc {
                    app: row.text(app).to_string(),
                    func: row.text(func).to_string(),
                },
                (end_s - duration_s).max(0.0),
                duration_s,
            ));
            Ok(())
        })?;
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut index: HashMap<AppFunc, usize> = HashMap::new();
        let mut functions = Vec::new();
        let mut invocations = Vec::with_capacity(rows.len());
        for (key, start_s, duration_s) in rows {
            let function = *index.entry(key.clone()).or_insert_with(|| {
                functions.push(key);
                functions.len() - 1
            });
            invocations.push(TraceInvocation {
                function,
                start_s,
                duration_s,
            });
        }
        Ok(Azure2021Trace {
            source: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            functions,
            invocations,
        })
    }

    /// How many minutes the trace covers (at least 1).
    pub fn minutes(&self) -> u64 {
        let last = self.invocations.last().map_or(0.0, |i| i.start_s);
        (last / 60.0).floor() as u64 + 1
    }

    /// Turns the trace into a workload: each call keeps its own start and duration (scaled
    /// and clamped); the profile's duration model is the function's observed percentiles.
    pub fn to_workload(&self, options: &TraceOptions) -> Result<Workload, TraceError> {
        options.validate()?;
        let total_minutes = self.minutes();
        let start = options.start_minute;
        if start >= total_minutes {
            return Err(TraceError::InvalidOption {
                name: "start_minute",
                reason: format!("minute {start} is beyond the trace's {total_minutes} minutes"),
            });
        }
        let end = options
            .minutes
            .map_or(total_minutes, |m| (start + m).min(total_minutes));
        let (t0, t1) = (start as f64 * 60.0, end as f64 * 60.0);
        let in_window = |i: &TraceInvocation| i.start_s >= t0 && i.start_s < t1;

        let mut counts = vec![0u64; self.functions.len()];
        let mut durations: Vec<Vec<f64>> = vec![Vec::new(); self.functions.len()];
        for inv in self.invocations.iter().filter(|i| in_window(i)) {
            counts[inv.function] += 1;
            durations[inv.function].push(inv.duration_s * 1000.0);
        }
        let keys: Vec<String> = self
            .functions
            .iter()
            .map(|f| format!("{}/{}", f.app, f.func))
            .collect();
        let candidates: Vec<Candidate<'_>> = self
            .functions
            .iter()
            .zip(&keys)
            .zip(&counts)
            .map(|((f, k), &n)| Candidate {
                keys: vec![k.as_str(), f.func.as_str()],
                calls_in_window: n,
            })
            .collect();
        let names = replay_names(
            &self
                .functions
                .iter()
                .map(|f| format!("{}{}", short(&f.app), f.func))
                .collect::<Vec<_>>(),
        );
        let chosen = select(&candidates, &names, options)?;
        if chosen.iter().all(|&i| counts[i] == 0) {
            return Err(TraceError::NothingSelected { start, end });
        }

        let limit = options.limit_mb(None);
        let scale_t = options.minute_ms as f64 / 60.0;
        let mut slot = vec![usize::MAX; self.functions.len()];
        let mut functions = Vec::with_capacity(chosen.len());
        let mut rngs = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            slot[i] = functions.len();
            let mut d = std::mem::take(&mut durations[i]);
            d.sort_by(f64::total_cmp);
            let model = if d.is_empty() {
                ValueModel::Fixed(options.min_duration_ms)
            } else {
                let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
                ValueModel::Percentiles(
                    Percentiles::new([0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0].map(|q| (q, at(q))))?
                        .scaled(options.duration_scale),
                )
            };
            functions.push(FunctionProfile {
                name: names[i].clone(),
                handler: options.handler(false),
                memory_bytes: limit * MIB,
                timeout_ms: options.timeout_ms,
                duration_ms: model,
                memory_mb: ValueModel::Fixed(0.0),
                event: EventBuilder::Handler,
                origin: Some(format!(
                    "azure2021 app {} func {}",
                    self.functions[i].app, self.functions[i].func
                )),
            });
            rngs.push(function_rng(options.seed, &keys[i]));
        }
        let mut invocations = Vec::new();
        for inv in self.invocations.iter().filter(|i| in_window(i)) {
            let s = slot[inv.function];
            if s == usize::MAX {
                continue;
            }
            if options.invocation_scale < 1.0 && rngs[s].random::<f64>() >= options.invocation_scale
            {
                continue;
            }
            let ms = options.duration(inv.duration_s * 1000.0).round() as u64;
            let profile = &functions[s];
            invocations.push(Invocation {
                at_ms: ((inv.start_s - t0) * scale_t) as u64,
                function: s,
                event: profile.event.build(profile, ms, 0),
                expected_duration_ms: ms,
                expected_memory_mb: 0,
            });
        }
        let mut w = Workload::new(
            format!("azure2021 {}", self.source),
            functions,
            invocations,
            (end - start) * options.minute_ms,
        )?;
        w.description = format!(
            "Azure Functions 2021 trace {}: {} of {} functions ({:?}); {}",
            self.source,
            chosen.len(),
            self.functions.len(),
            options.selection,
            options.describe()
        );
        w.attribution = Some(ATTRIBUTION_2021.to_string());
        Ok(w)
    }
}

fn short(s: &str) -> &str {
    let end = s.char_indices().nth(6).map_or(s.len(), |(i, _)| i);
    &s[..end]
}
