//! The stager: jobs waiting for a `run_at` in the future (scheduled, snoozed, or retrying after
//! a backoff) sit in the store's schedule, out of the claims' way; once `run_at` passes, the
//! stager moves them to the queue and wakes the workers.
//!
//! This is what keeps a claim cheap however many jobs are scheduled for later: a claim reads
//! only due jobs. The price is that a scheduled job starts up to one stager interval after its
//! `run_at` (as in Oban, whose stager runs every second).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stoker_core::{Clock, JobStageParams, Store};

/// Settings of the [`Stager`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagerConfig {
    /// How often it moves due jobs to their queues: the most a scheduled job waits past its
    /// `run_at`. Defaults to 1 second.
    pub interval: Duration,
    /// The most jobs staged in one statement; a pass repeats until none are left. Defaults to
    /// 5,000.
    pub batch: u32,
}

impl Default for StagerConfig {
    fn default() -> Self {
        StagerConfig {
            interval: Duration::from_secs(1),
            batch: 5000,
        }
    }
}

/// What one stager pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageReport {
    /// Jobs moved from the schedule to their queues.
    pub staged: u64,
}

impl fmt::Display for StageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "staged {} jobs", self.staged)
    }
}

/// Moves scheduled jobs whose time has come to their queues.
///
/// ```
/// # async fn example(store: std::sync::Arc<dyn stoker_core::Store>) -> stoker::Result<()> {
/// use std::sync::Arc;
/// use stoker::maintenance::{Stager, StagerConfig};
/// use stoker_core::SystemClock;
///
/// let stager = Stager::new(store, Arc::new(SystemClock), StagerConfig::default());
/// let report = stager.run_once().await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Stager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: StagerConfig,
}

impl Stager {
    /// A stager with `config`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: StagerConfig) -> Self {
        Stager {
            store,
            clock,
            config,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &StagerConfig {
        &self.config
    }

    /// Stages every job due now, a batch per statement.
    ///
    /// # Errors
    ///
    /// The store's error, if a statement fails; batches staged before it stay staged.
    pub async fn run_once(&self) -> crate::Result<StageReport> {
        let mut report = StageReport::default();
        loop {
            let staged = self
                .store
                .job_stage(JobStageParams {
                    now: self.clock.now(),
                    limit: self.config.batch,
                })
                .await?;
            report.staged += staged;
            if staged < u64::from(self.config.batch) {
                return Ok(report);
            }
        }
    }
}
