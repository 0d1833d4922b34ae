//! Axis ranges and ticks a reader takes in at a glance.
//!
//! Both kinds of axis put their ticks on the "nice" numbers 1, 2 and 5 × 10^k, and label them
//! without a needless ".0" (`label`: `0.5`, `2`, `100`, `20k`):
//!
//! - [`Axis::linear`] starts at a tick at or below the data's low end (0 for counts), and ends
//!   at the first tick at or above the data's high end; the step is the smallest nice number
//!   that keeps the ticks at most `max_ticks`. [`Axis::linear_exact`] (time) spans exactly the
//!   data, with the same ticks inside it.
//! - [`Axis::log`] takes its range from the data: from the largest nice number at or below the
//!   smallest positive value to the smallest one at or above the largest value, so a range is
//!   never ten times wider than the data. Its ticks are the 1s, 2s and 5s of each decade when
//!   they fit `max_ticks` (a narrow range still carries several labels), else the decades alone;
//!   across many decades, every second (third, ...) decade. The range's ends carry a label too
//!   when there is room and they are a factor 3 or more from the nearest tick.

/// One axis: its range and the values that carry a tick and a label.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    pub log: bool,
}

/// The mantissas of the nice numbers in one decade.
const NICE: [f64; 3] = [1.0, 2.0, 5.0];

/// `m × 10^e` computed so that small decimals come out exact enough to print (`0.1`, not
/// `0.10000000000000002`).
fn nice_value(m: f64, e: i32) -> f64 {
    if e >= 0 {
        m * 10f64.powi(e)
    } else {
        m / 10f64.powi(-e)
    }
}

/// The largest nice number at or below `v` (> 0).
fn nice_floor(v: f64) -> f64 {
    let e = v.log10().floor() as i32;
    for e in [e + 1, e, e - 1] {
        for m in NICE.iter().rev() {
            let n = nice_value(*m, e);
            if n <= v * (1.0 + 1e-9) {
                return n;
            }
        }
    }
    nice_value(1.0, e - 1)
}

/// The smallest nice number at or above `v` (> 0).
fn nice_ceil(v: f64) -> f64 {
    let e = v.log10().floor() as i32;
    for e in [e - 1, e, e + 1] {
        for m in NICE {
            let n = nice_value(m, e);
            if n >= v * (1.0 - 1e-9) {
                return n;
            }
        }
    }
    nice_value(1.0, e + 2)
}

