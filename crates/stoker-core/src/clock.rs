//! Where "now" comes from, so time-dependent behaviour can be tested without sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time. The runtime reads it once per operation and passes the value
/// to the store, so every store decision about time uses the same instant.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move; for tests.
///
/// ```
/// use stoker_core::{Clock, StubClock};
/// let clock = StubClock::new("2030-01-01T00:00:00Z".parse().unwrap());
/// let before = clock.now();
/// clock.advance(chrono::Duration::seconds(5));
/// assert_eq!(clock.now() - before, chrono::Duration::seconds(5));
/// ```
#[derive(Debug, Clone)]
pub struct StubClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl StubClock {
    /// A clock stopped at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        StubClock {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock lock poisoned") += by;
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock lock poisoned") = now;
    }
}

impl Clock for StubClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock poisoned")
    }
}
