//! Failure groups, bulk operations by filter and job logs (issue 13): grouping in the
//! acknowledgement, bulk batches with progress, abort and resumption, and fenced, bounded logs.

use std::sync::Arc;

use stoker_core::{
    fingerprint, BulkAction, BulkFilter, BulkOpCreateParams, BulkOpListParams, BulkOpState,
    BulkOpStepParams, ErrorKind, FailureGroupListParams, JobCancelParams, JobFinish, JobId,
    JobLogParams, JobState, Outcome, Priority, StateView, Store, StoreErrorKind, JOB_LOG_MAX_LINES,
    JOB_LOG_MAX_LINES_PER_CALL,
};

use crate::fixture::{
    at, attempt_error, expect_err_kind, expect_invalid, finish, finish_many, get, insert, job,
    job_in, running, stats, t0, UNKNOWN_ID,
};

fn groups_params() -> FailureGroupListParams {
    FailureGroupListParams {
        limit: 100,
        ..FailureGroupListParams::default()
    }
}

fn filter_group(group: &str) -> BulkFilter {
    BulkFilter {
        failure_group: Some(group.to_owned()),
        ..BulkFilter::default()
    }
}

fn create(action: BulkAction, filter: BulkFilter, now_secs: i64) -> BulkOpCreateParams {
    BulkOpCreateParams {
        action,
        filter,
        priority: None,
        run_at: None,
        created_by: Some("test".into()),
        now: at(now_secs),
    }
}

/// Runs batches of at most `limit` until no operation is running; returns how many batches.
async fn run_all<S: Store>(store: &Arc<S>, limit: u32, now_secs: i64) -> u32 {
    let mut batches = 0;
    while let Some(op) = store
        .bulk_op_step(BulkOpStepParams {
            limit,
            now: at(now_secs),
        })
        .await
        .expect("bulk_op_step")
    {
        batches += 1;
        assert!(batches < 10_000, "operation {} never ends", op.id);
    }
    batches
}

/// Failed attempts whose messages differ only in numbers, ids and hex share a group (count,
/// first and last seen, the latest as sample); another kind or class makes another group; a
/// completion records nothing; jobs are marked with their group (bulk filters find them).
pub async fn failures_are_grouped_by_fingerprint<S: Store>(store: Arc<S>) {
    let a = running(&store, "email", t0()).await;
    let b = running(&store, "email", t0()).await;
    let c = running(&store, "sms", t0()).await;
    let ok = running(&store, "email", t0()).await;
    finish_many(
        &store,
        vec![
            JobFinish {
                id: a.id,
                fence: a.fence,
                outcome: Outcome::Retry {
                    error: attempt_error(1, at(5), "smtp 421 from 10.0.0.7"),
                    run_at: at(60),
                },
            },
            JobFinish {
                id: c.id,
                fence: c.fence,
                outcome: Outcome::Discard {
                    error: attempt_error(1, at(5), "smtp 421 from 10.0.0.7"),
                },
            },
            JobFinish {
                id: ok.id,
                fence: ok.fence,
                outcome: Outcome::Completed { result: None },
            },
        ],
        at(5),
    )
    .await;
    finish(
        &store,
        b.id,
        b.fence,
        Outcome::Discard {
            error: attempt_error(1, at(9), "smtp 450 from 10.0.0.9"),
        },
        at(9),
    )
    .await;

    let groups = store.failure_group_list(groups_params()).await.unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let email = fingerprint("email", ErrorKind::Error, "smtp 421 from 10.0.0.7");
    let sms = fingerprint("sms", ErrorKind::Error, "smtp 421 from 10.0.0.7");
    // Most recently seen first.
    assert_eq!(groups[0].fingerprint, email);
    assert_eq!(groups[0].kind, "email");
    assert_eq!(groups[0].error_kind, ErrorKind::Error);
    assert_eq!(groups[0].message, "smtp <n> from <n>.<n>.<n>.<n>");
    assert_eq!(groups[0].count, 2);
    assert_eq!(groups[0].first_seen, at(5));
    assert_eq!(groups[0].last_seen, at(9));
    assert_eq!(groups[0].sample_job_id, b.id);
    assert_eq!(groups[0].sample_message, "smtp 450 from 10.0.0.9");
    assert_eq!(groups[1].fingerprint, sms);
    assert_eq!(groups[1].count, 1);

    let got = store.failure_group_get(&email).await.unwrap();
    assert_eq!(got.as_ref(), Some(&groups[0]));
    assert_eq!(
        store.failure_group_get("0000000000000000").await.unwrap(),
        None
    );

    // By range and kind.
    let mut params = groups_params();
    params.since = Some(at(6));
    let recent = store.failure_group_list(params).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].fingerprint, email);
    let mut params = groups_params();
    params.until = Some(at(5));
    assert!(store.failure_group_list(params).await.unwrap().is_empty());
    let mut params = groups_params();
    params.kind = Some("sms".into());
    assert_eq!(store.failure_group_list(params).await.unwrap().len(), 1);

    // The jobs carry their group: a bulk operation by group visits exactly them.
    let op = store
        .bulk_op_create(create(BulkAction::SetPriority, filter_group(&email), 10))
        .await;
    expect_invalid(op, "priority");
    let mut params = create(BulkAction::Retry, filter_group(&email), 10);
    params.filter.states = vec![StateView::Discarded, StateView::Retryable];
    store.bulk_op_create(params).await.unwrap();
    run_all(&store, 10, 10).await;
    assert_eq!(get(&store, a.id).await.state, JobState::Available);
    assert_eq!(get(&store, b.id).await.state, JobState::Available);
    assert_eq!(get(&store, c.id).await.state, JobState::Discarded);
}