impl Axis {
    /// A linear axis over `[lo, hi]` with at most `max_ticks` ticks (at least 2).
    pub fn linear(lo: f64, hi: f64, max_ticks: usize) -> Axis {
        let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
            (true, true) if hi > lo => (lo, hi),
            (true, _) => (lo, lo + 1.0),
            _ => (0.0, 1.0),
        };
        let max_ticks = max_ticks.max(2);
        let mut step = nice_ceil((hi - lo) / (max_ticks - 1) as f64);
        let ticks = loop {
            let first = (lo / step).floor();
            let last = (hi / step - 1e-9).ceil();
            if ((last - first) as usize) < max_ticks {
                break (first as i64..=last as i64)
                    .map(|k| clean(k as f64 * step, step))
                    .collect::<Vec<_>>();
            }
            step = nice_ceil(step * 1.01);
        };
        Axis {
            lo: ticks[0],
            hi: ticks[ticks.len() - 1],
            ticks,
            log: false,
        }
    }

    /// A linear axis over exactly `[lo, hi]` (a time axis ends where the data ends), with the
    /// nice ticks of [`Axis::linear`] that fall inside it.
    pub fn linear_exact(lo: f64, hi: f64, max_ticks: usize) -> Axis {
        let mut a = Axis::linear(lo, hi, max_ticks);
        if lo.is_finite() && hi.is_finite() && hi > lo {
            a.ticks
                .retain(|t| *t >= lo - 1e-9 * (hi - lo) && *t <= hi + 1e-9 * (hi - lo));
            (a.lo, a.hi) = (lo, hi);
        }
        a
    }

    /// A log axis over the positive values between `min` and `max`, with at most `max_ticks`
    /// labelled ticks (at least 2).
    pub fn log(min: f64, max: f64, max_ticks: usize) -> Axis {
        let min = if min.is_finite() && min > 0.0 {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min * 2.0
        };
        let (lo, hi) = (nice_floor(min), nice_ceil(max));
        let max_ticks = max_ticks.max(2);
        let (e0, e1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
        let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
        let with = |mantissas: &[f64]| -> Vec<f64> {
            (e0..=e1)
                .flat_map(|e| mantissas.iter().map(move |m| nice_value(*m, e)))
                .filter(within)
                .collect()
        };
        let mut ticks = Vec::new();
        for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0]] {
            let t = with(mantissas);
            if t.len() <= max_ticks {
                ticks = t;
                break;
            }
        }
        if ticks.is_empty() {
            // Many decades: every n-th decade.
            let decades = with(&[1.0]);
            let every = decades.len().div_ceil(max_ticks);
            ticks = decades.into_iter().step_by(every).collect();
        }
        // The range's ends carry a label too when the ticks leave one bare and the label
        // would not crowd its neighbour (at least a factor 3 away).
        if ticks.first().is_none_or(|t| *t >= lo * 3.0) && ticks.len() < max_ticks {
            ticks.insert(0, lo);
        }
        if ticks.last().is_none_or(|t| *t * 3.0 <= hi) && ticks.len() < max_ticks {
            ticks.push(hi);
        }
        Axis {
            lo,
            hi,
            ticks,
            log: true,
        }
    }

    /// Where `v` falls along the axis, 0 (lo) to 1 (hi); values outside are clamped.
    pub fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.lo);
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// `v` rounded to the decimals `step` needs (so `0.30000000000000004` is `0.3`).
fn clean(v: f64, step: f64) -> f64 {
    let d = decimals(step);
    let p = 10f64.powi(d as i32);
    (v * p).round() / p
}

/// The decimals a nice number needs: 0 for 1 and up, 1 for 0.5, 2 for 0.05, ...
fn decimals(v: f64) -> usize {
    if v <= 0.0 || !v.is_finite() || v >= 1.0 {
        return 0;
    }
    let mut d = 0;
    let mut x = v;
    while (x - x.round()).abs() > 1e-9 * x.max(1.0) && d < 12 {
        x *= 10.0;
        d += 1;
    }
    d
}

