//! The bulk runner: applies running bulk operations (issue 13) in bounded batches.
//!
//! Creating an operation only writes its row; this service, on the elected leader, runs its
//! batches. Each batch is one store transaction that changes at most `batch` jobs, visits at
//! most ten times as many ids, and records the progress with the cursor, so a restart (or a
//! new leader) resumes where the last committed batch ended, and an abort takes effect at the
//! next batch.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stoker_core::{BulkAction, BulkOpStep, BulkOpStepParams, Clock, Store};

/// Settings of the [`BulkRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRunnerConfig {
    /// How often it looks for running operations. Defaults to 1 second.
    pub interval: Duration,
    /// The most jobs one batch changes. Defaults to 500.
    pub batch: u32,
    /// How long one pass may keep running batches before it yields to the next interval (so
    /// a huge operation never holds the service for long). Defaults to 2 seconds.
    pub pass_budget: Duration,
}

impl Default for BulkRunnerConfig {
    fn default() -> Self {
        BulkRunnerConfig {
            interval: Duration::from_secs(1),
            batch: 500,
            pass_budget: Duration::from_secs(2),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// Batches run.
    pub batches: u64,
    /// Operations that finished during the pass.
    pub finished: u64,
}

impl fmt::Display for BulkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ran {} bulk batches, {} operations done",
            self.batches, self.finished
        )
    }
}

/// Runs bulk operations' batches.
#[derive(Clone)]
pub struct BulkRunner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: BulkRunnerConfig,
    // --- stream history ---
    /// Where each batch's changed jobs are published as live events, if anywhere.
    events: Option<crate::EventHub>,
}

impl BulkRunner {
    /// A runner with `config`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: BulkRunnerConfig) -> Self {
        BulkRunner {
            store,
            clock,
            config,
            events: None,
        }
    }

    // --- stream history ---
    /// Publishes the jobs each batch changes on `hub` (issue 13), after the batch commits:
    /// a stream following a job, or a queue, kind or tenant, sees a bulk operation move it.
    pub fn with_event_hub(mut self, hub: crate::EventHub) -> Self {
        self.events = Some(hub);
        self
    }

    /// Its settings.
    pub fn config(&self) -> &BulkRunnerConfig {
        &self.config
    }

    /// Runs batches until no operation is running or the pass budget is spent.
    ///
    /// # Errors
    ///
    /// The store's error; batches committed before it stay applied and recorded.
    pub async fn run_once(&self) -> crate::Result<BulkReport> {
        let started = Instant::now();
        let mut report = BulkReport::default();
        while started.elapsed() < self.config.pass_budget {
            let now = self.clock.now();
            let Some(BulkOpStep { op, changed }) = self
                .store
                .bulk_op_step_jobs(BulkOpStepParams {
                    limit: self.config.batch,
                    now,
                })
                .await?
            else {
                break;
            };
            if let Some(hub) = &self.events {
                hub.publish_changed(&changed, op.action == BulkAction::Delete, now);
            }
            report.batches += 1;
            if op.finished_at.is_some() {
                report.finished += 1;
                tracing::info!(
                    op = op.id,
                    action = op.action.as_str(),
                    matched = op.matched,
                    done = op.done,
                    skipped = op.skipped,
                    "bulk operation done"
                );
            }
        }
        Ok(report)
    }
}
