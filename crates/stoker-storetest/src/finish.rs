//! [`Store::job_finish_many`]: every outcome, the error history, fencing and cancel requests.

use std::sync::Arc;

use serde_json::json;
use stoker_core::{
    AttemptError, ErrorKind, JobCancelParams, JobFinish, JobId, JobState, Outcome, Store,
    QUEUE_DEFAULT,
};

use crate::fixture::{
    at, attempt_error, claim_exactly, finish, finish_many, get, insert, job, running,
    running_leased, t0, UNKNOWN_ID,
};

/// `Completed`: `completed`, with the result and `finished_at = now`; a missing result stays
/// missing.
pub async fn completed<S: Store>(store: Arc<S>) {
    let with = running(&store, "with_result", t0()).await;
    let without = running(&store, "without_result", t0()).await;
    let result = json!({"sent": true, "ids": [1, 2, 3]});
    let applied = finish_many(
        &store,
        vec![
            JobFinish {
                id: with.id,
                fence: 1,
                outcome: Outcome::Completed {
                    result: Some(result.clone()),
                },
            },
            JobFinish {
                id: without.id,
                fence: 1,
                outcome: Outcome::Completed { result: None },
            },
        ],
        at(5),
    )
    .await;
    assert_eq!(applied, vec![with.id, without.id]);

    let row = get(&store, with.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, Some(result));
    assert_eq!(row.finished_at, Some(at(5)));
    assert_eq!(row.attempt, 1);
    assert_eq!(
        row.worker_id.as_deref(),
        Some("w1"),
        "worker_id is kept for the record"
    );
    assert!(row.errors.is_empty());
    assert_eq!(row.run_at, with.run_at);

    let row = get(&store, without.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, None);
    assert_eq!(row.finished_at, Some(at(5)));
}

/// `Retry`: `retryable` at the given `run_at`, the error appended, not finished.
pub async fn retry<S: Store>(store: Arc<S>) {
    let job = running(&store, "flaky", t0()).await;
    let error = AttemptError {
        attempt: 1,
        at: at(4),
        kind: ErrorKind::Timeout,
        message: "timed out after 30s".into(),
        backtrace: None,
    };
    let outcome = Outcome::Retry {
        error: error.clone(),
        run_at: at(65),
    };
    assert_eq!(
        finish(&store, job.id, 1, outcome, at(5)).await,
        vec![job.id]
    );

    let row = get(&store, job.id).await;
    assert_eq!(row.state, JobState::Retryable);
    assert_eq!(row.run_at, at(65));
    assert_eq!(row.errors, vec![error]);
    assert_eq!(row.attempt, 1);
    assert_eq!(row.finished_at, None);
    assert_eq!(row.worker_id.as_deref(), Some("w1"));
}

/// `Discard`: `discarded` (the dead letter), `finished_at = now`, the error appended, with a
/// panic's backtrace kept.
pub async fn discard<S: Store>(store: Arc<S>) {
    let job = running(&store, "doomed", t0()).await;
    let error = AttemptError {
        attempt: 1,
        at: at(4),
        kind: ErrorKind::Panic,
        message: "index out of bounds".into(),
        backtrace: Some("0: doomed::run\n1: stoker::executor".into()),
    };
    let outcome = Outcome::Discard {
        error: error.clone(),
    };
    assert_eq!(
        finish(&store, job.id, 1, outcome, at(5)).await,
        vec![job.id]
    );

    let row = get(&store, job.id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.finished_at, Some(at(5)));
    assert_eq!(row.errors, vec![error]);
    assert_eq!(row.attempt, 1);
    assert_eq!(row.worker_id.as_deref(), Some("w1"));
}

/// `Snooze`: `available` at the new `run_at` with the attempt given back; it runs again then,
/// as attempt 1 again.
pub async fn snooze<S: Store>(store: Arc<S>) {
    let job = running(&store, "sleepy", t0()).await;
    let outcome = Outcome::Snooze { run_at: at(120) };
    assert_eq!(
        finish(&store, job.id, 1, outcome, at(5)).await,
        vec![job.id]
    );

    let row = get(&store, job.id).await;
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.attempt, 0, "a snooze does not use up an attempt");
    assert_eq!(row.run_at, at(120));
    assert!(row.errors.is_empty());
    assert_eq!(row.finished_at, None);
    assert_eq!(
        row.worker_id.as_deref(),
        Some("w1"),
        "worker_id is kept for the record"
    );

    assert!(crate::fixture::claim_ids(&store, QUEUE_DEFAULT, 1, at(119))
        .await
        .is_empty());
    let again = claim_exactly(&store, QUEUE_DEFAULT, "sleepy", job.id, at(120)).await;
    assert_eq!(again.attempt, 1);
}

