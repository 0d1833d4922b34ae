//! The Azure Functions 2019 per-minute format (Shahrad et al., USENIX ATC 2020).
//!
//! Three files, joined on the function's hashes:
//!
//! - invocations: `HashOwner,HashApp,HashFunction,Trigger,1,…,1440` (the original layout) or
//!   `HashFunction,HashApp,HashOwner,minute_1,…` (the sampled one): calls per minute. Minute
//!   columns are named `N` or `minute_N`; `HashFunction` is required, the other hashes and
//!   `Trigger` are optional. A function listed twice has its counts added.
//! - durations: `HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,
//!   percentile_Average_{0,1,25,50,75,99,100}` in any order, ms. `Average` and the seven
//!   percentiles are required.
//! - memory: `AverageAllocatedMb` and `AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}`, MB,
//!   keyed by `HashFunction` where the file has that column and by `HashApp` otherwise (the
//!   original file is per app).
//!
//! A function without a duration row cannot be replayed and is left out (counted in
//! [`Azure2019Trace::without_durations`]); one without memory data replays with the smallest
//! limit (see [`super::TraceOptions`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::csv::{CsvFile, Row};
use super::{
    ATTRIBUTION_2019, Candidate, TraceError, TraceOptions, function_rng, minute_arrivals,
    replay_names, select,
};
use crate::workload::{
    CompactInvocation, CompactWorkload, EventBuilder, FunctionProfile, Invocation, MIB,
    Percentiles, ValueModel, Workload, stochastic_round,
};

/// The duration percentile columns and their quantiles.
pub const DURATION_PERCENTILES: [(&str, f64); 7] = [
    ("percentile_Average_0", 0.0),
    ("percentile_Average_1", 0.01),
    ("percentile_Average_25", 0.25),
    ("percentile_Average_50", 0.50),
    ("percentile_Average_75", 0.75),
    ("percentile_Average_99", 0.99),
    ("percentile_Average_100", 1.0),
];

/// The memory percentile columns and their quantiles.
pub const MEMORY_PERCENTILES: [(&str, f64); 8] = [
    ("AverageAllocatedMb_pct1", 0.01),
    ("AverageAllocatedMb_pct5", 0.05),
    ("AverageAllocatedMb_pct25", 0.25),
    ("AverageAllocatedMb_pct50", 0.50),
    ("AverageAllocatedMb_pct75", 0.75),
    ("AverageAllocatedMb_pct95", 0.95),
    ("AverageAllocatedMb_pct99", 0.99),
    ("AverageAllocatedMb_pct100", 1.0),
];

/// A function's identity: the three hashes (empty when the file lacks the column).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    pub owner: String,
    pub app: String,
    pub function: String,
}

/// One row of the invocation file.
#[derive(Clone, Debug, PartialEq)]
pub struct InvocationCounts {
    pub key: FunctionKey,
    pub trigger: Option<String>,
    /// Calls in each minute; index 0 is minute 1.
    pub per_minute: Vec<u64>,
}

/// One row of the duration file.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationStats {
    pub key: FunctionKey,
    pub average_ms: f64,
    pub count: Option<u64>,
    pub minimum_ms: Option<f64>,
    pub maximum_ms: Option<f64>,
    pub percentiles: Percentiles,
}

/// What a memory row is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MemoryKey {
    Function(String),
    App(String),
}

/// One row of the memory file.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryStats {
    pub key: MemoryKey,
    pub sample_count: Option<u64>,
    pub average_mb: f64,
    pub percentiles: Percentiles,
}

fn key_columns(file: &CsvFile) -> Result<(usize, Option<usize>, Option<usize>), TraceError> {
    Ok((
        file.require("HashFunction")?,
        file.optional("HashApp"),
        file.optional("HashOwner"),
    ))
}

fn key_of(row: &Row<'_>, cols: (usize, Option<usize>, Option<usize>)) -> FunctionKey {
    let opt = |c: Option<usize>| c.map(|i| row.text(i).to_string()).unwrap_or_default();
    FunctionKey {
        function: row.text(cols.0).to_string(),
        app: opt(cols.1),
        owner: opt(cols.2),
    }
}