/// A stale acknowledgement (wrong fence) of a failure records nothing.
pub async fn stale_failure_is_not_grouped<S: Store>(store: Arc<S>) {
    let a = running(&store, "email", t0()).await;
    let applied = finish(
        &store,
        a.id,
        a.fence + 1,
        Outcome::Discard {
            error: attempt_error(1, at(5), "boom"),
        },
        at(5),
    )
    .await;
    assert!(applied.is_empty());
    assert!(store
        .failure_group_list(groups_params())
        .await
        .unwrap()
        .is_empty());
}

/// A bad limit or kind is refused, naming the field; an empty range lists nothing.
pub async fn failure_list_rejects_bad_input<S: Store>(store: Arc<S>) {
    let mut params = groups_params();
    params.limit = 0;
    expect_invalid(store.failure_group_list(params).await, "limit");
    let mut params = groups_params();
    params.kind = Some("has space".into());
    expect_invalid(store.failure_group_list(params).await, "kind");
    let row = running(&store, "k", t0()).await;
    finish(
        &store,
        row.id,
        row.fence,
        Outcome::Discard {
            error: attempt_error(1, at(5), "boom"),
        },
        at(5),
    )
    .await;
    let mut params = groups_params();
    params.since = Some(at(10));
    params.until = Some(at(5));
    assert!(store.failure_group_list(params).await.unwrap().is_empty());
}

