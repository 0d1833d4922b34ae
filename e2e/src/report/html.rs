//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! file) that reads at a glance on a 1400 px screen:
//!
//! - the policies with their colour (the same on every chart), the score split into its
//!   response-time and node-time terms (a bar per policy), what each function is (handler,
//!   memory, duration) beside its figures under each policy;
//! - over time: calls sent, failed calls, cold starts, nodes held, containers alive, idle
//!   memory; cold against warm response times; each function's response-time distribution
//!   (the [`MAX_FUNCTION_PLOTS`] most-called ones, plus all calls together).
//!
//! Wide tables scroll inside their own box (the first column stays in view), charts shrink with
//! the page, legends sit beside the plotted data (see `report/svg.rs`). A trace's CC-BY
//! attribution is printed at the top and the bottom when the report has one.

pub use super::charts::MAX_FUNCTION_PLOTS;
use super::charts::{cold_warm_chart, latency_section, over_time_section, swatch};
use super::{Report, ReportError};
use crate::workload::{FunctionProfile, ValueModel};

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

const STYLE: &str = "*{box-sizing:border-box}\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;\
padding:12px 24px 32px;max-width:1400px;color:#1a1a1a;background:#fff}\
h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:28px 0 8px;padding-top:6px;\
border-top:1px solid #ddd}p,li{max-width:110ch;overflow-wrap:anywhere}\
nav{font-size:13px}nav a{margin-right:14px}\
.scroll{overflow-x:auto;max-width:100%;margin:8px 0;border:1px solid #ddd}\
.scroll.tall{max-height:640px;overflow-y:auto}\
table{border-collapse:collapse;font-variant-numeric:tabular-nums}\
td,th{border:1px solid #e0e0e0;padding:3px 8px;text-align:right;white-space:nowrap}\
th{background:#f3f3f3;font-weight:600}th.stick,td:first-child{text-align:left;\
position:sticky;left:0;z-index:1}td:first-child{background:#fff}\
th.grp{text-align:center;border-bottom:2px solid #bbb}\
td.txt{text-align:left}tr:hover td{background:#f7f9fc}\
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}\
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;min-width:0}\
svg{display:block;width:100%;height:auto}svg text{font-family:inherit;fill:#222}\
.ct{font-size:15px;font-weight:600}.tk text{font-size:12px;fill:#444}.ad{font-size:13px}\
.lg{font-size:12.5px}.grid line{stroke:#e8e8e8}.frame{fill:none;stroke:#999}\
.sw{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;\
border-radius:2px}.note{color:#8a3b00}.credit{font-size:90%;color:#555}\
.muted{color:#666}";

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// Milliseconds as a reader says them: `0.4 ms`, `12 ms`, `3.4 s`, `2 min`.
fn duration(ms: f64) -> String {
    if ms >= 120_000.0 {
        format!("{} min", super::ticks::label((ms / 6000.0).round() / 10.0))
    } else if ms >= 1000.0 {
        format!("{} s", super::ticks::label((ms / 100.0).round() / 10.0))
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{} ms", super::ticks::label((ms * 10.0).round() / 10.0))
    }
}

/// A function's duration model in a few words.
fn duration_model(model: &ValueModel) -> String {
    match model {
        ValueModel::Fixed(v) => duration(*v),
        ValueModel::Percentiles(p) => {
            let pts = p.points();
            // The median by linear interpolation between the given percentiles.
            let median = pts
                .windows(2)
                .find(|w| w[1].0 >= 0.5)
                .map(|w| {
                    let ((q0, v0), (q1, v1)) = (w[0], w[1]);
                    if q1 > q0 {
                        v0 + (v1 - v0) * (0.5 - q0) / (q1 - q0)
                    } else {
                        v1
                    }
                })
                .unwrap_or(p.max());
            format!("median {}, up to {}", duration(median), duration(p.max()))
        }
    }
}

/// The handler, memory and duration columns of a function (dashes when unknown).
fn function_cells(profile: Option<&FunctionProfile>) -> String {
    match profile {
        Some(f) => format!(
            "<td class=\"txt\">{}</td><td>{}</td><td class=\"txt\">{}</td>",
            escape(f.handler.as_str()),
            f.memory_bytes >> 20,
            escape(&duration_model(&f.duration_ms))
        ),
        None => "<td class=\"txt\">-</td><td>-</td><td class=\"txt\">-</td>".into(),
    }
}

