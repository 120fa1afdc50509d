//! What bulk changes answer (issue 13, item 7): [`Store::bulk_op_step_jobs`] and
//! [`Store::job_retry_many_jobs`] name each job they moved, as the change left it (its state,
//! queue, kind, tenant, attempt and correlation id), so live events can show every job a bulk
//! operation or a bulk retry moves without reading the jobs again. Jobs the change skipped
//! are not named; a bulk delete names the jobs it deleted, with the state they had.

use std::sync::Arc;

use stoker_core::{
    BulkAction, BulkFilter, BulkOpCreateParams, BulkOpStep, BulkOpStepParams, ChangedJob,
    JobCancelParams, JobId, JobInsert, JobRetryManyParams, JobState, Priority, Store,
};

use crate::fixture::{at, claim_exactly, get, insert_one, job_in, t0};

fn job_of(queue: &str, kind: &str, tenant: Option<&str>, correlation: Option<&str>) -> JobInsert {
    let mut job = job_in(queue, kind);
    job.tenant = tenant.map(str::to_owned);
    job.metadata.correlation_id = correlation.map(str::to_owned);
    job
}

fn changed(
    id: JobId,
    state: JobState,
    queue: &str,
    kind: &str,
    tenant: Option<&str>,
    attempt: i32,
    correlation: Option<&str>,
) -> ChangedJob {
    ChangedJob {
        id,
        state,
        queue: queue.to_owned(),
        kind: kind.to_owned(),
        tenant: tenant.map(str::to_owned),
        attempt,
        correlation_id: correlation.map(str::to_owned),
    }
}

/// Creates a bulk operation on the jobs of `kind` and runs it to its end, returning every
/// batch's changed jobs in order.
async fn run_op<S: Store>(
    store: &Arc<S>,
    action: BulkAction,
    kind: &str,
    priority: Option<Priority>,
) -> Vec<ChangedJob> {
    store
        .bulk_op_create(BulkOpCreateParams {
            action,
            filter: BulkFilter {
                kinds: vec![kind.to_owned()],
                ..BulkFilter::default()
            },
            priority,
            run_at: None,
            created_by: Some("test".into()),
            now: at(10),
        })
        .await
        .expect("bulk_op_create");
    let mut all = Vec::new();
    let mut steps = 0;
    // A limit of 1: each batch names the one job it changed, and the batches add up.
    while let Some(BulkOpStep { op, changed }) = store
        .bulk_op_step_jobs(BulkOpStepParams {
            limit: 1,
            now: at(10),
        })
        .await
        .expect("bulk_op_step_jobs")
    {
        assert!(changed.len() <= 1, "a batch changes at most its limit");
        assert_eq!(op.done as usize, all.len() + changed.len(), "{op:?}");
        all.extend(changed);
        steps += 1;
        assert!(steps < 1_000, "the bulk operation never ends");
    }
    all
}

/// A bulk cancel names the waiting jobs it cancelled (and a running one, left running with
/// its cancel requested), with their labels and correlation ids; a bulk priority change names
/// the jobs it changed in their unchanged state; a bulk delete names the jobs it deleted,
/// with the state they had; jobs the filter does not match are never named.
pub async fn bulk_step_names_changed_jobs<S: Store>(store: Arc<S>) {
    let a = insert_one(
        &store,
        job_of("ch-q1", "ch-cancel", Some("acme"), Some("req-1")),
        t0(),
    )
    .await;
    let b = insert_one(&store, job_of("ch-q2", "ch-cancel", None, None), t0()).await;
    let running = insert_one(&store, job_of("ch-q3", "ch-cancel", None, None), t0()).await;
    claim_exactly(&store, "ch-q3", "ch-cancel", running, at(1)).await;
    let other = insert_one(&store, job_of("ch-q1", "ch-other", None, None), t0()).await;

    let cancelled = run_op(&store, BulkAction::Cancel, "ch-cancel", None).await;
    assert_eq!(
        cancelled,
        vec![
            changed(
                a,
                JobState::Cancelled,
                "ch-q1",
                "ch-cancel",
                Some("acme"),
                0,
                Some("req-1")
            ),
            changed(b, JobState::Cancelled, "ch-q2", "ch-cancel", None, 0, None),
            changed(
                running,
                JobState::Running,
                "ch-q3",
                "ch-cancel",
                None,
                1,
                None
            ),
        ]
    );
    assert_eq!(get(&store, a).await.state, JobState::Cancelled);

    let prioritized = run_op(
        &store,
        BulkAction::SetPriority,
        "ch-other",
        Some(Priority::HIGH),
    )
    .await;
    assert_eq!(
        prioritized,
        vec![changed(
            other,
            JobState::Available,
            "ch-q1",
            "ch-other",
            None,
            0,
            None
        )]
    );

    let deleted = run_op(&store, BulkAction::Delete, "ch-other", None).await;
    assert_eq!(
        deleted,
        vec![changed(
            other,
            JobState::Available,
            "ch-q1",
            "ch-other",
            None,
            0,
            None
        )]
    );
    assert!(store.job_get(other).await.expect("job_get").is_none());
}

/// A bulk retry names each job it retried, now `available`, lowest id first, with its labels,
/// attempt and correlation id; the count form answers how many, as before.
pub async fn retry_many_names_retried_jobs<S: Store>(store: Arc<S>) {
    let a = insert_one(
        &store,
        job_of("rm-q", "rm-kind", Some("acme"), Some("req-9")),
        t0(),
    )
    .await;
    let b = insert_one(&store, job_of("rm-q", "rm-kind", None, None), t0()).await;
    let kept = insert_one(&store, job_of("rm-q", "rm-other", None, None), t0()).await;
    for id in [a, b, kept] {
        store
            .job_cancel(JobCancelParams { id, now: at(1) })
            .await
            .expect("job_cancel");
    }
    let params = |limit: u32| JobRetryManyParams {
        states: vec![JobState::Cancelled],
        queues: Vec::new(),
        kinds: vec!["rm-kind".to_owned()],
        tenant: None,
        limit,
        now: at(2),
    };
    let retried = store
        .job_retry_many_jobs(params(10))
        .await
        .expect("job_retry_many_jobs");
    assert_eq!(
        retried,
        vec![
            changed(
                a,
                JobState::Available,
                "rm-q",
                "rm-kind",
                Some("acme"),
                0,
                Some("req-9")
            ),
            changed(b, JobState::Available, "rm-q", "rm-kind", None, 0, None),
        ]
    );
    assert_eq!(get(&store, b).await.state, JobState::Available);
    assert_eq!(get(&store, kept).await.state, JobState::Cancelled);
    // Nothing left to retry of that kind: an empty answer, and a count of 0.
    assert!(store
        .job_retry_many_jobs(params(10))
        .await
        .expect("job_retry_many_jobs")
        .is_empty());
    assert_eq!(
        store
            .job_retry_many(params(10))
            .await
            .expect("job_retry_many"),
        0
    );
}