/// A bulk retry runs in bounded batches with progress (matched, done, skipped) and ends
/// `done`; running jobs are skipped; jobs inserted after creation are left alone; finished
/// counts follow.
pub async fn bulk_retry_in_batches_with_progress<S: Store>(store: Arc<S>) {
    let mut discarded = Vec::new();
    for _ in 0..25 {
        let row = running(&store, "report", t0()).await;
        finish(
            &store,
            row.id,
            row.fence,
            Outcome::Discard {
                error: attempt_error(1, at(1), "boom"),
            },
            at(1),
        )
        .await;
        discarded.push(row.id);
    }
    let busy = running(&store, "report", t0()).await;
    let mut params = create(
        BulkAction::Retry,
        BulkFilter {
            kinds: vec!["report".into()],
            states: vec![StateView::Discarded, StateView::Running],
            ..BulkFilter::default()
        },
        2,
    );
    params.created_by = None;
    let op = store.bulk_op_create(params).await.unwrap();
    assert_eq!(op.state, BulkOpState::Running);
    assert_eq!((op.matched, op.done, op.skipped), (0, 0, 0));
    assert_eq!(op.max_id, busy.id.0);
    // Inserted after creation: not visited even though it matches once discarded.
    let late = running(&store, "report", t0()).await;
    finish(
        &store,
        late.id,
        late.fence,
        Outcome::Discard {
            error: attempt_error(1, at(1), "boom"),
        },
        at(1),
    )
    .await;

    let first = store
        .bulk_op_step(BulkOpStepParams {
            limit: 10,
            now: at(3),
        })
        .await
        .unwrap()
        .expect("a running operation");
    assert_eq!(first.id, op.id);
    assert_eq!((first.matched, first.done, first.skipped), (10, 10, 0));
    assert_eq!(first.state, BulkOpState::Running);
    assert_eq!(first.updated_at, at(3));
    run_all(&store, 10, 4).await;
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!(op.state, BulkOpState::Done);
    assert_eq!((op.matched, op.done, op.skipped), (26, 25, 1));
    assert_eq!(op.finished_at, Some(at(4)));
    for (i, id) in discarded.iter().enumerate() {
        let row = get(&store, *id).await;
        assert_eq!(row.state, JobState::Available);
        // Each batch retries its jobs at its own `now`: the first ten ran at 3.
        assert_eq!(row.run_at, if i < 10 { at(3) } else { at(4) });
        assert_eq!(row.finished_at, None);
    }
    assert_eq!(get(&store, busy.id).await.state, JobState::Running);
    assert_eq!(get(&store, late.id).await.state, JobState::Discarded);
    let counts = stats(&store).await;
    assert_eq!(
        counts.get(&("default".to_owned(), "report".to_owned(), "discarded")),
        Some(&1),
        "{counts:?}"
    );
    // Nothing left to run.
    assert!(store
        .bulk_op_step(BulkOpStepParams {
            limit: 10,
            now: at(5),
        })
        .await
        .unwrap()
        .is_none());
}

