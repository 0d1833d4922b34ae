//! When a function is called ([`Arrivals`]: Poisson, periodic or bursts) and the random draws
//! the workload is built with (exponential gaps, stochastic rounding, sub-seeds).

use super::*;

/// When a function is called.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Sparse: a Poisson process (exponential gaps) of `rate_per_s` calls per second.
    Poisson { rate_per_s: f64 },
    /// Dense: a burst every `every_ms`, of `size` calls on average (a fractional size is
    /// rounded up or down at random so that the mean holds), spread evenly over `spread_ms`.
    /// The first burst comes at a random phase within the first gap.
    Bursts {
        every_ms: f64,
        size: f64,
        spread_ms: f64,
    },
    /// Periodic: one call every `every_ms`, starting at a random phase within the first gap.
    Periodic { every_ms: f64 },
}

impl Arrivals {
    pub(super) fn validate(&self) -> Result<(), WorkloadError> {
        let positive = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(WorkloadError::InvalidOption {
                    name,
                    reason: format!("must be a finite number above 0, got {v}"),
                })
            }
        };
        match *self {
            Arrivals::Poisson { rate_per_s } => positive("rate_per_s", rate_per_s),
            Arrivals::Periodic { every_ms } => positive("every_ms", every_ms),
            Arrivals::Bursts {
                every_ms,
                size,
                spread_ms,
            } => {
                positive("every_ms", every_ms)?;
                if !(size.is_finite() && size >= 0.0) {
                    return Err(WorkloadError::InvalidOption {
                        name: "size",
                        reason: format!("must be a finite number >= 0, got {size}"),
                    });
                }
                if !(spread_ms.is_finite() && spread_ms >= 0.0) {
                    return Err(WorkloadError::InvalidOption {
                        name: "spread_ms",
                        reason: format!("must be a finite number >= 0, got {spread_ms}"),
                    });
                }
                Ok(())
            }
        }
    }

    /// The arrival times (ms, fractional) in `[start_ms, end_ms)`, in order.
    pub fn times<R: Rng + ?Sized>(&self, start_ms: f64, end_ms: f64, rng: &mut R) -> Vec<f64> {
        let mut out = Vec::new();
        if end_ms <= start_ms {
            return out;
        }
        match *self {
            Arrivals::Poisson { rate_per_s } => {
                let mean_gap = 1000.0 / rate_per_s;
                let mut t = start_ms;
                loop {
                    t += exponential(rng) * mean_gap;
                    if t >= end_ms {
                        break;
                    }
                    out.push(t);
                }
            }
            Arrivals::Periodic { every_ms } => {
                let mut t = start_ms + rng.random::<f64>() * every_ms.min(end_ms - start_ms);
                while t < end_ms {
                    out.push(t);
                    t += every_ms;
                }
            }
            Arrivals::Bursts {
                every_ms,
                size,
                spread_ms,
            } => {
                let mut t = start_ms + rng.random::<f64>() * every_ms.min(end_ms - start_ms);
                while t < end_ms {
                    let n = stochastic_round(size, rng);
                    for k in 0..n {
                        let at = t + spread_ms * k as f64 / n as f64;
                        if at < end_ms {
                            out.push(at);
                        }
                    }
                    t += every_ms;
                }
            }
        }
        out
    }
}

/// One exponential variate of mean 1.
pub(crate) fn exponential<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

/// `x` rounded down or up at random so that the mean is `x`.
pub(crate) fn stochastic_round<R: Rng + ?Sized>(x: f64, rng: &mut R) -> u64 {
    let floor = x.floor();
    let frac = x - floor;
    floor as u64 + u64::from(frac > 0.0 && rng.random::<f64>() < frac)
}

/// A seed for stream `index` of a workload seeded with `seed` (SplitMix64 of both), so that
/// adding a stream never changes the others.
pub(crate) fn sub_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed
        ^ index
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
