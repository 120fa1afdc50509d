//! [`Store::job_stats`]: counts by queue, kind and state stay exact through every path a job
//! can take, including the counters a store keeps for finished states.

use std::sync::Arc;

use stoker_core::{
    JobCancelParams, JobClaimParams, JobFinish, JobId, JobInsert, JobPruneParams,
    JobRetryManyParams, JobRetryParams,
    JobState::{self, *},
    Outcome, Store,
};

use crate::fixture::{
    at, attempt_error, expected_stats, finish, finish_many, insert, insert_many, job_in, stats, t0,
};

/// Inserts 3 `a` and 2 `b` into `q1`, and 1 `a` into `q2`; returns their ids in that order.
async fn seed<S: Store>(store: &Arc<S>) -> Vec<JobId> {
    insert(
        store,
        vec![
            job_in("q1", "a"),
            job_in("q1", "a"),
            job_in("q1", "a"),
            job_in("q1", "b"),
            job_in("q1", "b"),
            job_in("q2", "a"),
        ],
        t0(),
    )
    .await
}

/// Claims every `a` in `q1` (3 jobs) at `t0`, and returns their ids, sorted.
async fn claim_q1_a<S: Store>(store: &Arc<S>) -> Vec<JobId> {
    let mut ids: Vec<JobId> = store
        .job_claim(JobClaimParams {
            queue: "q1".into(),
            kinds: vec!["a".into()],
            limit: 10,
            worker_id: "w1".into(),
            now: t0(),
            lease: None,
        })
        .await
        .expect("job_claim")
        .iter()
        .map(|row| row.id)
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 3);
    ids
}

async fn assert_stats<S: Store>(
    store: &Arc<S>,
    entries: &[(&str, &str, JobState, i64)],
    after: &str,
) {
    assert_eq!(
        stats(store).await,
        expected_stats(entries),
        "job_stats after {after}"
    );
}

/// Empty store, no rows; inserts are counted per queue and kind; duplicates are not.
pub async fn after_insert<S: Store>(store: Arc<S>) {
    assert!(stats(&store).await.is_empty());
    seed(&store).await;
    let mut keyed = job_in("q2", "b");
    keyed.unique_key = Some("k".into());
    insert_many(&store, vec![keyed.clone(), keyed.clone()], t0()).await;
    insert_many(&store, vec![keyed], t0()).await;
    assert_stats(
        &store,
        &[
            ("q1", "a", Available, 3),
            ("q1", "b", Available, 2),
            ("q2", "a", Available, 1),
            ("q2", "b", Available, 1),
        ],
        "inserts",
    )
    .await;
}

/// Claimed jobs move from `available` to `running`.
pub async fn after_claim<S: Store>(store: Arc<S>) {
    seed(&store).await;
    claim_q1_a(&store).await;
    assert_stats(
        &store,
        &[
            ("q1", "a", Running, 3),
            ("q1", "b", Available, 2),
            ("q2", "a", Available, 1),
        ],
        "claims",
    )
    .await;
}

/// Every outcome moves its job to the right count.
pub async fn after_finish<S: Store>(store: Arc<S>) {
    let mut jobs: Vec<JobInsert> = Vec::new();
    for _ in 0..6 {
        jobs.push(job_in("q", "k"));
    }
    insert(&store, jobs, t0()).await;
    let claimed = store
        .job_claim(crate::fixture::claim_params("q", 6, "w1", t0()))
        .await
        .expect("job_claim");
    assert_eq!(claimed.len(), 6);
    let error = || attempt_error(1, at(1), "x");
    let outcomes = [
        Outcome::Completed { result: None },
        Outcome::Retry {
            error: error(),
            run_at: at(100),
        },
        Outcome::Discard { error: error() },
        Outcome::Snooze { run_at: at(100) },
        Outcome::Cancel { error: None },
        Outcome::HandBack,
    ];
    let finishes = claimed
        .iter()
        .zip(outcomes)
        .map(|(row, outcome)| JobFinish {
            id: row.id,
            fence: 1,
            outcome,
        })
        .collect();
    assert_eq!(finish_many(&store, finishes, at(1)).await.len(), 6);
    assert_stats(
        &store,
        &[
            ("q", "k", Completed, 1),
            ("q", "k", Retryable, 1),
            ("q", "k", Discarded, 1),
            ("q", "k", Available, 2),
            ("q", "k", Cancelled, 1),
        ],
        "one finish of each outcome",
    )
    .await;

    // A stale finish changes no count.
    finish(
        &store,
        claimed[0].id,
        1,
        Outcome::Discard { error: error() },
        at(2),
    )
    .await;
    // The retryable job runs again and is discarded; the snoozed and handed-back ones complete.
    crate::fixture::stage(&store, at(100)).await;
    let again = store
        .job_claim(crate::fixture::claim_params("q", 6, "w1", at(100)))
        .await
        .expect("job_claim");
    assert_eq!(again.len(), 3);
    let finishes = again
        .iter()
        .map(|row| JobFinish {
            id: row.id,
            fence: row.fence,
            outcome: if row.id == claimed[1].id {
                Outcome::Discard {
                    error: attempt_error(2, at(101), "x"),
                }
            } else {
                Outcome::Completed { result: None }
            },
        })
        .collect();
    assert_eq!(finish_many(&store, finishes, at(101)).await.len(), 3);
    assert_stats(
        &store,
        &[
            ("q", "k", Completed, 3),
            ("q", "k", Discarded, 2),
            ("q", "k", Cancelled, 1),
        ],
        "the second round",
    )
    .await;
}

