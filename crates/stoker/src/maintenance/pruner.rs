//! The pruner: deletes finished jobs past their retention, so the table stays small.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stoker_core::{Clock, JobPruneParams, Store};

/// Settings of the [`Pruner`]. Setting a retention to `None` keeps those jobs forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunerConfig {
    /// How often it runs. Defaults to 30 seconds.
    pub interval: Duration,
    /// How long completed jobs are kept after they finish. Defaults to 24 hours.
    pub completed_retention: Option<Duration>,
    /// How long cancelled jobs are kept. Defaults to 24 hours.
    pub cancelled_retention: Option<Duration>,
    /// How long discarded (dead-letter) jobs are kept, for inspection and retry. Defaults to
    /// 7 days.
    pub discarded_retention: Option<Duration>,
    /// Per queue, keep at most this many finished jobs (the newest), whatever their age.
    /// Defaults to no limit.
    pub keep_last: Option<u32>,
    /// Worker rows silent for this long are deleted. Defaults to 1 hour.
    pub worker_retention: Duration,
    /// The most rows one statement deletes; a pass repeats until done. Defaults to 5,000.
    pub batch: u32,
}

impl Default for PrunerConfig {
    fn default() -> Self {
        PrunerConfig {
            interval: Duration::from_secs(30),
            completed_retention: Some(Duration::from_secs(24 * 3600)),
            cancelled_retention: Some(Duration::from_secs(24 * 3600)),
            discarded_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            keep_last: None,
            worker_retention: Duration::from_secs(3600),
            batch: 5000,
        }
    }
}

/// What one pruner pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// Worker rows deleted.
    pub workers: u64,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deleted {} jobs, {} workers", self.jobs, self.workers)
    }
}

/// Deletes finished jobs by age and by count, and long-silent worker rows.
#[derive(Clone)]
pub struct Pruner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: PrunerConfig,
}

impl Pruner {
    /// A pruner with `config`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: PrunerConfig) -> Self {
        Pruner {
            store,
            clock,
            config,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &PrunerConfig {
        &self.config
    }

    /// One pass: deletes in batches until nothing is left to prune.
    ///
    /// # Errors
    ///
    /// A store error; rows deleted before it stay deleted.
    pub async fn run_once(&self) -> crate::Result<PruneReport> {
        let now = self.clock.now();
        let before = |retention: Option<Duration>| {
            retention.map(|retention| {
                now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX)
            })
        };
        let params = JobPruneParams {
            completed_before: before(self.config.completed_retention),
            cancelled_before: before(self.config.cancelled_retention),
            discarded_before: before(self.config.discarded_retention),
            keep_last: self.config.keep_last,
            limit: self.config.batch.max(1),
        };
        let mut report = PruneReport::default();
        loop {
            let deleted = self.store.job_prune(params.clone()).await?;
            report.jobs += deleted;
            if deleted < u64::from(params.limit) {
                break;
            }
        }
        let worker_before =
            before(Some(self.config.worker_retention)).expect("a retention was given");
        report.workers = self.store.worker_prune(worker_before).await?;
        Ok(report)
    }
}
