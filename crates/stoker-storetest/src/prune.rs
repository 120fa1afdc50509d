//! [`Store::job_prune`]: retention by age per finished state, by count per queue, in batches.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use stoker_core::{JobCancelParams, JobId, JobPruneParams, JobState, Outcome, Store};

use crate::fixture::{
    all_jobs, at, attempt_error, claim_exactly, complete, finish, get, ids, insert, insert_one,
    job_in, t0,
};

/// Inserts a job of `kind` in `queue` and finishes it in `state` at `finished_at`.
async fn finished<S: Store>(
    store: &Arc<S>,
    queue: &str,
    kind: &str,
    state: JobState,
    finished_at: DateTime<Utc>,
) -> JobId {
    let id = insert_one(store, job_in(queue, kind), t0()).await;
    match state {
        JobState::Completed => complete(store, queue, kind, id, finished_at).await,
        JobState::Discarded => {
            claim_exactly(store, queue, kind, id, finished_at).await;
            let discard = Outcome::Discard {
                error: attempt_error(1, finished_at, "x"),
            };
            assert_eq!(finish(store, id, 1, discard, finished_at).await, vec![id]);
        }
        JobState::Cancelled => {
            let cancel = JobCancelParams {
                id,
                now: finished_at,
            };
            store.job_cancel(cancel).await.expect("job_cancel");
        }
        other => panic!("{other} is not a finished state"),
    }
    assert_eq!(get(store, id).await.state, state);
    id
}

/// One job in each unfinished state (available, scheduled, running, retryable), none of which
/// any prune may touch.
async fn unfinished<S: Store>(store: &Arc<S>) -> Vec<JobId> {
    let mut ids = insert(store, vec![job_in("q", "waiting")], at(-1000)).await;
    let mut scheduled = job_in("q", "scheduled");
    scheduled.run_at = Some(at(100_000));
    ids.push(insert_one(store, scheduled, at(-1000)).await);
    let running = insert_one(store, job_in("q", "running"), at(-1000)).await;
    claim_exactly(store, "q", "running", running, at(-900)).await;
    ids.push(running);
    let retryable = insert_one(store, job_in("q", "retryable"), at(-1000)).await;
    claim_exactly(store, "q", "retryable", retryable, at(-900)).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(-900), "x"),
        run_at: at(100_000),
    };
    finish(store, retryable, 1, retry, at(-900)).await;
    ids.push(retryable);
    ids
}

async fn prune<S: Store>(store: &Arc<S>, params: JobPruneParams) -> u64 {
    store.job_prune(params).await.expect("job_prune")
}

fn sorted(mut ids: Vec<JobId>) -> Vec<JobId> {
    ids.sort();
    ids
}

/// Each state's cutoff deletes that state's jobs finished before it and keeps newer ones;
/// unfinished jobs are never touched, however old.
pub async fn by_age_per_state<S: Store>(store: Arc<S>) {
    let keep = unfinished(&store).await;
    let old_completed = finished(&store, "q", "c", JobState::Completed, at(10)).await;
    let new_completed = finished(&store, "q", "c", JobState::Completed, at(100)).await;
    let old_cancelled = finished(&store, "q", "x", JobState::Cancelled, at(10)).await;
    let new_cancelled = finished(&store, "q", "x", JobState::Cancelled, at(100)).await;
    let old_discarded = finished(&store, "q", "d", JobState::Discarded, at(10)).await;
    let new_discarded = finished(&store, "q", "d", JobState::Discarded, at(100)).await;

    let completed_only = JobPruneParams {
        completed_before: Some(at(50)),
        limit: 100,
        ..JobPruneParams::default()
    };
    assert_eq!(prune(&store, completed_only).await, 1);
    assert_eq!(store.job_get(old_completed).await.expect("job_get"), None);

    let the_rest = JobPruneParams {
        cancelled_before: Some(at(50)),
        discarded_before: Some(at(50)),
        limit: 100,
        ..JobPruneParams::default()
    };
    assert_eq!(prune(&store, the_rest).await, 2);
    let mut left = keep.clone();
    left.extend([new_completed, new_cancelled, new_discarded]);
    assert_eq!(sorted(ids(&all_jobs(&store).await)), sorted(left));
    for id in [old_cancelled, old_discarded] {
        assert_eq!(store.job_get(id).await.expect("job_get"), None);
    }

    let everything_finished = JobPruneParams {
        completed_before: Some(at(1_000_000)),
        cancelled_before: Some(at(1_000_000)),
        discarded_before: Some(at(1_000_000)),
        limit: 100,
        ..JobPruneParams::default()
    };
    assert_eq!(prune(&store, everything_finished).await, 3);
    assert_eq!(
        sorted(ids(&all_jobs(&store).await)),
        sorted(keep),
        "unfinished jobs are never pruned"
    );
}

