//! Managing jobs: get, list, retry (one at a time and in bulk), delete and progress.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use stoker_core::{
    JobCancelParams, JobId, JobInsert, JobListParams, JobProgressParams, JobRetryManyParams,
    JobRetryParams, JobRow, JobState, Outcome, Progress, Store, StoreErrorKind, QUEUE_DEFAULT,
};

use crate::fixture::{
    all_jobs, at, attempt_error, claim_exactly, complete, expect_err_kind, expect_invalid, finish,
    get, ids, insert, job, job_in, running, t0, UNKNOWN_ID,
};

/// `job_get` of an unknown id is `None`, not an error.
pub async fn get_unknown_is_none<S: Store>(store: Arc<S>) {
    insert(&store, vec![job("x")], t0()).await;
    assert_eq!(store.job_get(UNKNOWN_ID).await.expect("job_get"), None);
}

/// Each filter narrows the list; filters combine; the list runs newest first, at most `limit`.
pub async fn list_filters<S: Store>(store: Arc<S>) {
    let in_tenant = |queue: &str, kind: &str, tenant: Option<&str>| JobInsert {
        tenant: tenant.map(str::to_owned),
        ..job_in(queue, kind)
    };
    let j = insert(
        &store,
        vec![
            in_tenant("q1", "a", Some("t1")),
            in_tenant("q1", "b", Some("t2")),
            in_tenant("q2", "a", None),
            in_tenant("q2", "b", Some("t1")),
            in_tenant("q1", "c", None),
        ],
        t0(),
    )
    .await;
    claim_exactly(&store, "q1", "b", j[1], at(1)).await; // running
    complete(&store, "q2", "a", j[2], at(2)).await; // completed

    let filtered = |states: Vec<JobState>,
                    kinds: &[&str],
                    queues: &[&str],
                    tenant: Option<&str>| JobListParams {
        states,
        kinds: kinds.iter().map(|s| s.to_string()).collect(),
        queues: queues.iter().map(|s| s.to_string()).collect(),
        tenant: tenant.map(str::to_owned),
        before_id: None,
        limit: 100,
    };
    let cases = [
        (
            filtered(vec![], &[], &[], None),
            vec![j[4], j[3], j[2], j[1], j[0]],
        ),
        (
            filtered(vec![JobState::Available], &[], &[], None),
            vec![j[4], j[3], j[0]],
        ),
        (
            filtered(vec![JobState::Running, JobState::Completed], &[], &[], None),
            vec![j[2], j[1]],
        ),
        (filtered(vec![JobState::Discarded], &[], &[], None), vec![]),
        (filtered(vec![], &["a"], &[], None), vec![j[2], j[0]]),
        (
            filtered(vec![], &["a", "c"], &[], None),
            vec![j[4], j[2], j[0]],
        ),
        (filtered(vec![], &[], &["q2"], None), vec![j[3], j[2]]),
        (
            filtered(vec![], &[], &["q1", "q2"], None),
            vec![j[4], j[3], j[2], j[1], j[0]],
        ),
        (filtered(vec![], &[], &[], Some("t1")), vec![j[3], j[0]]),
        (filtered(vec![], &[], &[], Some("nobody")), vec![]),
        (
            filtered(vec![JobState::Available], &["a"], &["q1"], Some("t1")),
            vec![j[0]],
        ),
        (
            filtered(vec![JobState::Available], &["b"], &["q1"], None),
            vec![],
        ),
        (
            JobListParams {
                limit: 2,
                ..filtered(vec![], &[], &[], None)
            },
            vec![j[4], j[3]],
        ),
        (
            JobListParams {
                before_id: Some(j[3]),
                ..filtered(vec![], &[], &[], None)
            },
            vec![j[2], j[1], j[0]],
        ),
    ];
    for (params, expected) in cases {
        let got = store.job_list(params.clone()).await.expect("job_list");
        assert_eq!(ids(&got), expected, "job_list({params:?})");
    }
}

