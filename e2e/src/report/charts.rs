//! The report's plots, built from the runs with [`super::svg`]: what happened over time,
//! cold against warm response times, and each function's response-time distribution. Policy
//! `i` (in the report's order) is drawn in colour `i` on every chart.

use super::html::escape;
use super::series::{ColdWarm, calls_over_time, idle_memory_over_time};
use super::svg::{Chart, Line, Scale};
use crate::record::{RunResult, TimeSeries};

/// How many functions get their own latency plot.
pub const MAX_FUNCTION_PLOTS: usize = 16;
/// Points on a distribution's line.
const CDF_POINTS: usize = 200;

/// CDF points `(ms, % of requests)` of `values`, at most [`CDF_POINTS`] + 1, with ms at least
/// `floor`.
pub(super) fn cdf(mut values: Vec<f64>, floor: f64) -> Vec<(f64, f64)> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let steps = CDF_POINTS.min(n - 1).max(1);
    (0..=steps)
        .map(|k| {
            let idx = k * (n - 1) / steps;
            (values[idx].max(floor), 100.0 * (idx + 1) as f64 / n as f64)
        })
        .collect()
}

/// The smallest positive value among the lines' (the log axis' floor).
fn positive_floor<'a>(values: impl Iterator<Item = &'a Vec<f64>>) -> f64 {
    let min = values
        .flatten()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() { min } else { 0.1 }
}

/// A figure around a chart.
fn figure(h: &mut String, svg: String) {
    h.push_str("<figure>");
    h.push_str(&svg);
    h.push_str("</figure>\n");
}

/// A figure of response-time distributions (log ms across, % of calls up).
fn cdf_figure(h: &mut String, title: &str, lines: Vec<Line>) {
    let chart = Chart {
        title,
        x_desc: "response time, ms (log)",
        y_desc: "% of calls at most this slow",
        x: Scale::Log,
        y: Scale::Linear,
        lines,
    };
    figure(h, chart.render());
}

/// A time series' points, seconds from the start.
fn points(s: &TimeSeries, scale: f64) -> Vec<(f64, f64)> {
    s.values
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            (
                (s.start_ms + k as i64 * s.bucket_ms) as f64 / 1000.0,
                v * scale,
            )
        })
        .collect()
}

/// A chart of one series per run.
fn over_time(
    h: &mut String,
    title: &str,
    y_desc: &str,
    runs: &[RunResult],
    series: impl Fn(&RunResult) -> Option<TimeSeries>,
    scale: f64,
) {
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            Some(Line {
                label: r.policy.clone(),
                colour: i,
                dashed: false,
                points: points(&series(r)?, scale),
            })
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    figure(
        h,
        Chart {
            title,
            x_desc: "time since the first call, s",
            y_desc,
            x: Scale::Linear,
            y: Scale::Linear,
            lines,
        }
        .render(),
    );
}

/// "per 36 s", "per 1 min".
fn per(bucket_ms: i64) -> String {
    if bucket_ms % 60_000 == 0 {
        format!("per {} min", bucket_ms / 60_000)
    } else {
        format!("per {} s", super::ticks::label(bucket_ms as f64 / 1000.0))
    }
}

