//! Real-trace readers (Azure Functions 2019 and 2021) and their conversion into a
//! [`Workload`].
//!
//! - [`azure2019`]: the per-minute format: an invocation-count file, a duration-percentile file
//!   and a memory-percentile file, joined on the function's hashes.
//! - [`azure2021`]: the per-invocation format (`app,func,end_timestamp,duration`).
//! - [`Trace::open`] recognises either from a path.
//!
//! Columns are always found by their header name, never by position; a malformed file is
//! refused with a [`TraceError`] that names the file and the line.
//!
//! ## From counts to invocations (the vHive/InVitro method)
//!
//! - Arrivals: for each function and minute with n > 0 calls, n arrival times fill the minute.
//!   [`Iat::Exponential`] (the default) draws n + 1 exponential gaps and scales them to the
//!   minute, which places the n calls like a Poisson process known to have n calls in that
//!   minute; [`Iat::Uniform`] draws uniform gaps instead; [`Iat::Equidistant`] puts the calls
//!   at `(k + ½) × 60 s / n`.
//! - Duration: a quantile is drawn uniformly, then a value uniformly between the two
//!   neighbouring duration percentiles ([`crate::workload::Percentiles`]); then scaled by
//!   [`TraceOptions::duration_scale`] and clamped to
//!   `[min_duration_ms, max_duration_ms]`.
//! - Memory: the same over the memory percentiles, scaled by [`TraceOptions::memory_scale`].
//!   The container limit of a function is its largest scaled memory plus 25% headroom,
//!   rounded up to 64 MiB and clamped to `[min_memory_mb, max_memory_mb]`; a call never
//!   touches more than 80% of that limit. A function without memory data gets
//!   `min_memory_mb` and touches nothing extra.
//! - The body spins (`spin`, CPU) or holds its memory while sleeping (`memory`; `sleep` when
//!   there is no memory to hold) for the drawn time: [`Body`].
//!
//! Every draw comes from a `StdRng` seeded from [`TraceOptions::seed`] and the function's own
//! hashes, so a seed gives the same workload and a function's calls do not depend on which
//! other functions were selected.
//!
//! The sampled 2019 files lean heavy (median duration about 4.7 s, memory about 1.4 GB): a
//! replay on a small machine normally sets `duration_scale` 0.1 and `memory_scale` 0.25, picks
//! a few functions and a window of minutes, and says so ([`Workload::description`]).

pub mod azure2019;
pub mod azure2021;
mod copies;
pub(crate) mod csv;
pub mod invitro;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::workload::{HandlerKind, Workload, WorkloadError, exponential, sub_seed};

pub use azure2019::Azure2019Trace;
pub use azure2021::Azure2021Trace;

/// Credit for the 2019 files (CC-BY 4.0), to keep in any report that uses them.
pub const ATTRIBUTION_2019: &str = "Azure Public Dataset (CC-BY 4.0): Shahrad et al., \
\"Serverless in the Wild: Characterizing and Optimizing the Serverless Workload at a Large \
Cloud Provider\", USENIX ATC 2020.";
/// Credit for the 2021 file (CC-BY 4.0), to keep in any report that uses it.
pub const ATTRIBUTION_2021: &str = "Azure Public Dataset (CC-BY 4.0): Zhang et al., \
\"Faster and Cheaper Serverless Computing on Harvested Resources\", SOSP 2021.";

