//! Inline SVG charts for the HTML report, drawn by hand so that every choice a reader sees is
//! deliberate:
//!
//! - each chart is an `<svg>` with a `viewBox` and no fixed width, so it shrinks with its box
//!   (the page never scrolls sideways because of a chart);
//! - the legend sits in its own column to the right of the plotted area, never on the data;
//! - axes come from [`super::ticks`]: nice ticks (1, 2, 5 × 10^k), log axes ranged on the data;
//! - policies keep one colour throughout the page, from the colour-blind-safe Okabe–Ito
//!   palette ([`PALETTE`]), ordered for contrast on white (its yellow last); past eight
//!   policies the colours repeat with a dashed line.

use std::fmt::Write;

use super::html::escape;
use super::ticks::{Axis, label};

/// Okabe & Ito's colour-blind-safe palette, most contrast on white first.
pub const PALETTE: [&str; 8] = [
    "#0072B2", // blue
    "#D55E00", // vermillion
    "#009E73", // bluish green
    "#CC79A7", // reddish purple
    "#E69F00", // orange
    "#56B4E9", // sky blue
    "#000000", // black
    "#B8A400", // Okabe–Ito yellow (#F0E442), darkened to be seen on white
];

/// The colour of series `i`, and whether it is drawn dashed to tell it from an earlier one.
pub fn colour(i: usize) -> (&'static str, bool) {
    (PALETTE[i % PALETTE.len()], i >= PALETTE.len())
}

/// The whole chart's size in SVG units (the page scales it to its box).
const W: f64 = 680.0;
const H: f64 = 320.0;
/// The plotted area.
const LEFT: f64 = 62.0;
const RIGHT: f64 = W - 180.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = H - 48.0;
/// Where the legend column starts.
const LEGEND_X: f64 = RIGHT + 12.0;
/// Legend text longer than this is cut (the full name is in a tooltip).
const LEGEND_CHARS: usize = 18;

/// One line on a chart.
#[derive(Clone, Debug, Default)]
pub struct Line {
    pub label: String,
    /// The series' index into [`PALETTE`].
    pub colour: usize,
    /// Drawn dashed (besides any dash [`colour`] adds).
    pub dashed: bool,
    /// `(x, y)` in data units, in x order.
    pub points: Vec<(f64, f64)>,
}

/// How an axis is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// From 0 (or the data's minimum when negative) to the data's maximum.
    Linear,
    /// Logarithmic over the positive values.
    Log,
}

/// A line chart.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: Scale,
    pub y: Scale,
    pub lines: Vec<Line>,
}

/// The axis for `values`: a linear one from 0 (or below), ending at the data's end when
/// `exact` (time), else at the next tick.
fn axis_of(
    scale: Scale,
    values: impl Iterator<Item = f64> + Clone,
    max_ticks: usize,
    exact: bool,
) -> Axis {
    let finite = values.filter(|v| v.is_finite());
    match scale {
        Scale::Linear => {
            let lo = finite.clone().fold(0.0f64, f64::min);
            let hi = finite.fold(f64::NEG_INFINITY, f64::max);
            let hi = if hi > lo { hi } else { lo + 1.0 };
            if exact {
                Axis::linear_exact(lo, hi, max_ticks)
            } else {
                Axis::linear(lo, hi, max_ticks)
            }
        }
        Scale::Log => {
            let positive = finite.filter(|v| *v > 0.0);
            let lo = positive.clone().fold(f64::INFINITY, f64::min);
            let hi = positive.fold(0.0f64, f64::max);
            Axis::log(lo, hi, max_ticks)
        }
    }
}

/// `d` for a path through `points` (already in SVG units).
fn path(points: &[(f64, f64)]) -> String {
    let mut d = String::with_capacity(points.len() * 14);
    for (k, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1}", if k == 0 { 'M' } else { 'L' });
    }
    d
}

fn open_svg(out: &mut String, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title><rect width=\"{W}\" height=\"{height}\" \
         fill=\"#fff\"/><text x=\"{x}\" y=\"20\" class=\"ct\" text-anchor=\"middle\">{t}</text>",
        t = escape(title),
        x = (LEFT + RIGHT) / 2.0,
    );
}

/// Vertical grid lines down to `bottom` at the axis' ticks, and their labels below.
fn x_ticks(out: &mut String, axis: &Axis, px: impl Fn(f64) -> f64, bottom: f64) {
    out.push_str("<g class=\"grid\">");
    for t in &axis.ticks {
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\"/>",
            x = px(*t)
        );
    }
    out.push_str("</g><g class=\"tk\">");
    for t in &axis.ticks {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(*t),
            bottom + 16.0,
            label(*t)
        );
    }
    out.push_str("</g>");
}

