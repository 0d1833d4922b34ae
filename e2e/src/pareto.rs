//! The keep-alive Pareto sweep: cold starts against idle memory-time, the trade-off every
//! keep-alive policy makes (`faas sweep`).
//!
//! A fixed keep-alive window trades memory for cold starts: a longer window keeps more
//! containers warm (fewer cold starts) and holds more memory idle. Running the fixed policy
//! (`keepalive-<N>m`) for a range of windows over one workload traces a curve; a smarter
//! policy is worth its complexity only if its point lies *below* that curve: fewer cold
//! starts for the same idle memory. That is fig. 15 of "Serverless in the Wild" (Shahrad et
//! al., USENIX ATC 2020), where the hybrid histogram policy sits under the fixed windows.
//!
//! ```text
//!  cold starts
//!   │ ●1m
//!   │    ●5m                 ● fixed windows, joined: the curve
//!   │  ◆     ●10m            ◆ a named policy (adaptive highlighted)
//!   │            ●30m
//!   │                  ●60m ●120m
//!   └──────────────────────────── idle memory-time (GiB·s)
//! ```
//!
//! Two figures of a run are used, both from [`RunResult`]: [`RunResult::cold_starts`] and
//! [`RunResult::idle_memory_mb_seconds`] (memory-time containers held while running nothing).
//!
//! - [`frontier`]: which points no other point beats on both axes (Pareto-optimal).
//! - [`reduction_vs_fixed`]: how many fewer cold starts a point has than the best fixed
//!   window that uses no more idle memory (the paper's claim, made checkable); `None` when
//!   every fixed window uses more.
//! - [`reduction_vs_curve`]: the same against the curve itself (linear between two fixed
//!   windows), where the point's idle memory lies within the curve's range.
//! - [`Sweep::table`] prints it; [`Sweep::svg`] draws it as a self-contained SVG.

use std::fmt::Write as _;

use faas_scheduler::policies::keepalive;
use serde::{Deserialize, Serialize};

use crate::record::RunResult;
use crate::sim::{self, SimError, SimOptions};
use crate::workload::Workload;

/// One policy's run, reduced to the two figures of the trade-off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The policy's name (`keepalive-10m`, `adaptive`).
    pub policy: String,
    /// The fixed window, ms, for a point of the curve; `None` for a named policy.
    pub window_ms: Option<u64>,
    /// Requests that waited for a container start.
    pub cold_starts: u64,
    /// Memory-time held by containers running nothing, GiB·s (MiB·s / 1024).
    pub idle_gib_s: f64,
}

impl Point {
    /// The point of a finished run (`window_ms` for a fixed window).
    pub fn of(run: &RunResult, window_ms: Option<u64>) -> Point {
        Point {
            policy: run.policy.clone(),
            window_ms,
            cold_starts: run.cold_starts(),
            idle_gib_s: run.idle_memory_mb_seconds().unwrap_or(0.0) / 1024.0,
        }
    }

    /// Whether `self` is at least as good as `other` on both axes and better on one.
    pub fn dominates(&self, other: &Point) -> bool {
        self.cold_starts <= other.cold_starts
            && self.idle_gib_s <= other.idle_gib_s
            && (self.cold_starts < other.cold_starts || self.idle_gib_s < other.idle_gib_s)
    }
}

/// The indices of the points no other point dominates, by idle memory ascending.
pub fn frontier(points: &[Point]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..points.len())
        .filter(|&i| !points.iter().any(|q| q.dominates(&points[i])))
        .collect();
    out.sort_by(|&a, &b| points[a].idle_gib_s.total_cmp(&points[b].idle_gib_s));
    out
}

/// How many fewer cold starts `p` has than the best fixed window using no more idle
/// memory, as a share (0.3: 30% fewer; negative: more). `None` when every fixed window uses
/// more idle memory than `p` (nothing to compare with at equal cost).
pub fn reduction_vs_fixed(p: &Point, fixed: &[Point]) -> Option<f64> {
    let best = fixed
        .iter()
        .filter(|f| f.idle_gib_s <= p.idle_gib_s)
        .map(|f| f.cold_starts)
        .min()?;
    Some(reduction(p.cold_starts, best as f64))
}