/// Why a trace could not be read or converted.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is empty (no header line)", file.display())]
    Empty { file: PathBuf },
    #[error("{}:{line}: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}:{line}: missing required column `{column}`", file.display())]
    MissingColumn {
        file: PathBuf,
        line: usize,
        column: String,
    },
    #[error("{}:{line}: column `{column}` appears twice in the header", file.display())]
    DuplicateColumn {
        file: PathBuf,
        line: usize,
        column: String,
    },
    #[error("{}:{line}: {found} fields, but the header has {expected}", file.display())]
    FieldCount {
        file: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{}:{line}: column `{column}`: {value:?} is not a {what}", file.display())]
    BadValue {
        file: PathBuf,
        line: usize,
        column: String,
        value: String,
        what: &'static str,
    },
    #[error("{}:{line}: no minute columns (named `1`, `2`, ... or `minute_1`, `minute_2`, ...)", file.display())]
    NoMinuteColumns { file: PathBuf, line: usize },
    #[error("{}: no {kind} file (looked for {looked_for})", dir.display())]
    NotFound {
        dir: PathBuf,
        kind: &'static str,
        looked_for: String,
    },
    #[error("{}: several {kind} files ({files}); keep one in the directory", dir.display())]
    Ambiguous {
        dir: PathBuf,
        kind: &'static str,
        files: String,
    },
    #[error("{}: not a trace this reader knows: {reason}", path.display())]
    UnknownFormat { path: PathBuf, reason: String },
    #[error("invalid trace option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    #[error("function {0:?} is not in the trace (give a full hash or the replay name t-...)")]
    UnknownFunction(String),
    #[error("no selected function is called in minutes {start}..{end} of the trace")]
    NothingSelected { start: u64, end: u64 },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// Which functions of a trace to replay.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every function called in the window.
    #[default]
    All,
    /// The N functions with the most calls in the window (ties: by hash).
    Top(usize),
    /// These functions: full hashes (`HashFunction`; `app/func` or `func` for 2021) or replay
    /// names (`t-...`). Kept even when not called in the window.
    Functions(Vec<String>),
    /// N functions called in the window, picked at random from the seed.
    Sample(usize),
}

/// How the calls of one minute are spread over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Iat {
    #[default]
    Exponential,
    Uniform,
    Equidistant,
}

/// What a replayed function's body does for its drawn time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Body {
    /// Spins the CPU (`spin`), after touching its memory.
    #[default]
    Spin,
    /// Holds its memory while sleeping (`memory`), or just sleeps (`sleep`) without memory data.
    Sleep,
}

/// How to turn a trace into a workload. [`Default`] replays everything unscaled.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceOptions {
    pub selection: Selection,
    /// The first minute replayed, counted from 0 (0 is the column `1` / `minute_1`).
    pub start_minute: u64,
    /// How many minutes to replay (`None`: to the end of the trace).
    pub minutes: Option<u64>,
    /// How long one trace minute lasts in the replay, ms (60,000 is real time; 6,000 plays
    /// the trace ten times faster).
    pub minute_ms: u64,
    pub iat: Iat,
    /// Scales the number of calls: 2019 counts are multiplied (and rounded at random so the
    /// mean holds; 2.0 doubles them); 2021 calls are kept each with this probability (0.1
    /// keeps one in ten on average; 1 or more keeps all).
    pub invocation_scale: f64,
    pub duration_scale: f64,
    pub min_duration_ms: f64,
    pub max_duration_ms: f64,
    pub memory_scale: f64,
    pub min_memory_mb: u64,
    pub max_memory_mb: u64,
    /// Every function's timeout.
    pub timeout_ms: u64,
    pub body: Body,
    pub seed: u64,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            selection: Selection::All,
            start_minute: 0,
            minutes: None,
            minute_ms: 60_000,
            iat: Iat::Exponential,
            invocation_scale: 1.0,
            duration_scale: 1.0,
            min_duration_ms: 1.0,
            max_duration_ms: 50_000.0,
            memory_scale: 1.0,
            min_memory_mb: 128,
            max_memory_mb: faas_common::units::CONTEST_NODE_MIB,
            timeout_ms: 60_000,
            body: Body::Spin,
            seed: 1,
        }
    }
}

