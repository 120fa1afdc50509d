//! Charts drawn on the server as SVG: line charts for the history series and sparklines for
//! tables. They need no script (a page shows its data with JavaScript off) and no style
//! attribute (the Content Security Policy forbids them): colours come from CSS classes, so the
//! themes restyle them.

use std::fmt::Write;

/// The drawing's own coordinates; the SVG scales to its box.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 150.0;

/// One line of a chart: a CSS class (its colour) and a value per point (`None` is a gap).
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) class: &'static str,
    pub(crate) values: Vec<Option<f64>>,
}

/// A drawn chart: the SVG and the value its top grid line stands for.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// The `<svg>` element.
    pub(crate) svg: String,
    /// The top of the scale, in the values' unit.
    pub(crate) max: f64,
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for nothing).
pub(crate) fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if v <= step * power * 1.000_001 {
            return step * power;
        }
    }
    10.0 * power
}

fn x_of(i: usize, n: usize) -> f64 {
    if n <= 1 {
        WIDTH / 2.0
    } else {
        i as f64 * WIDTH / (n - 1) as f64
    }
}

fn y_of(v: f64, max: f64, height: f64) -> f64 {
    height - (v / max).clamp(0.0, 1.0) * (height - 2.0) - 1.0
}

/// The path of one line's runs (a gap starts a new run). A run of one point is drawn as a
/// short dash, so a lone minute with data still shows.
fn path(values: &[Option<f64>], max: f64, height: f64) -> String {
    let n = values.len();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut pen_down = false;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => {
                let point = (x_of(i, n), y_of(*v, max, height));
                match runs.last_mut() {
                    Some(run) if pen_down => run.push(point),
                    _ => runs.push(vec![point]),
                }
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    let mut d = String::new();
    for run in runs {
        if let [(x, y)] = run[..] {
            let _ = write!(
                d,
                "M{:.1} {y:.1}L{:.1} {y:.1}",
                (x - 3.0).max(0.0),
                (x + 3.0).min(WIDTH)
            );
            continue;
        }
        for (i, (x, y)) in run.iter().enumerate() {
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { 'M' } else { 'L' });
        }
    }
    d
}

/// A line chart of `lines` sharing one scale from zero, with three grid lines and the first
/// line's area shaded. `label` names it for screen readers.
pub(crate) fn line_chart(lines: &[Line], label: &str) -> Chart {
    let top = lines
        .iter()
        .flat_map(|line| line.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let max = nice_max(top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        super::format::escape(label)
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(max * frac, max, HEIGHT);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="0" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}" vector-effect="non-scaling-stroke"/>"#
        );
    }
    for (index, line) in lines.iter().enumerate() {
        let d = path(&line.values, max, HEIGHT);
        if d.is_empty() {
            continue;
        }
        if index == 0 {
            // Close the first run of the first line down to the axis for its shading.
            let points: Vec<(usize, f64)> = line
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .collect();
            if let (Some(first), Some(last)) = (points.first(), points.last()) {
                let n = line.values.len();
                let area = format!(
                    "{d}L{:.1} {HEIGHT}L{:.1} {HEIGHT}Z",
                    x_of(last.0, n),
                    x_of(first.0, n)
                );
                let _ = write!(svg, r#"<path class="area {}" d="{area}"/>"#, line.class);
            }
        }
        let _ = write!(
            svg,
            r#"<path class="line {}" d="{d}" fill="none" vector-effect="non-scaling-stroke"/>"#,
            line.class
        );
    }
    svg.push_str("</svg>");
    Chart { svg, max }
}

/// A sparkline of `values` (a small line with its area), scaled to its own maximum.
pub(crate) fn sparkline(values: &[f64], class: &'static str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    let max = values.iter().fold(0.0f64, |a, b| a.max(*b));
    let scale = if max > 0.0 { max } else { 1.0 };
    let n = values.len();
    let x = |i: usize| {
        if n <= 1 {
            W / 2.0
        } else {
            i as f64 * W / (n - 1) as f64
        }
    };
    let mut d = String::new();
    for (i, v) in values.iter().enumerate() {
        let y = H - (v / scale) * (H - 3.0) - 1.5;
        let _ = write!(d, "{}{:.1} {:.1}", if i == 0 { 'M' } else { 'L' }, x(i), y);
    }
    let mut svg = format!(
        r#"<svg class="spark {class}" viewBox="0 0 {W} {H}" preserveAspectRatio="none" aria-hidden="true">"#
    );
    if !d.is_empty() {
        let _ = write!(
            svg,
            r#"<path class="area" d="{d}L{:.1} {H}L0 {H}Z"/><path class="line" d="{d}" fill="none" vector-effect="non-scaling-stroke"/>"#,
            x(n.saturating_sub(1))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A progress bar for `fraction` (0 to 1) as SVG, since a width cannot be styled inline.
pub(crate) fn bar(fraction: f64, class: &'static str) -> String {
    let pct = (fraction.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
    format!(
        r#"<svg class="bar {class}" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label="{pct}%"><rect class="track" x="0" y="0" width="100" height="6" rx="3"/><rect class="fill" x="0" y="0" width="{pct}" height="6" rx="3" data-bar-fill=""/></svg>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_to_one_two_or_five() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(500.0), 500.0);
        assert_eq!(nice_max(0.03), 0.05);
    }

    #[test]
    fn gaps_break_the_line() {
        let d = path(&[Some(1.0), None, Some(1.0), Some(0.0)], 1.0, 100.0);
        assert_eq!(d.matches('M').count(), 2, "{d}");
        let chart = line_chart(
            &[Line {
                class: "a",
                values: vec![Some(3.0), Some(4.0)],
            }],
            "x<y",
        );
        assert_eq!(chart.max, 5.0);
        assert!(chart.svg.contains("x&lt;y"), "{}", chart.svg);
        assert!(!chart.svg.contains("style="));
    }
}