/// How many fewer cold starts `p` has than the fixed curve at `p`'s idle memory (linear
/// between the two fixed windows around it, along the frontier), as a share. `None` outside
/// the curve's range of idle memory.
pub fn reduction_vs_curve(p: &Point, fixed: &[Point]) -> Option<f64> {
    let front: Vec<&Point> = frontier(fixed).into_iter().map(|i| &fixed[i]).collect();
    let at = |f: &Point| (f.idle_gib_s, f.cold_starts as f64);
    for pair in front.windows(2) {
        let ((x0, y0), (x1, y1)) = (at(pair[0]), at(pair[1]));
        if (x0..=x1).contains(&p.idle_gib_s) {
            let t = if x1 > x0 {
                (p.idle_gib_s - x0) / (x1 - x0)
            } else {
                0.0
            };
            return Some(reduction(p.cold_starts, y0 + t * (y1 - y0)));
        }
    }
    match front.as_slice() {
        [one] if one.idle_gib_s == p.idle_gib_s => Some(reduction(p.cold_starts, at(one).1)),
        _ => None,
    }
}

fn reduction(cold: u64, reference: f64) -> f64 {
    if reference <= 0.0 {
        return if cold == 0 { 0.0 } else { -1.0 };
    }
    1.0 - cold as f64 / reference
}

/// The policy name of a fixed window: `keepalive-<N>m`, or `keepalive-<N>s` for a window
/// that is not whole minutes.
pub fn window_policy(window_ms: u64) -> String {
    if window_ms.is_multiple_of(60_000) {
        format!("{}{}m", keepalive::PREFIX, window_ms / 60_000)
    } else {
        format!("{}{}s", keepalive::PREFIX, window_ms.div_ceil(1000))
    }
}

/// Parses `1m,5m,90s,2h` into windows, ms (sorted, each once).
pub fn parse_windows(text: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for w in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        out.push(keepalive::parse_window(w).ok_or_else(|| {
            format!("{w:?} is not a keep-alive window (a whole number and s, m or h: 90s, 10m)")
        })?);
    }
    if out.is_empty() {
        return Err("give at least one window, e.g. 1m,10m,60m".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A sweep's points: the fixed windows' curve and the named policies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// What was run (the workload's description and the simulator's settings).
    pub description: String,
    /// One point per fixed window, by window.
    pub fixed: Vec<Point>,
    /// One point per named policy, in the order asked.
    pub named: Vec<Point>,
}

/// Simulates `workload` under `keepalive-<window>` for each window, then under each named
/// policy; `progress` hears of each finished run.
pub fn run(
    workload: &Workload,
    windows_ms: &[u64],
    policies: &[String],
    options: &SimOptions,
    mut progress: impl FnMut(&Point, &sim::SimRun),
) -> Result<Sweep, SimError> {
    let mut sweep = Sweep {
        description: workload.description.clone(),
        ..Sweep::default()
    };
    let jobs = windows_ms
        .iter()
        .map(|&w| (window_policy(w), Some(w)))
        .chain(policies.iter().map(|p| (p.clone(), None)));
    for (policy, window) in jobs {
        let run = sim::simulate_named(workload, &policy, options)?;
        let point = Point::of(&run.result, window);
        progress(&point, &run);
        match window {
            Some(_) => sweep.fixed.push(point),
            None => sweep.named.push(point),
        }
    }
    Ok(sweep)
}

impl Sweep {
    /// Every point, fixed windows first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.fixed.iter().chain(&self.named)
    }

    /// The terminal table: per point its cold starts, idle memory, whether it is on the
    /// fixed curve's frontier (no fixed window beats it on both axes), and for a named
    /// policy its reduction against the fixed windows using no more idle memory and
    /// against the curve.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<18} {:>12} {:>16} {:>9} {:>15} {:>12}",
            "policy", "cold starts", "idle mem GiB·s", "frontier", "vs fixed ≤ mem", "vs curve"
        );
        let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:+.1}%", -r * 100.0));
        for p in self.points() {
            let on = !self.fixed.iter().any(|f| f.dominates(p));
            let (vs_fixed, vs_curve) = if p.window_ms.is_some() {
                (None, None)
            } else {
                (
                    reduction_vs_fixed(p, &self.fixed),
                    reduction_vs_curve(p, &self.fixed),
                )
            };
            let _ = writeln!(
                s,
                "{:<18} {:>12} {:>16.0} {:>9} {:>15} {:>12}",
                p.policy,
                p.cold_starts,
                p.idle_gib_s,
                if on { "yes" } else { "no" },
                pct(vs_fixed),
                pct(vs_curve)
            );
        }
        s.push_str(
            "vs fixed ≤ mem: cold starts against the best fixed window using no more idle \
             memory (-30%: 30% fewer); vs curve: against the curve at the same idle memory\n",
        );
        s
    }

    /// The plot as a self-contained SVG (see [`svg`]).
    pub fn svg(&self, title: &str) -> String {
        svg(self, title)
    }
}

