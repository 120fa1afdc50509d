//! Parsers for flag values. Each returns a message clap prints after naming the flag, so a bad
//! value fails with exit code 2 before anything is read or written.

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use stoker::{JobId, JobState, Priority};

/// `--args`: a JSON object, inline, `@PATH` to read a file, or `-` to read standard input.
pub(crate) fn json_args(raw: &str) -> Result<Value, String> {
    let (text, origin) = if raw == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| format!("could not read standard input: {err}"))?;
        (text, "standard input".to_owned())
    } else if let Some(path) = raw.strip_prefix('@') {
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("could not read {path}: {err}"))?;
        (text, path.to_owned())
    } else {
        (raw.to_owned(), String::new())
    };
    let args: Value = serde_json::from_str(&text).map_err(|err| {
        if origin.is_empty() {
            format!("not valid JSON: {err}")
        } else {
            format!("{origin} is not valid JSON: {err}")
        }
    })?;
    // The API takes args as an object only; the CLI agrees with it on a database too.
    if !args.is_object() {
        return Err(format!(
            "args must be a JSON object such as {{\"to\": \"ada@example.com\"}}, got {}",
            match args {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ));
    }
    Ok(args)
}

/// A duration: `500ms`, `30s`, `5m`, `2h`, `1d`, combinations such as `1h30m`, or a plain
/// number of seconds (fractions allowed).
pub(crate) fn duration(raw: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as 30s, 5m, 1h30m, 500ms or a number of seconds";
    let text = raw.trim();
    if text.is_empty() {
        return Err(format!("empty; {HINT}"));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{raw:?} is not a duration; {HINT}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{raw:?} lacks a unit after its last number; {HINT}"))?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{raw:?} is not a duration; {HINT}"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(format!("{raw:?} has an unknown unit {unit:?}; {HINT}")),
        };
        total += Duration::try_from_secs_f64(value * scale)
            .map_err(|_| format!("{raw:?} is too long"))?;
        rest = tail;
    }
    Ok(total)
}

/// A positive duration, for timeouts.
pub(crate) fn positive_duration(raw: &str) -> Result<Duration, String> {
    let value = duration(raw)?;
    if value.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(value)
}

/// A point in time: RFC 3339 (`2025-01-31T09:00:00Z`, `2025-01-31T10:00:00+01:00`), or a UTC
/// date and time without an offset (`2025-01-31 09:00`, `2025-01-31T09:00:00`), or a date
/// (midnight UTC).
pub(crate) fn time(raw: &str) -> Result<DateTime<Utc>, String> {
    let text = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "{raw:?} is not a time; expected RFC 3339 such as 2025-01-31T09:00:00Z (or a UTC \
         2025-01-31 09:00:00)"
    ))
}

/// A priority: a number from -32768 to 32767 (higher runs first), or low, normal, high,
/// critical.
pub(crate) fn priority(raw: &str) -> Result<Priority, String> {
    match raw.to_ascii_lowercase().as_str() {
        "low" => Ok(Priority::LOW),
        "normal" => Ok(Priority::NORMAL),
        "high" => Ok(Priority::HIGH),
        "critical" => Ok(Priority::CRITICAL),
        other => other.parse::<i16>().map(Priority).map_err(|_| {
            format!(
                "{raw:?} is not a priority; expected low, normal, high, critical or a number \
                 from -32768 to 32767"
            )
        }),
    }
}

/// A job state by name.
pub(crate) fn state(raw: &str) -> Result<JobState, String> {
    raw.to_ascii_lowercase()
        .parse::<JobState>()
        .map_err(|err| err.to_string())
}

// --- stream search ---
/// A state as a search sees it: a job state, `scheduled` (available, not yet due) or `failed`
/// (retryable and discarded).
pub(crate) fn state_views(raw: &str) -> Result<super::StateViews, String> {
    stoker::StateView::parse_word(&raw.to_ascii_lowercase())
        .map(super::StateViews)
        .map_err(|err| err.reason)
}

/// A job id: a positive integer.
pub(crate) fn job_id(raw: &str) -> Result<JobId, String> {
    match raw.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(JobId(id)),
        _ => Err(format!(
            "{raw:?} is not a job id; expected a positive integer"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(duration("5x").unwrap_err().contains("unknown unit"));
        assert!(duration("5m3").unwrap_err().contains("lacks a unit"));
        assert!(duration("-1").is_err());
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn times() {
        let at = time("2025-01-31T09:00:00Z").unwrap();
        assert_eq!(time("2025-01-31T10:00:00+01:00").unwrap(), at);
        assert_eq!(time("2025-01-31 09:00").unwrap(), at);
        assert_eq!(
            time("2025-01-31").unwrap(),
            time("2025-01-31T00:00:00Z").unwrap()
        );
        assert!(time("tomorrow").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn priorities_states_and_ids() {
        assert_eq!(priority("HIGH").unwrap(), Priority::HIGH);
        assert_eq!(priority("-5").unwrap(), Priority(-5));
        assert!(priority("urgent").is_err());
        assert_eq!(state("Discarded").unwrap(), JobState::Discarded);
        assert!(state("done").unwrap_err().contains("expected one of"));
        assert_eq!(job_id("42").unwrap(), JobId(42));
        assert!(job_id("0").is_err());
        assert!(job_id("x").is_err());
    }

    #[test]
    fn json_args_inline_and_errors() {
        assert_eq!(json_args(r#"{"a":1}"#).unwrap()["a"], 1);
        assert!(json_args(r#"["x"]"#).unwrap_err().contains("an array"));
        assert!(json_args("null").unwrap_err().contains("JSON object"));
        assert!(json_args("{a:1}")
            .unwrap_err()
            .starts_with("not valid JSON"));
        assert!(json_args("@/nonexistent/args.json")
            .unwrap_err()
            .contains("could not read"));
    }
}