/// Walking pages with `before_id` = the last id of the previous page visits every matching
/// job exactly once, newest first.
pub async fn list_keyset_pagination<S: Store>(store: Arc<S>) {
    let jobs: Vec<JobInsert> = (0..40)
        .map(|i| {
            if i % 3 == 1 {
                job("other")
            } else {
                job("paged")
            }
        })
        .collect();
    let inserted = insert(&store, jobs, t0()).await;
    let mut expected: Vec<JobId> = inserted
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, id)| *id)
        .collect();
    expected.reverse();

    let mut seen = Vec::new();
    let mut before_id = None;
    for _ in 0..100 {
        let page = store
            .job_list(JobListParams {
                kinds: vec!["paged".into()],
                before_id,
                limit: 7,
                ..JobListParams::default()
            })
            .await
            .expect("job_list");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        before_id = Some(last.id);
        seen.extend(ids(&page));
    }
    assert_eq!(
        seen, expected,
        "pages cover every matching job once, newest first"
    );
}

/// Retrying a finished, retryable or scheduled job makes it `available` now: `finished_at` and any
/// cancel request cleared, `max_attempts` raised when exhausted, the error history kept.
pub async fn retry_finished_jobs<S: Store>(store: Arc<S>) {
    // Discarded with no attempts left.
    let mut once = job("once");
    once.max_attempts = 1;
    let exhausted = crate::fixture::running_job(&store, once, t0()).await;
    let error = attempt_error(1, at(1), "fatal");
    let discard = Outcome::Discard {
        error: error.clone(),
    };
    finish(&store, exhausted.id, 1, discard, at(1)).await;
    // Cancelled before it ran.
    let cancelled = insert(&store, vec![job("cancelled")], t0()).await[0];
    store
        .job_cancel(JobCancelParams {
            id: cancelled,
            now: at(1),
        })
        .await
        .expect("job_cancel");
    // Completed.
    let completed = insert(&store, vec![job("completed")], t0()).await[0];
    complete(&store, QUEUE_DEFAULT, "completed", completed, at(1)).await;
    // Cancelled while running: has a cancel request.
    let requested = running(&store, "requested", t0()).await;
    store
        .job_cancel(JobCancelParams {
            id: requested.id,
            now: at(1),
        })
        .await
        .expect("job_cancel");
    finish(&store, requested.id, 1, Outcome::HandBack, at(2)).await;
    // Retryable, waiting for its backoff.
    let waiting = running(&store, "backoff", t0()).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(1), "later"),
        run_at: at(1000),
    };
    finish(&store, waiting.id, 1, retry, at(1)).await;
    // Available, scheduled for later.
    let mut later = job("scheduled");
    later.run_at = Some(at(5000));
    let scheduled = insert(&store, vec![later], t0()).await[0];

    let cases = [
        (exhausted.id, 1, 2, 1),
        (cancelled, 0, 5, 0),
        (completed, 1, 5, 0),
        (requested.id, 1, 5, 0),
        (waiting.id, 1, 5, 1),
        (scheduled, 0, 5, 0),
    ];
    for (id, attempt, max_attempts, errors) in cases {
        let before = get(&store, id).await;
        let returned = store
            .job_retry(JobRetryParams { id, now: at(100) })
            .await
            .expect("job_retry");
        let row = get(&store, id).await;
        assert_eq!(
            returned, row,
            "job {id}: the returned row is the stored row"
        );
        assert_eq!(row.state, JobState::Available, "{}", before.kind);
        assert_eq!(row.run_at, at(100), "{}", before.kind);
        assert_eq!(row.finished_at, None, "{}", before.kind);
        assert_eq!(row.cancel_requested_at, None, "{}", before.kind);
        assert_eq!(row.attempt, attempt, "{}", before.kind);
        assert_eq!(row.max_attempts, max_attempts, "{}", before.kind);
        assert_eq!(
            row.errors, before.errors,
            "{}: the history is kept",
            before.kind
        );
        assert_eq!(row.errors.len(), errors, "{}", before.kind);
    }
    assert_eq!(get(&store, exhausted.id).await.errors, vec![error]);

    let claimed = crate::fixture::claim_ids(&store, QUEUE_DEFAULT, 10, at(100)).await;
    assert_eq!(claimed.len(), 6, "every retried job runs again");
}

