//! [`Store::job_cancel`]: waiting jobs end at once, running jobs get a request, finished jobs
//! stay as they are.

use std::sync::Arc;

use serde_json::json;
use stoker_core::{JobCancelParams, JobId, JobRow, JobState, Outcome, Store, StoreErrorKind};

use crate::fixture::{
    at, attempt_error, expect_err_kind, finish, get, insert, job, running, t0, UNKNOWN_ID,
};

async fn cancel<S: Store>(store: &Arc<S>, id: JobId, secs: i64) -> JobRow {
    store
        .job_cancel(JobCancelParams { id, now: at(secs) })
        .await
        .expect("job_cancel")
}

/// `available` (due or scheduled) and `retryable` jobs become `cancelled` with
/// `finished_at = now`.
pub async fn waiting_becomes_cancelled<S: Store>(store: Arc<S>) {
    let due = insert(&store, vec![job("due")], t0()).await[0];
    let mut later = job("scheduled");
    later.run_at = Some(at(3600));
    let scheduled = insert(&store, vec![later], t0()).await[0];
    let flaky = running(&store, "flaky", t0()).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(1), "boom"),
        run_at: at(100),
    };
    assert_eq!(
        finish(&store, flaky.id, 1, retry, at(1)).await,
        vec![flaky.id]
    );

    for id in [due, scheduled, flaky.id] {
        let returned = cancel(&store, id, 5).await;
        assert_eq!(returned.state, JobState::Cancelled, "job {id}");
        assert_eq!(returned.finished_at, Some(at(5)));
        assert_eq!(
            returned,
            get(&store, id).await,
            "the returned row is the stored row"
        );
    }
    assert_eq!(
        get(&store, flaky.id).await.errors.len(),
        1,
        "the history is kept"
    );
}

/// A running job stays `running` with `cancel_requested_at = now`.
pub async fn running_gets_cancel_requested<S: Store>(store: Arc<S>) {
    let job = running(&store, "long", t0()).await;
    let returned = cancel(&store, job.id, 5).await;
    assert_eq!(returned.state, JobState::Running);
    assert_eq!(returned.cancel_requested_at, Some(at(5)));
    assert_eq!(returned.finished_at, None);
    assert_eq!(returned.attempt, 1);
    assert_eq!(returned.worker_id.as_deref(), Some("w1"));
    assert_eq!(returned, get(&store, job.id).await);
}

/// After a cancel request, a failed, snoozed or handed-back attempt ends the job `cancelled`.
pub async fn running_then_failure_ends_cancelled<S: Store>(store: Arc<S>) {
    let outcomes = [
        (
            "then_retry",
            Outcome::Retry {
                error: attempt_error(1, at(9), "stopped"),
                run_at: at(60),
            },
        ),
        ("then_snooze", Outcome::Snooze { run_at: at(60) }),
        ("then_hand_back", Outcome::HandBack),
    ];
    for (kind, outcome) in outcomes {
        let job = running(&store, kind, t0()).await;
        cancel(&store, job.id, 5).await;
        assert_eq!(
            finish(&store, job.id, 1, outcome, at(10)).await,
            vec![job.id],
            "{kind}"
        );
        let row = get(&store, job.id).await;
        assert_eq!(row.state, JobState::Cancelled, "{kind}");
        assert_eq!(row.finished_at, Some(at(10)), "{kind}");
        assert_eq!(row.attempt, 1, "{kind}");
    }
}

/// After a cancel request, an attempt that completes anyway ends the job `completed`.
pub async fn running_then_completed_ends_completed<S: Store>(store: Arc<S>) {
    let job = running(&store, "quick", t0()).await;
    cancel(&store, job.id, 5).await;
    let done = Outcome::Completed {
        result: Some(json!({"done": true})),
    };
    assert_eq!(finish(&store, job.id, 1, done, at(10)).await, vec![job.id]);
    let row = get(&store, job.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, Some(json!({"done": true})));
    assert_eq!(row.finished_at, Some(at(10)));
}

/// A finished job is returned unchanged.
pub async fn finished_unchanged<S: Store>(store: Arc<S>) {
    let completed = running(&store, "completed", t0()).await;
    let discarded = running(&store, "discarded", t0()).await;
    let cancelled = insert(&store, vec![job("cancelled")], t0()).await[0];
    finish(
        &store,
        completed.id,
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    let discard = Outcome::Discard {
        error: attempt_error(1, at(1), "no"),
    };
    finish(&store, discarded.id, 1, discard, at(1)).await;
    cancel(&store, cancelled, 1).await;

    for id in [completed.id, discarded.id, cancelled] {
        let before = get(&store, id).await;
        let returned = cancel(&store, id, 50).await;
        assert_eq!(
            returned, before,
            "cancelling finished job {id} changes nothing"
        );
        assert_eq!(get(&store, id).await, before);
    }
}

/// Cancelling an unknown job is `NotFound`.
pub async fn unknown_is_not_found<S: Store>(store: Arc<S>) {
    let result = store
        .job_cancel(JobCancelParams {
            id: UNKNOWN_ID,
            now: t0(),
        })
        .await;
    expect_err_kind(result, StoreErrorKind::NotFound);
}