/// A tick's label: no needless ".0", thousands as `k` and millions as `M` from 10 000 on
/// (`0.05`, `2`, `1000`, `20k`, `1.5M`).
pub fn label(v: f64) -> String {
    let a = v.abs();
    let (v, suffix) = if a >= 1e6 - 0.5 {
        (v / 1e6, "M")
    } else if a >= 1e4 - 0.5 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{:.*}", decimals(v.abs().fract()).min(6), v);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    let s = if s == "-0" { "0".to_string() } else { s };
    format!("{s}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(a: &Axis) -> Vec<String> {
        a.ticks.iter().map(|t| label(*t)).collect()
    }

    #[test]
    fn labels_have_no_needless_point_zero() {
        assert_eq!(label(1.0), "1");
        assert_eq!(label(0.0), "0");
        assert_eq!(label(-0.0), "0");
        assert_eq!(label(0.5), "0.5");
        assert_eq!(label(0.05), "0.05");
        assert_eq!(label(0.1 + 0.2), "0.3");
        assert_eq!(label(2.5), "2.5");
        assert_eq!(label(100.0), "100");
        assert_eq!(label(1000.0), "1000");
        assert_eq!(label(5000.0), "5000");
        assert_eq!(label(20_000.0), "20k");
        assert_eq!(label(100_000.0), "100k");
        assert_eq!(label(1_500_000.0), "1.5M");
        assert_eq!(label(-20.0), "-20");
    }

    #[test]
    fn linear_ticks_are_nice_and_cover_the_data() {
        let a = Axis::linear(0.0, 20.0, 6);
        assert_eq!(labels(&a), ["0", "5", "10", "15", "20"]);
        let a = Axis::linear(0.0, 21.0, 6);
        assert_eq!(labels(&a), ["0", "5", "10", "15", "20", "25"]);
        assert_eq!((a.lo, a.hi), (0.0, 25.0));
        let a = Axis::linear(0.0, 7200.0, 8);
        assert_eq!(labels(&a), ["0", "2000", "4000", "6000", "8000"]);
        let a = Axis::linear(0.0, 0.9, 6);
        assert_eq!(labels(&a), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let a = Axis::linear(-3.0, 12.0, 6);
        assert!(a.lo <= -3.0 && a.hi >= 12.0, "{a:?}");
        assert!(a.ticks.len() <= 6);
        // Degenerate input still gives an axis.
        let a = Axis::linear(0.0, 0.0, 6);
        assert_eq!(labels(&a), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let a = Axis::linear(f64::NAN, f64::INFINITY, 6);
        assert!(a.hi > a.lo);
    }

    #[test]
    fn log_range_comes_from_the_data() {
        // 7.7 ms to 50 048 ms: 5 to 100k, not 1 to 1M.
        let a = Axis::log(7.7, 50_048.0, 8);
        assert_eq!((a.lo, a.hi), (5.0, 100_000.0));
        assert_eq!(labels(&a), ["10", "100", "1000", "10k", "100k"]);
        // An end far from the nearest decade gets its own label; a near one does not.
        let a = Axis::log(2.2, 1900.0, 8);
        assert_eq!((a.lo, a.hi), (2.0, 2000.0));
        assert_eq!(labels(&a), ["2", "10", "100", "1000"]);
        let a = Axis::log(0.25, 400.0, 8);
        assert_eq!(labels(&a), ["0.2", "1", "10", "100", "500"]);
        // Within one decade: 2s and 5s carry labels.
        let a = Axis::log(12.0, 19.0, 8);
        assert_eq!((a.lo, a.hi), (10.0, 20.0));
        assert_eq!(labels(&a), ["10", "20"]);
        let a = Axis::log(2.2, 86.0, 8);
        assert_eq!((a.lo, a.hi), (2.0, 100.0));
        assert_eq!(labels(&a), ["2", "5", "10", "20", "50", "100"]);
        // Never ten times wider than the data at either end.
        for (min, max) in [(0.3, 4.0), (1.0, 1e6), (0.004, 0.02), (55.0, 61.0)] {
            let a = Axis::log(min, max, 8);
            assert!(a.lo <= min && a.lo * 10.0 > min, "{min}..{max}: {a:?}");
            assert!(a.hi >= max && a.hi < max * 10.0, "{min}..{max}: {a:?}");
            assert!(a.ticks.len() >= 2 && a.ticks.len() <= 8, "{a:?}");
            for t in &a.ticks {
                let m = t / 10f64.powf(t.log10().floor());
                assert!(NICE.iter().any(|n| (m - n).abs() < 1e-6), "{t} is not nice");
            }
        }
        // Many decades: a label every few decades, never more than asked.
        let a = Axis::log(0.001, 1e9, 5);
        assert!(a.ticks.len() <= 5, "{a:?}");
        assert_eq!(label(a.ticks[0]), "0.001");
    }

    #[test]
    fn a_time_axis_ends_with_its_data() {
        let a = Axis::linear_exact(0.0, 7200.0, 7);
        assert_eq!((a.lo, a.hi), (0.0, 7200.0));
        assert_eq!(labels(&a), ["0", "2000", "4000", "6000"]);
        let a = Axis::linear_exact(-36.0, 120.0, 7);
        assert_eq!(labels(&a), ["0", "50", "100"]);
        assert_eq!(a.lo, -36.0);
    }

    #[test]
    fn fraction_maps_the_range() {
        let a = Axis::log(1.0, 100.0, 8);
        assert!((a.fraction(10.0) - 0.5).abs() < 1e-12);
        assert_eq!(a.fraction(0.0), 0.0);
        assert_eq!(a.fraction(1e9), 1.0);
        let a = Axis::linear(0.0, 10.0, 6);
        assert!((a.fraction(5.0) - 0.5).abs() < 1e-12);
    }
}