impl TraceOptions {
    pub(crate) fn validate(&self) -> Result<(), TraceError> {
        let bad =
            |name: &'static str, reason: String| Err(TraceError::InvalidOption { name, reason });
        for (name, v) in [
            ("invocation_scale", self.invocation_scale),
            ("duration_scale", self.duration_scale),
            ("memory_scale", self.memory_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, format!("must be a finite number above 0, got {v}"));
            }
        }
        if self.minute_ms == 0 {
            return bad("minute_ms", "a minute must last more than 0 ms".into());
        }
        if self.minutes == Some(0) {
            return bad("minutes", "the window must hold at least one minute".into());
        }
        if !(self.min_duration_ms.is_finite()
            && self.min_duration_ms >= 0.0
            && self.min_duration_ms <= self.max_duration_ms)
        {
            return bad(
                "min_duration_ms",
                format!(
                    "need 0 <= min_duration_ms ({}) <= max_duration_ms ({})",
                    self.min_duration_ms, self.max_duration_ms
                ),
            );
        }
        if self.max_duration_ms > self.timeout_ms as f64 {
            return bad(
                "max_duration_ms",
                format!(
                    "{} ms is beyond the timeout of {} ms",
                    self.max_duration_ms, self.timeout_ms
                ),
            );
        }
        if self.min_memory_mb == 0 || self.min_memory_mb > self.max_memory_mb {
            return bad(
                "min_memory_mb",
                format!(
                    "need 0 < min_memory_mb ({}) <= max_memory_mb ({})",
                    self.min_memory_mb, self.max_memory_mb
                ),
            );
        }
        match &self.selection {
            Selection::Top(0) | Selection::Sample(0) => {
                bad("selection", "select at least one function".into())
            }
            Selection::Functions(v) if v.is_empty() => {
                bad("selection", "the list of functions is empty".into())
            }
            _ => Ok(()),
        }
    }

    /// A short text for [`Workload::description`].
    pub(crate) fn describe(&self) -> String {
        format!(
            "minutes {}..{}, minute = {} ms, {:?} arrivals, invocation_scale {}, \
             duration_scale {} (clamped {}..{} ms), memory_scale {} (limits {}..{} MiB), \
             {:?} bodies, seed {}",
            self.start_minute,
            self.minutes
                .map_or("end".to_string(), |m| (self.start_minute + m).to_string()),
            self.minute_ms,
            self.iat,
            self.invocation_scale,
            self.duration_scale,
            self.min_duration_ms,
            self.max_duration_ms,
            self.memory_scale,
            self.min_memory_mb,
            self.max_memory_mb,
            self.body,
            self.seed
        )
    }

    /// The handler of a replayed function.
    pub(crate) fn handler(&self, has_memory: bool) -> HandlerKind {
        match (self.body, has_memory) {
            (Body::Spin, _) => HandlerKind::Spin,
            (Body::Sleep, true) => HandlerKind::Memory,
            (Body::Sleep, false) => HandlerKind::Sleep,
        }
    }

    /// A drawn duration, scaled and clamped, ms.
    pub(crate) fn duration(&self, raw_ms: f64) -> f64 {
        (raw_ms * self.duration_scale).clamp(self.min_duration_ms, self.max_duration_ms)
    }

    /// The container limit for a function whose largest unscaled memory is `max_mb`, MiB.
    pub(crate) fn limit_mb(&self, max_mb: Option<f64>) -> u64 {
        let Some(max_mb) = max_mb else {
            return self.min_memory_mb;
        };
        let want = (max_mb * self.memory_scale / 0.8 / 64.0).ceil() as u64 * 64;
        want.clamp(self.min_memory_mb, self.max_memory_mb)
    }

    /// A drawn memory size, scaled and clamped under the limit, MiB.
    pub(crate) fn touched_mb(&self, raw_mb: f64, limit_mb: u64) -> f64 {
        (raw_mb * self.memory_scale).clamp(0.0, 0.8 * limit_mb as f64)
    }
}

/// A trace of either format.
#[derive(Clone, Debug)]
pub enum Trace {
    Azure2019(Azure2019Trace),
    Azure2021(Azure2021Trace),
}