fn percentiles(row: &Row<'_>, cols: &[(usize, &str, f64)]) -> Result<Percentiles, TraceError> {
    let mut points = Vec::with_capacity(cols.len());
    for &(idx, name, q) in cols {
        points.push((q, row.number(idx, name)?));
    }
    Percentiles::new(points).map_err(|e| TraceError::Malformed {
        file: row.path.to_path_buf(),
        line: row.line,
        reason: e.to_string(),
    })
}

/// The minute a column holds (1-based), if it is a minute column.
fn minute_of(column: &str) -> Option<usize> {
    let digits = column.strip_prefix("minute_").unwrap_or(column);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok().filter(|&n| n >= 1)
}

/// Reads an invocation-count file.
pub fn read_invocations(path: &Path) -> Result<Vec<InvocationCounts>, TraceError> {
    let file = CsvFile::open(path)?;
    let keys = key_columns(&file)?;
    let trigger = file.optional("Trigger");
    let minutes: Vec<(usize, usize, &str)> = file
        .header
        .iter()
        .enumerate()
        .filter_map(|(i, name)| minute_of(name).map(|m| (i, m - 1, name.as_str())))
        .collect();
    let Some(len) = minutes.iter().map(|&(_, m, _)| m + 1).max() else {
        return Err(TraceError::NoMinuteColumns {
            file: path.to_path_buf(),
            line: file.header_line(),
        });
    };
    let mut out: Vec<InvocationCounts> = Vec::new();
    let mut seen: HashMap<FunctionKey, usize> = HashMap::new();
    file.for_each_row(|row| {
        let mut per_minute = vec![0u64; len];
        for &(idx, m, name) in &minutes {
            per_minute[m] = row.count(idx, name)?;
        }
        let key = key_of(row, keys);
        if let Some(&i) = seen.get(&key) {
            for (a, b) in out[i].per_minute.iter_mut().zip(per_minute) {
                *a = a.saturating_add(b);
            }
        } else {
            seen.insert(key.clone(), out.len());
            out.push(InvocationCounts {
                key,
                trigger: trigger.map(|i| row.text(i).to_string()),
                per_minute,
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// Reads a duration-percentile file.
pub fn read_durations(path: &Path) -> Result<Vec<DurationStats>, TraceError> {
    let file = CsvFile::open(path)?;
    let keys = key_columns(&file)?;
    let average = file.require("Average")?;
    let count = file.optional("Count");
    let minimum = file.optional("Minimum");
    let maximum = file.optional("Maximum");
    let pcols = DURATION_PERCENTILES
        .iter()
        .map(|&(name, q)| Ok((file.require(name)?, name, q)))
        .collect::<Result<Vec<_>, TraceError>>()?;
    let mut out = Vec::new();
    file.for_each_row(|row| {
        out.push(DurationStats {
            key: key_of(row, keys),
            average_ms: row.number(average, "Average")?,
            count: count.map(|i| row.count(i, "Count")).transpose()?,
            minimum_ms: minimum.map(|i| row.number(i, "Minimum")).transpose()?,
            maximum_ms: maximum.map(|i| row.number(i, "Maximum")).transpose()?,
            percentiles: percentiles(row, &pcols)?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Reads a memory-percentile file.
pub fn read_memory(path: &Path) -> Result<Vec<MemoryStats>, TraceError> {
    let file = CsvFile::open(path)?;
    let (key_col, by_function) = match file.optional("HashFunction") {
        Some(i) => (i, true),
        None => (file.require("HashApp")?, false),
    };
    let average = file.require("AverageAllocatedMb")?;
    let samples = file.optional("SampleCount");
    let pcols = MEMORY_PERCENTILES
        .iter()
        .map(|&(name, q)| Ok((file.require(name)?, name, q)))
        .collect::<Result<Vec<_>, TraceError>>()?;
    let mut out = Vec::new();
    file.for_each_row(|row| {
        let k = row.text(key_col).to_string();
        out.push(MemoryStats {
            key: if by_function {
                MemoryKey::Function(k)
            } else {
                MemoryKey::App(k)
            },
            sample_count: samples.map(|i| row.count(i, "SampleCount")).transpose()?,
            average_mb: row.number(average, "AverageAllocatedMb")?,
            percentiles: percentiles(row, &pcols)?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The three files of one 2019 trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Azure2019Files {
    pub invocations: PathBuf,
    pub durations: PathBuf,
    /// Optional: without it every function gets the smallest memory limit.
    pub memory: Option<PathBuf>,
}

impl Azure2019Files {
    /// Finds the files in `dir`: `*_inv.csv`, `*_run.csv`, `*_mem.csv`, or the original
    /// names `invocations_per_function_md.anon.d01.csv`,
    /// `function_durations_percentiles.anon.d01.csv`, `app_memory_percentiles.anon.d01.csv`.
    pub fn find(dir: &Path) -> Result<Self, TraceError> {
        Self::find_day(dir, 1)
    }

    /// Like [`Azure2019Files::find`], with the original names of day `day` (`d01`..`d14`).
    pub fn find_day(dir: &Path, day: u32) -> Result<Self, TraceError> {
        let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Io {
            file: dir.to_path_buf(),
            source,
        })?;
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|source| TraceError::Io {
                file: dir.to_path_buf(),
                source,
            })?;
            if e.path().is_file()
                && let Some(n) = e.file_name().to_str()
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        let pick = |kind: &'static str, suffix: &str, original: String| {
            let found: Vec<&String> = names
                .iter()
                .filter(|n| n.ends_with(suffix) || **n == original)
                .collect();
            match found.as_slice() {
                [] => Err(TraceError::NotFound {
                    dir: dir.to_path_buf(),
                    kind,
                    looked_for: format!("*{suffix} or {original}"),
                }),
                [one] => Ok(dir.join(one)),
                many => Err(TraceError::Ambiguous {
                    dir: dir.to_path_buf(),
                    kind,
                    files: many
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        };
        Ok(Azure2019Files {
            invocations: pick(
                "invocation-count",
                "_inv.csv",
                format!("invocations_per_function_md.anon.d{day:02}.csv"),
            )?,
            durations: pick(
                "duration",
                "_run.csv",
                format!("function_durations_percentiles.anon.d{day:02}.csv"),
            )?,
            memory: match pick(
                "memory",
                "_mem.csv",
                format!("app_memory_percentiles.anon.d{day:02}.csv"),
            ) {
                Ok(p) => Some(p),
                Err(TraceError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
        })
    }
}

/// One replayable function: its counts joined with its durations and memory.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceFunction {
    pub key: FunctionKey,
    pub trigger: Option<String>,
    /// Calls in each minute; index 0 is minute 1.
    pub per_minute: Vec<u64>,
    pub average_ms: f64,
    pub duration_ms: Percentiles,
    pub memory_mb: Option<Percentiles>,
}

/// A 2019 trace, read and joined.
#[derive(Clone, Debug, PartialEq)]
pub struct Azure2019Trace {
    /// The invocation file's name, for descriptions.
    pub source: String,
    pub functions: Vec<TraceFunction>,
    /// How many minutes the trace covers.
    pub minutes: usize,
    /// Functions of the invocation file left out for lack of a duration row.
    pub without_durations: usize,
    /// Functions replayed without memory data.
    pub without_memory: usize,
}

impl Azure2019Trace {
    /// Finds the files in `dir` and reads them.
    pub fn load(dir: &Path) -> Result<Self, TraceError> {
        Self::from_files(&Azure2019Files::find(dir)?)
    }

    /// Reads and joins the three files.
    pub fn from_files(files: &Azure2019Files) -> Result<Self, TraceError> {
        let invocations = read_invocations(&files.invocations)?;
        let durations = read_durations(&files.durations)?;
        let memory = files
            .memory
            .as_deref()
            .map(read_memory)
            .transpose()?
            .unwrap_or_default();
        Ok(Self::join(
            files
                .invocations
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            invocations,
            durations,
            memory,
        ))
    }

    /// Joins rows read separately: durations on all three hashes (or `HashFunction` alone
    /// when that is unique), memory on `HashFunction` or `HashApp`. First rows win.
    pub fn join(
        source: String,
        invocations: Vec<InvocationCounts>,
        durations: Vec<DurationStats>,
        memory: Vec<MemoryStats>,
    ) -> Self {
        let mut by_key: HashMap<&FunctionKey, &DurationStats> = HashMap::new();
        let mut by_hash: HashMap<&str, Option<&DurationStats>> = HashMap::new();
        for d in &durations {
            by_key.entry(&d.key).or_insert(d);
            by_hash
                .entry(d.key.function.as_str())
                .and_modify(|v| {
                    if v.is_some_and(|o| o.key != d.key) {
                        *v = None;
                    }
                })
                .or_insert(Some(d));
        }
        let mut mem: HashMap<&MemoryKey, &MemoryStats> = HashMap::new();
        for m in &memory {
            mem.entry(&m.key).or_insert(m);
        }
        let minutes = invocations
            .iter()
            .map(|i| i.per_minute.len())
            .max()
            .unwrap_or(0);
        let mut functions = Vec::new();
        let mut without_durations = 0;
        let mut without_memory = 0;
        for inv in invocations {
            let d = by_key
                .get(&inv.key)
                .copied()
                .or_else(|| by_hash.get(inv.key.function.as_str()).copied().flatten());
            let Some(d) = d else {
                without_durations += 1;
                continue;
            };
            let m = mem
                .get(&MemoryKey::Function(inv.key.function.clone()))
                .or_else(|| mem.get(&MemoryKey::App(inv.key.app.clone())));
            if m.is_none() {
                without_memory += 1;
            }
            let mut per_minute = inv.per_minute;
            per_minute.resize(minutes, 0);
            functions.push(TraceFunction {
                key: inv.key,
                trigger: inv.trigger,
                per_minute,
                average_ms: d.average_ms,
                duration_ms: d.percentiles.clone(),
                memory_mb: m.map(|m| m.percentiles.clone()),
            });
        }
        Azure2019Trace {
            source,
            functions,
            minutes,
            without_durations,
            without_memory,
        }
    }

    /// Turns the trace into a workload (see [`super`] for the method).
    pub fn to_workload(&self, options: &TraceOptions) -> Result<Workload, TraceError> {
        let mut invocations = Vec::new();
        let (functions, duration_ms, description) =
            self.generate(options, |index, profile, at_ms, ms, mb| {
                invocations.push(Invocation {
                    at_ms,
                    function: index,
                    event: profile.event.build(profile, ms, mb),
                    expected_duration_ms: ms,
                    expected_memory_mb: mb,
                });
            })?;
        let mut w = Workload::new(
            format!("azure2019 {}", self.source),
            functions,
            invocations,
            duration_ms,
        )?;
        w.description = description;
        w.attribution = Some(ATTRIBUTION_2019.to_string());
        Ok(w)
    }

    /// The same workload as [`Azure2019Trace::to_workload`] (the same draws, the same order),
    /// its calls kept compactly without their event bytes: what the simulator plays.
    pub fn to_compact(&self, options: &TraceOptions) -> Result<CompactWorkload, TraceError> {
        // Room for every call of the trace at once (a big day's vector never doubles).
        let calls: u64 = self.functions.iter().flat_map(|f| &f.per_minute).sum();
        let room = (calls as f64 * options.invocation_scale.clamp(0.0, 4.0) * 1.01) as usize;
        let mut invocations = Vec::with_capacity(room);
        let (functions, duration_ms, description) =
            self.generate(options, |index, _, at_ms, ms, mb| {
                invocations.push(CompactInvocation::new(at_ms, index, ms, mb));
            })?;
        let mut w = CompactWorkload::new(
            format!("azure2019 {}", self.source),
            functions,
            invocations,
            duration_ms,
        )?;
        w.description = description;
        w.attribution = Some(ATTRIBUTION_2019.to_string());
        Ok(w)
    }

    /// Draws every call of the window, in function order, handing each to `emit` (function
    /// index, its profile, send time, duration ms, memory MiB); returns the functions, the
    /// window's length and the description.
    fn generate(
        &self,
        options: &TraceOptions,
        mut emit: impl FnMut(usize, &FunctionProfile, u64, u64, u64),
    ) -> Result<(Vec<FunctionProfile>, u64, String), TraceError> {
        options.validate()?;
        let start = options.start_minute as usize;
        if start >= self.minutes {
            return Err(TraceError::InvalidOption {
                name: "start_minute",
                reason: format!(
                    "minute {start} is beyond the trace's {} minutes",
                    self.minutes
                ),
            });
        }
        let end = options
            .minutes
            .map_or(self.minutes, |m| (start + m as usize).min(self.minutes));
        let candidates: Vec<Candidate<'_>> = self
            .functions
            .iter()
            .map(|f| Candidate {
                keys: vec![f.key.function.as_str()],
                calls_in_window: f.per_minute[start..end].iter().sum(),
            })
            .collect();
        let names = replay_names(
            &self
                .functions
                .iter()
                .map(|f| f.key.function.clone())
                .collect::<Vec<_>>(),
        );
        let chosen = select(&candidates, &names, options)?;
        if chosen.iter().all(|&i| candidates[i].calls_in_window == 0) {
            return Err(TraceError::NothingSelected {
                start: start as u64,
                end: end as u64,
            });
        }
        let minute_ms = options.minute_ms as f64;
        let mut functions = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            let f = &self.functions[i];
            let limit = options.limit_mb(f.memory_mb.as_ref().map(Percentiles::max));
            let profile = FunctionProfile {
                name: names[i].clone(),
                handler: options.handler(f.memory_mb.is_some()),
                memory_bytes: limit * MIB,
                timeout_ms: options.timeout_ms,
                duration_ms: ValueModel::Percentiles(f.duration_ms.scaled(options.duration_scale)),
                memory_mb: match &f.memory_mb {
                    Some(p) => ValueModel::Percentiles(p.scaled(options.memory_scale)),
                    None => ValueModel::Fixed(0.0),
                },
                event: EventBuilder::Handler,
                origin: Some(format!(
                    "azure2019 HashFunction {} HashApp {} HashOwner {}{}",
                    f.key.function,
                    f.key.app,
                    f.key.owner,
                    f.trigger
                        .as_deref()
                        .map_or(String::new(), |t| format!(" Trigger {t}"))
                )),
            };
            let index = functions.len();
            let mut rng = function_rng(
                options.seed,
                &format!("{}/{}/{}", f.key.owner, f.key.app, f.key.function),
            );
            for m in start..end {
                let mut n = f.per_minute[m];
                if options.invocation_scale != 1.0 {
                    n = stochastic_round(n as f64 * options.invocation_scale, &mut rng);
                }
                let base = (m - start) as f64 * minute_ms;
                for t in minute_arrivals(n, base, minute_ms, options.iat, &mut rng) {
                    let ms = options.duration(f.duration_ms.sample(&mut rng)).round() as u64;
                    let mb = match &f.memory_mb {
                        Some(p) => options.touched_mb(p.sample(&mut rng), limit).round() as u64,
                        None => 0,
                    };
                    emit(index, &profile, t as u64, ms, mb);
                }
            }
            functions.push(profile);
        }
        let description = format!(
            "Azure Functions 2019 trace {}: {} of {} functions ({:?}); {}",
            self.source,
            chosen.len(),
            self.functions.len(),
            options.selection,
            options.describe()
        );
        Ok((
            functions,
            ((end - start) as f64 * minute_ms) as u64,
            description,
        ))
    }
}