/// Retries with `job_retry_many` and returns how many it retried.
async fn retry_many<S: Store>(
    store: &Arc<S>,
    states: &[JobState],
    queues: &[&str],
    kinds: &[&str],
    tenant: Option<&str>,
    limit: u32,
    now: DateTime<Utc>,
) -> u64 {
    store
        .job_retry_many(retry_many_params(states, queues, kinds, tenant, limit, now))
        .await
        .expect("job_retry_many")
}

fn retry_many_params(
    states: &[JobState],
    queues: &[&str],
    kinds: &[&str],
    tenant: Option<&str>,
    limit: u32,
    now: DateTime<Utc>,
) -> JobRetryManyParams {
    JobRetryManyParams {
        states: states.to_vec(),
        queues: queues.iter().map(|s| s.to_string()).collect(),
        kinds: kinds.iter().map(|s| s.to_string()).collect(),
        tenant: tenant.map(str::to_owned),
        limit,
        now,
    }
}

/// `before` as `job_retry` at `now` leaves it: `available` at `now`, `finished_at`, the cancel
/// request and the lease cleared, `max_attempts` raised to `attempt + 1` when exhausted.
fn retried(before: &JobRow, now: DateTime<Utc>) -> JobRow {
    JobRow {
        state: JobState::Available,
        run_at: now,
        finished_at: None,
        cancel_requested_at: None,
        lease_expires_at: None,
        max_attempts: before.max_attempts.max(before.attempt + 1),
        ..before.clone()
    }
}

