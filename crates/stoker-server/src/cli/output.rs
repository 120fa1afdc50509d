//! What the commands print: aligned tables and detail views for people, JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use stoker::JobState;

use crate::api::model::{JobCounts, JobView};

/// A table whose columns are padded to their widest cell.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers; a header starting with `>` is right-aligned (for numbers).
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers
                .iter()
                .map(|header| header.trim_start_matches('>'))
                .collect(),
            right: headers
                .iter()
                .map(|header| header.starts_with('>'))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per header.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header line.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                let pad = widths[index].saturating_sub(cell.chars().count());
                if index > 0 {
                    line.push_str("  ");
                }
                if self.right[index] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if index + 1 < row.len() {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `value` as pretty JSON on standard output.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        // Every type printed here serializes; if one ever does not, say so instead of
        // printing nothing.
        Err(err) => eprintln!("error: could not encode the output as JSON: {err}"),
    }
}

/// A time for tables: `2025-01-31 09:00:00`, in UTC.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, `-` when absent.
pub(crate) fn time_or_dash(at: Option<DateTime<Utc>>) -> String {
    at.map(time).unwrap_or_else(|| "-".to_owned())
}

/// A duration the way people write it: `30s`, `1m30s`, `250ms`.
pub(crate) fn duration(value: Duration) -> String {
    let millis = value.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = value.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

/// Text cut to `max` characters, with `…` when cut; for table cells.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The jobs of `stoker jobs list` as a table.
pub(crate) fn jobs_table(jobs: &[JobView]) -> String {
    let mut table = Table::new(&[
        ">ID",
        "KIND",
        "QUEUE",
        "STATE",
        ">ATTEMPT",
        ">PRIORITY",
        "RUN AT",
        "CREATED",
        "TENANT",
    ]);
    for job in jobs {
        table.row(vec![
            job.id.to_string(),
            clip(&job.kind, 40),
            clip(&job.queue, 30),
            job.state.to_string(),
            format!("{}/{}", job.attempt, job.max_attempts),
            job.priority.to_string(),
            time(job.run_at),
            time(job.created_at),
            job.tenant
                .as_deref()
                .map_or("-".to_owned(), |t| clip(t, 30)),
        ]);
    }
    table.render()
}

/// One job in full, for `stoker jobs show`.
pub(crate) fn job_detail(job: &JobView) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("id", job.id.to_string()),
        ("kind", job.kind.clone()),
        ("queue", job.queue.clone()),
        ("state", state_line(job)),
        (
            "attempts",
            format!("{} of {}", job.attempt, job.max_attempts),
        ),
        ("priority", job.priority.to_string()),
        ("run at", time(job.run_at)),
        ("created", time(job.created_at)),
        ("attempted", time_or_dash(job.attempted_at)),
        ("finished", time_or_dash(job.finished_at)),
    ];
    let optional = [
        ("worker", job.worker.clone()),
        ("lease until", job.lease_expires_at.map(time)),
        ("idempotency key", job.idempotency_key.clone()),
        ("tenant", job.tenant.clone()),
        (
            "on finish",
            job.on_finish
                .as_ref()
                .map(|on_finish| on_finish.url.clone()),
        ),
        ("correlation", job.metadata.correlation_id.clone()),
        ("parent", job.metadata.parent_id.map(|id| id.to_string())),
        ("source", job.metadata.source.clone()),
        (
            "tags",
            (!job.metadata.tags.is_empty()).then(|| job.metadata.tags.join(", ")),
        ),
        (
            "timeout",
            job.timeout_seconds
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                .map(duration),
        ),
    ];
    fields.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value))),
    );
    fields.push(("args", compact(&job.args)));
    if let Some(progress) = &job.progress {
        let mut line = format!("{:.0}%", progress.fraction * 100.0);
        if let Some(message) = &progress.message {
            let _ = write!(line, " {message}");
        }
        let _ = write!(line, " (at {})", time(progress.at));
        fields.push(("progress", line));
    }
    if let Some(result) = &job.result {
        fields.push(("result", compact(result)));
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (name, value) in &fields {
        let _ = writeln!(out, "{:<width$} {value}", format!("{name}:"));
    }
    if job.errors.is_empty() {
        let _ = writeln!(out, "{:<width$} none", "errors:");
    } else {
        let _ = writeln!(out, "errors:");
        for error in &job.errors {
            let kind = serde_json::to_value(error.kind)
                .ok()
                .and_then(|kind| kind.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  attempt {} at {} ({kind}): {}",
                error.attempt,
                time(error.at),
                error.message
            );
            if let Some(backtrace) = &error.backtrace {
                for line in backtrace.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    out
}

fn state_line(job: &JobView) -> String {
    let mut line = job.state.to_string();
    if job.cancel_requested_at.is_some() && job.state == JobState::Running {
        line.push_str(" (cancel requested)");
    }
    if matches!(job.state, JobState::Available | JobState::Retryable) && job.run_at > Utc::now() {
        let _ = write!(line, " (scheduled for {})", time(job.run_at));
    }
    line
}

/// Compact JSON for a one-line field.
pub(crate) fn compact(value: &Value) -> String {
    value.to_string()
}

/// A row of counts by state, in the table column order.
pub(crate) fn count_cells(counts: &JobCounts) -> Vec<String> {
    [
        counts.available,
        counts.scheduled,
        counts.running,
        counts.retryable,
        counts.completed,
        counts.discarded,
        counts.cancelled,
    ]
    .iter()
    .map(i64::to_string)
    .collect()
}

/// The headers of [`count_cells`], right-aligned: `AVAILABLE` is due work, `SCHEDULED` the
/// available jobs still waiting for their `run_at`.
pub(crate) const COUNT_HEADERS: [&str; 7] = [
    ">AVAILABLE",
    ">SCHEDULED",
    ">RUNNING",
    ">RETRYABLE",
    ">COMPLETED",
    ">DISCARDED",
    ">CANCELLED",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_and_aligns_numbers() {
        let mut table = Table::new(&[">ID", "NAME"]);
        table.row(vec!["7".into(), "a".into()]);
        table.row(vec!["1234".into(), "bb".into()]);
        assert_eq!(table.render(), "  ID  NAME\n   7  a\n1234  bb\n");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn clips_long_text() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
