//! Figures and how they are printed.

use std::fmt::Write;

use serde::Serialize;

/// One measured figure: every run's value, reported as the median with the min–max range.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The workload, e.g. `W2`.
    pub workload: String,
    /// What was measured, e.g. `drain, concurrency 50`.
    pub name: String,
    /// The unit, e.g. `jobs/s`.
    pub unit: String,
    /// The value of each run.
    pub runs: Vec<f64>,
    /// The median of the runs.
    pub median: f64,
    /// The smallest run.
    pub min: f64,
    /// The largest run.
    pub max: f64,
}

impl Figure {
    /// A figure from its runs.
    pub fn new(workload: &str, name: impl Into<String>, unit: &str, mut runs: Vec<f64>) -> Self {
        runs.sort_by(f64::total_cmp);
        let median = median(&runs);
        Figure {
            workload: workload.to_owned(),
            name: name.into(),
            unit: unit.to_owned(),
            min: runs.first().copied().unwrap_or(f64::NAN),
            max: runs.last().copied().unwrap_or(f64::NAN),
            median,
            runs,
        }
    }
}

/// The median of sorted values.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The value at quantile `q` (0.0 to 1.0) of sorted values, nearest rank.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every figure of one `stoker bench` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The store measured: `sqlite` or `postgres`.
    pub store: String,
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
    /// Remarks that belong with the figures (e.g. a workload skipped on this store).
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn new(store: &str) -> Self {
        Report {
            store: store.to_owned(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, figure: Figure) {
        tracing::info!(
            workload = %figure.workload,
            name = %figure.name,
            median = figure.median,
            unit = %figure.unit,
            "measured"
        );
        self.figures.push(figure);
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The report as a human table.
    pub fn to_table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.workload.clone(),
                    f.name.clone(),
                    format!("{} {}", number(f.median), f.unit),
                    format!("{}–{}", number(f.min), number(f.max)),
                ]
            })
            .collect();
        let header = ["workload", "figure", "median", "min–max"];
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|row| row[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!("stoker bench on {}\n\n", self.store);
        let line = |out: &mut String, cells: [&str; 4]| {
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, header);
        for row in &rows {
            line(&mut out, [&row[0], &row[1], &row[2], &row[3]]);
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nnote: {note}");
        }
        out
    }
}

/// A figure with sensible precision: 12,345 / 123.4 / 1.23.
fn number(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    if value.abs() >= 1000.0 {
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if whole < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 9.0]), 2.5);
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(123.45), "123.5");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(f64::NAN), "n/a");
    }

    #[test]
    fn table_lines_up() {
        let mut report = Report::new("sqlite");
        report.add(Figure::new(
            "W1",
            "enqueue one at a time",
            "jobs/s",
            vec![5000.0, 5100.0, 4900.0],
        ));
        let table = report.to_table();
        assert!(
            table.contains("W1        enqueue one at a time  5,000 jobs/s  4,900–5,100"),
            "{table}"
        );
    }
}