impl Trace {
    /// Reads a trace from a directory (a 2019 set of files, or one 2021 CSV file) or from a
    /// 2021 CSV file.
    pub fn open(path: &Path) -> Result<Trace, TraceError> {
        if path.is_dir() {
            let invitro = invitro::find(path).transpose();
            match invitro.unwrap_or_else(|| azure2019::Azure2019Files::find(path)) {
                Ok(files) => return Ok(Trace::Azure2019(Azure2019Trace::from_files(&files)?)),
                Err(e2019 @ TraceError::NotFound { .. }) => {
                    return match azure2021::find(path) {
                        Ok(Some(file)) => Ok(Trace::Azure2021(Azure2021Trace::load(&file)?)),
                        Ok(None) => Err(e2019),
                        Err(e) => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        let file = csv::CsvFile::open(path)?;
        if azure2021::is_2021_header(&file.header) {
            return Ok(Trace::Azure2021(Azure2021Trace::load(path)?));
        }
        Err(TraceError::UnknownFormat {
            path: path.to_path_buf(),
            reason: "not a 2021 per-invocation file (app,func,end_timestamp,duration); for the \
                     2019 format give the directory holding the three files"
                .into(),
        })
    }

    /// Turns the trace into a workload (see the module documentation).
    pub fn to_workload(&self, options: &TraceOptions) -> Result<Workload, TraceError> {
        match self {
            Trace::Azure2019(t) => t.to_workload(options),
            Trace::Azure2021(t) => t.to_workload(options),
        }
    }

    /// The workload compactly, as the simulator plays it (a 2019 trace is drawn straight
    /// into compact calls; see [`Azure2019Trace::to_compact`]).
    pub fn to_compact(
        &self,
        options: &TraceOptions,
    ) -> Result<crate::workload::CompactWorkload, TraceError> {
        match self {
            Trace::Azure2019(t) => t.to_compact(options),
            Trace::Azure2021(t) => Ok((&t.to_workload(options)?).into()),
        }
    }

    /// The credit owed to the data's authors.
    pub fn attribution(&self) -> &'static str {
        match self {
            Trace::Azure2019(_) => ATTRIBUTION_2019,
            Trace::Azure2021(_) => ATTRIBUTION_2021,
        }
    }
}

/// The arrival times of `n` calls in the minute starting at `start_ms`, ms, in order.
pub fn minute_arrivals<R: Rng + ?Sized>(
    n: u64,
    start_ms: f64,
    minute_ms: f64,
    iat: Iat,
    rng: &mut R,
) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    match iat {
        Iat::Equidistant => (0..n)
            .map(|k| start_ms + (k as f64 + 0.5) * minute_ms / n as f64)
            .collect(),
        Iat::Exponential | Iat::Uniform => {
            let gaps: Vec<f64> = (0..=n)
                .map(|_| match iat {
                    Iat::Exponential => exponential(rng),
                    _ => rng.random::<f64>(),
                })
                .collect();
            let total: f64 = gaps.iter().sum();
            if total <= 0.0 {
                return minute_arrivals(n, start_ms, minute_ms, Iat::Equidistant, rng);
            }
            let mut acc = 0.0;
            gaps[..n as usize]
                .iter()
                .map(|g| {
                    acc += g;
                    start_ms + minute_ms * acc / total
                })
                .collect()
        }
    }
}

/// A random generator for one function, from the seed and the function's key.
pub(crate) fn function_rng(seed: u64, key: &str) -> StdRng {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(sub_seed(seed, h))
}

/// One function as the selection sees it.
pub(crate) struct Candidate<'a> {
    /// Full hashes the user may name it by.
    pub keys: Vec<&'a str>,
    pub calls_in_window: u64,
}

/// Applies the selection; returns indices into `candidates`, in their original order.
pub(crate) fn select(
    candidates: &[Candidate<'_>],
    names: &[String],
    options: &TraceOptions,
) -> Result<Vec<usize>, TraceError> {
    let called: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].calls_in_window > 0)
        .collect();
    let mut chosen = match &options.selection {
        Selection::All => called,
        Selection::Top(n) => {
            let mut v = called;
            v.sort_by(|&a, &b| {
                candidates[b]
                    .calls_in_window
                    .cmp(&candidates[a].calls_in_window)
                    .then_with(|| candidates[a].keys.cmp(&candidates[b].keys))
            });
            v.truncate(*n);
            v
        }
        Selection::Sample(n) => {
            let mut rng = StdRng::seed_from_u64(sub_seed(options.seed, u64::MAX));
            let amount = (*n).min(called.len());
            rand::seq::index::sample(&mut rng, called.len(), amount)
                .into_iter()
                .map(|i| called[i])
                .collect()
        }
        Selection::Functions(wanted) => {
            let mut by_key: HashMap<&str, usize> = HashMap::new();
            for (i, c) in candidates.iter().enumerate() {
                for k in &c.keys {
                    by_key.entry(k).or_insert(i);
                }
                by_key.entry(names[i].as_str()).or_insert(i);
            }
            let mut v = Vec::new();
            for w in wanted {
                let i = *by_key
                    .get(w.as_str())
                    .ok_or_else(|| TraceError::UnknownFunction(w.clone()))?;
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            v
        }
    };
    chosen.sort_unstable();
    Ok(chosen)
}

/// `c` and digits: the suffix of a copy's hashes.
fn copy_suffix(s: &str) -> bool {
    s.strip_prefix('c')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Short, unique replay names `t-<hash prefix>` for functions identified by `keys`.
pub(crate) fn replay_names(keys: &[String]) -> Vec<String> {
    let mut len = 10;
    loop {
        let names: Vec<String> = keys
            .iter()
            .map(|k| {
                // A copy's suffix (`-c3`, see `copies`) is kept whole.
                let (base, suffix) = match k.rsplit_once('-') {
                    Some((b, s)) if !b.is_empty() && copy_suffix(s) => (b, format!("-{s}")),
                    _ => (k.as_str(), String::new()),
                };
                let clean: String = base.chars().filter(char::is_ascii_alphanumeric).collect();
                format!("t-{}{suffix}", &clean[..clean.len().min(len)])
            })
            .collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        let longest = keys.iter().map(String::len).max().unwrap_or(0);
        if unique.len() == names.len() || len >= longest {
            if unique.len() == names.len() {
                return names;
            }
            // Identical keys: number them.
            return names
                .into_iter()
                .enumerate()
                .map(|(i, n)| format!("{n}-{i}"))
                .collect();
        }
        len += 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_arrivals_fill_the_minute() {
        let mut rng = StdRng::seed_from_u64(5);
        for iat in [Iat::Exponential, Iat::Uniform, Iat::Equidistant] {
            let t = minute_arrivals(100, 60_000.0, 60_000.0, iat, &mut rng);
            assert_eq!(t.len(), 100);
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
            assert!(
                t.iter().all(|&x| (60_000.0..120_000.0).contains(&x)),
                "{iat:?}"
            );
        }
        let e = minute_arrivals(4, 0.0, 60_000.0, Iat::Equidistant, &mut rng);
        assert_eq!(e, vec![7_500.0, 22_500.0, 37_500.0, 52_500.0]);
        assert!(minute_arrivals(0, 0.0, 1.0, Iat::Uniform, &mut rng).is_empty());
    }

    #[test]
    fn replay_names_are_unique() {
        let keys = vec![
            "abcdefghijkl1".to_string(),
            "abcdefghijkl2".to_string(),
            "zz".to_string(),
        ];
        let names = replay_names(&keys);
        assert_eq!(names, ["t-abcdefghijkl1", "t-abcdefghijkl2", "t-zz"]);
        let same = replay_names(&["x".to_string(), "x".to_string()]);
        assert_ne!(same[0], same[1]);
    }

    #[test]
    fn limits_and_clamps() {
        let o = TraceOptions {
            memory_scale: 0.25,
            ..TraceOptions::default()
        };
        // 1977 MB * 0.25 / 0.8 = 617.8 -> 640 MiB.
        assert_eq!(o.limit_mb(Some(1977.0)), 640);
        assert_eq!(o.limit_mb(Some(10.0)), 128);
        assert_eq!(o.limit_mb(None), 128);
        assert_eq!(o.limit_mb(Some(1e9)), faas_common::units::CONTEST_NODE_MIB);
        assert_eq!(o.touched_mb(4000.0, 640), 512.0);
        assert_eq!(o.duration(1e9), 50_000.0);
        assert_eq!(o.duration(0.0), 1.0);
        let bad = TraceOptions {
            max_duration_ms: 70_000.0,
            ..TraceOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TraceError::InvalidOption {
                name: "max_duration_ms",
                ..
            })
        ));
    }
}