/// The faults table and what the runs left behind (nothing without faults or leaks).
fn faults(report: &Report, h: &mut String) {
    use super::table::{after, by_status};
    if !report.faults.is_empty() {
        h.push_str(
            "<h2 id=\"faults\">Faults</h2>\n<div class=\"scroll\"><table><tr><th>fault</th><th>policy</th><th>at s</th>\
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
            "</table></div>\n<p>In flight: calls on the faulted part when it struck (a restart: \
             every call). After: calls sent from the fault to the next one; a failure still \
             in flight at the next fault is that fault's. 99% back: from the fault until \
             every 1 s window of calls has at least 99% successes.</p>\n",
        );
    }
    let leaks = report.leaks_by_policy();
    if !leaks.is_empty() {
        h.push_str(
            "<h2 id=\"left-behind\">Left behind</h2>\n<div class=\"scroll\"><table><tr><th>policy</th><th>processes</th>\
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
            "</table></div>\n<p>Processes: node and container processes running after the \
             platform stopped. Containers and nodes: held by the nodes (reserved at the \
             resource manager) at the end of the run but unknown to the scheduler.</p>\n",
        );
    }
}

/// The page's head, title, data credit and table of contents.
fn head(report: &Report, h: &mut String) {
    let title = format!("FaaS report: {}", escape(&report.workload));
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    ));
    if let Some(d) = &report.description {
        h.push_str(&format!("<p class=\"muted\">{}</p>\n", escape(d)));
    }
    if let Some(a) = &report.attribution {
        h.push_str(&format!("<p class=\"credit\">Data: {}</p>\n", escape(a)));
    }
    let mut nav = vec![
        ("policies", "Policies"),
        ("score", "Score"),
        ("functions", "Functions"),
        ("over-time", "Over time"),
        ("cold-warm", "Cold and warm"),
        ("response-time", "Response time per function"),
    ];
    if !report.faults.is_empty() {
        nav.push(("faults", "Faults"));
    }
    h.push_str("<nav>");
    for (id, name) in nav {
        h.push_str(&format!("<a href=\"#{id}\">{name}</a>"));
    }
    h.push_str("</nav>\n");
}

/// The policies' headline figures, coverage and notes.
fn policies(report: &Report, h: &mut String) {
    h.push_str(
        "<h2 id=\"policies\">Policies</h2>\n<div class=\"scroll\"><table><tr>\
         <th class=\"stick\">policy</th><th>score</th><th>calls</th><th>errors</th>\
         <th>cold starts</th><th>node-seconds</th><th>idle memory MiB·s</th><th>p50 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th></tr>\n",
    );
    for (i, (name, p)) in report.policies.iter().enumerate() {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>\n",
            swatch(i, name),
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
    h.push_str("</table></div>\n");
    for line in report.coverage.lines() {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&line)));
    }
    let notes: Vec<String> = report
        .policies
        .iter()
        .flat_map(|(name, p)| p.notes.iter().map(move |n| format!("{name}: {n}")))
        .collect();
    if !notes.is_empty() {
        h.push_str("<ul class=\"note\">");
        for n in notes {
            h.push_str(&format!("<li>{}</li>", escape(&n)));
        }
        h.push_str("</ul>\n");
    }
}

