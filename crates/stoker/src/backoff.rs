//! How long a failed job waits before its next attempt, and the one rule that turns a failed
//! attempt into its outcome (retry after backoff, or discard when attempts are used up).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use stoker_core::{AttemptError, JobBackoff, JobRow, Outcome, BACKOFF_MAX_SECONDS};

use crate::Handler;

/// Exponential backoff with jitter: `base * factor^(attempt - 1)`, capped at `max`, then moved
/// by a random amount of up to `jitter` (a fraction) either way, so a burst of failures does
/// not come back as a burst of retries.
///
/// ```
/// use std::time::Duration;
/// use stoker::Backoff;
///
/// let backoff = Backoff {
///     base: Duration::from_secs(1),
///     factor: 2.0,
///     max: Duration::from_secs(60),
///     jitter: 0.0,
/// };
/// assert_eq!(backoff.delay(1), Duration::from_secs(1));
/// assert_eq!(backoff.delay(4), Duration::from_secs(8));
/// assert_eq!(backoff.delay(30), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failed attempt. Defaults to 2 seconds.
    pub base: Duration,
    /// How much each further failure multiplies the delay (1 for a fixed delay). Defaults
    /// to 2.
    pub factor: f64,
    /// The longest delay. Defaults to 1 hour.
    pub max: Duration,
    /// The fraction by which a delay may move either way at random. Defaults to 0.1.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1 for the first).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.clamp(1, 64) - 1;
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let secs = (self.base.as_secs_f64() * factor.powi(exponent)).min(self.max.as_secs_f64());
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let secs = if jitter > 0.0 {
            secs * rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter)
        } else {
            secs
        };
        Duration::from_secs_f64(secs.clamp(0.0, BACKOFF_MAX_SECONDS))
    }
}

impl From<JobBackoff> for Backoff {
    fn from(backoff: JobBackoff) -> Self {
        let seconds = |secs: f64| Duration::from_secs_f64(secs.clamp(0.0, BACKOFF_MAX_SECONDS));
        Backoff {
            base: seconds(backoff.base_seconds),
            factor: backoff.factor,
            max: seconds(backoff.max_seconds),
            jitter: backoff.jitter,
        }
    }
}

impl From<Backoff> for JobBackoff {
    fn from(backoff: Backoff) -> Self {
        JobBackoff {
            base_seconds: backoff.base.as_secs_f64(),
            factor: backoff.factor,
            max_seconds: backoff.max.as_secs_f64(),
            jitter: backoff.jitter,
        }
    }
}

