//! The terminal summary: a table per policy, then one per function, in plain text.

use std::fmt::Write;

use super::Report;

/// Renders rows as left-aligned first column, right-aligned others.
fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(c.chars().count());
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push_str(&line(
        &width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `UNAVAILABLE 3, DEADLINE_EXCEEDED 1` (or `-`).
pub(super) fn by_status(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    parts.join(", ")
}

/// A time after a fault, ms, or `never`.
pub(super) fn after(v: Option<f64>) -> String {
    v.map_or("never".into(), ms)
}

/// The faults table, what each fault hit, and the leaks (nothing without faults or leaks).
fn faults(report: &Report, out: &mut String) {
    if !report.faults.is_empty() {
        let rows: Vec<Vec<String>> = report
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.fault.clone(),
                    f.policy.clone(),
                    format!("{:.2}", f.at_ms as f64 / 1000.0),
                    f.in_flight.to_string(),
                    f.sent_after.to_string(),
                    f.failed_after.to_string(),
                    by_status(&f.failed_by_status),
                    after(f.first_success_ms),
                    after(f.recovered_ms),
                ]
            })
            .collect();
        out.push_str("\nfaults\n");
        out.push_str(&grid(
            &[
                "fault",
                "policy",
                "at s",
                "in flight",
                "sent after",
                "failed after",
                "failed by status",
                "first ok ms",
                "99% back ms",
            ],
            &rows,
        ));
        for f in &report.faults {
            let _ = writeln!(out, "  {} ({}): {}", f.fault, f.policy, f.hit());
        }
    }
    let leaks = report.leaks_by_policy();
    if !leaks.is_empty() {
        out.push_str("\nleft behind once the platform stopped\n");
        for (name, l) in leaks {
            let _ = writeln!(out, "  {name}: {l}");
        }
    }
}

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workload {}  (baseline: {})",
        report.workload, report.baseline
    );
    if let Some(d) = &report.description {
        let _ = writeln!(out, "{d}");
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = report
        .policies
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                p.score.map_or("-".into(), |s| format!("{s:.4}")),
                p.requests.to_string(),
                p.errors.to_string(),
                p.cold_starts.to_string(),
                format!("{:.1}", p.node_seconds),
                p.idle_memory_mb_seconds
                    .map_or("-".into(), |v| format!("{v:.0}")),
                ms(p.latency_ms.p50),
                ms(p.latency_ms.p99),
                ms(p.latency_ms.p999),
            ]
        })
        .collect();
    out.push_str(&grid(
        &[
            "policy",
            "score",
            "requests",
            "errors",
            "cold",
            "node-s",
            "idle MB·s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
        ],
        &rows,
    ));
    for (name, p) in &report.policies {
        if let Some(e) = &p.end_to_end_ms {
            let _ = writeln!(
                out,
                "{name}: through the queue, end to end (submit to result) p50 {} ms, p99 {} ms, p999 {} ms",
                ms(e.p50),
                ms(e.p99),
                ms(e.p999)
            );
        }
    }
    for line in report.coverage.lines() {
        let _ = writeln!(out, "{line}");
    }
    faults(report, &mut out);
    for (name, p) in &report.policies {
        let _ = writeln!(out, "\n{name}: per function");
        let mut functions: Vec<_> = p.functions.iter().collect();
        functions.sort_by(|a, b| super::natural_cmp(a.0, b.0));
        let rows: Vec<Vec<String>> = functions
            .into_iter()
            .map(|(f, r)| {
                vec![
                    f.clone(),
                    r.calls.to_string(),
                    r.errors.to_string(),
                    r.cold_starts.to_string(),
                    ms(r.latency_ms.p50),
                    ms(r.latency_ms.p99),
                    r.rt_ratio.map_or("-".into(), |v| format!("{v:.3}")),
                ]
            })
            .collect();
        out.push_str(&grid(
            &[
                "function", "calls", "errors", "cold", "p50 ms", "p99 ms", "RT/base",
            ],
            &rows,
        ));
        for n in &p.notes {
            let _ = writeln!(out, "note: {n}");
        }
    }
    if let Some(a) = &report.attribution {
        let _ = writeln!(out, "\nData: {a}");
    }
    out
}