/// Cancelling a waiting job moves it to `cancelled`; cancelling a running one changes nothing
/// until its worker acknowledges, and then counts it once.
pub async fn after_cancel<S: Store>(store: Arc<S>) {
    let ids = seed(&store).await;
    let running = claim_q1_a(&store).await;
    let cancel = |id| JobCancelParams { id, now: at(1) };
    store.job_cancel(cancel(ids[3])).await.expect("job_cancel");
    store
        .job_cancel(cancel(running[0]))
        .await
        .expect("job_cancel");
    assert_stats(
        &store,
        &[
            ("q1", "a", Running, 3),
            ("q1", "b", Available, 1),
            ("q1", "b", Cancelled, 1),
            ("q2", "a", Available, 1),
        ],
        "cancels",
    )
    .await;
    store
        .job_cancel(cancel(ids[3]))
        .await
        .expect("cancelling twice is fine");
    finish(&store, running[0], 1, Outcome::HandBack, at(2)).await;
    assert_stats(
        &store,
        &[
            ("q1", "a", Running, 2),
            ("q1", "b", Available, 1),
            ("q1", "b", Cancelled, 1),
            ("q1", "a", Cancelled, 1),
            ("q2", "a", Available, 1),
        ],
        "the cancelled job's hand back",
    )
    .await;
}

/// Retrying finished jobs moves them back to `available`; retrying a running one changes
/// nothing.
pub async fn after_retry<S: Store>(store: Arc<S>) {
    seed(&store).await;
    let running = claim_q1_a(&store).await;
    finish(
        &store,
        running[0],
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    finish(
        &store,
        running[1],
        1,
        Outcome::Discard {
            error: attempt_error(1, at(1), "x"),
        },
        at(1),
    )
    .await;
    for id in running {
        store
            .job_retry(JobRetryParams { id, now: at(2) })
            .await
            .expect("job_retry");
    }
    assert_stats(
        &store,
        &[
            ("q1", "a", Available, 2),
            ("q1", "a", Running, 1),
            ("q1", "b", Available, 2),
            ("q2", "a", Available, 1),
        ],
        "retries",
    )
    .await;
}

/// A bulk retry moves the finished jobs it retries back to `available`, and only those.
pub async fn after_retry_many<S: Store>(store: Arc<S>) {
    seed(&store).await;
    let running = claim_q1_a(&store).await;
    finish(
        &store,
        running[0],
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    for id in &running[1..] {
        let discard = Outcome::Discard {
            error: attempt_error(1, at(1), "x"),
        };
        finish(&store, *id, 1, discard, at(1)).await;
    }
    let retried = store
        .job_retry_many(JobRetryManyParams {
            states: vec![Discarded],
            queues: Vec::new(),
            kinds: Vec::new(),
            tenant: None,
            limit: 1,
            now: at(2),
        })
        .await
        .expect("job_retry_many");
    assert_eq!(retried, 1);
    assert_stats(
        &store,
        &[
            ("q1", "a", Available, 1),
            ("q1", "a", Completed, 1),
            ("q1", "a", Discarded, 1),
            ("q1", "b", Available, 2),
            ("q2", "a", Available, 1),
        ],
        "a bulk retry of one discarded job",
    )
    .await;
}

/// Deleting jobs in any state but running takes them out of the counts.
pub async fn after_delete<S: Store>(store: Arc<S>) {
    let ids = seed(&store).await;
    let running = claim_q1_a(&store).await;
    finish(
        &store,
        running[0],
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    finish(
        &store,
        running[1],
        1,
        Outcome::Cancel { error: None },
        at(1),
    )
    .await;
    for id in [running[0], running[1], ids[3], ids[5]] {
        store.job_delete(id).await.expect("job_delete");
    }
    let _ = store
        .job_delete(running[2])
        .await
        .expect_err("a running job cannot be deleted");
    assert_stats(
        &store,
        &[("q1", "a", Running, 1), ("q1", "b", Available, 1)],
        "deletes",
    )
    .await;
}

/// Pruning takes finished jobs out of the counts.
pub async fn after_prune<S: Store>(store: Arc<S>) {
    seed(&store).await;
    let running = claim_q1_a(&store).await;
    finish(
        &store,
        running[0],
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    finish(
        &store,
        running[1],
        1,
        Outcome::Completed { result: None },
        at(50),
    )
    .await;
    finish(
        &store,
        running[2],
        1,
        Outcome::Discard {
            error: attempt_error(1, at(1), "x"),
        },
        at(1),
    )
    .await;
    let pruned = store
        .job_prune(JobPruneParams {
            completed_before: Some(at(10)),
            discarded_before: Some(at(10)),
            limit: 100,
            ..JobPruneParams::default()
        })
        .await
        .expect("job_prune");
    assert_eq!(pruned, 2);
    assert_stats(
        &store,
        &[
            ("q1", "a", Completed, 1),
            ("q1", "b", Available, 2),
            ("q2", "a", Available, 1),
        ],
        "a prune",
    )
    .await;
}
