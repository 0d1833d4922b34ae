//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! file) with the summary tables and plots drawn by `plotters` (SVG backend):
//!
//! - response-time distribution (CDF, log-scale ms) of each function, one line per policy
//!   (the [`MAX_FUNCTION_PLOTS`] most-called functions, plus all requests together);
//! - nodes held over time, containers alive over time (when recorded) and cold starts over
//!   time, one line per policy.
//!
//! A trace's CC-BY attribution is printed at the top and the bottom when the report has one.

use plotters::prelude::*;

use super::{Report, ReportError};
use crate::record::{RunResult, TimeSeries};

/// How many functions get their own latency plot.
pub const MAX_FUNCTION_PLOTS: usize = 16;
const CDF_POINTS: usize = 200;
const SIZE: (u32, u32) = (640, 340);

fn plot_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Plot(e.to_string())
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// CDF points `(ms, share)` of `values`, at most [`CDF_POINTS`] + 1, with ms at least `floor`.
fn cdf(mut values: Vec<f64>, floor: f64) -> Vec<(f64, f64)> {
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
            (values[idx].max(floor), (idx + 1) as f64 / n as f64)
        })
        .collect()
}

/// A CDF chart with one line per `(label, values)`.
fn cdf_chart(title: &str, lines: &[(String, Vec<f64>)]) -> Result<String, ReportError> {
    let all = lines.iter().flat_map(|(_, v)| v.iter().copied());
    let max = all.clone().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let min_pos = all
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let lo = if min_pos.is_finite() {
        min_pos * 0.8
    } else {
        0.1
    };
    let hi = (max * 1.25).max(lo * 10.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .margin_right(30)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0f64..1.0f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("response time, ms (log)")
            .y_desc("share of requests")
            .draw()
            .map_err(plot_err)?;
        for (i, (label, values)) in lines.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(cdf(values.clone(), lo), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A time-series chart with one line per `(label, series)`.
fn series_chart(
    title: &str,
    y_desc: &str,
    lines: &[(String, TimeSeries)],
) -> Result<String, ReportError> {
    let points: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|(_, s)| {
            s.values
                .iter()
                .enumerate()
                .map(|(k, &v)| ((s.start_ms + k as i64 * s.bucket_ms) as f64 / 1000.0, v))
                .collect()
        })
        .collect();
    let xs = points.iter().flatten().map(|p| p.0);
    let x0 = xs.clone().fold(f64::INFINITY, f64::min);
    let x1 = xs.fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let y1 = points.iter().flatten().map(|p| p.1).fold(0.0f64, f64::max) * 1.1 + 1.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .margin_right(30)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(x0..x1, 0.0f64..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("time since the start of the run, s")
            .y_desc(y_desc)
            .draw()
            .map_err(plot_err)?;
        for (i, ((label, _), pts)) in lines.iter().zip(points).enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn latencies(run: &RunResult, function: Option<&str>) -> Vec<f64> {
    run.response_times(function)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}\
.plots{display:flex;flex-wrap:wrap;gap:8px}.note{color:#a40}.credit{font-size:90%;color:#555}";

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// The faults table and what the runs left behind (nothing without faults or leaks).
fn faults(report: &Report, h: &mut String) {
    use super::table::{after, by_status};
    if !report.faults.is_empty() {
        h.push_str(
            "<h2>Faults</h2>\n<table><tr><th>fault</th><th>policy</th><th>at s</th>\
             <th>hit</th><th>in flight</th><th>sent after</th><th>failed after</th>\
             <th>failed by status</th><th>first success ms</th><th>99% back ms</th></tr>\n",
        );
        for f in &report.faults {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&f.fault),
                escape(&f.policy),
                f.at_ms as f64 / 1000.0,
                escape(&f.hit()),
                f.in_flight,
                f.sent_after,
                f.failed_after,
                escape(&by_status(&f.failed_by_status)),
                after(f.first_success_ms),
                after(f.recovered_ms)
            ));
        }
        h.push_str(
            "</table>\n<p>In flight: calls on the faulted part when it struck (a restart: \
             every call). After: calls sent from the fault to the next one; a failure still \
             in flight at the next fault is that fault's. 99% back: from the fault until \
             every 1 s window of calls has at least 99% successes.</p>\n",
        );
    }
    let leaks = report.leaks_by_policy();
    if !leaks.is_empty() {
        h.push_str(
            "<h2>Left behind</h2>\n<table><tr><th>policy</th><th>processes</th>\
             <th>containers</th><th>nodes</th></tr>\n",
        );
        for (name, l) in leaks {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(name),
                l.processes,
                l.containers,
                l.nodes
            ));
        }
        h.push_str(
            "</table>\n<p>Processes: node and container processes running after the \
             platform stopped. Containers and nodes: held by the nodes (reserved at the \
             resource manager) at the end of the run but unknown to the scheduler.</p>\n",
        );
    }
}

