//! The one SVG layer, on the `svg` crate (which escapes text): a canvas
//! with its background and title, text, rectangles, lines, a legend, and
//! axes with round ticks ([`nice_ticks`]).
//!
//! Text goes into text nodes only, never into attributes (the crate does
//! not escape quotes in attribute values); attributes are numbers and
//! colours.

use svg::node::element::{Element, Line, Rectangle, Title};
use svg::node::{self, Value};
use svg::{Document, Node};

/// The default font size (px).
pub const FONT_SIZE: f64 = 11.0;

/// A coordinate rounded to 0.1 px (and NaN to 0, so that no attribute
/// says NaN).
fn px(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// A picture being drawn: `width` x `height` px on white, sans-serif.
pub struct Canvas {
    doc: Document,
}

impl Canvas {
    pub fn new(width: f64, height: f64) -> Self {
        let (w, h) = (px(width), px(height));
        let doc = Document::new()
            .set("width", w)
            .set("height", h)
            .set("viewBox", (0, 0, w, h))
            .set("font-family", "sans-serif")
            .set("font-size", FONT_SIZE)
            .add(rect(0.0, 0.0, w, h, "white"));
        Canvas { doc }
    }

    /// Add any element.
    pub fn add<N: Into<Box<dyn Node>>>(&mut self, node: N) {
        self.doc.append(node);
    }

    /// The picture's title at (`x`, `y`), bold when `size` is above the
    /// default.
    pub fn title(&mut self, x: f64, y: f64, size: f64, content: impl Into<String>) {
        let mut t = text(x, y, content);
        if size > FONT_SIZE {
            t = t.set("font-size", px(size)).set("font-weight", "bold");
        }
        self.add(t);
    }

    /// The document, ending in a newline.
    pub fn finish(self) -> String {
        format!("{}\n", self.doc)
    }
}

/// A `<text>` element. The crate's own `Text` element puts newlines
/// around its content (bodoni/svg#90); a plain element holding a text
/// node keeps the content as it is.
#[derive(Debug, Clone)]
pub struct Label(Element);

impl Label {
    /// Set an attribute.
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.assign(name, value);
        self
    }
}

impl From<Label> for Box<dyn Node> {
    fn from(l: Label) -> Self {
        Box::new(l.0)
    }
}

/// Text at (`x`, `y`) (the baseline), escaped.
pub fn text(x: f64, y: f64, content: impl Into<String>) -> Label {
    let mut e = Element::new("text");
    e.append(node::Text::new(content));
    Label(e).set("x", px(x)).set("y", px(y))
}

/// A filled rectangle (a negative size draws nothing, not an error).
pub fn rect(x: f64, y: f64, width: f64, height: f64, fill: &str) -> Rectangle {
    Rectangle::new()
        .set("x", px(x))
        .set("y", px(y))
        .set("width", px(width.max(0.0)))
        .set("height", px(height.max(0.0)))
        .set("fill", fill)
}

/// A line.
pub fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) -> Line {
    Line::new()
        .set("x1", px(x1))
        .set("y1", px(y1))
        .set("x2", px(x2))
        .set("y2", px(y2))
        .set("stroke", stroke)
}

/// A hover text for the element it is added to.
pub fn tooltip(content: impl Into<String>) -> Title {
    Title::new(content)
}

/// About how wide `s` is in sans-serif at `size` px (erring wide: the
/// widths of DejaVu Sans, wider than most).
pub fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.3,
            'f' | 'r' | 't' | '(' | ')' | '[' | ']' | '/' | '-' | ' ' => 0.4,
            'm' | 'w' => 0.9,
            'M' | 'W' => 0.95,
            'a'..='z' => 0.62,
            'A'..='Z' => 0.72,
            '0'..='9' => 0.64,
            _ => 0.7,
        })
        .sum();
    em * size
}

/// How a legend looks: a swatch, its text `text_dx` px to the right,
/// `spacing` px before the next entry.
#[derive(Debug, Clone, Copy)]
pub struct LegendStyle {
    pub swatch: (f64, f64),
    pub text_dx: f64,
    pub spacing: f64,
    /// Outline of the swatches, for light colours.
    pub outline: bool,
}

impl LegendStyle {
    pub const PLAIN: LegendStyle = LegendStyle {
        swatch: (10.0, 10.0),
        text_dx: 14.0,
        spacing: 10.0,
        outline: false,
    };
    pub const OUTLINED: LegendStyle = LegendStyle {
        swatch: (12.0, 10.0),
        text_dx: 15.0,
        spacing: 8.0,
        outline: true,
    };
}

/// One row of legend entries (colour, label) from `x` with the text on
/// baseline `y`; returns where the next entry would start.
pub fn legend(
    canvas: &mut Canvas,
    x: f64,
    y: f64,
    entries: &[(&str, &str)],
    style: LegendStyle,
) -> f64 {
    let mut lx = x;
    for (colour, label) in entries {
        let mut sw = rect(lx, y - 9.0, style.swatch.0, style.swatch.1, colour);
        if style.outline {
            sw = sw.set("stroke", "#666").set("stroke-width", 0.5);
        }
        canvas.add(sw);
        canvas.add(text(lx + style.text_dx, y, *label));
        lx += style.text_dx + text_width(label, FONT_SIZE) + style.spacing;
    }
    lx
}

/// A round step near `raw`: 1, 2 or 5 x 10^k, as (mantissa, k).
fn nice_step_parts(raw: f64) -> (f64, i32) {
    if !(raw.is_finite() && raw > 0.0) {
        return (1.0, 0);
    }
    let mut k = raw.log10().floor() as i32;
    let f = raw / 10f64.powi(k);
    let m = if f < 1.5 {
        1.0
    } else if f < 3.0 {
        2.0
    } else if f < 7.0 {
        5.0
    } else {
        k += 1;
        1.0
    };
    (m, k)
}