/// The score split into its terms: a bar per policy and the numbers.
fn score(report: &Report, h: &mut String) {
    let c = &report.score_config;
    h.push_str(&format!(
        "<h2 id=\"score\">Score</h2>\n<p>Against <b>{}</b>: score = {} × mean over functions of \
         RT<sub>f</sub> / RT<sub>f,{}</sub> (response-time term) + {} × ND / ND<sub>{}</sub> \
         (node-time term); an error rate above {}% adds {} points. RT<sub>f</sub>: the sum of \
         scheduling latency + duration over f's calls; ND: node-seconds. Lower is better; the \
         baseline scores 1 (the dashed line).</p>\n",
        escape(&report.baseline),
        c.w1,
        escape(&report.baseline),
        c.w2,
        escape(&report.baseline),
        c.error_rate_threshold * 100.0,
        c.error_penalty
    ));
    let bars: Vec<super::svg::Bar> = report
        .policies
        .iter()
        .filter_map(|(name, p)| {
            let s = p.score_detail.as_ref()?;
            Some(super::svg::Bar {
                label: name.clone(),
                values: vec![c.w1 * s.rt_ratio_mean, c.w2 * s.nd_ratio, s.penalty],
            })
        })
        .collect();
    h.push_str("<div class=\"plots\"><figure>");
    h.push_str(&super::svg::stacked_bars(
        "Score by term (lower is better)",
        "points",
        &["response time", "node time", "error penalty"],
        &bars,
        1.0,
    ));
    h.push_str(
        "</figure></div>\n<div class=\"scroll\"><table><tr><th class=\"stick\">policy</th>\
                <th>score</th><th>response-time term</th><th>mean RT ratio</th>\
                <th>node-time term</th><th>ND ratio</th><th>error rate</th><th>penalty</th>\
                </tr>\n",
    );
    for (i, (name, p)) in report.policies.iter().enumerate() {
        match &p.score_detail {
            Some(s) => h.push_str(&format!(
                "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>\
                 <td>{:.4}</td><td>{:.3}%</td><td>{}</td></tr>\n",
                swatch(i, name),
                s.value,
                c.w1 * s.rt_ratio_mean,
                s.rt_ratio_mean,
                c.w2 * s.nd_ratio,
                s.nd_ratio,
                s.error_rate * 100.0,
                super::ticks::label(s.penalty)
            )),
            None => h.push_str(&format!(
                "<tr><td>{}</td><td colspan=\"7\" class=\"txt\">no score (see the notes \
                 above)</td></tr>\n",
                swatch(i, name)
            )),
        }
    }
    h.push_str("</table></div>\n");
}

