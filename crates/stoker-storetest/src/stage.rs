//! [`Store::job_stage`]: jobs waiting for a future `run_at` (inserted for later, retrying
//! after a backoff, snoozed) stay out of claims until staged at or after their `run_at`; jobs
//! due when written never wait for it.

use std::sync::Arc;

use stoker_core::{
    JobCancelParams, JobInsert, JobRetryParams, JobStageParams, JobState, Outcome, Store,
    QUEUE_DEFAULT,
};

use crate::fixture::{at, attempt_error, claim_ids, finish, get, insert, job, running, stage, t0};

/// A job scheduled for `secs` after [`t0`], inserted at [`t0`].
fn scheduled(kind: &str, secs: i64) -> JobInsert {
    JobInsert {
        run_at: Some(at(secs)),
        ..job(kind)
    }
}

/// A retry's backoff and a snooze put the job in the schedule: it keeps its state
/// (`retryable`, `available`) through staging and is claimed only once staged. A retry or a
/// snooze to a time not after the finish is claimable at once, as is a handed-back job.
pub async fn retry_and_snooze_wait_for_their_run_at<S: Store>(store: Arc<S>) {
    let retried = running(&store, "retried", t0()).await;
    let snoozed = running(&store, "snoozed", t0()).await;
    let retried_now = running(&store, "retried-now", t0()).await;
    let handed = running(&store, "handed", t0()).await;
    let retry = |secs: i64| Outcome::Retry {
        error: attempt_error(1, at(1), "boom"),
        run_at: at(secs),
    };
    finish(&store, retried.id, 1, retry(30), at(1)).await;
    finish(
        &store,
        snoozed.id,
        1,
        Outcome::Snooze { run_at: at(40) },
        at(1),
    )
    .await;
    finish(&store, retried_now.id, 1, retry(1), at(1)).await;
    finish(&store, handed.id, 1, Outcome::HandBack, at(1)).await;

    let mut at_once = vec![retried_now.id, handed.id];
    at_once.sort();
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(1)).await,
        at_once,
        "due when finished: claimable without staging"
    );
    assert!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(50))
            .await
            .is_empty(),
        "due, but not staged"
    );

    assert_eq!(stage(&store, at(30)).await, 1);
    assert_eq!(get(&store, retried.id).await.state, JobState::Retryable);
    assert_eq!(get(&store, snoozed.id).await.state, JobState::Available);
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(30)).await,
        vec![retried.id]
    );
    assert_eq!(get(&store, retried.id).await.attempt, 2);

    assert_eq!(stage(&store, at(40)).await, 1);
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(40)).await,
        vec![snoozed.id]
    );
    assert_eq!(
        get(&store, snoozed.id).await.attempt,
        1,
        "a snooze gives back its attempt"
    );
}

/// A call stages at most `limit` jobs, the earliest `run_at` first, and reports how many; the
/// next call takes the rest. Jobs of every queue are staged.
pub async fn limit_and_order<S: Store>(store: Arc<S>) {
    let mut other = scheduled("elsewhere", 5);
    other.queue = "stage-other".into();
    let ids = insert(
        &store,
        vec![
            scheduled("third", 30),
            scheduled("first", 10),
            other,
            scheduled("fourth", 40),
            scheduled("later", 1000),
        ],
        t0(),
    )
    .await;
    let stage_limit = |limit: u32| {
        let store = Arc::clone(&store);
        async move {
            store
                .job_stage(JobStageParams {
                    now: at(100),
                    limit,
                })
                .await
                .expect("job_stage")
        }
    };
    assert_eq!(stage_limit(0).await, 0, "a limit of 0 stages nothing");
    assert_eq!(stage_limit(2).await, 2, "the two earliest");
    assert_eq!(
        claim_ids(&store, "stage-other", 10, at(100)).await,
        vec![ids[2]]
    );
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(100)).await,
        vec![ids[1]]
    );
    assert_eq!(stage_limit(10).await, 2, "the rest that is due");
    let mut rest = vec![ids[0], ids[3]];
    rest.sort();
    assert_eq!(claim_ids(&store, QUEUE_DEFAULT, 10, at(100)).await, rest);
    assert_eq!(stage_limit(10).await, 0, "the job due at 1000 s stays");
}

/// A scheduled job that is cancelled leaves the schedule: staging never revives it. One
/// retried by hand runs at once, without waiting for its `run_at` or a stage.
pub async fn cancel_and_retry_leave_the_schedule<S: Store>(store: Arc<S>) {
    let ids = insert(
        &store,
        vec![scheduled("cancelled", 10), scheduled("retried", 10)],
        t0(),
    )
    .await;
    let cancelled = store
        .job_cancel(JobCancelParams {
            id: ids[0],
            now: at(1),
        })
        .await
        .expect("job_cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    let retried = store
        .job_retry(JobRetryParams {
            id: ids[1],
            now: at(2),
        })
        .await
        .expect("job_retry");
    assert_eq!(
        (retried.state, retried.run_at),
        (JobState::Available, at(2))
    );
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(2)).await,
        vec![ids[1]]
    );

    assert_eq!(stage(&store, at(20)).await, 0, "nothing left to stage");
    assert_eq!(get(&store, ids[0]).await.state, JobState::Cancelled);
    assert!(claim_ids(&store, QUEUE_DEFAULT, 10, at(20))
        .await
        .is_empty());
}