/// Cancel, delete, discard, set priority and set run_at each apply to the jobs they can and
/// skip the rest, and take their logs with deleted jobs.
pub async fn bulk_actions_apply_and_skip<S: Store>(store: Arc<S>) {
    let busy = crate::fixture::running_job(&store, job_in("q", "k"), t0()).await;
    let waiting = insert(&store, vec![job_in("q", "k"), job_in("q", "k")], t0()).await;
    let q = BulkFilter {
        queues: vec!["q".into()],
        ..BulkFilter::default()
    };

    let mut params = create(BulkAction::SetPriority, q.clone(), 1);
    params.priority = Some(Priority::HIGH);
    let op = store.bulk_op_create(params).await.unwrap();
    assert_eq!(op.priority, Some(Priority::HIGH));
    run_all(&store, 100, 1).await;
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!((op.matched, op.done, op.skipped), (3, 2, 1));
    assert_eq!(get(&store, waiting[0]).await.priority, Priority::HIGH);
    assert_eq!(get(&store, busy.id).await.priority, Priority::NORMAL);

    let mut params = create(BulkAction::SetRunAt, q.clone(), 2);
    params.run_at = Some(at(3600));
    store.bulk_op_create(params).await.unwrap();
    run_all(&store, 100, 2).await;
    assert_eq!(get(&store, waiting[1]).await.run_at, at(3600));
    // Scheduled for later: not claimable now.
    assert!(crate::fixture::claim(&store, "q", 10, "w2", at(3))
        .await
        .is_empty());

    store
        .job_log_append(JobLogParams {
            id: busy.id,
            fence: busy.fence,
            lines: vec!["working".into()],
            now: at(3),
        })
        .await
        .unwrap()
        .expect("running with its fence");
    let op = store
        .bulk_op_create(create(BulkAction::Cancel, q.clone(), 4))
        .await
        .unwrap();
    run_all(&store, 100, 4).await;
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!((op.matched, op.done, op.skipped), (3, 3, 0));
    assert_eq!(get(&store, waiting[0]).await.state, JobState::Cancelled);
    let busy_now = get(&store, busy.id).await;
    assert_eq!(busy_now.state, JobState::Running);
    assert_eq!(busy_now.cancel_requested_at, Some(at(4)));

    let op = store
        .bulk_op_create(create(BulkAction::Delete, q.clone(), 5))
        .await
        .unwrap();
    run_all(&store, 100, 5).await;
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!((op.matched, op.done, op.skipped), (3, 2, 1));
    assert_eq!(store.job_get(waiting[0]).await.unwrap(), None);
    assert_eq!(store.job_logs(busy.id).await.unwrap().len(), 1);
    // The running job ends; deleting it then takes its log lines along.
    finish(
        &store,
        busy.id,
        busy.fence,
        Outcome::Cancel { error: None },
        at(6),
    )
    .await;
    store.job_delete(busy.id).await.unwrap();
    assert!(store.job_logs(busy.id).await.unwrap().is_empty());

    let retrying = running(&store, "flaky", t0()).await;
    finish(
        &store,
        retrying.id,
        retrying.fence,
        Outcome::Retry {
            error: attempt_error(1, at(7), "nope"),
            run_at: at(100),
        },
        at(7),
    )
    .await;
    let op = store
        .bulk_op_create(create(
            BulkAction::Discard,
            BulkFilter {
                kinds: vec!["flaky".into()],
                ..BulkFilter::default()
            },
            8,
        ))
        .await
        .unwrap();
    run_all(&store, 100, 8).await;
    assert_eq!(store.bulk_op_get(op.id).await.unwrap().unwrap().done, 1);
    let row = get(&store, retrying.id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.finished_at, Some(at(8)));
}

/// A sparse filter still moves in bounded batches (at most ten times `limit` ids each), and a
/// time range filters by creation time.
pub async fn bulk_sparse_filter_and_time_range<S: Store>(store: Arc<S>) {
    let mut jobs = Vec::new();
    for i in 0..40 {
        jobs.push(job(if i == 35 { "rare" } else { "common" }));
    }
    insert(&store, jobs, t0()).await;
    let later = insert(&store, vec![job("rare")], at(100)).await[0];
    let op = store
        .bulk_op_create(create(
            BulkAction::Cancel,
            BulkFilter {
                kinds: vec!["rare".into()],
                created_before: Some(at(50)),
                ..BulkFilter::default()
            },
            1,
        ))
        .await
        .unwrap();
    let batches = run_all(&store, 1, 1).await;
    // The first batch starts at the first match and stops there (its limit); the second
    // visits the rest (up to the newest id, within its window of ten) and finds nothing.
    assert_eq!(batches, 2);
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!((op.matched, op.done), (1, 1));
    assert_eq!(get(&store, later).await.state, JobState::Available);
}