/// `now + delay`, with the delay capped at ten years so no delay (a handler's backoff, a
/// snooze) can overflow the date.
pub(crate) fn after(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    let capped = delay.min(Duration::from_secs_f64(BACKOFF_MAX_SECONDS));
    chrono::Duration::from_std(capped)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The one rule for a failed attempt, shared by the worker, the rescuer and the pull
/// protocol: discarded (dead letter) if it was the job's last attempt, else retried after a
/// delay: `delay` if the failure names one (a handler's `retry_in`, a pull worker's
/// `retry_in_seconds`), else the job's own backoff (given at enqueue), else its kind's
/// (`handler`), else [`Backoff::default`].
pub(crate) fn failed_attempt(
    job: &JobRow,
    error: AttemptError,
    now: DateTime<Utc>,
    delay: Option<Duration>,
    handler: Option<&dyn Handler>,
) -> Outcome {
    if job.attempt >= job.max_attempts {
        return Outcome::Discard { error };
    }
    let delay = match (delay, job.backoff, handler) {
        (Some(delay), _, _) => delay,
        (None, Some(own), _) => Backoff::from(own).delay(job.attempt),
        (None, None, Some(handler)) => handler.backoff(job.attempt),
        (None, None, None) => Backoff::default().delay(job.attempt),
    };
    Outcome::Retry {
        error,
        run_at: after(now, delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        let backoff = Backoff::default();
        for attempt in 1..=20 {
            let plain = Backoff {
                jitter: 0.0,
                ..backoff
            }
            .delay(attempt)
            .as_secs_f64();
            let jittered = backoff.delay(attempt).as_secs_f64();
            assert!(jittered >= plain * 0.9 - 1e-9 && jittered <= plain * 1.1 + 1e-9);
        }
    }

    #[test]
    fn grows_then_caps() {
        let backoff = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert!(backoff.delay(2) > backoff.delay(1));
        assert_eq!(backoff.delay(40), backoff.max);
        assert_eq!(backoff.delay(0), backoff.base);
    }

    #[test]
    fn factor_shapes_the_curve() {
        let fixed = Backoff {
            base: Duration::from_secs(5),
            factor: 1.0,
            max: Duration::from_secs(60),
            jitter: 0.0,
        };
        assert_eq!(fixed.delay(1), Duration::from_secs(5));
        assert_eq!(fixed.delay(9), Duration::from_secs(5));
        let triple = Backoff {
            factor: 3.0,
            ..fixed
        };
        assert_eq!(triple.delay(3), Duration::from_secs(45));
        assert_eq!(triple.delay(4), Duration::from_secs(60));
        let huge = Backoff {
            factor: 1e300,
            max: Duration::from_secs(u64::MAX),
            ..fixed
        };
        assert!(huge.delay(64) <= Duration::from_secs_f64(BACKOFF_MAX_SECONDS));
    }

    #[test]
    fn after_never_overflows() {
        let now = Utc::now();
        assert!(after(now, Duration::MAX) > now);
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + chrono::Duration::seconds(1)
        );
    }
}

#[cfg(test)]
mod rule_tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use chrono::TimeZone;
    use serde_json::{json, Value};
    use stoker_core::{ErrorKind, JobId, JobState, Metadata, Priority};

    use super::*;
    use crate::{JobContext, JobError};

    /// A handler whose kind waits a fixed 7 s after any failure.
    struct Fixed;

    #[async_trait]
    impl Handler for Fixed {
        async fn perform(&self, _args: Value, _ctx: JobContext) -> Result<Option<Value>, JobError> {
            Ok(None)
        }

        fn backoff(&self, _attempt: i32) -> Duration {
            Duration::from_secs(7)
        }
    }

    fn job(attempt: i32, backoff: Option<JobBackoff>) -> JobRow {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        JobRow {
            id: JobId(1),
            kind: "k".into(),
            queue: "q".into(),
            args: json!({}),
            state: JobState::Running,
            priority: Priority::NORMAL,
            attempt,
            fence: 1,
            max_attempts: 3,
            run_at: at,
            unique_key: None,
            tenant: None,
            metadata: Metadata::default(),
            errors: Vec::new(),
            result: None,
            progress: None,
            timeout_ms: None,
            backoff,
            created_at: at,
            attempted_at: Some(at),
            finished_at: None,
            worker_id: None,
            cancel_requested_at: None,
            lease_expires_at: None,
        }
    }

    fn error(job: &JobRow) -> AttemptError {
        AttemptError {
            attempt: job.attempt,
            at: job.run_at,
            kind: ErrorKind::Error,
            message: "failed".into(),
            backtrace: None,
        }
    }

    /// The wait the rule picks, in seconds, or `None` for a discard.
    fn wait(job: &JobRow, delay: Option<Duration>, handler: Option<&dyn Handler>) -> Option<i64> {
        let now = job.run_at;
        match failed_attempt(job, error(job), now, delay, handler) {
            Outcome::Retry { run_at, .. } => Some((run_at - now).num_seconds()),
            Outcome::Discard { .. } => None,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    #[test]
    fn explicit_delay_then_own_backoff_then_kind_then_default() {
        let own = JobBackoff {
            base_seconds: 10.0,
            factor: 3.0,
            max_seconds: 1000.0,
            jitter: 0.0,
        };
        let fixed: Arc<dyn Handler> = Arc::new(Fixed);
        let handler = Some(&*fixed);
        let second = job(2, Some(own));
        assert_eq!(
            wait(&second, Some(Duration::from_secs(5)), handler),
            Some(5)
        );
        assert_eq!(wait(&second, None, handler), Some(30), "10 s * 3^(2-1)");
        assert_eq!(wait(&job(2, None), None, handler), Some(7));
        let default = wait(&job(1, None), None, None).unwrap();
        assert!((1..=2).contains(&default), "about 2 s: {default}");
    }

    #[test]
    fn the_last_attempt_is_discarded_whatever_the_backoff() {
        let own = JobBackoff {
            base_seconds: 10.0,
            factor: 1.0,
            max_seconds: 10.0,
            jitter: 0.0,
        };
        assert_eq!(
            wait(&job(3, Some(own)), Some(Duration::from_secs(1)), None),
            None
        );
    }
}
