//! What the store is given to insert, and the checks every insert passes first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobId, Metadata, Priority};

/// The default queue's name.
pub const QUEUE_DEFAULT: &str = "default";
/// Attempts a job gets unless its kind or its options say otherwise.
pub const MAX_ATTEMPTS_DEFAULT: i32 = 5;
/// The largest args payload accepted unless configured otherwise: 1 MiB of JSON.
pub const MAX_ARGS_BYTES_DEFAULT: usize = 1024 * 1024;
/// The longest kind name.
pub const KIND_MAX_LEN: usize = 255;
/// The longest queue name.
pub const QUEUE_MAX_LEN: usize = 128;
/// The longest tenant id.
pub const TENANT_MAX_LEN: usize = 255;
/// The longest idempotency key.
pub const UNIQUE_KEY_MAX_LEN: usize = 512;
/// The largest progress details a job may report: 64 KiB of JSON.
pub const MAX_PROGRESS_DETAILS_BYTES: usize = 64 * 1024;
/// The longest delay a backoff may name: ten years, in seconds. Far beyond any sensible
/// retry, and far inside what a date can hold, so no backoff can overflow a `run_at`.
pub const BACKOFF_MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// A job's own retry backoff, given at enqueue (as BullMQ's `backoff` option): the wait after
/// failed attempt `n` is `base_seconds * factor^(n - 1)`, capped at `max_seconds`, then moved
/// at random by up to `jitter` (a fraction) either way.
///
/// ```
/// use stoker_core::JobBackoff;
///
/// let backoff = JobBackoff { base_seconds: 1.0, factor: 3.0, max_seconds: 60.0, jitter: 0.0 };
/// assert!(backoff.validate().is_ok());
/// let bad = JobBackoff { factor: 0.5, ..backoff };
/// assert_eq!(bad.validate().unwrap_err().field, "backoff.factor");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobBackoff {
    /// The wait after the first failed attempt, in seconds; more than zero.
    pub base_seconds: f64,
    /// How much each further failure multiplies the wait; at least 1 (1 is a fixed delay).
    pub factor: f64,
    /// The longest wait, in seconds; at least `base_seconds`.
    pub max_seconds: f64,
    /// The fraction, from 0 to 1, by which a wait may move either way at random.
    pub jitter: f64,
}

impl JobBackoff {
    /// Checks every field: finite, both durations from a millisecond to
    /// [`BACKOFF_MAX_SECONDS`], `factor >= 1` and `0 <= jitter <= 1`. A cap below
    /// the base is allowed: it caps every wait, the first one too, so the job retries at a
    /// fixed `max_seconds` (and a schema can check each field alone).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field, e.g. `backoff.factor`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let check = |field: &str, value: f64, ok: bool, rule: &str| {
            if value.is_finite() && ok {
                Ok(())
            } else {
                Err(InvalidInput::new(
                    format!("backoff.{field}"),
                    format!("must be {rule}, got {value}"),
                ))
            }
        };
        let (base, max) = (self.base_seconds, self.max_seconds);
        check(
            "base_seconds",
            base,
            (0.001..=BACKOFF_MAX_SECONDS).contains(&base),
            "at least a millisecond (0.001) and at most ten years",
        )?;
        check(
            "factor",
            self.factor,
            self.factor >= 1.0,
            "a finite number of at least 1",
        )?;
        check(
            "max_seconds",
            max,
            (0.001..=BACKOFF_MAX_SECONDS).contains(&max),
            "at least a millisecond (0.001) and at most ten years",
        )?;
        check(
            "jitter",
            self.jitter,
            (0.0..=1.0).contains(&self.jitter),
            "a fraction from 0 to 1",
        )
    }
}

/// One job to insert, fully resolved: every default already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInsert {
    /// The handler's name.
    pub kind: String,
    /// The queue to wait in.
    pub queue: String,
    /// The handler's input.
    pub args: Value,
    /// Higher runs first.
    pub priority: Priority,
    /// The most attempts it gets, at least 1.
    pub max_attempts: i32,
    /// Not before this instant; `None` means now.
    pub run_at: Option<DateTime<Utc>>,
    /// An idempotency key: a second insert with the same key (and tenant) returns the first job.
    pub unique_key: Option<String>,
    /// The tenant it belongs to.
    pub tenant: Option<String>,
    /// Lineage and tracing data.
    pub metadata: Metadata,
    /// How long one attempt may run, in milliseconds.
    pub timeout_ms: Option<i64>,
    /// Its own retry backoff; `None` leaves it to its kind's (or the default).
    pub backoff: Option<JobBackoff>,
}

impl JobInsert {
    /// A job of `kind` with `args` and every other field at its default.
    pub fn new(kind: impl Into<String>, args: Value) -> Self {
        JobInsert {
            kind: kind.into(),
            queue: QUEUE_DEFAULT.to_owned(),
            args,
            priority: Priority::NORMAL,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            run_at: None,
            unique_key: None,
            tenant: None,
            metadata: Metadata::default(),
            timeout_ms: None,
            backoff: None,
        }
    }

