//! A per-function histogram of idle times (the gap from a function's last activity to its
//! next arrival), the input of the hybrid keep-alive policy of "Serverless in the Wild"
//! (Shahrad et al., ATC 2020).
//!
//! The paper bins idle times by the minute up to 4 hours. The contest's functions come back
//! after seconds, so the bins here are geometric instead: bin `k` covers
//! `[FIRST_MS × RATIO^k, FIRST_MS × RATIO^(k+1))`, 10% wide, from 1 s to about 25 hours in
//! 120 bins (480 bytes per function, allocated at the first sample). Percentiles are read at
//! bin edges: the lower edge for the pre-warm time (never late), the upper edge for the
//! keep-alive window (never short).

use crate::model::Millis;

/// The lower edge of the first bin, ms. Shorter gaps are not idle times but pauses within
/// one burst; the caller does not record them.
pub const FIRST_MS: f64 = 1000.0;
/// The ratio of two consecutive bin edges.
pub const RATIO: f64 = 1.1;
/// How many bins.
pub const BINS: usize = 120;

/// Idle times of one function.
#[derive(Clone, Debug, Default)]
pub struct IdleHistogram {
    counts: Option<Box<[u32; BINS]>>,
    total: u32,
    out_of_bounds: u32,
}

/// What a representative histogram says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The 5th percentile of idle times (lower bin edge), ms: when to pre-warm.
    pub prewarm_ms: Millis,
    /// The 99th percentile of idle times (upper bin edge), ms: how long to keep alive.
    pub keep_alive_ms: Millis,
}

fn lower_edge(bin: usize) -> Millis {
    (FIRST_MS * RATIO.powi(bin as i32)) as Millis
}

impl IdleHistogram {
    /// Records one idle time. Times under [`FIRST_MS`] go to the first bin.
    pub fn record(&mut self, idle_ms: Millis) {
        self.total = self.total.saturating_add(1);
        let bin = if (idle_ms as f64) < FIRST_MS {
            0
        } else {
            ((idle_ms as f64 / FIRST_MS).ln() / RATIO.ln()) as usize
        };
        if bin >= BINS {
            self.out_of_bounds = self.out_of_bounds.saturating_add(1);
            return;
        }
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BINS]));
        counts[bin] = counts[bin].saturating_add(1);
    }

    /// Idle times recorded.
    pub fn samples(&self) -> u32 {
        self.total
    }

    /// The pre-warm time and keep-alive window, if the histogram is representative: at least
    /// `min_samples` idle times, at most half of them beyond the last bin.
    pub fn window(&self, min_samples: u32) -> Option<Window> {
        if self.total < min_samples.max(1) || self.out_of_bounds * 2 > self.total {
            return None;
        }
        let counts = self.counts.as_ref()?;
        let in_bounds = self.total - self.out_of_bounds;
        // Percentiles over all samples; out-of-bounds ones sit above the last bin.
        let rank = |q: f64| ((self.total as f64 * q).ceil() as u32).max(1);
        let (p5, p99) = (rank(0.05), rank(0.99));
        let mut seen = 0u32;
        let mut prewarm = None;
        let mut keep = None;
        for (bin, &c) in counts.iter().enumerate() {
            seen += c;
            if prewarm.is_none() && seen >= p5 {
                prewarm = Some(lower_edge(bin));
            }
            if keep.is_none() && seen >= p99 {
                keep = Some(lower_edge(bin + 1));
                break;
            }
        }
        let keep_alive_ms = match keep {
            Some(k) => k,
            // The 99th percentile is out of bounds (seen == in_bounds < p99).
            None if seen == in_bounds => lower_edge(BINS),
            None => return None,
        };
        Some(Window {
            prewarm_ms: prewarm.unwrap_or(keep_alive_ms),
            keep_alive_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_gaps_give_tight_prewarm_and_keepalive() {
        let mut h = IdleHistogram::default();
        assert_eq!(h.window(3), None, "empty is not representative");
        for _ in 0..20 {
            h.record(50_000);
        }
        let w = h.window(3).unwrap();
        assert!(
            (45_000..=50_000).contains(&w.prewarm_ms),
            "prewarm {}",
            w.prewarm_ms
        );
        assert!(
            (50_000..=56_000).contains(&w.keep_alive_ms),
            "keep {}",
            w.keep_alive_ms
        );
    }

    #[test]
    fn spread_gaps_take_the_5th_and_99th_percentiles() {
        let mut h = IdleHistogram::default();
        for i in 1..=100u64 {
            h.record(i * 1000);
        }
        let w = h.window(3).unwrap();
        // p5 = 5 s, p99 = 99 s, read at 10%-wide bin edges.
        assert!((4_500..=5_000).contains(&w.prewarm_ms), "{w:?}");
        assert!((99_000..=110_000).contains(&w.keep_alive_ms), "{w:?}");
    }

    #[test]
    fn too_few_or_mostly_out_of_bounds_is_not_representative() {
        let mut h = IdleHistogram::default();
        h.record(10_000);
        h.record(10_000);
        assert_eq!(h.window(3), None);
        let mut far = IdleHistogram::default();
        for _ in 0..5 {
            far.record(200 * 3_600_000);
        }
        far.record(10_000);
        assert_eq!(far.window(3), None);
        assert_eq!(far.samples(), 6);
    }
}
