//! Writes acknowledgements in batches: one statement for all the outcomes that piled up while
//! the previous batch was being written, so throughput never costs a round trip per job.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use stoker_core::{FinishedJob, JobFinishParams, JobId, Outcome};
use tokio::sync::mpsc;

use super::{Ack, AttemptResult, Runtime, WorkerEvent, ACK_BATCH_MAX};

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a shutting-down worker keeps retrying a failed write before it gives up and
/// leaves the jobs to the rescuer (they are still `running` in the store, so nothing is lost).
const SHUTDOWN_RETRY_FOR: Duration = Duration::from_secs(10);

pub(crate) async fn run(runtime: Arc<Runtime>, mut acks: mpsc::UnboundedReceiver<Ack>) {
    let mut batch = Vec::with_capacity(64);
    while let Some(first) = acks.recv().await {
        batch.push(first);
        while batch.len() < ACK_BATCH_MAX {
            match acks.try_recv() {
                Ok(finish) => batch.push(finish),
                Err(_) => break,
            }
        }
        write(&runtime, &mut batch).await;
    }
}

async fn write(runtime: &Runtime, batch: &mut Vec<Ack>) {
    // --- stream workflows ---
    // Parents that wait for their children (issue 18) finish through their own statement; a
    // batch without one pays a scan of flags.
    if batch.iter().any(|ack| ack.wait_children) {
        let (waiting, rest): (Vec<Ack>, Vec<Ack>) =
            std::mem::take(batch).into_iter().partition(|ack| {
                ack.wait_children && matches!(ack.finish.outcome, Outcome::Completed { .. })
            });
        *batch = rest;
        write_waiting(runtime, waiting).await;
        if batch.is_empty() {
            return;
        }
    }
    let store = &runtime.config.store;
    let mut delay = RETRY_MIN;
    let mut shutdown_deadline = None;
    loop {
        let params = JobFinishParams::new(
            batch.iter().map(|ack| ack.finish.clone()).collect(),
            runtime.config.clock.now(),
        );
        let now = params.now;
        match store.job_finish_many(params).await {
            Ok(applied) => {
                record_history(runtime, now, batch, &applied);
                publish(runtime, now, batch, &applied);
                report(runtime, batch, &applied);
                batch.clear();
                return;
            }
            Err(err) => {
                if runtime.stop_fetching.is_cancelled() {
                    let deadline = *shutdown_deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + SHUTDOWN_RETRY_FOR);
                    if tokio::time::Instant::now() >= deadline {
                        tracing::error!(
                            %err,
                            jobs = batch.len(),
                            "could not write acknowledgements before shutdown; the rescuer will retry these jobs"
                        );
                        batch.clear();
                        return;
                    }
                }
                tracing::warn!(%err, jobs = batch.len(), "writing acknowledgements failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Writes completions that wait for their children, each by
/// [`Client::wait_children_sealed`](crate::Client), retried as a batch is while the store
/// fails; a completion refused for its fence (the job was rescued) is reported as any stale
/// acknowledgement is.
async fn write_waiting(runtime: &Runtime, waiting: Vec<Ack>) {
    let client = &runtime.config.client;
    let mut applied = Vec::with_capacity(waiting.len());
    for ack in &waiting {
        let Outcome::Completed { result } = &ack.finish.outcome else {
            continue;
        };
        let mut delay = RETRY_MIN;
        let mut shutdown_deadline = None;
        loop {
            match client
                .wait_children_sealed(ack.finish.id, ack.finish.fence, result.clone())
                .await
            {
                Ok(job) => {
                    applied.push(job);
                    break;
                }
                Err(crate::Error::LeaseLost { .. } | crate::Error::NotFound(_)) => break,
                Err(err) => {
                    if runtime.stop_fetching.is_cancelled() {
                        let deadline = *shutdown_deadline.get_or_insert_with(|| {
                            tokio::time::Instant::now() + SHUTDOWN_RETRY_FOR
                        });
                        if tokio::time::Instant::now() >= deadline {
                            tracing::error!(
                                %err,
                                job = %ack.finish.id,
                                "could not write a completion before shutdown; the rescuer will retry the job"
                            );
                            break;
                        }
                    }
                    tracing::warn!(%err, job = %ack.finish.id, "writing a completion failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
    let now = runtime.config.clock.now();
    record_history(runtime, now, &waiting, &applied);
    publish(runtime, now, &waiting, &applied);
    report(runtime, &waiting, &applied);
}

/// Records the applied outcomes in the history (issue 13), if the worker keeps it: one lock
/// for the batch.
fn record_history(
    runtime: &Runtime,
    now: chrono::DateTime<chrono::Utc>,
    batch: &[Ack],
    applied: &[FinishedJob],
) {
    let Some((history, _)) = &runtime.config.history else {
        return;
    };
    let acks: std::collections::HashMap<JobId, &Ack> =
        batch.iter().map(|ack| (ack.finish.id, ack)).collect();
    history.record_finished(
        now,
        applied.iter().filter_map(|job| {
            let ack = acks.get(&job.id)?;
            Some((job, &ack.finish.outcome, Some(ack.run_time)))
        }),
    );
}

/// Publishes the applied outcomes as live events (issue 13): one send for the batch, and
/// nothing at all while nobody listens.
fn publish(
    runtime: &Runtime,
    now: chrono::DateTime<chrono::Utc>,
    batch: &[Ack],
    applied: &[FinishedJob],
) {
    let client = &runtime.config.client;
    if !client.event_hub().is_active() {
        return;
    }
    let outcomes: std::collections::HashMap<JobId, &Outcome> = batch
        .iter()
        .map(|ack| (ack.finish.id, &ack.finish.outcome))
        .collect();
    client.publish_finished(
        now,
        applied
            .iter()
            .filter_map(|job| Some((job, *outcomes.get(&job.id)?))),
    );
}

fn report(runtime: &Runtime, batch: &[Ack], applied: &[FinishedJob]) {
    let applied: HashSet<JobId> = applied.iter().map(|job| job.id).collect();
    for ack in batch {
        let finish = &ack.finish;
        if !applied.contains(&finish.id) {
            tracing::warn!(
                job = %finish.id,
                fence = finish.fence,
                "acknowledgement rejected: the job is no longer running under this claim (rescued or deleted)"
            );
            continue;
        }
        runtime.run_ms.fetch_add(
            u64::try_from(ack.run_time.as_millis()).unwrap_or(u64::MAX),
            Ordering::AcqRel,
        );
        let result = match &finish.outcome {
            Outcome::Completed { .. } => {
                runtime.done.fetch_add(1, Ordering::AcqRel);
                AttemptResult::Completed
            }
            Outcome::Retry { .. } => {
                runtime.failed.fetch_add(1, Ordering::AcqRel);
                AttemptResult::Retried
            }
            Outcome::Discard { .. } => {
                runtime.failed.fetch_add(1, Ordering::AcqRel);
                AttemptResult::Discarded
            }
            Outcome::Snooze { .. } => AttemptResult::Snoozed,
            Outcome::Cancel { .. } => AttemptResult::Cancelled,
            _ => AttemptResult::HandedBack,
        };
        let _ = runtime.events.send(WorkerEvent {
            id: finish.id,
            queue: ack.queue.clone(),
            kind: ack.kind.clone(),
            attempt: ack.attempt,
            result,
            run_time: ack.run_time,
            pickup_latency: ack.pickup_latency,
        });
    }
}