/// `Cancel`: `cancelled`, `finished_at = now`, the error appended only if given.
pub async fn cancel<S: Store>(store: Arc<S>) {
    let with = running(&store, "cancel_with_error", t0()).await;
    let without = running(&store, "cancel_without_error", t0()).await;
    let error = AttemptError {
        kind: ErrorKind::Cancelled,
        ..attempt_error(1, at(4), "customer closed the account")
    };
    let applied = finish_many(
        &store,
        vec![
            JobFinish {
                id: with.id,
                fence: 1,
                outcome: Outcome::Cancel {
                    error: Some(error.clone()),
                },
            },
            JobFinish {
                id: without.id,
                fence: 1,
                outcome: Outcome::Cancel { error: None },
            },
        ],
        at(5),
    )
    .await;
    assert_eq!(applied, vec![with.id, without.id]);

    let row = get(&store, with.id).await;
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.finished_at, Some(at(5)));
    assert_eq!(row.errors, vec![error]);
    let row = get(&store, without.id).await;
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.finished_at, Some(at(5)));
    assert!(row.errors.is_empty());
}

/// `HandBack`: `available` at its old `run_at`, the attempt given back, claimable at once.
pub async fn hand_back<S: Store>(store: Arc<S>) {
    let mut scheduled = job("handed");
    scheduled.run_at = Some(at(-30));
    let id = insert(&store, vec![scheduled], at(-60)).await[0];
    claim_exactly(&store, QUEUE_DEFAULT, "handed", id, t0()).await;
    assert_eq!(
        finish(&store, id, 1, Outcome::HandBack, at(5)).await,
        vec![id]
    );

    let row = get(&store, id).await;
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.attempt, 0);
    assert_eq!(row.run_at, at(-30), "run_at is unchanged");
    assert!(row.errors.is_empty());
    assert_eq!(row.finished_at, None);
    assert_eq!(
        row.worker_id.as_deref(),
        Some("w1"),
        "worker_id is kept for the record"
    );
    let again = claim_exactly(&store, QUEUE_DEFAULT, "handed", id, at(5)).await;
    assert_eq!(again.attempt, 1);
}

/// Each failed attempt appends its error, oldest first, until the job is discarded.
pub async fn error_history_accumulates<S: Store>(store: Arc<S>) {
    let mut three = job("three_strikes");
    three.max_attempts = 3;
    let id = insert(&store, vec![three], t0()).await[0];

    let mut expected = Vec::new();
    for attempt in 1..=3 {
        let now = at(i64::from(attempt) * 100);
        let row = claim_exactly(&store, QUEUE_DEFAULT, "three_strikes", id, now).await;
        assert_eq!(row.attempt, attempt);
        assert_eq!(row.errors, expected, "history before attempt {attempt}");
        let error = attempt_error(
            attempt,
            now + chrono::Duration::seconds(1),
            &format!("strike {attempt}"),
        );
        expected.push(error.clone());
        let outcome = if attempt < 3 {
            Outcome::Retry {
                error,
                run_at: now + chrono::Duration::seconds(10),
            }
        } else {
            Outcome::Discard { error }
        };
        assert_eq!(
            finish(
                &store,
                id,
                i64::from(attempt),
                outcome,
                now + chrono::Duration::seconds(1)
            )
            .await,
            vec![id]
        );
    }

    let row = get(&store, id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.attempt, 3);
    assert_eq!(row.errors, expected);
    assert_eq!(
        row.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

/// A finish carrying a stale attempt (the job was rescued and claimed again) is not applied
/// and not returned; nor is one carrying a future attempt.
pub async fn stale_attempt_fenced<S: Store>(store: Arc<S>) {
    let job = running(&store, "contested", t0()).await;
    let lost = Outcome::Retry {
        error: AttemptError {
            kind: ErrorKind::WorkerLost,
            ..attempt_error(1, at(60), "worker w1 stopped heartbeating")
        },
        run_at: at(61),
    };
    assert_eq!(finish(&store, job.id, 1, lost, at(60)).await, vec![job.id]);
    crate::fixture::stage(&store, at(61)).await;
    let mut params = crate::fixture::claim_params(QUEUE_DEFAULT, 1, "w2", at(61));
    params.kinds = vec!["contested".into()];
    let reclaimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].attempt, 2);
    let before = get(&store, job.id).await;

    let late = finish(
        &store,
        job.id,
        1,
        Outcome::Completed {
            result: Some(json!("late")),
        },
        at(62),
    )
    .await;
    assert!(
        late.is_empty(),
        "the old worker's finish must be fenced off"
    );
    let future = finish(
        &store,
        job.id,
        3,
        Outcome::Completed { result: None },
        at(62),
    )
    .await;
    assert!(
        future.is_empty(),
        "a finish for an attempt not yet started is fenced off"
    );
    assert_eq!(
        get(&store, job.id).await,
        before,
        "the running attempt is untouched"
    );

    let ok = finish(
        &store,
        job.id,
        2,
        Outcome::Completed { result: None },
        at(63),
    )
    .await;
    assert_eq!(ok, vec![job.id]);
    let row = get(&store, job.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.worker_id.as_deref(), Some("w2"));
}

