//! The rescuer: jobs left `running` by a worker that stopped heartbeating (a crash, a kill -9,
//! a network partition), or whose lease lapsed (a pull worker that went quiet), go back to the
//! queue as a failed attempt, "worker lost".

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use stoker_core::{
    AttemptError, Clock, ErrorKind, JobFinish, JobFinishParams, JobId, JobStuckParams, Outcome,
    Store,
};

use crate::backoff::failed_attempt;
use crate::Registry;

/// Settings of the [`Rescuer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescuerConfig {
    /// How often it looks for stuck jobs. Defaults to 1 second.
    pub interval: Duration,
    /// How long a worker may go without a heartbeat before its running jobs are rescued.
    /// Defaults to 3 seconds (three missed heartbeats at the default interval), so a killed
    /// worker's jobs run again within about 5 seconds.
    pub stale_after: Duration,
    /// The most jobs rescued in one statement; a pass repeats until none are left. Defaults
    /// to 1,000.
    pub batch: u32,
}

impl Default for RescuerConfig {
    fn default() -> Self {
        RescuerConfig {
            interval: Duration::from_secs(1),
            stale_after: Duration::from_secs(3),
            batch: 1000,
        }
    }
}

/// What one rescuer pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Jobs set to run again after backoff.
    pub retried: u64,
    /// Jobs discarded because that was their last attempt.
    pub discarded: u64,
    /// Jobs that finished on their own while being rescued (their worker was only slow).
    pub raced: u64,
}

impl fmt::Display for RescueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retried {}, discarded {}, raced {}",
            self.retried, self.discarded, self.raced
        )
    }
}

/// Finds running jobs whose worker is gone and finishes their attempt as failed.
///
/// The finish carries the fence the dead worker claimed with, as every acknowledgement does, so
/// if that worker was merely slow and acknowledges first, the rescue is skipped; if the rescue
/// wins, the slow worker's late acknowledgement is rejected.
#[derive(Clone)]
pub struct Rescuer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    config: RescuerConfig,
    // --- stream events ---
    /// Where rescues are published as live events, if anywhere.
    events: Option<crate::EventHub>,
}

impl Rescuer {
    /// A rescuer that uses the backoff of the handlers in `registry` where it knows the kind.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        registry: Arc<Registry>,
        config: RescuerConfig,
    ) -> Self {
        Rescuer {
            store,
            clock,
            registry,
            config,
            events: None,
        }
    }

    // --- stream events ---

    /// Publishes every rescue (the job `retryable` or `discarded`, "worker lost") on `hub`.
    pub fn with_event_hub(mut self, hub: crate::EventHub) -> Self {
        self.events = Some(hub);
        self
    }

    /// Its settings.
    pub fn config(&self) -> &RescuerConfig {
        &self.config
    }

    /// One pass: rescues every stuck job.
    ///
    /// # Errors
    ///
    /// A store error; jobs rescued before it stay rescued.
    pub async fn run_once(&self) -> crate::Result<RescueReport> {
        let mut report = RescueReport::default();
        loop {
            let now = self.clock.now();
            let stale_after = chrono::Duration::from_std(self.config.stale_after)
                .unwrap_or(chrono::Duration::MAX);
            let stuck = self
                .store
                .job_list_stuck(JobStuckParams {
                    stale_before: now - stale_after,
                    now,
                    limit: self.config.batch,
                })
                .await?;
            if stuck.is_empty() {
                return Ok(report);
            }
            let full = stuck.len() == self.config.batch as usize;
            let finishes: Vec<JobFinish> = stuck
                .iter()
                .map(|job| {
                    let error = AttemptError {
                        attempt: job.attempt,
                        at: now,
                        kind: ErrorKind::WorkerLost,
                        message: match job.lease_expires_at {
                            Some(expired) => format!(
                                "worker lost: the lease of {} ended at {expired} before it reported",
                                job.worker_id.as_deref().unwrap_or("an unknown worker")
                            ),
                            None => format!(
                                "worker lost: {} stopped heartbeating while running this attempt",
                                job.worker_id.as_deref().unwrap_or("an unknown worker")
                            ),
                        },
                        backtrace: None,
                    };
                    let handler = self.registry.get(&job.kind).map(|handler| &**handler);
                    JobFinish {
                        id: job.id,
                        fence: job.fence,
                        outcome: failed_attempt(job, error, now, None, handler),
                    }
                })
                .collect();
            let applied = self
                .store
                .job_finish_many(JobFinishParams {
                    finishes: finishes.clone(),
                    now,
                    // The leases of these jobs lapsed: that is why they are rescued.
                    rescue: true,
                })
                .await?;
            if let Some(hub) = &self.events {
                hub.publish(|| {
                    applied
                        .iter()
                        .filter_map(|job| {
                            let finish = finishes.iter().find(|finish| finish.id == job.id)?;
                            Some(crate::JobEvent::from_finished(job, &finish.outcome, now))
                        })
                        .collect()
                });
            }
            let applied: HashSet<JobId> = applied.iter().map(|job| job.id).collect();
            for finish in &finishes {
                if !applied.contains(&finish.id) {
                    report.raced += 1;
                } else if matches!(finish.outcome, Outcome::Discard { .. }) {
                    report.discarded += 1;
                } else {
                    report.retried += 1;
                }
            }
            if report.retried + report.discarded > 0 {
                tracing::warn!(
                    retried = report.retried,
                    discarded = report.discarded,
                    "rescued jobs of lost workers"
                );
            }
            if !full {
                return Ok(report);
            }
        }
    }
}