/// `keep_last` keeps the newest N finished jobs of each queue, whatever their finished state,
/// and never counts or touches unfinished ones.
pub async fn keep_last_per_queue<S: Store>(store: Arc<S>) {
    let keep = unfinished(&store).await; // queue "q"
    let mut q = Vec::new();
    for (i, state) in [
        JobState::Completed,
        JobState::Discarded,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Completed,
    ]
    .into_iter()
    .enumerate()
    {
        q.push(finished(&store, "q", "k", state, at(10 + i as i64)).await);
    }
    let mut other = Vec::new();
    for i in 0..2 {
        other.push(finished(&store, "other", "k", JobState::Completed, at(i)).await);
    }

    let params = JobPruneParams {
        keep_last: Some(3),
        limit: 100,
        ..JobPruneParams::default()
    };
    assert_eq!(
        prune(&store, params.clone()).await,
        2,
        "the two oldest finished jobs of q go"
    );
    let mut left = keep;
    left.extend(&q[2..]);
    left.extend(&other);
    assert_eq!(sorted(ids(&all_jobs(&store).await)), sorted(left));
    assert_eq!(
        prune(&store, params).await,
        0,
        "a second pass finds nothing"
    );
}

/// One call deletes at most `limit` rows; repeated calls finish the job.
pub async fn limit_respected<S: Store>(store: Arc<S>) {
    for i in 0..10 {
        finished(&store, "q", "k", JobState::Completed, at(i)).await;
    }
    let keep = finished(&store, "q", "k", JobState::Completed, at(500)).await;
    let params = JobPruneParams {
        completed_before: Some(at(100)),
        limit: 4,
        ..JobPruneParams::default()
    };
    let mut passes = Vec::new();
    for _ in 0..4 {
        passes.push(prune(&store, params.clone()).await);
    }
    assert_eq!(passes, vec![4, 4, 2, 0]);
    assert_eq!(ids(&all_jobs(&store).await), vec![keep]);
}

// --- stream counts ---

/// Per-queue, per-state rules (issue 13, item 9): `keep_last` keeps the newest N of one state
/// in one queue (BullMQ's `removeOnComplete: N`), an age rule deletes one state of one queue
/// finished before its cutoff; other states, other queues and unfinished jobs stay; the
/// counters move with the rows; a rule for an unfinished state is refused and deletes nothing.
pub async fn queue_rules_per_state<S: Store>(store: Arc<S>) {
    use stoker_core::{QueuePruneRule, StoreErrorKind};

    use crate::fixture::{expect_err_kind, stats};

    let keep = unfinished(&store).await; // queue "q"
    let mut completed = Vec::new();
    for i in 0..5 {
        completed.push(finished(&store, "q", "k", JobState::Completed, at(10 + i)).await);
    }
    let discarded_old = finished(&store, "q", "k", JobState::Discarded, at(5)).await;
    let discarded_new = finished(&store, "q", "k", JobState::Discarded, at(500)).await;
    let cancelled = finished(&store, "q", "k", JobState::Cancelled, at(1)).await;
    let other = finished(&store, "other", "k", JobState::Completed, at(1)).await;

    let rule = |state, finished_before, keep_last| QueuePruneRule {
        queue: "q".into(),
        state,
        finished_before,
        keep_last,
    };
    let bad = JobPruneParams {
        limit: 100,
        queue_rules: vec![rule(JobState::Running, Some(at(1_000)), None)],
        ..JobPruneParams::default()
    };
    expect_err_kind(store.job_prune(bad).await, StoreErrorKind::Invalid);
    assert_eq!(
        all_jobs(&store).await.len(),
        keep.len() + 9,
        "nothing deleted"
    );

    let params = JobPruneParams {
        limit: 100,
        queue_rules: vec![
            rule(JobState::Completed, None, Some(2)),
            rule(JobState::Discarded, Some(at(100)), None),
        ],
        ..JobPruneParams::default()
    };
    assert_eq!(
        prune(&store, params.clone()).await,
        4,
        "the three oldest completed and the old discarded job of q go"
    );
    let mut left = keep;
    left.extend(&completed[3..]);
    left.extend([discarded_new, cancelled, other]);
    assert_eq!(sorted(ids(&all_jobs(&store).await)), sorted(left));
    assert!(store
        .job_get(discarded_old)
        .await
        .expect("job_get")
        .is_none());
    let counts = stats(&store).await;
    let count = |queue: &str, state: JobState| {
        counts
            .get(&(queue.to_owned(), "k".to_owned(), state.as_str()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(count("q", JobState::Completed), 2);
    assert_eq!(count("q", JobState::Discarded), 1);
    assert_eq!(count("other", JobState::Completed), 1);
    assert_eq!(
        prune(&store, params).await,
        0,
        "a second pass finds nothing"
    );

    // Bounded: a call deletes at most `limit`, whatever its rules say.
    let everything = JobPruneParams {
        limit: 1,
        queue_rules: vec![rule(JobState::Completed, None, Some(0))],
        ..JobPruneParams::default()
    };
    assert_eq!(prune(&store, everything.clone()).await, 1);
    assert_eq!(prune(&store, everything.clone()).await, 1);
    assert_eq!(prune(&store, everything).await, 0);
}