/// A finish for a job that is not running (never claimed, already finished, unknown) is
/// ignored and changes nothing.
pub async fn non_running_ignored<S: Store>(store: Arc<S>) {
    let waiting = insert(&store, vec![job("waiting")], t0()).await[0];
    let done = running(&store, "done", t0()).await;
    let completed = Outcome::Completed {
        result: Some(json!(1)),
    };
    assert_eq!(
        finish(&store, done.id, 1, completed, at(1)).await,
        vec![done.id]
    );
    let waiting_before = get(&store, waiting).await;
    let done_before = get(&store, done.id).await;

    for fence in [0, 1] {
        let applied = finish_many(
            &store,
            vec![
                JobFinish {
                    id: waiting,
                    fence,
                    outcome: Outcome::Completed { result: None },
                },
                JobFinish {
                    id: done.id,
                    fence: 1,
                    outcome: Outcome::Discard {
                        error: attempt_error(1, at(2), "too late"),
                    },
                },
                JobFinish {
                    id: UNKNOWN_ID,
                    fence: 1,
                    outcome: Outcome::Completed { result: None },
                },
            ],
            at(2),
        )
        .await;
        assert!(applied.is_empty(), "nothing applies: {applied:?}");
    }
    assert_eq!(get(&store, waiting).await, waiting_before);
    assert_eq!(get(&store, done.id).await, done_before);
}

/// One batch of mixed outcomes applies each to its own job, and leaves out a stale one.
pub async fn mixed_batch<S: Store>(store: Arc<S>) {
    let kinds = [
        "m_done",
        "m_retry",
        "m_discard",
        "m_snooze",
        "m_cancel",
        "m_hand",
        "m_stale",
    ];
    let mut jobs = Vec::new();
    for kind in kinds {
        jobs.push(running(&store, kind, t0()).await);
    }
    let error = |message: &str| attempt_error(1, at(9), message);
    let outcomes = [
        Outcome::Completed {
            result: Some(json!({"ok": 1})),
        },
        Outcome::Retry {
            error: error("retry me"),
            run_at: at(70),
        },
        Outcome::Discard {
            error: error("give up"),
        },
        Outcome::Snooze { run_at: at(80) },
        Outcome::Cancel { error: None },
        Outcome::HandBack,
        Outcome::Completed { result: None },
    ];
    let finishes: Vec<JobFinish> = jobs
        .iter()
        .zip(outcomes)
        .map(|(job, outcome)| JobFinish {
            id: job.id,
            fence: if job.kind == "m_stale" { 2 } else { 1 },
            outcome,
        })
        .collect();
    let applied = finish_many(&store, finishes, at(10)).await;
    let mut expected: Vec<JobId> = jobs[..6].iter().map(|job| job.id).collect();
    expected.sort();
    assert_eq!(applied, expected, "all but the stale finish apply");

    let row = |i: usize| get(&store, jobs[i].id);
    let done = row(0).await;
    assert_eq!(
        (done.state, done.result, done.finished_at),
        (JobState::Completed, Some(json!({"ok": 1})), Some(at(10)))
    );
    let retried = row(1).await;
    assert_eq!(
        (retried.state, retried.run_at, retried.errors.len()),
        (JobState::Retryable, at(70), 1)
    );
    let discarded = row(2).await;
    assert_eq!(
        (
            discarded.state,
            discarded.finished_at,
            discarded.errors.len()
        ),
        (JobState::Discarded, Some(at(10)), 1)
    );
    let snoozed = row(3).await;
    assert_eq!(
        (snoozed.state, snoozed.attempt, snoozed.run_at),
        (JobState::Available, 0, at(80))
    );
    let cancelled = row(4).await;
    assert_eq!(
        (cancelled.state, cancelled.finished_at),
        (JobState::Cancelled, Some(at(10)))
    );
    let handed = row(5).await;
    assert_eq!(
        (handed.state, handed.attempt, handed.run_at),
        (JobState::Available, 0, jobs[5].run_at)
    );
    let stale = row(6).await;
    assert_eq!(
        (stale.state, stale.attempt),
        (JobState::Running, 1),
        "the stale finish is skipped"
    );
}

