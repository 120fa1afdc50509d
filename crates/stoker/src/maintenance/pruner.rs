//! The pruner: deletes finished jobs past their retention, so the table stays small.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stoker_core::{Clock, JobPruneParams, JobState, QueuePruneRule, Store};

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
    // --- stream counts ---
    /// Per queue, by name: retention per finished state, applied besides the rules above (a
    /// job goes when any rule says so). Defaults to none.
    pub queues: BTreeMap<String, QueueRetention>,
    // --- stream tenancy ---
    /// How long audit log rows are kept (issue 17), or `None` for ever. Defaults to 90 days
    /// ([`crate::AUDIT_RETENTION_DEFAULT`]).
    pub audit_retention: Option<Duration>,
}

// --- stream counts ---
/// Retention of one queue's finished jobs, per state, in [`PrunerConfig::queues`].
///
/// # Examples
///
/// BullMQ's `removeOnComplete: 100`, `removeOnFail: { age: 7 days }` for queue `emails`:
///
/// ```
/// use std::time::Duration;
/// use stoker::maintenance::{PrunerConfig, QueueRetention, StateRetention};
///
/// let mut config = PrunerConfig::default();
/// config.queues.insert(
///     "emails".to_owned(),
///     QueueRetention {
///         completed: StateRetention { keep_last: Some(100), ..StateRetention::default() },
///         discarded: StateRetention {
///             max_age: Some(Duration::from_secs(7 * 24 * 3600)),
///             ..StateRetention::default()
///         },
///         ..QueueRetention::default()
///     },
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueRetention {
    /// For `completed` jobs. Defaults to no rule.
    pub completed: StateRetention,
    /// For `cancelled` jobs. Defaults to no rule.
    pub cancelled: StateRetention,
    /// For `discarded` jobs (the dead letters). Defaults to no rule.
    pub discarded: StateRetention,
}

/// Retention of one queue's jobs in one finished state: by age, by count, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateRetention {
    /// Delete them this long after they finished. Defaults to none.
    pub max_age: Option<Duration>,
    /// Keep only the newest this many (by finish time). Defaults to no limit.
    pub keep_last: Option<u32>,
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
            queues: BTreeMap::new(),
            // --- stream tenancy ---
            audit_retention: Some(crate::AUDIT_RETENTION_DEFAULT),
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
    // --- stream tenancy ---
    /// Audit log rows deleted (older than [`PrunerConfig::audit_retention`]).
    pub audit: u64,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deleted {} jobs, {} workers, {} audit rows",
            self.jobs, self.workers, self.audit
        )
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

    /// The store's rules for [`PrunerConfig::queues`], with ages turned into cutoffs by
    /// `before`.
    fn queue_rules(
        &self,
        before: &dyn Fn(Option<Duration>) -> Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<QueuePruneRule> {
        let mut rules = Vec::new();
        for (queue, retention) in &self.config.queues {
            for (state, rule) in [
                (JobState::Completed, retention.completed),
                (JobState::Cancelled, retention.cancelled),
                (JobState::Discarded, retention.discarded),
            ] {
                if rule.max_age.is_some() || rule.keep_last.is_some() {
                    rules.push(QueuePruneRule {
                        queue: queue.clone(),
                        state,
                        finished_before: before(rule.max_age),
                        keep_last: rule.keep_last,
                    });
                }
            }
        }
        rules
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
            queue_rules: self.queue_rules(&before),
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
        // --- stream tenancy ---
        if let Some(audit_before) = before(self.config.audit_retention) {
            loop {
                let deleted = self.store.audit_prune(audit_before, params.limit).await?;
                report.audit += deleted;
                if deleted < u64::from(params.limit) {
                    break;
                }
            }
        }
        Ok(report)
    }
}
