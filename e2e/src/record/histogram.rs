//! A fixed log-linear histogram of latencies (HDR-style): the streaming stand-in for a
//! sorted list of every value.
//!
//! A value `v` (ms, ≥ 0) falls in a bucket found from its `f64` bits: the exponent picks an
//! octave `[2^e, 2^(e+1))` and the top [`SUB_BITS`] bits of the mantissa one of 128 equal
//! slices of it. A bucket is therefore at most 1/128 of its lower bound wide, and reporting
//! its midpoint is off by at most **1/256 ≈ 0.4% of the true value** (the documented
//! relative error; the 1% the reports allow is well above it). Values below [`MIN_MS`]
//! (1/1024 ms, about 1 µs) share bucket 0 (an absolute error under 1 µs); values above
//! [`MAX_MS`] share the last one. The minimum, the maximum, the count and the sum are kept
//! exactly, so `max`, `mean` and the extreme ranks are exact.
//!
//! Counts live in a dense vector that grows to the highest bucket used: a latency of a
//! minute needs about 3,300 buckets (26 KB), whatever the number of values. Two histograms
//! add up with [`Histogram::merge`]. Serialised sparsely: `[bucket, count]` pairs.

use serde::{Deserialize, Serialize};

use super::LatencySummary;

/// Mantissa bits that split an octave: 2^7 = 128 buckets per octave.
pub const SUB_BITS: u32 = 7;
/// The smallest value told apart from 0, ms (2^-10).
pub const MIN_MS: f64 = 1.0 / 1024.0;
/// The largest value told apart, ms (2^40, about 35 years).
pub const MAX_MS: f64 = 1_099_511_627_776.0;

const SHIFT: u32 = 52 - SUB_BITS;

fn key_of_min() -> u64 {
    MIN_MS.to_bits() >> SHIFT
}

/// The bucket of a value.
fn bucket(v: f64) -> usize {
    if v.is_nan() || v < MIN_MS {
        return 0;
    }
    let v = v.min(MAX_MS);
    ((v.to_bits() >> SHIFT) - key_of_min()) as usize + 1
}

/// The bounds `[lo, hi)` of bucket `b` (b ≥ 1).
fn bounds(b: usize) -> (f64, f64) {
    let k = key_of_min() + b as u64 - 1;
    (f64::from_bits(k << SHIFT), f64::from_bits((k + 1) << SHIFT))
}

/// A log-linear histogram of non-negative values (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Sparse", into = "Sparse")]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Histogram {
    /// Counts one value; a value that is not finite is ignored (as [`LatencySummary::of`]
    /// ignores it).
    pub fn record(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let b = bucket(v);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.count == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The values of `self` that are not in `part`, a histogram of some of the same values
    /// (all calls less the cold ones: the warm ones). Counts and sums are exact; the minimum
    /// and maximum become the bounds of the first and last buckets left (within the
    /// histogram's error).
    pub fn without(&self, part: &Histogram) -> Histogram {
        let mut counts = self.counts.clone();
        for (a, b) in counts.iter_mut().zip(&part.counts) {
            *a = a.saturating_sub(*b);
        }
        let count: u64 = counts.iter().sum();
        let used = |b: usize| if b == 0 { (0.0, MIN_MS) } else { bounds(b) };
        let (min, max) = match (
            counts.iter().position(|c| *c > 0),
            counts.iter().rposition(|c| *c > 0),
        ) {
            (Some(first), Some(last)) => (used(first).0.max(self.min), used(last).1.min(self.max)),
            _ => (0.0, 0.0),
        };
        Histogram {
            counts,
            count,
            sum: if count == 0 {
                0.0
            } else {
                (self.sum - part.sum).max(0.0)
            },
            min,
            max,
        }
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank percentile `q` (0..=1), as `faas_common::stats::percentile` on the
    /// sorted values, within the histogram's error: the midpoint of the bucket holding that
    /// rank, kept within the exact minimum and maximum (the first and last ranks are exact).
    /// 0 without values.
    pub fn percentile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == 1 {
            return self.min;
        }
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let mid = if b == 0 {
                    0.0
                } else {
                    let (lo, hi) = bounds(b);
                    (lo + hi) / 2.0
                };
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// p50, p99, p99.9, max and mean, as [`LatencySummary::of`] gives them on the values.
    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: self.percentile(0.50),
            p99: self.percentile(0.99),
            p999: self.percentile(0.999),
            max: self.max,
            mean: self.sum / self.count as f64,
        }
    }

    /// `n` values spread like the counted ones (the percentiles `(k + ½) / n`): enough to
    /// draw their distribution.
    pub fn quantiles(&self, n: usize) -> Vec<f64> {
        if self.count == 0 {
            return Vec::new();
        }
        (0..n)
            .map(|k| self.percentile((k as f64 + 0.5) / n as f64))
            .collect()
    }
}

/// The serialised form: only the buckets used.
#[derive(Serialize, Deserialize)]
struct Sparse {
    sub_bits: u32,
    buckets: Vec<(usize, u64)>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl From<Histogram> for Sparse {
    fn from(h: Histogram) -> Sparse {
        Sparse {
            sub_bits: SUB_BITS,
            buckets: h
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(b, c)| (b, *c))
                .collect(),
            count: h.count,
            sum: h.sum,
            min: h.min,
            max: h.max,
        }
    }
}

impl From<Sparse> for Histogram {
    fn from(s: Sparse) -> Histogram {
        let len = s.buckets.iter().map(|(b, _)| b + 1).max().unwrap_or(0);
        let mut counts = vec![0; len];
        for (b, c) in s.buckets {
            counts[b] += c;
        }
        Histogram {
            counts,
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn percentiles_match_the_exact_sort_within_the_documented_error() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..20 {
            let n = rng.random_range(1..5000);
            // Log-uniform over 10 µs .. 100 s, with some exact zeros and repeats.
            let values: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..10) {
                    0 => 0.0,
                    1 => 0.2,
                    _ => 10f64.powf(rng.random_range(-2.0..5.0)),
                })
                .collect();
            let mut h = Histogram::default();
            values.iter().for_each(|&v| h.record(v));
            let exact = LatencySummary::of(values.iter().copied());
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
                let want = faas_common::stats::percentile_or_zero(&sorted, q);
                let got = h.percentile(q);
                let tolerance = want * (1.0 / 256.0) + MIN_MS;
                assert!(
                    (got - want).abs() <= tolerance,
                    "round {round}, q {q}: {got} vs exact {want}"
                );
            }
            let s = h.summary();
            assert_eq!(s.max, exact.max);
            assert!((s.mean - exact.mean).abs() <= 1e-9 * exact.mean.max(1.0));
        }
    }

    #[test]
    fn the_error_bound_is_tight_enough_to_fail() {
        // One value per bucket boundary region: the midpoint is within 1/256, never exact.
        let mut h = Histogram::default();
        for v in [100.0, 101.0, 102.0] {
            h.record(v);
        }
        let p50 = h.percentile(0.5);
        assert_ne!(p50, 101.0);
        assert!((p50 - 101.0).abs() <= 101.0 / 256.0);
        assert_eq!(h.percentile(0.0), 100.0);
        assert_eq!(h.percentile(1.0), 102.0);
        assert_eq!(Histogram::default().percentile(0.5), 0.0);
    }

    #[test]
    fn merges_and_serialises_sparsely() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..1000 {
            let v = f64::from(v) * 1.7;
            if v < 800.0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let text = serde_json::to_string(&a).unwrap();
        let back: Histogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
        assert!(text.len() < 40_000, "{}", text.len());
    }
}
