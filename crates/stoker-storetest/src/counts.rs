//! The counters behind [`Store::job_stats`] (issue 13): after any sequence of transitions they
//! equal a real count of the jobs, on every path a job can take.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stoker_core::{
    JobCancelParams, JobClaimParams, JobFinish, JobFinishParams, JobId, JobListParams,
    JobPruneParams, JobRetryManyParams, JobRetryParams, JobStageParams, JobState, Outcome, Store,
};

use crate::fixture::{at, attempt_error, insert, job_in, stats, Stats};

/// Counts every job by listing them all: the truth the counters must match.
async fn real_count<S: Store>(store: &Arc<S>) -> Stats {
    let jobs = store
        .job_list(JobListParams {
            limit: 100_000,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    let mut counts: Stats = BTreeMap::new();
    for job in jobs {
        *counts
            .entry((job.queue, job.kind, job.state.as_str()))
            .or_default() += 1;
    }
    counts
}

/// A property test: from several seeds, 150 random steps each of insert (due and scheduled),
/// stage, claim, every acknowledgement outcome, cancel (waiting and running), retry, bulk
/// retry, delete and prune; after every step `job_stats` equals a real count.
pub async fn counters_equal_real_count_after_random_transitions<S: Store>(store: Arc<S>) {
    let queues = ["q1", "q2"];
    let kinds = ["a", "b"];
    let mut ids: Vec<JobId> = Vec::new();
    let mut running: Vec<(JobId, i64)> = Vec::new();
    let mut clock = 0_i64;
    for seed in [1_u64, 7, 42] {
        let mut rng = StdRng::seed_from_u64(seed);
        for step in 0..150 {
            clock += rng.gen_range(1..5);
            let now = at(clock);
            let pick = |rng: &mut StdRng, ids: &[JobId]| ids[rng.gen_range(0..ids.len())];
            match rng.gen_range(0..11) {
                0 | 1 => {
                    let count = rng.gen_range(1..4);
                    let jobs = (0..count)
                        .map(|_| {
                            let mut job =
                                job_in(queues[rng.gen_range(0..2)], kinds[rng.gen_range(0..2)]);
                            if rng.gen_bool(0.3) {
                                job.run_at = Some(at(clock + rng.gen_range(1..20)));
                            }
                            job
                        })
                        .collect();
                    ids.extend(insert(&store, jobs, now).await);
                }
                2 => {
                    store
                        .job_stage(JobStageParams { now, limit: 100 })
                        .await
                        .expect("job_stage");
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
                    store
                        .job_finish_many(JobFinishParams::new(
                            vec![JobFinish { id, fence, outcome }],
                            now,
                        ))
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
                            tenant: None,
                            limit: 2,
                            now,
                        })
                        .await
                        .expect("job_retry_many");
                }
                10 => {
                    store
                        .job_prune(JobPruneParams {
                            completed_before: Some(at(clock)),
                            cancelled_before: Some(at(clock - 20)),
                            discarded_before: None,
                            keep_last: rng.gen_bool(0.3).then_some(3),
                            limit: 3,
                        })
                        .await
                        .expect("job_prune");
                }
                _ => {}
            }
            assert_eq!(
                stats(&store).await,
                real_count(&store).await,
                "seed {seed}, step {step}: job_stats differs from a real count"
            );
        }
    }
}