/// `job_retry_many` retries exactly the finished jobs in the given states that match every
/// given filter (queues, kinds, tenant), each as `job_retry` would (error history kept), and
/// returns how many.
pub async fn retry_many_filters<S: Store>(store: Arc<S>) {
    let in_tenant = |queue: &str, kind: &str, tenant: Option<&str>| JobInsert {
        tenant: tenant.map(str::to_owned),
        ..job_in(queue, kind)
    };
    // Discarded: d1 with no attempts left, d2 in another queue, d3 of another kind.
    let mut once = in_tenant("q1", "a", Some("t1"));
    once.max_attempts = 1;
    let mut discarded = Vec::new();
    for job in [once, in_tenant("q2", "a", None), in_tenant("q1", "b", None)] {
        let row = crate::fixture::running_job(&store, job, t0()).await;
        let discard = Outcome::Discard {
            error: attempt_error(1, at(1), "fatal"),
        };
        finish(&store, row.id, 1, discard, at(1)).await;
        discarded.push(row.id);
    }
    let [d1, d2, d3] = discarded[..] else {
        unreachable!()
    };
    // Completed; cancelled before it ran (tenant t1); cancelled on request while running.
    let c1 = insert(&store, vec![in_tenant("q1", "a", None)], t0()).await[0];
    complete(&store, "q1", "a", c1, at(2)).await;
    let x1 = insert(&store, vec![in_tenant("q1", "a", Some("t1"))], t0()).await[0];
    store
        .job_cancel(JobCancelParams { id: x1, now: at(2) })
        .await
        .expect("job_cancel");
    let x2 = crate::fixture::running_job(&store, in_tenant("q1", "c", None), t0()).await;
    store
        .job_cancel(JobCancelParams {
            id: x2.id,
            now: at(2),
        })
        .await
        .expect("job_cancel");
    finish(&store, x2.id, 1, Outcome::HandBack, at(3)).await;
    let x2 = x2.id;
    assert_eq!(get(&store, x2).await.state, JobState::Cancelled);
    let before: Vec<JobRow> = all_jobs(&store).await;
    let was = |id: JobId| {
        before
            .iter()
            .find(|row| row.id == id)
            .expect("a job from before")
            .clone()
    };

    use JobState::{Cancelled, Completed, Discarded};
    let steps: [(u64, Vec<JobId>, JobRetryManyParams); 5] = [
        (
            2,
            vec![d1, d3],
            retry_many_params(&[Discarded], &["q1"], &[], None, 100, at(10)),
        ),
        (
            1,
            vec![d2],
            retry_many_params(&[Discarded], &[], &["a"], None, 100, at(11)),
        ),
        (
            1,
            vec![x1],
            retry_many_params(&[Cancelled, Completed], &[], &[], Some("t1"), 100, at(12)),
        ),
        (
            2,
            vec![c1, x2],
            retry_many_params(
                &[Completed, Cancelled],
                &["q1", "q3"],
                &["a", "c"],
                None,
                100,
                at(13),
            ),
        ),
        (
            0,
            vec![],
            retry_many_params(&JobState::FINISHED, &[], &[], None, 100, at(14)),
        ),
    ];
    let mut done: Vec<(JobId, DateTime<Utc>)> = Vec::new();
    for (count, ids_now, params) in steps {
        let now = params.now;
        let got = store
            .job_retry_many(params.clone())
            .await
            .expect("job_retry_many");
        assert_eq!(got, count, "job_retry_many({params:?})");
        done.extend(ids_now.into_iter().map(|id| (id, now)));
        for row in all_jobs(&store).await {
            let expected = match done.iter().find(|(id, _)| *id == row.id) {
                Some((_, at)) => retried(&was(row.id), *at),
                None => was(row.id),
            };
            assert_eq!(row, expected, "after job_retry_many({params:?})");
        }
    }
    let d1_row = get(&store, d1).await;
    assert_eq!((d1_row.attempt, d1_row.max_attempts), (1, 2));
    assert_eq!(d1_row.errors.len(), 1, "the history is kept");
    assert_eq!(get(&store, x2).await.cancel_requested_at, None);
    let mut all = crate::fixture::claim_ids(&store, "q1", 10, at(20)).await;
    all.extend(crate::fixture::claim_ids(&store, "q2", 10, at(20)).await);
    assert_eq!(all.len(), 6, "every retried job runs again");
}

/// `job_retry_many` retries at most `limit` jobs per call, oldest (lowest id) first whatever
/// order they finished in; repeating the call until it returns less than `limit` retries them
/// all. A limit of 0 retries nothing.
pub async fn retry_many_limit_oldest_first<S: Store>(store: Arc<S>) {
    let ids = insert(&store, (0..5).map(|_| job("dead")).collect(), t0()).await;
    let claimed = crate::fixture::claim_ids(&store, QUEUE_DEFAULT, 5, at(1)).await;
    assert_eq!(claimed, ids);
    for (n, id) in ids.iter().rev().enumerate() {
        let discard = Outcome::Discard {
            error: attempt_error(1, at(2), "fatal"),
        };
        finish(&store, *id, 1, discard, at(2 + n as i64)).await;
    }
    let discarded = [JobState::Discarded];
    assert_eq!(
        retry_many(&store, &discarded, &[], &[], None, 0, at(10)).await,
        0
    );
    assert!(all_jobs(&store)
        .await
        .iter()
        .all(|row| row.state == JobState::Discarded));

    let mut counts = Vec::new();
    let mut available_after = Vec::new();
    for _ in 0..4 {
        counts.push(retry_many(&store, &discarded, &[], &[], None, 2, at(10)).await);
        let mut available: Vec<JobId> = all_jobs(&store)
            .await
            .iter()
            .filter(|row| row.state == JobState::Available)
            .map(|row| row.id)
            .collect();
        available.sort();
        available_after.push(available);
    }
    assert_eq!(counts, vec![2, 2, 1, 0]);
    assert_eq!(
        available_after,
        vec![
            ids[..2].to_vec(),
            ids[..4].to_vec(),
            ids.clone(),
            ids.clone()
        ],
        "the oldest jobs go first"
    );
}

