//! What operators look at: queues with their counts, pause state and workers, and workers with
//! their liveness, decided by one rule ([`worker_alive`]) for every face of Stoker.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker_core::WorkerRow;

use crate::StateCounts;

/// How long a worker may go without a heartbeat before it counts as gone, unless configured
/// otherwise: the rescuer's default `stale_after` (3 seconds).
pub const STALE_AFTER_DEFAULT: Duration = Duration::from_secs(3);

/// Whether a worker whose last heartbeat was at `heartbeat_at` is alive at `now`, when workers
/// silent for longer than `stale_after` are gone.
///
/// This is the rescuer's rule, the one that decides whether a worker's running jobs are taken
/// from it: a job is rescued when its worker's `heartbeat_at` is older than
/// `now - stale_after` (see [`JobStuckParams`](stoker_core::JobStuckParams)). So a worker shown
/// alive keeps its jobs, and one shown gone is losing them. A heartbeat in the future (clocks
/// of two machines that disagree) is alive.
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 10).unwrap();
/// let stale_after = Duration::from_secs(3);
/// assert!(stoker::worker_alive(now - chrono::Duration::seconds(3), now, stale_after));
/// assert!(!stoker::worker_alive(now - chrono::Duration::milliseconds(3001), now, stale_after));
/// ```
pub fn worker_alive(
    heartbeat_at: DateTime<Utc>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    match chrono::Duration::from_std(stale_after) {
        Ok(stale_after) => match now.checked_sub_signed(stale_after) {
            Some(stale_before) => heartbeat_at >= stale_before,
            None => true,
        },
        // Longer than chrono can count: nobody is ever stale.
        Err(_) => true,
    }
}

/// A worker process (or a server's pull worker) and whether it is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its heartbeat row.
    pub worker: WorkerRow,
    /// Whether its heartbeat is recent enough ([`worker_alive`]).
    pub alive: bool,
}

// --- The worker registry (issue 13) ---

/// What a worker is doing, as the registry shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Alive and running at least one job.
    Busy,
    /// Alive and running nothing.
    Idle,
    /// Alive and shutting down: it claims nothing more.
    Stopping,
    /// Silent for longer than `stale_after`: the rescuer is taking its jobs.
    Stale,
}

impl WorkerState {
    /// The name the API and CLI show.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Stopping => "stopping",
            WorkerState::Stale => "stale",
        }
    }
}

impl WorkerStatus {
    /// Busy, idle, stopping or stale: stale wins (its heartbeat decides whether its jobs are
    /// safe), then stopping, then whether it runs anything.
    pub fn state(&self) -> WorkerState {
        let details = self.worker.details.as_ref();
        if !self.alive {
            WorkerState::Stale
        } else if details.is_some_and(|d| d.stopping) {
            WorkerState::Stopping
        } else if details.is_some_and(|d| !d.running.is_empty()) {
            WorkerState::Busy
        } else {
            WorkerState::Idle
        }
    }

    /// The mean run time of its finished attempts, in milliseconds, if it reported any.
    pub fn mean_run_ms(&self) -> Option<u64> {
        let finished = self.worker.jobs_done + self.worker.jobs_failed;
        let total = self.worker.details.as_ref()?.run_ms_total;
        u64::try_from(finished)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| total / n)
    }
}

/// A worker serving a queue, by id, and whether it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueWorker {
    /// The worker's id.
    pub id: String,
    /// Whether its heartbeat is recent enough ([`worker_alive`]).
    pub alive: bool,
}

/// A queue as operators see it: its jobs by state, whether it is paused, who serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueOverview {
    /// The queue's name.
    pub name: String,
    /// Whether workers skip it.
    pub paused: bool,
    /// When it was last paused or resumed; `None` for a queue never paused.
    pub updated_at: Option<DateTime<Utc>>,
    /// Its jobs by state.
    pub counts: StateCounts,
    /// The workers that serve it (their rows name it), by id.
    pub workers: Vec<QueueWorker>,
}
