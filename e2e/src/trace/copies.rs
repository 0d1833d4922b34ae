//! A bigger day from a small trace: N copies of a 2019 trace's functions, each copy's
//! minute series rotated by a different offset (the big-day generator of `faas simulate
//! --copies N` and `faas replay --copies N`).
//!
//! Copy 0 is the trace itself. Copy k (1 ≤ k < N) holds every function again, its hashes
//! suffixed with `-c{k}` (so it is a distinct function with its own random draws and a
//! replay name ending in `-c{k}`), and its calls per minute rotated left by
//! `k × minutes / N` minutes: minute m of copy k calls as minute `(m + offset) mod minutes`
//! of the original. A copy keeps the day's total and its per-function marginals (durations,
//! memory) but moves the function's busy hours, so the copies' peaks do not stack and the
//! day has N times the calls with a smoother total load, as N times as many tenants would.
//!
//! The 200-function sample (`azure2019-sampled-200fn`, 1,619,721 calls) with 6 copies is a
//! day of about 9.7 million calls: the simulator's big day (see `faas_e2e::sim`).

use super::azure2019::{Azure2019Trace, FunctionKey};

impl Azure2019Trace {
    /// The trace with `copies` copies of its functions (see the module documentation); 1
    /// (or 0) gives the trace unchanged.
    pub fn copies(&self, copies: usize) -> Azure2019Trace {
        let n = copies.max(1);
        let mut functions = Vec::with_capacity(self.functions.len() * n);
        for k in 0..n {
            let offset = if self.minutes == 0 {
                0
            } else {
                k * self.minutes / n
            };
            for f in &self.functions {
                let mut f = f.clone();
                if k > 0 {
                    let suffix = |h: &str| {
                        if h.is_empty() {
                            String::new()
                        } else {
                            format!("{h}-c{k}")
                        }
                    };
                    f.key = FunctionKey {
                        owner: suffix(&f.key.owner),
                        app: suffix(&f.key.app),
                        function: format!("{}-c{k}", f.key.function),
                    };
                    let by = offset.min(f.per_minute.len());
                    f.per_minute.rotate_left(by);
                }
                functions.push(f);
            }
        }
        Azure2019Trace {
            source: if n > 1 {
                format!("{} x{n} (rotated copies)", self.source)
            } else {
                self.source.clone()
            },
            functions,
            minutes: self.minutes,
            without_durations: self.without_durations * n,
            without_memory: self.without_memory * n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::azure2019::{DurationStats, InvocationCounts};
    use super::super::{TraceOptions, replay_names};
    use super::*;
    use crate::workload::Percentiles;

    fn trace() -> Azure2019Trace {
        let key = |f: &str| FunctionKey {
            owner: "o".into(),
            app: "a".into(),
            function: f.into(),
        };
        let counts = |f: &str, per_minute: Vec<u64>| InvocationCounts {
            key: key(f),
            trigger: None,
            per_minute,
        };
        let durations = |f: &str| DurationStats {
            key: key(f),
            average_ms: 10.0,
            count: None,
            minimum_ms: None,
            maximum_ms: None,
            percentiles: Percentiles::new([(0.0, 5.0), (1.0, 15.0)]).unwrap(),
        };
        Azure2019Trace::join(
            "4_inv.csv".into(),
            vec![
                counts("f1aaaaaaaaaaaaaa", vec![1, 2, 3, 4]),
                counts("f2bbbbbbbbbbbbbb", vec![0, 0, 0, 7]),
            ],
            vec![durations("f1aaaaaaaaaaaaaa"), durations("f2bbbbbbbbbbbbbb")],
            vec![],
        )
    }

    #[test]
    fn copies_rotate_each_copy_by_its_own_offset_and_rename_it() {
        let t = trace();
        let c = t.copies(4);
        assert_eq!(c.functions.len(), 8);
        assert_eq!(c.minutes, 4);
        let series: Vec<(&str, &[u64])> = c
            .functions
            .iter()
            .map(|f| (f.key.function.as_str(), f.per_minute.as_slice()))
            .collect();
        assert_eq!(series[0], ("f1aaaaaaaaaaaaaa", &[1, 2, 3, 4][..]));
        assert_eq!(series[2], ("f1aaaaaaaaaaaaaa-c1", &[2, 3, 4, 1][..]));
        assert_eq!(series[3], ("f2bbbbbbbbbbbbbb-c1", &[0, 0, 7, 0][..]));
        assert_eq!(series[6], ("f1aaaaaaaaaaaaaa-c3", &[4, 1, 2, 3][..]));
        assert_eq!(c.functions[2].key.app, "a-c1");
        // Every copy keeps the day's calls.
        let total = |t: &Azure2019Trace| -> u64 {
            t.functions.iter().flat_map(|f| f.per_minute.iter()).sum()
        };
        assert_eq!(total(&c), 4 * total(&t));
        assert_eq!(t.copies(1), t);
        // The copies replay as distinct, short-named functions.
        let keys: Vec<String> = c.functions.iter().map(|f| f.key.function.clone()).collect();
        let names = replay_names(&keys);
        assert_eq!(names[0], "t-f1aaaaaaaa");
        assert_eq!(names[2], "t-f1aaaaaaaa-c1");
        let w = c.to_workload(&TraceOptions::default()).unwrap();
        assert_eq!(w.functions.len(), 8);
        assert_eq!(w.invocations.len() as u64, total(&c));
    }
}