/// The legend column: one swatch and name per entry, `(label, colour, dashed)`.
fn legend(out: &mut String, entries: &[(String, &str, bool)]) {
    // As many as fit the column; the rest are summed up in one line.
    let fit = ((BOTTOM - TOP) / 18.0) as usize;
    for (k, (text, stroke, dashed)) in entries.iter().take(fit).enumerate() {
        let y = TOP + 8.0 + k as f64 * 18.0;
        let dash = if *dashed {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let shown: String = if text.chars().count() > LEGEND_CHARS {
            text.chars().take(LEGEND_CHARS - 1).chain(['…']).collect()
        } else {
            text.clone()
        };
        let _ = write!(
            out,
            "<g><title>{full}</title><line x1=\"{LEGEND_X}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" \
             stroke=\"{stroke}\" stroke-width=\"3\"{dash}/><text x=\"{tx}\" y=\"{ty}\" \
             class=\"lg\">{shown}</text></g>",
            full = escape(text),
            x2 = LEGEND_X + 22.0,
            tx = LEGEND_X + 28.0,
            ty = y + 4.0,
            shown = escape(&shown),
        );
    }
    if entries.len() > fit {
        let _ = write!(
            out,
            "<text x=\"{LEGEND_X}\" y=\"{y}\" class=\"lg\">+{n} more</text>",
            y = TOP + 12.0 + fit as f64 * 18.0,
            n = entries.len() - fit
        );
    }
}

impl Chart<'_> {
    /// The chart as one `<svg>` element.
    pub fn render(&self) -> String {
        let xs = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let ys = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
        let x_axis = axis_of(self.x, xs, 7, true);
        let y_axis = axis_of(self.y, ys, 6, false);
        let px = |v: f64| LEFT + x_axis.fraction(v) * (RIGHT - LEFT);
        let py = |v: f64| BOTTOM - y_axis.fraction(v) * (BOTTOM - TOP);
        let mut out = String::with_capacity(4096);
        open_svg(&mut out, self.title, H);
        // Grid and tick labels.
        x_ticks(&mut out, &x_axis, px, BOTTOM);
        out.push_str("<g class=\"grid\">");
        for t in &y_axis.ticks {
            let y = py(*t);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\"/>"
            );
        }
        out.push_str("</g><g class=\"tk\">");
        for t in &y_axis.ticks {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                py(*t) + 4.0,
                label(*t)
            );
        }
        out.push_str("</g>");
        let _ = write!(
            out,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\" class=\"frame\"/>\
             <text x=\"{cx}\" y=\"{xy}\" text-anchor=\"middle\" class=\"ad\">{xd}</text>\
             <text transform=\"translate(16 {cy}) rotate(-90)\" text-anchor=\"middle\" \
             class=\"ad\">{yd}</text>",
            w = RIGHT - LEFT,
            h = BOTTOM - TOP,
            cx = (LEFT + RIGHT) / 2.0,
            xy = H - 12.0,
            cy = (TOP + BOTTOM) / 2.0,
            xd = escape(self.x_desc),
            yd = escape(self.y_desc),
        );
        for line in &self.lines {
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let (stroke, extra_dash) = colour(line.colour);
            let dash = if line.dashed || extra_dash {
                " stroke-dasharray=\"6 3\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<path d=\"{}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\" \
                 stroke-linejoin=\"round\"{dash}><title>{}</title></path>",
                path(&pts),
                escape(&line.label)
            );
        }
        let entries: Vec<(String, &str, bool)> = self
            .lines
            .iter()
            .map(|l| {
                let (stroke, extra_dash) = colour(l.colour);
                (l.label.clone(), stroke, l.dashed || extra_dash)
            })
            .collect();
        legend(&mut out, &entries);
        out.push_str("</svg>");
        out
    }
}

/// One bar of a stacked bar chart: a label and its segments' values, in the order of the
/// chart's parts.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub values: Vec<f64>,
}

/// The colours of a stacked bar's parts: apart from the policies' first colours.
pub const PART_COLOURS: [&str; 3] = ["#56B4E9", "#E69F00", "#999999"];