/// Aborting stops a running operation; aborting one that ended is a conflict, an unknown one
/// not found; the list shows operations newest first and by state.
pub async fn bulk_abort_and_list<S: Store>(store: Arc<S>) {
    insert(&store, (0..30).map(|_| job("k")).collect(), t0()).await;
    let filter = BulkFilter {
        kinds: vec!["k".into()],
        ..BulkFilter::default()
    };
    let op = store
        .bulk_op_create(create(BulkAction::Cancel, filter.clone(), 1))
        .await
        .unwrap();
    store
        .bulk_op_step(BulkOpStepParams {
            limit: 10,
            now: at(2),
        })
        .await
        .unwrap();
    let aborted = store.bulk_op_abort(op.id, at(3)).await.unwrap();
    assert_eq!(aborted.state, BulkOpState::Aborted);
    assert_eq!(aborted.done, 10);
    assert_eq!(aborted.finished_at, Some(at(3)));
    assert!(store
        .bulk_op_step(BulkOpStepParams {
            limit: 10,
            now: at(4),
        })
        .await
        .unwrap()
        .is_none());
    expect_err_kind(
        store.bulk_op_abort(op.id, at(5)).await,
        StoreErrorKind::Conflict,
    );
    expect_err_kind(
        store.bulk_op_abort(999_999, at(5)).await,
        StoreErrorKind::NotFound,
    );
    assert_eq!(store.bulk_op_get(999_999).await.unwrap(), None);

    let second = store
        .bulk_op_create(create(BulkAction::Delete, filter, 6))
        .await
        .unwrap();
    let listed = store
        .bulk_op_list(BulkOpListParams {
            limit: 10,
            ..BulkOpListParams::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|op| op.id).collect::<Vec<_>>(),
        vec![second.id, op.id]
    );
    let running = store
        .bulk_op_list(BulkOpListParams {
            states: vec![BulkOpState::Running],
            limit: 10,
            before_id: None,
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].id, second.id);
    let paged = store
        .bulk_op_list(BulkOpListParams {
            limit: 10,
            before_id: Some(second.id),
            states: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
    expect_invalid(
        store
            .bulk_op_list(BulkOpListParams {
                limit: 0,
                ..BulkOpListParams::default()
            })
            .await,
        "limit",
    );
    expect_invalid(
        store
            .bulk_op_list(BulkOpListParams {
                limit: 10,
                before_id: Some(0),
                states: Vec::new(),
            })
            .await,
        "before_id",
    );
}

/// A filter matching nothing (an unknown kind, an empty time range) is not found, a bad value
/// is refused naming the field, and nothing is written.
pub async fn bulk_rejects_bad_input<S: Store>(store: Arc<S>) {
    insert(&store, vec![job("k")], t0()).await;
    let none = store
        .bulk_op_create(create(
            BulkAction::Retry,
            BulkFilter {
                kinds: vec!["nothing-like-this".into()],
                ..BulkFilter::default()
            },
            1,
        ))
        .await;
    expect_err_kind(none, StoreErrorKind::NotFound);
    let empty_range = store
        .bulk_op_create(create(
            BulkAction::Retry,
            BulkFilter {
                created_after: Some(t0()),
                created_before: Some(t0()),
                ..BulkFilter::default()
            },
            1,
        ))
        .await;
    expect_err_kind(empty_range, StoreErrorKind::NotFound);
    expect_invalid(
        store
            .bulk_op_create(create(BulkAction::Retry, filter_group("XYZ"), 1))
            .await,
        "filter.failure_group",
    );
    let mut params = create(
        BulkAction::SetRunAt,
        BulkFilter {
            kinds: vec!["k".into()],
            ..BulkFilter::default()
        },
        1,
    );
    params.priority = Some(Priority::LOW);
    expect_invalid(store.bulk_op_create(params).await, "run_at");
    assert!(store
        .bulk_op_list(BulkOpListParams {
            limit: 10,
            ..BulkOpListParams::default()
        })
        .await
        .unwrap()
        .is_empty());
}

/// An operation's progress is in the store: a new handle (a restarted process) resumes from
/// the cursor without visiting a job twice.
pub async fn bulk_resumes_from_cursor<S: Store>(store: Arc<S>) {
    let ids = insert(&store, (0..20).map(|_| job("k")).collect(), t0()).await;
    let op = store
        .bulk_op_create(create(
            BulkAction::Cancel,
            BulkFilter {
                kinds: vec!["k".into()],
                ..BulkFilter::default()
            },
            1,
        ))
        .await
        .unwrap();
    let first = store
        .bulk_op_step(BulkOpStepParams {
            limit: 7,
            now: at(2),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.cursor, ids[6].0);
    // A job among the visited ones changes back; the rest of the run must not touch it.
    store
        .job_retry(stoker_core::JobRetryParams {
            id: ids[0],
            now: at(3),
        })
        .await
        .unwrap();
    run_all(&store, 7, 4).await;
    let op = store.bulk_op_get(op.id).await.unwrap().unwrap();
    assert_eq!((op.matched, op.done, op.skipped), (20, 20, 0));
    assert_eq!(get(&store, ids[0]).await.state, JobState::Available);
    assert_eq!(get(&store, ids[19]).await.state, JobState::Cancelled);
}

/// Log lines are stored with their attempt, in order, fenced like progress, and bounded per
/// job: lines past the limit are dropped and counted.
pub async fn logs_fenced_and_bounded<S: Store>(store: Arc<S>) {
    let row = running(&store, "k", t0()).await;
    let appended = store
        .job_log_append(JobLogParams {
            id: row.id,
            fence: row.fence,
            lines: vec!["one".into(), "two".into()],
            now: at(1),
        })
        .await
        .unwrap()
        .expect("running with its fence");
    assert_eq!((appended.accepted, appended.dropped), (2, 0));
    let stale = store
        .job_log_append(JobLogParams {
            id: row.id,
            fence: row.fence + 1,
            lines: vec!["stale".into()],
            now: at(2),
        })
        .await
        .unwrap();
    assert_eq!(stale, None);
    let missing = store
        .job_log_append(JobLogParams {
            id: UNKNOWN_ID,
            fence: 1,
            lines: vec!["x".into()],
            now: at(2),
        })
        .await
        .unwrap();
    assert_eq!(missing, None);
    let logs = store.job_logs(row.id).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].seq, 1);
    assert_eq!(logs[0].line, "one");
    assert_eq!(logs[0].attempt, 1);
    assert_eq!(logs[0].at, at(1));
    assert_eq!(logs[1].line, "two");

    // Fill the job up to its line limit.
    let mut held = 2u32;
    let mut dropped = 0u32;
    while held < JOB_LOG_MAX_LINES + 10 {
        let appended = store
            .job_log_append(JobLogParams {
                id: row.id,
                fence: row.fence,
                lines: vec!["x".into(); JOB_LOG_MAX_LINES_PER_CALL],
                now: at(3),
            })
            .await
            .unwrap()
            .unwrap();
        dropped += appended.dropped;
        held += JOB_LOG_MAX_LINES_PER_CALL as u32;
    }
    assert!(dropped > 0);
    let logs = store.job_logs(row.id).await.unwrap();
    assert_eq!(logs.len() as u32, JOB_LOG_MAX_LINES);
    assert_eq!(logs.last().unwrap().seq, i64::from(JOB_LOG_MAX_LINES));

    // A finished job takes no more lines.
    finish(
        &store,
        row.id,
        row.fence,
        Outcome::Completed { result: None },
        at(4),
    )
    .await;
    assert_eq!(
        store
            .job_log_append(JobLogParams {
                id: row.id,
                fence: row.fence,
                lines: vec!["late".into()],
                now: at(5),
            })
            .await
            .unwrap(),
        None
    );
    expect_invalid(
        store
            .job_log_append(JobLogParams {
                id: row.id,
                fence: row.fence,
                lines: Vec::new(),
                now: at(5),
            })
            .await,
        "lines",
    );
    expect_invalid(
        store
            .job_log_append(JobLogParams {
                id: row.id,
                fence: row.fence,
                lines: vec!["y".repeat(5000)],
                now: at(5),
            })
            .await,
        "lines[0]",
    );
}

/// Pruning a finished job deletes its log lines; a cancel request keeps them.
pub async fn logs_pruned_with_job<S: Store>(store: Arc<S>) {
    let row = running(&store, "k", t0()).await;
    store
        .job_log_append(JobLogParams {
            id: row.id,
            fence: row.fence,
            lines: vec!["kept until pruned".into()],
            now: at(1),
        })
        .await
        .unwrap()
        .unwrap();
    store
        .job_cancel(JobCancelParams {
            id: row.id,
            now: at(2),
        })
        .await
        .unwrap();
    assert_eq!(store.job_logs(row.id).await.unwrap().len(), 1);
    finish(
        &store,
        row.id,
        row.fence,
        Outcome::Completed { result: None },
        at(3),
    )
    .await;
    let pruned = store
        .job_prune(stoker_core::JobPruneParams {
            completed_before: Some(at(10)),
            limit: 100,
            ..stoker_core::JobPruneParams::default()
        })
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert!(store.job_logs(row.id).await.unwrap().is_empty());
    let _: JobId = row.id;
}

// --- stream ops ---

/// Fails `kinds.len()` new jobs at `now`, in one acknowledgement, each with `message`.
async fn fail_at<S: Store>(store: &Arc<S>, kinds: &[&str], message: &str, now_secs: i64) {
    let mut finishes = Vec::new();
    for kind in kinds {
        let job = running(store, kind, at(now_secs)).await;
        finishes.push(JobFinish {
            id: job.id,
            fence: job.fence,
            outcome: Outcome::Discard {
                error: attempt_error(1, at(now_secs), message),
            },
        });
    }
    finish_many(store, finishes, at(now_secs)).await;
}

fn counts_params(groups: &[&str], from_secs: i64, to_secs: i64) -> stoker_core::FailureCountParams {
    stoker_core::FailureCountParams {
        fingerprints: groups.iter().map(|g| (*g).to_owned()).collect(),
        from: at(from_secs),
        to: at(to_secs),
    }
}

/// `(group, hour offset from t0 in hours, count)` of each row, in order.
fn hours(rows: &[stoker_core::FailureHour]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|row| {
            (
                row.fingerprint.clone(),
                (row.hour - t0()).num_seconds() / 3600,
                row.count,
            )
        })
        .collect()
}