/// `job_retry_many` never touches jobs that are not finished: running (leased or not),
/// available, scheduled and retryable jobs stay exactly as they were.
pub async fn retry_many_leaves_unfinished_alone<S: Store>(store: Arc<S>) {
    let running_job = running(&store, "busy", t0()).await;
    let leased = crate::fixture::running_leased(&store, job("pulled"), "pull:a", 30, t0()).await;
    let flaky = running(&store, "flaky", t0()).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(1), "later"),
        run_at: at(1000),
    };
    finish(&store, flaky.id, 1, retry, at(1)).await;
    let mut later = job("scheduled");
    later.run_at = Some(at(5000));
    insert(&store, vec![job("waiting"), later], t0()).await;
    let before = all_jobs(&store).await;
    assert_eq!(before.len(), 5);
    assert!(before.iter().any(|row| row.id == running_job.id));
    assert!(before.iter().any(|row| row.id == leased.id));

    assert_eq!(
        retry_many(&store, &JobState::FINISHED, &[], &[], None, 100, at(10)).await,
        0
    );
    assert_eq!(all_jobs(&store).await, before);
}

/// `job_retry_many` refuses an empty list of states, and any state that is not finished, as
/// `Invalid` naming `states`, and changes nothing.
pub async fn retry_many_invalid_states<S: Store>(store: Arc<S>) {
    let dead = crate::fixture::running(&store, "dead", t0()).await;
    let discard = Outcome::Discard {
        error: attempt_error(1, at(1), "fatal"),
    };
    finish(&store, dead.id, 1, discard, at(1)).await;
    let before = all_jobs(&store).await;
    use JobState::*;
    let cases: [&[JobState]; 5] = [
        &[],
        &[Running],
        &[Available],
        &[Retryable],
        &[Discarded, Retryable],
    ];
    for states in cases {
        let result = store
            .job_retry_many(retry_many_params(states, &[], &[], None, 100, at(10)))
            .await;
        expect_invalid(result, "states");
    }
    assert_eq!(all_jobs(&store).await, before);
}

/// Retrying a running job returns it unchanged.
pub async fn retry_running_unchanged<S: Store>(store: Arc<S>) {
    let job = running(&store, "busy", t0()).await;
    let returned = store
        .job_retry(JobRetryParams {
            id: job.id,
            now: at(50),
        })
        .await
        .expect("job_retry");
    assert_eq!(returned, job);
    assert_eq!(get(&store, job.id).await, job);
}

/// Retrying an unknown job is `NotFound`.
pub async fn retry_unknown_is_not_found<S: Store>(store: Arc<S>) {
    let result = store
        .job_retry(JobRetryParams {
            id: UNKNOWN_ID,
            now: t0(),
        })
        .await;
    expect_err_kind(result, StoreErrorKind::NotFound);
}

/// Deleting returns the row as it was; the job is gone afterwards.
pub async fn delete_returns_row<S: Store>(store: Arc<S>) {
    let waiting = insert(&store, vec![job("waiting")], t0()).await[0];
    let done = insert(&store, vec![job("done")], t0()).await[0];
    complete(&store, QUEUE_DEFAULT, "done", done, at(1)).await;

    for id in [waiting, done] {
        let before = get(&store, id).await;
        let deleted = store.job_delete(id).await.expect("job_delete");
        assert_eq!(deleted, before);
        assert_eq!(store.job_get(id).await.expect("job_get"), None);
    }
    assert!(all_jobs(&store).await.is_empty());
}

/// Deleting a running job is a `Conflict` and leaves it alone.
pub async fn delete_running_is_conflict<S: Store>(store: Arc<S>) {
    let job = running(&store, "busy", t0()).await;
    expect_err_kind(store.job_delete(job.id).await, StoreErrorKind::Conflict);
    assert_eq!(get(&store, job.id).await, job);
}

