//! How the dashboard writes numbers, durations and instants: one place, so every page reads
//! alike (thousands separated, durations in the largest unit that keeps them short, times in
//! UTC with the exact instant kept for the local-time toggle).

use chrono::{DateTime, Utc};

/// `1234567` → `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count in at most four characters for tight places: `999`, `1.2k`, `34k`, `5.6M`.
pub(crate) fn short_count(n: i64) -> String {
    let a = n.unsigned_abs() as f64;
    let sign = if n < 0 { "-" } else { "" };
    if a < 1_000.0 {
        format!("{n}")
    } else if a < 10_000.0 {
        format!("{sign}{:.1}k", a / 1_000.0)
    } else if a < 1_000_000.0 {
        format!("{sign}{:.0}k", a / 1_000.0)
    } else if a < 10_000_000.0 {
        format!("{sign}{:.1}M", a / 1_000_000.0)
    } else {
        format!("{sign}{:.0}M", a / 1_000_000.0)
    }
}

/// A duration in milliseconds as people read it: `840 ms`, `2.4 s`, `3 min 5 s`, `2 h 10 min`,
/// `3 d 4 h`.
pub(crate) fn millis(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    if ms < 10_000 {
        return format!("{:.1} s", ms as f64 / 1_000.0);
    }
    seconds(ms / 1_000)
}

/// Whole seconds as people read them (see [`millis`]).
pub(crate) fn seconds(s: u64) -> String {
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => match s % 60 {
            0 => format!("{} min", s / 60),
            rest => format!("{} min {rest} s", s / 60),
        },
        3_600..=86_399 => match (s % 3_600) / 60 {
            0 => format!("{} h", s / 3_600),
            rest => format!("{} h {rest} min", s / 3_600),
        },
        _ => match (s % 86_400) / 3_600 {
            0 => format!("{} d", s / 86_400),
            rest => format!("{} d {rest} h", s / 86_400),
        },
    }
}

/// `at` in UTC, to the second: `2026-12-07 12:00:03`.
pub(crate) fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `at` as RFC 3339 with milliseconds, for `<time datetime>` (the script rewrites the text in
/// local time when asked).
pub(crate) fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long ago (or from now) `at` is: `12 s ago`, `in 3 min`, `just now`.
pub(crate) fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = (now - at).num_seconds();
    if delta.abs() < 2 {
        "just now".to_owned()
    } else if delta > 0 {
        format!("{} ago", seconds(delta as u64))
    } else {
        format!("in {}", seconds(delta.unsigned_abs()))
    }
}

/// A change from `before` to `now` as a signed percentage, `None` when there was nothing
/// before to compare with.
pub(crate) fn change(now: f64, before: f64) -> Option<f64> {
    (before > 0.0).then(|| (now - before) / before * 100.0)
}

/// An instant shown in a page: the UTC text, the exact instant, and the relative reading.
#[derive(Debug, Clone)]
pub(crate) struct When {
    /// `2026-12-07 12:00:03`.
    pub(crate) text: String,
    /// RFC 3339, for `<time datetime>`.
    pub(crate) iso: String,
    /// `3 min ago`.
    pub(crate) ago: String,
}

impl When {
    pub(crate) fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        When {
            text: utc(at),
            iso: iso(at),
            ago: ago(at, now),
        }
    }
}

/// JSON as people read it: indented two spaces; `null` for nothing.
pub(crate) fn pretty_json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Quotes `s` for a POSIX shell: as is when it is plain, else in single quotes.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` made safe inside HTML text and quoted attributes (for the SVG the charts write by hand;
/// templates escape by themselves).
pub(crate) fn escape(s: &str) -> String {
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

/// At most `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
        assert_eq!(short_count(1_234), "1.2k");
        assert_eq!(short_count(56_000), "56k");
        assert_eq!(short_count(5_600_000), "5.6M");
    }

    #[test]
    fn durations_use_the_largest_short_unit() {
        assert_eq!(millis(840), "840 ms");
        assert_eq!(millis(2_440), "2.4 s");
        assert_eq!(millis(185_000), "3 min 5 s");
        assert_eq!(seconds(7_800), "2 h 10 min");
        assert_eq!(seconds(3 * 86_400 + 4 * 3_600), "3 d 4 h");
        assert_eq!(seconds(120), "2 min");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("email"), "email");
        assert_eq!(shell_quote(r#"{"a":1}"#), r#"'{"a":1}'"#);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