/// Every failed attempt is added to its group's hour, in the acknowledgement's transaction:
/// a range counts the hours overlapping it (its first hour even when it starts mid-hour, no
/// hour starting at or after its end), only the groups asked for, and hours past the
/// history's hour retention are deleted by the roll-up. Completions count nothing; bad
/// parameters are refused by name.
pub async fn failures_counted_by_the_hour<S: Store>(store: Arc<S>) {
    let email = fingerprint("email", ErrorKind::Error, "smtp 421");
    let sms = fingerprint("sms", ErrorKind::Error, "smtp 421");
    fail_at(&store, &["email", "email", "sms"], "smtp 421", 10).await;
    fail_at(&store, &["email"], "smtp 421", 3_700).await;
    fail_at(&store, &["sms"], "smtp 421", 7_300).await;
    let ok = running(&store, "email", at(3_800)).await;
    finish(
        &store,
        ok.id,
        ok.fence,
        Outcome::Completed { result: None },
        at(3_800),
    )
    .await;

    let all = store
        .failure_group_counts(counts_params(&[&email, &sms], 0, 3 * 3600))
        .await
        .unwrap();
    let mut expected = vec![
        (email.clone(), 0, 2),
        (email.clone(), 1, 1),
        (sms.clone(), 0, 1),
        (sms.clone(), 2, 1),
    ];
    expected.sort();
    assert_eq!(hours(&all), expected);

    // The first hour counts from mid-hour; an hour starting at the end does not.
    let window = store
        .failure_group_counts(counts_params(&[&email], 1_800, 3_600))
        .await
        .unwrap();
    assert_eq!(hours(&window), vec![(email.clone(), 0, 2)]);
    let window = store
        .failure_group_counts(counts_params(&[&email], 1_800, 3_601))
        .await
        .unwrap();
    assert_eq!(
        hours(&window),
        vec![(email.clone(), 0, 2), (email.clone(), 1, 1)]
    );
    // Only the groups asked for; an unknown group has no hours.
    let one = store
        .failure_group_counts(counts_params(&[&sms, "0000000000000000"], 0, 86_400))
        .await
        .unwrap();
    assert_eq!(hours(&one), vec![(sms.clone(), 0, 1), (sms.clone(), 2, 1)]);
    // The group's all-time count agrees.
    let group = store.failure_group_get(&email).await.unwrap().unwrap();
    assert_eq!(group.count, 3);

    // Bad parameters.
    expect_invalid(
        store
            .failure_group_counts(counts_params(&[], 0, 3_600))
            .await,
        "fingerprints",
    );
    expect_invalid(
        store
            .failure_group_counts(counts_params(&["not-hex"], 0, 3_600))
            .await,
        "fingerprints",
    );
    expect_invalid(
        store
            .failure_group_counts(counts_params(&[&email], 3_600, 3_600))
            .await,
        "to",
    );
    expect_invalid(
        store
            .failure_group_counts(counts_params(&[&email], 0, 401 * 86_400))
            .await,
        "to",
    );

    // Retention: the hours go with the history's hours (90 days by default).
    let report = store
        .history_rollup(stoker_core::HistoryRollupParams {
            now: at(2 * 3600 + 90 * 86_400),
            retention: stoker_core::HistoryRetention::default(),
        })
        .await
        .unwrap();
    assert!(report.pruned >= 3, "{report:?}");
    let left = store
        .failure_group_counts(counts_params(&[&email, &sms], 0, 3 * 3600))
        .await
        .unwrap();
    assert_eq!(hours(&left), vec![(sms.clone(), 2, 1)]);
}