/// The "Over time" section's plots.
pub(super) fn over_time_section(h: &mut String, runs: &[RunResult], faulted: bool) {
    let bucket = runs
        .iter()
        .map(RunResult::default_bucket_ms)
        .max()
        .unwrap_or(1000);
    let per = per(bucket);
    h.push_str("<div class=\"plots\">\n");
    // Every policy plays the same calls: one line says it.
    if let Some(first) = runs.first() {
        let calls = calls_over_time(first, bucket);
        figure(
            h,
            Chart {
                title: &format!("Calls sent {per}"),
                x_desc: "time since the first call, s",
                y_desc: "calls",
                x: Scale::Linear,
                y: Scale::Linear,
                lines: vec![Line {
                    label: "every policy".into(),
                    colour: 6,
                    dashed: false,
                    points: points(&calls, 1.0),
                }],
            }
            .render(),
        );
    }
    let error_bucket = if faulted { 1000 } else { bucket };
    over_time(
        h,
        &format!("Failed calls {}", self::per(error_bucket)),
        "failed calls (by send time)",
        runs,
        |r| Some(r.errors_over_time(error_bucket)),
        1.0,
    );
    over_time(
        h,
        &format!("Cold starts {per}"),
        "cold starts",
        runs,
        |r| Some(r.cold_starts_over_time(bucket)),
        1.0,
    );
    over_time(
        h,
        "Nodes held",
        "nodes",
        runs,
        |r| Some(r.nodes_over_time(bucket)),
        1.0,
    );
    if runs
        .iter()
        .any(|r| !r.containers.is_empty() || r.summary.is_some())
    {
        over_time(
            h,
            "Containers alive",
            "containers",
            runs,
            |r| Some(r.containers_over_time(bucket)),
            1.0,
        );
    }
    over_time(
        h,
        &format!("Idle memory, mean {per}"),
        "memory held serving nothing, GiB",
        runs,
        |r| idle_memory_over_time(r, bucket),
        1.0 / 1024.0,
    );
    h.push_str("</div>\n");
}

/// Cold against warm response times: one solid (warm) and one dashed (cold) line per policy.
pub(super) fn cold_warm_chart(h: &mut String, runs: &[RunResult], split: &[ColdWarm]) {
    let floor = positive_floor(split.iter().flat_map(|c| [&c.cold_values, &c.warm_values]));
    let mut lines = Vec::new();
    for (i, (r, c)) in runs.iter().zip(split).enumerate() {
        for (kind, values, dashed) in [
            ("warm", &c.warm_values, false),
            ("cold", &c.cold_values, true),
        ] {
            if values.is_empty() {
                continue;
            }
            lines.push(Line {
                label: format!("{} {kind}", r.policy),
                colour: i,
                dashed,
                points: cdf(values.clone(), floor),
            });
        }
    }
    h.push_str("<div class=\"plots\">\n");
    cdf_figure(h, "Cold (dashed) against warm (solid) calls", lines);
    h.push_str("</div>\n");
}

/// One response-time distribution chart per function (the most called first), plus all
/// requests together.
pub(super) fn latency_section(h: &mut String, runs: &[RunResult], functions: &[&String]) {
    h.push_str("<div class=\"plots\">\n");
    let mut one = |title: &str, function: Option<&str>| {
        let values: Vec<Vec<f64>> = runs.iter().map(|r| r.response_times(function)).collect();
        let floor = positive_floor(values.iter());
        let lines = runs
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (r, v))| Line {
                label: r.policy.clone(),
                colour: i,
                dashed: false,
                points: cdf(v, floor),
            })
            .collect();
        cdf_figure(h, title, lines);
    };
    one("All calls", None);
    for f in functions.iter().take(MAX_FUNCTION_PLOTS) {
        one(f, Some(f));
    }
    h.push_str("</div>\n");
    if functions.len() > MAX_FUNCTION_PLOTS {
        h.push_str(&format!(
            "<p>The {} least-called functions are not plotted.</p>\n",
            functions.len() - MAX_FUNCTION_PLOTS
        ));
    }
}

/// A colour swatch for policy `i`, as its lines are drawn.
pub(super) fn swatch(i: usize, name: &str) -> String {
    let (c, dashed) = super::svg::colour(i);
    let style = if dashed {
        format!("border:2px dashed {c}")
    } else {
        format!("background:{c}")
    };
    format!(
        "<span class=\"sw\" style=\"{style}\"></span>{}",
        escape(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_monotone_and_bounded() {
        let pts = cdf((0..1000).map(f64::from).collect(), 0.5);
        assert!(pts.len() <= CDF_POINTS + 1);
        assert_eq!(pts[0].0, 0.5);
        assert_eq!(pts.last().unwrap().1, 100.0);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(cdf(vec![], 1.0).is_empty());
        assert_eq!(cdf(vec![5.0], 1.0), vec![(5.0, 100.0), (5.0, 100.0)]);
    }

    #[test]
    fn bucket_names_read_well() {
        assert_eq!(per(36_000), "per 36 s");
        assert_eq!(per(60_000), "per 1 min");
        assert_eq!(per(1500), "per 1.5 s");
    }
}