/// With a cancel requested, every outcome but `Completed` ends the job `cancelled` at `now`,
/// keeping the outcome's error and the attempt; `Completed` still completes.
pub async fn cancel_requested_rule<S: Store>(store: Arc<S>) {
    let kinds = [
        "c_done",
        "c_retry",
        "c_discard",
        "c_snooze",
        "c_cancel",
        "c_hand",
    ];
    let mut jobs = Vec::new();
    for kind in kinds {
        let job = running(&store, kind, t0()).await;
        let row = store
            .job_cancel(JobCancelParams {
                id: job.id,
                now: at(3),
            })
            .await
            .expect("job_cancel");
        assert_eq!(row.state, JobState::Running);
        jobs.push(job);
    }
    let retry_error = attempt_error(1, at(9), "interrupted");
    let discard_error = attempt_error(1, at(9), "gave up");
    let cancel_error = AttemptError {
        kind: ErrorKind::Cancelled,
        ..attempt_error(1, at(9), "stopped on request")
    };
    let outcomes = [
        Outcome::Completed {
            result: Some(json!("made it")),
        },
        Outcome::Retry {
            error: retry_error.clone(),
            run_at: at(70),
        },
        Outcome::Discard {
            error: discard_error.clone(),
        },
        Outcome::Snooze { run_at: at(80) },
        Outcome::Cancel {
            error: Some(cancel_error.clone()),
        },
        Outcome::HandBack,
    ];
    let finishes = jobs
        .iter()
        .zip(outcomes)
        .map(|(job, outcome)| JobFinish {
            id: job.id,
            fence: 1,
            outcome,
        })
        .collect();
    let applied = finish_many(&store, finishes, at(10)).await;
    let mut expected: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
    expected.sort();
    assert_eq!(applied, expected);

    let done = get(&store, jobs[0].id).await;
    assert_eq!(
        done.state,
        JobState::Completed,
        "a job that finished anyway is completed"
    );
    assert_eq!(done.result, Some(json!("made it")));
    assert_eq!(done.finished_at, Some(at(10)));

    let expected_errors = [
        vec![retry_error],
        vec![discard_error],
        vec![],
        vec![cancel_error],
        vec![],
    ];
    for (job, errors) in jobs[1..].iter().zip(expected_errors) {
        let row = get(&store, job.id).await;
        assert_eq!(
            row.state,
            JobState::Cancelled,
            "{} ends cancelled",
            job.kind
        );
        assert_eq!(row.finished_at, Some(at(10)), "{}", job.kind);
        assert_eq!(
            row.attempt, 1,
            "{}: the attempt is not given back",
            job.kind
        );
        assert_eq!(row.errors, errors, "{}", job.kind);
        assert_eq!(row.worker_id.as_deref(), Some("w1"), "{}", job.kind);
    }
}