/// Renders the whole page.
pub(super) fn render(report: &Report) -> Result<String, ReportError> {
    let mut h = String::new();
    let title = format!("FaaS replay: {}", escape(&report.workload));
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    ));
    if let Some(d) = &report.description {
        h.push_str(&format!("<p>{}</p>\n", escape(d)));
    }
    if let Some(a) = &report.attribution {
        h.push_str(&format!("<p class=\"credit\">Data: {}</p>\n", escape(a)));
    }
    h.push_str(&format!(
        "<p>Scores against <b>{}</b>: {} × mean RT<sub>f</sub> ratio + {} × node-time ratio; \
         an error rate above {}% adds {} points. Lower is better.</p>\n",
        escape(&report.baseline),
        report.score_config.w1,
        report.score_config.w2,
        report.score_config.error_rate_threshold * 100.0,
        report.score_config.error_penalty
    ));

    h.push_str(
        "<h2>Policies</h2>\n<table><tr><th>policy</th><th>score</th><th>requests</th>\
                <th>errors</th><th>cold starts</th><th>node-seconds</th><th>idle memory MB·s</th>\
                <th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th></tr>\n",
    );
    for (name, p) in &report.policies {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>\n",
            escape(name),
            fmt_opt(p.score, 4),
            p.requests,
            p.errors,
            p.cold_starts,
            p.node_seconds,
            fmt_opt(p.idle_memory_mb_seconds, 0),
            p.latency_ms.p50,
            p.latency_ms.p99,
            p.latency_ms.p999
        ));
    }
    h.push_str("</table>\n");
    for line in report.coverage.lines() {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&line)));
    }
    for (name, p) in &report.policies {
        for n in &p.notes {
            h.push_str(&format!(
                "<p class=\"note\">{}: {}</p>\n",
                escape(name),
                escape(n)
            ));
        }
    }

    // Functions, most called first (by the baseline's counts).
    let base = report
        .policy(&report.baseline)
        .or_else(|| report.policies.first().map(|(_, p)| p));
    let mut functions: Vec<(&String, u64)> = base
        .map(|p| p.functions.iter().map(|(f, r)| (f, r.calls)).collect())
        .unwrap_or_default();
    functions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| super::natural_cmp(a.0, b.0)));

    h.push_str("<h2>Functions</h2>\n<table><tr><th>function</th>");
    for (name, _) in &report.policies {
        let n = escape(name);
        h.push_str(&format!(
            "<th>{n} calls</th><th>{n} errors</th><th>{n} cold</th><th>{n} p50 ms</th>\
             <th>{n} p99 ms</th><th>{n} RT/base</th>"
        ));
    }
    h.push_str("</tr>\n");
    for (f, _) in &functions {
        h.push_str(&format!("<tr><td>{}</td>", escape(f)));
        for (_, p) in &report.policies {
            match p.functions.get(*f) {
                Some(r) => h.push_str(&format!(
                    "<td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td>",
                    r.calls,
                    r.errors,
                    r.cold_starts,
                    r.latency_ms.p50,
                    r.latency_ms.p99,
                    fmt_opt(r.rt_ratio, 3)
                )),
                None => h.push_str(&"<td>-</td>".repeat(6)),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");

    faults(report, &mut h);

    let runs = report.runs();
    let bucket = runs
        .iter()
        .map(RunResult::default_bucket_ms)
        .max()
        .unwrap_or(1000);
    h.push_str("<h2>Over time</h2>\n<div class=\"plots\">\n");
    let nodes: Vec<(String, TimeSeries)> = runs
        .iter()
        .map(|r| (r.policy.clone(), r.nodes_over_time(bucket)))
        .collect();
    h.push_str(&series_chart("Nodes held", "nodes", &nodes)?);
    if runs.iter().any(|r| !r.containers.is_empty()) {
        let containers: Vec<(String, TimeSeries)> = runs
            .iter()
            .map(|r| (r.policy.clone(), r.containers_over_time(bucket)))
            .collect();
        h.push_str(&series_chart(
            "Containers alive",
            "containers",
            &containers,
        )?);
    }
    let cold: Vec<(String, TimeSeries)> = runs
        .iter()
        .map(|r| (r.policy.clone(), r.cold_starts_over_time(bucket)))
        .collect();
    h.push_str(&series_chart(
        &format!("Cold starts per {} s", bucket as f64 / 1000.0),
        "cold starts",
        &cold,
    )?);
    if !report.faults.is_empty() {
        // Fine-grained, to show each fault's dip and recovery.
        let errors: Vec<(String, TimeSeries)> = runs
            .iter()
            .map(|r| (r.policy.clone(), r.errors_over_time(1000)))
            .collect();
        h.push_str(&series_chart(
            "Failed calls per 1 s (by send time)",
            "failed calls",
            &errors,
        )?);
    }
    h.push_str("</div>\n");

    h.push_str("<h2>Response time per function</h2>\n<div class=\"plots\">\n");
    let all: Vec<(String, Vec<f64>)> = runs
        .iter()
        .map(|r| (r.policy.clone(), latencies(r, None)))
        .collect();
    h.push_str(&cdf_chart("All requests", &all)?);
    for (f, _) in functions.iter().take(MAX_FUNCTION_PLOTS) {
        let lines: Vec<(String, Vec<f64>)> = runs
            .iter()
            .map(|r| (r.policy.clone(), latencies(r, Some(f))))
            .collect();
        h.push_str(&cdf_chart(f, &lines)?);
    }
    h.push_str("</div>\n");
    if functions.len() > MAX_FUNCTION_PLOTS {
        h.push_str(&format!(
            "<p>The {} least-called functions are not plotted.</p>\n",
            functions.len() - MAX_FUNCTION_PLOTS
        ));
    }
    if let Some(a) = &report.attribution {
        h.push_str(&format!("<p class=\"credit\">Data: {}</p>\n", escape(a)));
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ReportOptions, tests::run};

    #[test]
    fn page_has_plots_tables_and_credit() {
        let rep = Report::new(
            vec![run("baseline", 1.0, 3, 0), run("<ours>", 0.5, 2, 0)],
            ReportOptions {
                attribution: Some(crate::trace::ATTRIBUTION_2019.into()),
                ..ReportOptions::default()
            },
        )
        .unwrap();
        let page = rep.to_html().unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        // Over time: nodes, containers, cold starts; latency: all + 3 functions.
        assert_eq!(page.matches("<svg").count(), 7, "svg count");
        assert!(page.contains("Serverless in the Wild"));
        assert!(page.contains("&lt;ours&gt;") && !page.contains("<ours>"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn empty_runs_still_draw() {
        let mut r = RunResult::new("baseline", "w");
        r.end_ms = 0;
        let rep = Report::new(vec![r], ReportOptions::default()).unwrap();
        let page = rep.to_html().unwrap();
        assert!(page.contains("<svg"));
        assert!(rep.summary().contains("baseline"));
    }

    #[test]
    fn cdf_is_monotone_and_bounded() {
        let pts = cdf((0..1000).map(f64::from).collect(), 0.5);
        assert!(pts.len() <= CDF_POINTS + 1);
        assert_eq!(pts[0].0, 0.5);
        assert_eq!(pts.last().unwrap().1, 1.0);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(cdf(vec![], 1.0).is_empty());
        assert_eq!(cdf(vec![5.0], 1.0), vec![(5.0, 1.0), (5.0, 1.0)]);
    }
}