/// `i` x `m` x 10^`k`, as close to the decimal as a float gets.
fn times_pow10(i: f64, k: i32) -> f64 {
    if k < 0 {
        i / 10f64.powi(-k)
    } else {
        i * 10f64.powi(k)
    }
}

/// A round step near `raw`: 1, 2 or 5 x 10^k.
pub fn nice_step(raw: f64) -> f64 {
    let (m, k) = nice_step_parts(raw);
    times_pow10(m, k)
}

/// Round ticks from 0 for values up to `max`: about `n` steps of 1, 2 or
/// 5 x 10^k, the last tick at or above `max` (so it can be the axis'
/// top). A `max` that is not positive gives the ticks for 1.
pub fn nice_ticks(max: f64, n: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let (m, k) = nice_step_parts(max / n.max(1) as f64);
    let step = times_pow10(m, k);
    let count = ((max / step) * (1.0 - 1e-12)).ceil().max(1.0) as usize;
    (0..=count).map(|i| times_pow10(i as f64 * m, k)).collect()
}

/// Decimals that show every tick of `ticks` exactly.
pub fn tick_decimals(ticks: &[f64]) -> usize {
    let step = match ticks {
        [a, b, ..] => b - a,
        _ => 1.0,
    };
    if step > 0.0 && step < 1.0 {
        (-step.log10().floor()) as usize
    } else {
        0
    }
}

/// A horizontal axis at `y` from `x0` to `x1`: the line, a mark and a
/// label (centred under it) at each tick.
pub fn x_axis(
    canvas: &mut Canvas,
    (x0, x1): (f64, f64),
    y: f64,
    ticks: &[f64],
    scale: impl Fn(f64) -> f64,
    label: impl Fn(f64) -> String,
) {
    canvas.add(line(x0, y, x1, y, "#333"));
    for &t in ticks {
        let x = scale(t);
        canvas.add(line(x, y, x, y + 4.0, "#333"));
        canvas.add(text(x, y + 16.0, label(t)).set("text-anchor", "middle"));
    }
}

/// A vertical axis as grid lines across `x0`..`x1` with their labels
/// right-aligned left of `x0`.
pub fn y_grid(
    canvas: &mut Canvas,
    (x0, x1): (f64, f64),
    ticks: &[f64],
    scale: impl Fn(f64) -> f64,
    label: impl Fn(f64) -> String,
) {
    for &t in ticks {
        let y = scale(t);
        canvas.add(line(x0, y, x1, y, "#ddd"));
        canvas.add(text(x0 - 4.0, y + 4.0, label(t)).set("text-anchor", "end"));
    }
}

/// A dashed reference line across `x0`..`x1` at `y`, labelled at its
/// right end.
pub fn reference_line(canvas: &mut Canvas, (x0, x1): (f64, f64), y: f64, label: &str) {
    canvas.add(
        line(x0, y, x1, y, "#222")
            .set("stroke-width", 1.5)
            .set("stroke-dasharray", "6,3"),
    );
    // A white halo keeps the label readable over bars and whiskers.
    canvas.add(
        text(x1 - 2.0, y - 4.0, label)
            .set("text-anchor", "end")
            .set("font-weight", "bold")
            .set("stroke", "white")
            .set("stroke-width", 3)
            .set("paint-order", "stroke"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(41.1, 4), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(nice_ticks(2000.0, 6), [0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        assert_eq!(
            nice_ticks(1.05, 4),
            [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
            "decimals come out exact"
        );
        assert_eq!(nice_ticks(9.0, 1), [0.0, 10.0]);
        assert_eq!(nice_ticks(0.0, 4), nice_ticks(1.0, 4));
        assert_eq!(nice_ticks(f64::NAN, 4), nice_ticks(1.0, 4));
        for (max, n) in [(1.1e6, 4), (0.0731, 5), (7.0, 3), (123456.0, 7)] {
            let t = nice_ticks(max, n);
            let step = t[1] - t[0];
            assert_eq!(t[0], 0.0);
            assert!(*t.last().unwrap() >= max, "{max}: {t:?}");
            assert!(t[t.len() - 2] < max, "{max}: {t:?}");
            let (m, _) = nice_step_parts(step * (1.0 + 1e-9));
            assert!([1.0, 2.0, 5.0].contains(&m), "{max}: step {step}");
        }
    }

    #[test]
    fn steps_are_one_two_or_five() {
        assert_eq!(nice_step(0.26), 0.2);
        assert_eq!(nice_step(340.0), 500.0);
        assert_eq!(nice_step(0.8), 1.0);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(tick_decimals(&nice_ticks(1.05, 4)), 1);
        assert_eq!(tick_decimals(&nice_ticks(0.07, 4)), 2);
        assert_eq!(tick_decimals(&nice_ticks(2000.0, 4)), 0);
    }

    #[test]
    fn text_is_escaped_and_the_document_closes() {
        let mut c = Canvas::new(100.0, 50.0);
        c.title(10.0, 20.0, 15.0, "a <b> & \"c\"");
        legend(&mut c, 0.0, 40.0, &[("#fff", "x<y")], LegendStyle::OUTLINED);
        c.add(line(0.0, f64::NAN, 1.0, 1.0, "#000"));
        let s = c.finish();
        assert!(s.starts_with("<svg ") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt;b&gt; &amp; \"c\""), "{s}");
        assert!(s.contains("x&lt;y"));
        assert!(!s.contains("NaN"));
        assert!(s.contains(r#"font-weight="bold""#));
        assert!(s.contains(">x&lt;y</text>"), "no newlines around text: {s}");
    }
}