/// Horizontal stacked bars (one per policy), the parts named in the legend column (coloured
/// from [`PART_COLOURS`]), a dashed mark at `reference` (the baseline's total).
pub fn stacked_bars(
    title: &str,
    x_desc: &str,
    parts: &[&str],
    bars: &[Bar],
    reference: f64,
) -> String {
    let height = (TOP + 30.0 + bars.len() as f64 * 30.0 + 40.0).max(160.0);
    let bottom = height - 48.0;
    let total = |b: &Bar| b.values.iter().filter(|v| v.is_finite()).sum::<f64>();
    let hi = bars.iter().map(total).fold(reference, f64::max);
    let axis = Axis::linear(0.0, hi.max(1e-9), 7);
    let px = |v: f64| LEFT + 50.0 + axis.fraction(v) * (RIGHT - LEFT - 90.0);
    let mut out = String::with_capacity(2048);
    open_svg(&mut out, title, height);
    x_ticks(&mut out, &axis, px, bottom);
    for (k, bar) in bars.iter().enumerate() {
        let y = TOP + 12.0 + k as f64 * 30.0;
        let name: String = if bar.label.chars().count() > 13 {
            bar.label.chars().take(12).chain(['…']).collect()
        } else {
            bar.label.clone()
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lg\">{}<title>{}</title></text>",
            LEFT + 46.0,
            y + 14.0,
            escape(&name),
            escape(&bar.label)
        );
        let mut at = 0.0;
        for (i, v) in bar.values.iter().enumerate() {
            if !v.is_finite() || *v <= 0.0 {
                continue;
            }
            let (x0, x1) = (px(at), px(at + v));
            let _ = write!(
                out,
                "<rect x=\"{x0:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"{c}\">\
                 <title>{p}: {val}</title></rect>",
                w = (x1 - x0).max(0.5),
                c = PART_COLOURS[i % PART_COLOURS.len()],
                p = escape(parts.get(i).copied().unwrap_or("")),
                val = format_args!("{v:.4}"),
            );
            at += v;
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" class=\"lg\">{:.3}</text>",
            px(at) + 4.0,
            y + 14.0,
            at
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#444\" \
         stroke-dasharray=\"4 3\"/><text x=\"{cx}\" y=\"{xy}\" text-anchor=\"middle\" \
         class=\"ad\">{xd}</text>",
        x = px(reference),
        cx = (LEFT + RIGHT) / 2.0,
        xy = height - 12.0,
        xd = escape(x_desc),
    );
    let entries: Vec<(String, &str, bool)> = parts
        .iter()
        .zip(PART_COLOURS.iter().cycle())
        .map(|(p, c)| (p.to_string(), *c, false))
        .collect();
    legend(&mut out, &entries);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: Vec<Line>, x: Scale) -> String {
        Chart {
            title: "t <1>",
            x_desc: "x",
            y_desc: "y",
            x,
            y: Scale::Linear,
            lines,
        }
        .render()
    }

    #[test]
    fn a_chart_scales_with_its_box_and_keeps_its_legend_off_the_data() {
        let line = |label: &str, colour: usize| Line {
            label: label.into(),
            colour,
            dashed: false,
            points: vec![(1.0, 0.0), (10.0, 5.0), (100.0, 20.0)],
        };
        let svg = chart(vec![line("a", 0), line("b", 9)], Scale::Log);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("viewBox=\"0 0 680 320\""));
        assert!(!svg.contains("<svg width"));
        assert!(svg.contains("t &lt;1&gt;"));
        // The second colour past the palette is dashed.
        assert!(svg.contains(PALETTE[1]) && svg.contains("stroke-dasharray"));
        // Legend entries start right of the plotted area.
        let legend_at = format!("x1=\"{LEGEND_X}\"");
        assert!(svg.contains(&legend_at) && LEGEND_X > RIGHT);
        // Log ticks from the data: 1, 10, 100, labelled without ".0".
        for t in [">1<", ">10<", ">100<"] {
            assert!(svg.contains(t), "{t} missing");
        }
        assert!(!svg.contains(".0<"));
    }

    #[test]
    fn empty_and_odd_data_still_draw() {
        let svg = chart(vec![], Scale::Linear);
        assert!(svg.contains("viewBox"));
        let nan = Line {
            points: vec![(f64::NAN, 1.0), (0.0, f64::INFINITY)],
            ..Line::default()
        };
        assert!(chart(vec![nan], Scale::Log).contains("</svg>"));
        let bars = stacked_bars(
            "score",
            "points",
            &["RT", "node"],
            &[Bar {
                label: "baseline".into(),
                values: vec![0.5, 0.5],
            }],
            1.0,
        );
        assert!(bars.contains("viewBox") && bars.contains("baseline"));
    }
}