// --- stream tenant ---

/// A tenant's failed jobs form groups of their own (issue 17): the same failure of two
/// tenants (and of a job without one) is three groups, each with its tenant, listed by tenant;
/// the tenantless one keeps the fingerprint it always had.
pub async fn grouped_per_tenant<S: Store>(store: Arc<S>) {
    for (n, tenant) in [Some("acme"), Some("globex"), None, Some("acme")]
        .into_iter()
        .enumerate()
    {
        let mut insert = job("email");
        insert.tenant = tenant.map(str::to_owned);
        insert.max_attempts = 1;
        let id = crate::fixture::insert_one(&store, insert, at(n as i64)).await;
        let row = crate::fixture::claim_exactly(
            &store,
            stoker_core::QUEUE_DEFAULT,
            "email",
            id,
            at(n as i64),
        )
        .await;
        let applied = finish(
            &store,
            id,
            row.fence,
            Outcome::Discard {
                error: attempt_error(1, at(n as i64), &format!("smtp 421 job {n}")),
            },
            at(n as i64),
        )
        .await;
        assert_eq!(applied, vec![id]);
    }
    let all = store.failure_group_list(groups_params()).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let plain = fingerprint("email", ErrorKind::Error, "smtp 421 job 0");
    let tenantless = all
        .iter()
        .find(|group| group.tenant.is_none())
        .expect("the tenantless group");
    assert_eq!(tenantless.fingerprint, plain);
    assert_eq!(tenantless.count, 1);

    let mut params = groups_params();
    params.tenant = Some("acme".into());
    let acme = store.failure_group_list(params).await.unwrap();
    assert_eq!(acme.len(), 1, "{acme:?}");
    assert_eq!(acme[0].tenant.as_deref(), Some("acme"));
    assert_eq!(acme[0].count, 2);
    assert_eq!(
        acme[0].fingerprint,
        stoker_core::fingerprint_of_tenant(
            "email",
            ErrorKind::Error,
            "smtp <n> job <n>",
            Some("acme")
        )
    );
    assert_ne!(acme[0].fingerprint, plain);
    assert_eq!(
        store
            .failure_group_get(&acme[0].fingerprint)
            .await
            .unwrap()
            .as_ref(),
        Some(&acme[0])
    );
    let mut params = groups_params();
    params.tenant = Some("initech".into());
    assert!(store.failure_group_list(params).await.unwrap().is_empty());
}