/// Every outcome ends the attempt's lease (`lease_expires_at` becomes `None`), with or without
/// a cancel requested; a fenced-off finish leaves the lease alone.
pub async fn clears_lease<S: Store>(store: Arc<S>) {
    let error = || attempt_error(1, at(9), "x");
    let outcomes = || {
        [
            Outcome::Completed { result: None },
            Outcome::Retry {
                error: error(),
                run_at: at(70),
            },
            Outcome::Discard { error: error() },
            Outcome::Snooze { run_at: at(80) },
            Outcome::Cancel { error: None },
            Outcome::HandBack,
        ]
    };
    let mut plain = Vec::new();
    let mut requested = Vec::new();
    for n in 0..outcomes().len() {
        plain.push(running_leased(&store, job(&format!("plain_{n}")), "pull:a", 60, t0()).await);
        let job = running_leased(&store, job(&format!("asked_{n}")), "pull:a", 60, t0()).await;
        store
            .job_cancel(JobCancelParams {
                id: job.id,
                now: at(3),
            })
            .await
            .expect("job_cancel");
        requested.push(job);
    }
    let fenced = running_leased(&store, job("fenced"), "pull:a", 60, t0()).await;
    assert_eq!(fenced.lease_expires_at, Some(at(60)));

    let mut finishes: Vec<JobFinish> = Vec::new();
    for jobs in [&plain, &requested] {
        finishes.extend(jobs.iter().zip(outcomes()).map(|(job, outcome)| JobFinish {
            id: job.id,
            fence: 1,
            outcome,
        }));
    }
    finishes.push(JobFinish {
        id: fenced.id,
        fence: 2,
        outcome: Outcome::Completed { result: None },
    });
    let applied = finish_many(&store, finishes, at(10)).await;
    assert_eq!(
        applied.len(),
        2 * outcomes().len(),
        "all but the fenced one"
    );

    for job in plain.iter().chain(&requested) {
        let row = get(&store, job.id).await;
        assert_ne!(row.state, JobState::Running, "{}", job.kind);
        assert_eq!(row.lease_expires_at, None, "{}: the lease ended", job.kind);
        assert_eq!(
            row.worker_id.as_deref(),
            Some("pull:a"),
            "{}: worker_id is kept for the record",
            job.kind
        );
    }
    assert_eq!(
        get(&store, fenced.id).await,
        fenced,
        "a fenced-off finish changes nothing, lease included"
    );
}

/// The finish returns each job it applied, in input order, as the finish left it: state
/// (`cancelled` for a job with a cancel requested), `run_at`, attempt, queue, kind, when the
/// attempt started and its worker; stale finishes are left out.
pub async fn returns_what_it_applied<S: Store>(store: Arc<S>) {
    let done = running(&store, "r_done", t0()).await;
    let failed = running(&store, "r_failed", t0()).await;
    let snoozed = running(&store, "r_snoozed", at(1)).await;
    let requested = running(&store, "r_requested", at(1)).await;
    store
        .job_cancel(JobCancelParams {
            id: requested.id,
            now: at(2),
        })
        .await
        .expect("job_cancel");
    let finishes = vec![
        JobFinish {
            id: snoozed.id,
            fence: snoozed.fence,
            outcome: Outcome::Snooze { run_at: at(50) },
        },
        JobFinish {
            id: done.id,
            fence: done.fence,
            outcome: Outcome::Completed { result: None },
        },
        JobFinish {
            id: requested.id,
            fence: requested.fence,
            outcome: Outcome::Retry {
                error: attempt_error(1, at(3), "stopped"),
                run_at: at(60),
            },
        },
        JobFinish {
            id: UNKNOWN_ID,
            fence: 1,
            outcome: Outcome::Completed { result: None },
        },
        JobFinish {
            id: failed.id,
            fence: failed.fence,
            outcome: Outcome::Retry {
                error: attempt_error(1, at(3), "boom"),
                run_at: at(70),
            },
        },
    ];
    let applied = store
        .job_finish_many(stoker_core::JobFinishParams::new(finishes, at(3)))
        .await
        .expect("job_finish_many");
    let summary: Vec<_> = applied
        .iter()
        .map(|job| {
            (
                job.id,
                job.state,
                job.run_at,
                job.attempt,
                job.queue.as_str(),
                job.kind.as_str(),
                job.attempted_at,
                job.worker_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                snoozed.id,
                JobState::Available,
                at(50),
                0,
                QUEUE_DEFAULT,
                "r_snoozed",
                Some(at(1)),
                Some("w1")
            ),
            (
                done.id,
                JobState::Completed,
                done.run_at,
                1,
                QUEUE_DEFAULT,
                "r_done",
                Some(t0()),
                Some("w1")
            ),
            (
                requested.id,
                JobState::Cancelled,
                requested.run_at,
                1,
                QUEUE_DEFAULT,
                "r_requested",
                Some(at(1)),
                Some("w1")
            ),
            (
                failed.id,
                JobState::Retryable,
                at(70),
                1,
                QUEUE_DEFAULT,
                "r_failed",
                Some(t0()),
                Some("w1")
            ),
        ]
    );
}
