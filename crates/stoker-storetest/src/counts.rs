//! The counters behind [`Store::job_stats`] (issue 13): after any sequence of transitions they
//! equal a real count of the jobs, per queue, kind, tenant and state, on every path a job can
//! take; and the scheduled share of `available` is the jobs still waiting for their `run_at`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stoker_core::{
    BulkAction, BulkFilter, BulkOpCreateParams, BulkOpStepParams, JobCancelParams, JobClaimParams,
    JobFinish, JobFinishParams, JobId, JobListParams, JobPruneParams, JobRetryManyParams,
    JobRetryParams, JobStageParams, JobState, Outcome, Priority, QueueDepth, QueuePruneRule, Store,
};

use crate::fixture::{at, attempt_error, insert, job_in, stats_by_tenant, TenantStats};

/// Counts every job by listing them all: the truth the counters must match. With `now`, the
/// scheduled share too: right after every due job was staged at `now`, an `available` job is
/// in the schedule exactly when its `run_at` is after `now`. Without it, shares are left 0.
async fn real_count<S: Store>(
    store: &Arc<S>,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> TenantStats {
    let jobs = store
        .job_list(JobListParams {
            limit: 100_000,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    let mut counts: TenantStats = BTreeMap::new();
    for job in jobs {
        let scheduled = job.state == JobState::Available && now.is_some_and(|now| job.run_at > now);
        let entry = counts
            .entry((job.queue, job.kind, job.tenant, job.state.as_str()))
            .or_default();
        entry.0 += 1;
        entry.1 += i64::from(scheduled);
    }
    counts
}

// --- stream dash ---
/// The queue depths by listing every job: per queue with waiting jobs, those `available` or
/// `retryable`, split into due and scheduled and with the oldest due `run_at`, right after
/// every due job was staged at `now` (so a job is in the schedule exactly when its `run_at` is
/// after `now`).
async fn real_depths<S: Store>(
    store: &Arc<S>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<QueueDepth> {
    let jobs = store
        .job_list(JobListParams {
            limit: 100_000,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    let mut depths: BTreeMap<String, QueueDepth> = BTreeMap::new();
    for job in jobs {
        if !matches!(job.state, JobState::Available | JobState::Retryable) {
            continue;
        }
        let depth = depths.entry(job.queue.clone()).or_insert(QueueDepth {
            queue: job.queue,
            due: 0,
            scheduled: 0,
            oldest_due_at: None,
        });
        if job.run_at > now {
            depth.scheduled += 1;
        } else {
            depth.due += 1;
            depth.oldest_due_at = Some(
                depth
                    .oldest_due_at
                    .map_or(job.run_at, |t| t.min(job.run_at)),
            );
        }
    }
    depths.into_values().collect()
}

/// Waiting jobs per queue, due and scheduled together: `(queue, count)`.
fn waiting(depths: &[QueueDepth]) -> Vec<(String, i64)> {
    depths
        .iter()
        .map(|d| (d.queue.clone(), d.due + d.scheduled))
        .collect()
}

/// The store's counts, with the scheduled shares kept only when `keep_scheduled`.
async fn counted<S: Store>(store: &Arc<S>, keep_scheduled: bool) -> TenantStats {
    let mut counts = stats_by_tenant(store).await;
    if !keep_scheduled {
        for (_, scheduled) in counts.values_mut() {
            *scheduled = 0;
        }
    }
    counts
}

/// A property test: from several seeds, 150 random steps each of insert (due and scheduled,
/// with and without a tenant), stage, claim, every acknowledgement outcome, a rescue, cancel
/// (waiting and running), retry, bulk retry, delete, prune, and bulk operations by filter
/// (retry, cancel, discard, delete, run-at); after every step `job_stats` equals a real count
/// per (queue, kind, tenant, state), and after a full stage its scheduled shares do too; so do
/// the queue depths (`queue_depths`), their due and scheduled shares after a full stage.
pub async fn counters_equal_real_count_after_random_transitions<S: Store>(store: Arc<S>) {
    let queues = ["q1", "q2"];
    let kinds = ["a", "b"];
    let tenants = [None, Some("t1"), Some("t2")];
    let mut ids: Vec<JobId> = Vec::new();
    let mut running: Vec<(JobId, i64)> = Vec::new();
    let mut clock = 0_i64;
    for seed in [1_u64, 7, 42] {
        let mut rng = StdRng::seed_from_u64(seed);
        for step in 0..150 {
            clock += rng.gen_range(1..5);
            let now = at(clock);
            let mut staged_all = false;
            let pick = |rng: &mut StdRng, ids: &[JobId]| ids[rng.gen_range(0..ids.len())];
            match rng.gen_range(0..13) {
                0 | 1 => {
                    let count = rng.gen_range(1..4);
                    let jobs = (0..count)
                        .map(|_| {
                            let mut job =
                                job_in(queues[rng.gen_range(0..2)], kinds[rng.gen_range(0..2)]);
                            job.tenant = tenants[rng.gen_range(0..3)].map(str::to_owned);
                            if rng.gen_bool(0.3) {
                                job.run_at = Some(at(clock + rng.gen_range(1..20)));
                            }
                            job
                        })
                        .collect();
                    ids.extend(insert(&store, jobs, now).await);
                }
                2 => {
                    while store
                        .job_stage(JobStageParams { now, limit: 100 })
                        .await
                        .expect("job_stage")
                        == 100
                    {}
                    staged_all = true;
                }
                3 | 4 => {
                    let claimed = store
                        .job_claim(JobClaimParams {
                            queue: queues[rng.gen_range(0..2)].into(),
                            kinds: Vec::new(),
                            limit: rng.gen_range(1..4),
                            worker_id: "w".into(),
                            now,
                            lease: None,
                        })
                        .await
                        .expect("job_claim");
                    running.extend(claimed.iter().map(|job| (job.id, job.fence)));
                }
                5 | 6 if !running.is_empty() => {
                    let (id, fence) = running.swap_remove(rng.gen_range(0..running.len()));
                    let error = attempt_error(1, now, "boom");
                    let outcome = match rng.gen_range(0..6) {
                        0 => Outcome::Completed { result: None },
                        1 => Outcome::Retry {
                            error,
                            run_at: at(clock + rng.gen_range(0..10)),
                        },
                        2 => Outcome::Discard { error },
                        3 => Outcome::Snooze {
                            run_at: at(clock + rng.gen_range(0..10)),
                        },
                        4 => Outcome::Cancel { error: Some(error) },
                        _ => Outcome::HandBack,
                    };
                    // Now and then the rescuer's finish (a lost worker) rather than the worker's.
                    let mut params =
                        JobFinishParams::new(vec![JobFinish { id, fence, outcome }], now);
                    params.rescue = rng.gen_bool(0.2);
                    store
                        .job_finish_many(params)
                        .await
                        .expect("job_finish_many");
                }
                7 if !ids.is_empty() => {
                    let id = pick(&mut rng, &ids);
                    let _ = store.job_cancel(JobCancelParams { id, now }).await;
                }
                8 if !ids.is_empty() => {
                    let id = pick(&mut rng, &ids);
                    if rng.gen_bool(0.5) {
                        let _ = store.job_retry(JobRetryParams { id, now }).await;
                    } else {
                        // Deleting a running job is refused; others go.
                        let _ = store.job_delete(id).await;
                    }
                }
                9 => {
                    store
                        .job_retry_many(JobRetryManyParams {
                            states: vec![JobState::Discarded, JobState::Cancelled],
                            queues: Vec::new(),
                            kinds: Vec::new(),
                            tenant: tenants[rng.gen_range(0..3)].map(str::to_owned),
                            limit: 2,
                            now,
                        })
                        .await
                        .expect("job_retry_many");
                }
                11 | 12 => {
                    let action = [
                        BulkAction::Retry,
                        BulkAction::Cancel,
                        BulkAction::Discard,
                        BulkAction::Delete,
                        BulkAction::SetRunAt,
                        BulkAction::SetPriority,
                    ][rng.gen_range(0..6)];
                    let filter = BulkFilter {
                        queues: vec![queues[rng.gen_range(0..2)].to_owned()],
                        tenant: tenants[rng.gen_range(0..3)].map(str::to_owned),
                        ..BulkFilter::default()
                    };
                    let params = BulkOpCreateParams {
                        action,
                        filter,
                        priority: (action == BulkAction::SetPriority).then_some(Priority(3)),
                        run_at: (action == BulkAction::SetRunAt)
                            .then(|| at(clock + rng.gen_range(-5..10))),
                        created_by: None,
                        now,
                    };
                    // A filter matching nothing is refused; that changes nothing either.
                    if store.bulk_op_create(params).await.is_ok() {
                        while store
                            .bulk_op_step(BulkOpStepParams { limit: 2, now })
                            .await
                            .expect("bulk_op_step")
                            .is_some()
                        {}
                    }
                }
                10 => {
                    store
                        .job_prune(JobPruneParams {
                            completed_before: Some(at(clock)),
                            cancelled_before: Some(at(clock - 20)),
                            discarded_before: None,
                            keep_last: rng.gen_bool(0.3).then_some(3),
                            limit: 3,
                            queue_rules: if rng.gen_bool(0.4) {
                                vec![QueuePruneRule {
                                    queue: queues[rng.gen_range(0..2)].into(),
                                    state: JobState::Discarded,
                                    finished_before: Some(at(clock - 10)),
                                    keep_last: Some(1),
                                }]
                            } else {
                                Vec::new()
                            },
                        })
                        .await
                        .expect("job_prune");
                }
                _ => {}
            }
            assert_eq!(
                counted(&store, staged_all).await,
                real_count(&store, staged_all.then_some(now)).await,
                "seed {seed}, step {step}: job_stats differs from a real count"
            );
            // --- stream dash ---
            // The queue depths (issue 14): their waiting totals always, and after a full
            // stage their due and scheduled shares and the oldest due job too.
            let depths = store.queue_depths().await.expect("queue_depths");
            let truth = real_depths(&store, now).await;
            if staged_all {
                assert_eq!(
                    depths, truth,
                    "seed {seed}, step {step}: queue_depths differs from a real count"
                );
            } else {
                assert_eq!(
                    waiting(&depths),
                    waiting(&truth),
                    "seed {seed}, step {step}: queue_depths' waiting jobs differ from a real count"
                );
            }
        }
    }
}