    /// Checks every field and returns the first problem found, naming the field.
    ///
    /// Stores call this before writing anything, so a bad job in a bulk insert rejects the
    /// whole batch and leaves the store untouched.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field at fault.
    pub fn validate(&self, max_args_bytes: usize) -> Result<(), InvalidInput> {
        validate_kind(&self.kind)?;
        validate_queue(&self.queue)?;
        if self.max_attempts < 1 {
            return Err(InvalidInput::new(
                "max_attempts",
                format!("must be at least 1, got {}", self.max_attempts),
            ));
        }
        if let Some(tenant) = &self.tenant {
            validate_text("tenant", tenant, TENANT_MAX_LEN)?;
        }
        if let Some(key) = &self.unique_key {
            validate_text("unique_key", key, UNIQUE_KEY_MAX_LEN)?;
        }
        if let Some(timeout) = self.timeout_ms {
            if timeout <= 0 {
                return Err(InvalidInput::new(
                    "timeout",
                    format!("must be positive, got {timeout} ms"),
                ));
            }
        }
        if let Some(backoff) = &self.backoff {
            backoff.validate()?;
        }
        if let Some(on_finish) = &self.metadata.on_finish {
            on_finish.validate()?;
        }
        let size = args_size(&self.args);
        if size > max_args_bytes {
            return Err(InvalidInput::new(
                "args",
                format!("is {size} bytes of JSON, over the limit of {max_args_bytes} bytes"),
            ));
        }
        Ok(())
    }
}

/// The result of inserting one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertedJob {
    /// The new job's id, or the existing job's id for a duplicate.
    pub id: JobId,
    /// True when the idempotency key matched an existing job and nothing was inserted.
    pub duplicate: bool,
}

/// Input the store or client refused, naming the field at fault. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    /// The field at fault, e.g. `queue`, `args`, `max_attempts`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidInput {
    /// An error for `field` saying `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks a kind name: 1 to 255 characters, none of them whitespace or control characters.
///
/// # Errors
///
/// [`InvalidInput`] for field `kind`.
pub fn validate_kind(kind: &str) -> Result<(), InvalidInput> {
    validate_text("kind", kind, KIND_MAX_LEN)?;
    if let Some(c) = kind.chars().find(|c| c.is_whitespace()) {
        return Err(InvalidInput::new(
            "kind",
            format!("{kind:?} contains whitespace ({c:?})"),
        ));
    }
    Ok(())
}

/// Checks a queue name: 1 to 128 characters of ASCII letters, digits, `_`, `-`, `.` and `:`.
///
/// # Errors
///
/// [`InvalidInput`] for field `queue`.
pub fn validate_queue(queue: &str) -> Result<(), InvalidInput> {
    if queue.is_empty() {
        return Err(InvalidInput::new("queue", "must not be empty"));
    }
    if queue.len() > QUEUE_MAX_LEN {
        return Err(InvalidInput::new(
            "queue",
            format!(
                "is {} characters, over the limit of {QUEUE_MAX_LEN}",
                queue.len()
            ),
        ));
    }
    if let Some(c) = queue
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(InvalidInput::new(
            "queue",
            format!(
                "{queue:?} contains {c:?}; queue names use letters, digits, '_', '-', '.' and ':'"
            ),
        ));
    }
    Ok(())
}

fn validate_text(field: &str, value: &str, max_len: usize) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(InvalidInput::new(
            field,
            format!("is {} bytes, over the limit of {max_len}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The size of `args` serialized as compact JSON, without allocating the string.
pub fn args_size(args: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value to an infallible sink cannot fail.
    let _ = serde_json::to_writer(&mut counter, args);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field_at_fault() {
        let mut job = JobInsert::new("email", json!({}));
        assert!(job.validate(MAX_ARGS_BYTES_DEFAULT).is_ok());

        job.queue = "has space".into();
        assert_eq!(job.validate(1024).unwrap_err().field, "queue");

        job = JobInsert::new("", json!({}));
        assert_eq!(job.validate(1024).unwrap_err().field, "kind");

        job = JobInsert::new("k".repeat(256), json!({}));
        assert_eq!(job.validate(1024).unwrap_err().field, "kind");

        job = JobInsert::new("email", json!({}));
        job.max_attempts = 0;
        assert_eq!(job.validate(1024).unwrap_err().field, "max_attempts");

        job = JobInsert::new("email", json!({"body": "x".repeat(100)}));
        let err = job.validate(50).unwrap_err();
        assert_eq!(err.field, "args");
        assert!(err.reason.contains("over the limit of 50 bytes"), "{err}");
    }

    #[test]
    fn args_size_matches_serialized_length() {
        let args = json!({"to": "a@example.com", "n": [1, 2, 3], "nested": {"ok": true}});
        assert_eq!(
            args_size(&args),
            serde_json::to_string(&args).unwrap().len()
        );
    }
}
