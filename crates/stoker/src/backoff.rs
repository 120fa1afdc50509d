//! How long a failed job waits before its next attempt.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: `base * 2^(attempt - 1)`, capped at `max`, then moved by a
/// random amount of up to `jitter` (a fraction) either way, so a burst of failures does not
/// come back as a burst of retries.
///
/// ```
/// use std::time::Duration;
/// use stoker::Backoff;
///
/// let backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60), jitter: 0.0 };
/// assert_eq!(backoff.delay(1), Duration::from_secs(1));
/// assert_eq!(backoff.delay(4), Duration::from_secs(8));
/// assert_eq!(backoff.delay(30), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failed attempt. Defaults to 2 seconds.
    pub base: Duration,
    /// The longest delay. Defaults to 1 hour.
    pub max: Duration,
    /// The fraction by which a delay may move either way at random. Defaults to 0.1.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1 for the first).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.clamp(1, 64) as u32 - 1;
        let factor = 2f64.powi(exponent as i32);
        let secs = (self.base.as_secs_f64() * factor).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let secs = if jitter > 0.0 {
            secs * rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter)
        } else {
            secs
        };
        Duration::from_secs_f64(secs.max(0.0))
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
}