/// Deleting an unknown job is `NotFound`.
pub async fn delete_unknown_is_not_found<S: Store>(store: Arc<S>) {
    expect_err_kind(store.job_delete(UNKNOWN_ID).await, StoreErrorKind::NotFound);
}

/// Progress is recorded for the running attempt only; a wrong attempt, a job that is not
/// running and an unknown job get `false` and change nothing.
pub async fn progress_fenced<S: Store>(store: Arc<S>) {
    let job = running(&store, "long", t0()).await;
    let waiting = insert(&store, vec![crate::fixture::job("waiting")], t0()).await[0];
    let progress = |id: JobId, fence: i64, fraction: f64, message: Option<&str>, secs: i64| {
        JobProgressParams {
            id,
            fence,
            fraction,
            message: message.map(str::to_owned),
            details: None,
            now: at(secs),
        }
    };

    assert!(store
        .job_progress(progress(job.id, 1, 0.25, Some("a quarter"), 3))
        .await
        .expect("job_progress"));
    assert_eq!(
        get(&store, job.id).await.progress,
        Some(Progress {
            fraction: 0.25,
            message: Some("a quarter".into()),
            details: None,
            at: at(3)
        })
    );
    assert!(store
        .job_progress(progress(job.id, 1, 0.5, None, 4))
        .await
        .expect("job_progress"));
    let recorded = get(&store, job.id).await;
    assert_eq!(
        recorded.progress,
        Some(Progress {
            fraction: 0.5,
            message: None,
            details: None,
            at: at(4)
        })
    );
    assert_eq!(recorded.state, JobState::Running);

    for (id, attempt) in [
        (job.id, 2),
        (job.id, 0),
        (waiting, 0),
        (waiting, 1),
        (UNKNOWN_ID, 1),
    ] {
        let applied = store
            .job_progress(progress(id, attempt, 0.75, Some("stale"), 5))
            .await
            .expect("job_progress");
        assert!(
            !applied,
            "progress for job {id} attempt {attempt} must be refused"
        );
    }
    assert_eq!(get(&store, job.id).await, recorded);
    assert_eq!(get(&store, waiting).await.progress, None);
}

/// Progress carries optional JSON details, stored with the report and replaced by the next
/// one; details over the size limit, and fractions outside 0..=1, are refused as `Invalid`
/// and change nothing.
pub async fn progress_details<S: Store>(store: Arc<S>) {
    let job = running(&store, "detailed", t0()).await;
    let report = |fraction: f64, details: Option<serde_json::Value>, secs: i64| JobProgressParams {
        id: job.id,
        fence: job.fence,
        fraction,
        message: None,
        details,
        now: at(secs),
    };
    let details = serde_json::json!({"rows": 1200, "of": 5000, "stage": "import"});
    assert!(store
        .job_progress(report(0.24, Some(details.clone()), 1))
        .await
        .expect("job_progress"));
    let recorded = get(&store, job.id).await;
    assert_eq!(
        recorded.progress,
        Some(Progress {
            fraction: 0.24,
            message: None,
            details: Some(details),
            at: at(1)
        })
    );

    let huge = serde_json::json!({"blob": "x".repeat(stoker_core::MAX_PROGRESS_DETAILS_BYTES)});
    expect_invalid(
        store.job_progress(report(0.5, Some(huge), 2)).await,
        "details",
    );
    for fraction in [-0.1, 1.5, f64::NAN] {
        expect_invalid(
            store.job_progress(report(fraction, None, 2)).await,
            "fraction",
        );
    }
    assert_eq!(
        get(&store, job.id).await,
        recorded,
        "refused reports change nothing"
    );

    assert!(store
        .job_progress(report(0.5, None, 3))
        .await
        .expect("job_progress"));
    assert_eq!(
        get(&store, job.id).await.progress.and_then(|p| p.details),
        None,
        "a report without details clears the last one's"
    );
}