const W: f64 = 760.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// A step for about five ticks over `0..=max`: 1, 2 or 5 times a power of ten.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A tick's label: `1500`, `25k`, `2.5M`.
fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws the sweep: x idle memory-time (GiB·s), y cold starts, both from 0; the fixed
/// windows as a grey curve with their windows as labels; each named policy as a labelled
/// diamond, `adaptive` in red and larger.
pub fn svg(sweep: &Sweep, title: &str) -> String {
    let max_x = sweep.points().map(|p| p.idle_gib_s).fold(0.0, f64::max);
    let max_y = sweep
        .points()
        .map(|p| p.cold_starts as f64)
        .fold(0.0, f64::max);
    let (sx, sy) = (nice_step(max_x * 1.05), nice_step(max_y * 1.05));
    let (top_x, top_y) = (
        (max_x * 1.05 / sx).ceil().max(1.0) * sx,
        (max_y * 1.05 / sy).ceil().max(1.0) * sy,
    );
    let px = |x: f64| LEFT + x / top_x * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / top_y * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let mut x = 0.0;
    while x <= top_x + sx / 2.0 {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            px(x),
            TOP,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            tick_label(x)
        );
        x += sx;
    }
    let mut y = 0.0;
    while y <= top_y + sy / 2.0 {
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\
             <text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>",
            LEFT,
            py(y),
            W - RIGHT,
            LEFT - 6.0,
            py(y) + 4.0,
            tick_label(y)
        );
        y += sy;
    }
    let _ = writeln!(
        s,
        "<path d=\"M{LEFT} {TOP} V{0} H{1}\" fill=\"none\" stroke=\"black\"/>",
        H - BOTTOM,
        W - RIGHT
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">idle memory-time (GiB·s)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">cold starts</text>"#,
        (TOP + H - BOTTOM) / 2.0
    );
    // The fixed curve, by window.
    let mut fixed: Vec<&Point> = sweep.fixed.iter().collect();
    fixed.sort_by_key(|p| p.window_ms);
    if fixed.len() > 1 {
        let path: Vec<String> = fixed
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.idle_gib_s), py(p.cold_starts as f64)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#888\" stroke-width=\"2\"/>",
            path.join(" ")
        );
    }
    for p in &fixed {
        let label = p
            .policy
            .strip_prefix(keepalive::PREFIX)
            .unwrap_or(&p.policy);
        let (x, y) = (px(p.idle_gib_s), py(p.cold_starts as f64));
        let _ = writeln!(
            s,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#555\"><title>{}: {} cold starts, {:.0} GiB·s</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">{}</text>",
            escape(&p.policy),
            p.cold_starts,
            p.idle_gib_s,
            x + 6.0,
            y - 6.0,
            escape(label)
        );
    }
    for p in &sweep.named {
        let ours = p.policy == "adaptive";
        let (r, color) = if ours {
            (9.0, "#d62728")
        } else {
            (6.0, "#1f77b4")
        };
        let (x, y) = (px(p.idle_gib_s), py(p.cold_starts as f64));
        let _ = writeln!(
            s,
            "<path d=\"M{x:.1} {:.1} L{:.1} {y:.1} L{x:.1} {:.1} L{:.1} {y:.1} Z\" fill=\"{color}\"><title>{}: {} cold starts, {:.0} GiB·s</title></path>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" font-weight=\"{}\">{}</text>",
            y - r,
            x + r,
            y + r,
            x - r,
            escape(&p.policy),
            p.cold_starts,
            p.idle_gib_s,
            x + r + 4.0,
            y + 4.0,
            if ours { "bold" } else { "normal" },
            escape(&p.policy)
        );
    }
    // Legend.
    let _ = writeln!(
        s,
        "<g transform=\"translate({} {})\"><line x1=\"0\" y1=\"0\" x2=\"24\" y2=\"0\" stroke=\"#888\" stroke-width=\"2\"/>\
         <circle cx=\"12\" cy=\"0\" r=\"4\" fill=\"#555\"/><text x=\"30\" y=\"4\">fixed keep-alive (window)</text></g>",
        W - RIGHT - 230.0,
        TOP + 10.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(policy: &str, window: Option<u64>, cold: u64, idle: f64) -> Point {
        Point {
            policy: policy.into(),
            window_ms: window,
            cold_starts: cold,
            idle_gib_s: idle,
        }
    }

    fn curve() -> Vec<Point> {
        vec![
            p("keepalive-1m", Some(60_000), 1000, 100.0),
            p("keepalive-5m", Some(300_000), 600, 300.0),
            p("keepalive-10m", Some(600_000), 400, 500.0),
            // Dominated: more memory, no fewer cold starts.
            p("keepalive-20m", Some(1_200_000), 400, 900.0),
            p("keepalive-60m", Some(3_600_000), 200, 1500.0),
        ]
    }

    #[test]
    fn the_frontier_drops_dominated_points_and_sorts_by_memory() {
        let c = curve();
        let f = frontier(&c);
        let names: Vec<&str> = f.iter().map(|&i| c[i].policy.as_str()).collect();
        assert_eq!(
            names,
            [
                "keepalive-1m",
                "keepalive-5m",
                "keepalive-10m",
                "keepalive-60m"
            ]
        );
        assert!(c[2].dominates(&c[3]));
        assert!(!c[3].dominates(&c[2]));
        assert!(!c[2].dominates(&c[2]), "a point does not dominate itself");
    }

    #[test]
    fn reduction_compares_with_fixed_windows_using_no_more_memory() {
        let c = curve();
        // 520 GiB·s: windows up to 10m qualify, the best has 400 cold starts; 240 is 40% fewer.
        let ours = p("adaptive", None, 240, 520.0);
        let r = reduction_vs_fixed(&ours, &c).unwrap();
        assert!((r - 0.4).abs() < 1e-9, "{r}");
        assert!(r >= 0.3);
        // 20% fewer only: fails a 30% target.
        let weak = p("adaptive", None, 320, 520.0);
        assert!(reduction_vs_fixed(&weak, &c).unwrap() < 0.3);
        // More cold starts than the 10m window at more memory: negative.
        let worse = p("adaptive", None, 500, 520.0);
        assert!(reduction_vs_fixed(&worse, &c).unwrap() < 0.0);
        // Less memory than any window: nothing to compare with.
        assert_eq!(reduction_vs_fixed(&p("x", None, 1, 50.0), &c), None);
    }

    #[test]
    fn reduction_vs_curve_interpolates_between_frontier_points() {
        let c = curve();
        // Halfway between 5m (300, 600) and 10m (500, 400): the curve is at 500 cold starts.
        let r = reduction_vs_curve(&p("a", None, 250, 400.0), &c).unwrap();
        assert!((r - 0.5).abs() < 1e-9, "{r}");
        // On the 10m-60m segment, past the dominated 20m point: 1000 GiB·s is 5/10 of the
        // way from 400 to 200 cold starts.
        let r = reduction_vs_curve(&p("a", None, 300, 1000.0), &c).unwrap();
        assert!(r.abs() < 1e-9, "{r}");
        assert_eq!(reduction_vs_curve(&p("a", None, 1, 2000.0), &c), None);
        assert_eq!(reduction_vs_curve(&p("a", None, 1, 10.0), &c), None);
    }

    #[test]
    fn windows_parse_and_name_their_policies() {
        assert_eq!(
            parse_windows("10m, 1m,90s,1m").unwrap(),
            vec![60_000, 90_000, 600_000]
        );
        assert!(parse_windows("1m,0x").unwrap_err().contains("\"0x\""));
        assert!(parse_windows(" , ").is_err());
        assert_eq!(window_policy(600_000), "keepalive-10m");
        assert_eq!(window_policy(90_000), "keepalive-90s");
    }

    #[test]
    fn the_svg_is_self_contained_and_labels_every_point() {
        let sweep = Sweep {
            description: "test".into(),
            fixed: curve(),
            named: vec![
                p("adaptive", None, 240, 520.0),
                p("czy & co", None, 700, 200.0),
            ],
        };
        let svg = sweep.svg("a <test>");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("href"), "no external resources");
        assert!(svg.contains("a &lt;test&gt;"));
        assert!(svg.contains("czy &amp; co"));
        assert!(svg.contains("<polyline"));
        for label in ["1m", "5m", "10m", "60m", "adaptive"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(svg.contains("#d62728"), "adaptive highlighted");
        let t = sweep.table();
        assert!(t.contains("adaptive") && t.contains("-40.0%"), "{t}");
        assert_eq!(nice_step(1000.0), 200.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(
            (
                tick_label(500.0),
                tick_label(25_000.0),
                tick_label(2_500_000.0)
            ),
            ("500".to_string(), "25k".to_string(), "2.5M".to_string())
        );
        let back: Sweep = serde_json::from_str(&serde_json::to_string(&sweep).unwrap()).unwrap();
        assert_eq!(back, sweep);
    }
}