/// What each function is and how each policy served it, most called first.
fn functions(report: &Report, h: &mut String, order: &[&String]) {
    let base = report
        .policy(&report.baseline)
        .or_else(|| report.policies.first().map(|(_, p)| p));
    h.push_str(
        "<h2 id=\"functions\">Functions</h2>\n<p>Most called first. RT/base: the function's \
         RT<sub>f</sub> against the baseline's (below 1 is faster).</p>\n\
         <div class=\"scroll tall\"><table><tr><th class=\"stick\" rowspan=\"2\">function</th>\
         <th rowspan=\"2\">handler</th><th rowspan=\"2\">memory MiB</th>\
         <th rowspan=\"2\">duration</th><th rowspan=\"2\">calls</th>",
    );
    for (i, (name, _)) in report.policies.iter().enumerate() {
        h.push_str(&format!(
            "<th class=\"grp\" colspan=\"5\">{}</th>",
            swatch(i, name)
        ));
    }
    h.push_str("</tr>\n<tr>");
    for _ in &report.policies {
        h.push_str("<th>errors</th><th>cold</th><th>p50 ms</th><th>p99 ms</th><th>RT/base</th>");
    }
    h.push_str("</tr>\n");
    for f in order {
        let profile = report.functions.iter().find(|p| &p.name == *f);
        let calls = base
            .and_then(|p| p.functions.get(*f))
            .map_or(0, |r| r.calls);
        h.push_str(&format!(
            "<tr><td>{}</td>{}<td>{calls}</td>",
            escape(f),
            function_cells(profile)
        ));
        for (_, p) in &report.policies {
            match p.functions.get(*f) {
                Some(r) => h.push_str(&format!(
                    "<td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td>",
                    r.errors,
                    r.cold_starts,
                    r.latency_ms.p50,
                    r.latency_ms.p99,
                    fmt_opt(r.rt_ratio, 3)
                )),
                None => h.push_str(&"<td>-</td>".repeat(5)),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

/// Cold against warm calls: the numbers and their distributions.
fn cold_warm(report: &Report, h: &mut String) {
    let split: Vec<_> = report.runs().iter().map(super::series::cold_warm).collect();
    h.push_str(
        "<h2 id=\"cold-warm\">Cold and warm calls</h2>\n<p>A cold call waited for a container \
         to be created; a warm one found an idle container.</p>\n<div class=\"scroll\"><table>\
         <tr><th class=\"stick\">policy</th><th>warm calls</th><th>warm p50 ms</th>\
         <th>warm p99 ms</th><th>cold calls</th><th>cold p50 ms</th><th>cold p99 ms</th>\
         <th>cold share</th></tr>\n",
    );
    for (i, ((name, _), c)) in report.policies.iter().zip(&split).enumerate() {
        let all = (c.cold_calls + c.warm_calls).max(1) as f64;
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.2}%</td></tr>\n",
            swatch(i, name),
            c.warm_calls,
            c.warm.p50,
            c.warm.p99,
            c.cold_calls,
            c.cold.p50,
            c.cold.p99,
            100.0 * c.cold_calls as f64 / all
        ));
    }
    h.push_str("</table></div>\n");
    cold_warm_chart(h, report.runs(), &split);
}

/// Renders the whole page.
pub(super) fn render(report: &Report) -> Result<String, ReportError> {
    let mut h = String::with_capacity(256 * 1024);
    head(report, &mut h);
    policies(report, &mut h);
    score(report, &mut h);

    // Functions, most called first (by the baseline's counts).
    let base = report
        .policy(&report.baseline)
        .or_else(|| report.policies.first().map(|(_, p)| p));
    let mut order: Vec<(&String, u64)> = base
        .map(|p| p.functions.iter().map(|(f, r)| (f, r.calls)).collect())
        .unwrap_or_default();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| super::natural_cmp(a.0, b.0)));
    let order: Vec<&String> = order.into_iter().map(|(f, _)| f).collect();
    functions(report, &mut h, &order);
    faults(report, &mut h);

    h.push_str(
        "<h2 id=\"over-time\">Over time</h2>\n<p>Each line is a policy, in its colour above; \
         the calls sent are the same for every policy.</p>\n",
    );
    over_time_section(&mut h, report.runs(), !report.faults.is_empty());
    cold_warm(report, &mut h);
    h.push_str(
        "<h2 id=\"response-time\">Response time per function</h2>\n<p>How many calls \
         (%, up) were answered within a time (ms, across, log scale): a line further left \
         and higher is faster.</p>\n",
    );
    latency_section(&mut h, report.runs(), &order);
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
    use crate::workload::HandlerKind;

    #[test]
    fn page_has_plots_tables_and_credit() {
        let mut profile = FunctionProfile::new("f1", HandlerKind::Sleep, 256 << 20, 1000, 10.0);
        profile.duration_ms = ValueModel::Percentiles(
            crate::workload::Percentiles::new([(0.0, 1.0), (1.0, 3000.0)]).unwrap(),
        );
        let rep = Report::new(
            vec![run("baseline", 1.0, 3, 0), run("<ours>", 0.5, 2, 0)],
            ReportOptions {
                attribution: Some(crate::trace::ATTRIBUTION_2019.into()),
                functions: vec![profile],
                ..ReportOptions::default()
            },
        )
        .unwrap();
        let page = rep.to_html().unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        // Score; over time: calls, errors, cold starts, nodes, containers, idle memory; cold
        // against warm; latency: all + 3 functions.
        assert_eq!(page.matches("<svg").count(), 1 + 6 + 1 + 4, "svg count");
        assert_eq!(
            page.matches("viewBox").count(),
            page.matches("<svg").count()
        );
        assert!(page.contains("Serverless in the Wild"));
        assert!(page.contains("&lt;ours&gt;") && !page.contains("<ours>"));
        // Nothing to fetch: no script, no file, no link out of the page.
        assert!(
            !page.contains("<script") && !page.contains(" src=") && !page.contains("href=\"http")
        );
        // What f1 is.
        assert!(
            page.contains("<td class=\"txt\">sleep</td><td>256</td><td class=\"txt\">median 1.5 s, up to 3 s</td>"),
            "function cells"
        );
        // The score's terms: ours 0.5 × 7/12 and 0.5 × 2/3.
        assert!(page.contains("<td>0.2917</td><td>0.5833</td><td>0.3333</td><td>0.6667</td>"));
        // Policies wear their colours.
        assert!(page.contains(super::super::svg::PALETTE[1]));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.44), "0.4 ms");
        assert_eq!(duration(12.3), "12 ms");
        assert_eq!(duration(3400.0), "3.4 s");
        assert_eq!(duration(1000.0), "1 s");
        assert_eq!(duration(600_000.0), "10 min");
        assert_eq!(duration_model(&ValueModel::Fixed(100.0)), "100 ms");
    }

    #[test]
    fn empty_runs_still_draw() {
        let mut r = crate::record::RunResult::new("baseline", "w");
        r.end_ms = 0;
        let rep = Report::new(vec![r], ReportOptions::default()).unwrap();
        let page = rep.to_html().unwrap();
        assert!(page.contains("<svg"));
        assert!(rep.summary().contains("baseline"));
    }
}
