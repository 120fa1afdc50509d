//! Batches (issue 18): counters kept with their jobs' states (readable without a scan), a
//! callback released exactly once when a closed batch has nothing pending, carrying the counts
//! by outcome; jobs added to an open batch; a cancel that cancels what has not finished; bad
//! input refused with nothing written. And the delete that would strand a waiting job (a
//! dependent, a batch's counters, its callback) is refused with the reason.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker_core::{
    BatchId, BatchInsertParams, BatchInserted, BatchListParams, BatchRow, BatchState, DepPolicy,
    Dependency, JobCancelParams, JobId, JobInsert, JobRetryParams, JobState, Outcome, Store,
    StoreError, StoreErrorKind, StoreEvent, WorkflowInsertParams, WorkflowNode,
};
use tokio::sync::broadcast::error::RecvError;

use crate::fixture::{
    all_jobs, at, attempt_error, claim_exactly, expect_err_kind, expect_invalid, finish, get, job,
    job_in, t0,
};

fn members(n: usize) -> Vec<JobInsert> {
    (0..n).map(|_| job("member")).collect()
}

fn callback() -> JobInsert {
    job_in("callbacks", "done").with_args(json!({"campaign": 7}))
}

trait WithArgs {
    fn with_args(self, args: serde_json::Value) -> Self;
}

impl WithArgs for JobInsert {
    fn with_args(mut self, args: serde_json::Value) -> Self {
        self.args = args;
        self
    }
}

/// Creates a batch of `jobs` with the standard callback, open unless `close`.
async fn create<S: Store>(store: &Arc<S>, jobs: Vec<JobInsert>, close: bool) -> BatchInserted {
    let mut params = BatchInsertParams::new("campaign", jobs, t0());
    params.callback = Some(callback());
    params.close = close;
    store.batch_insert(params).await.expect("batch_insert")
}

async fn add<S: Store>(
    store: &Arc<S>,
    batch: BatchId,
    jobs: Vec<JobInsert>,
    close: bool,
) -> Result<BatchInserted, StoreError> {
    let mut params = BatchInsertParams::new("", jobs, at(1));
    params.batch = Some(batch);
    params.close = close;
    store.batch_insert(params).await
}

async fn batch<S: Store>(store: &Arc<S>, id: BatchId) -> BatchRow {
    store
        .batch_get(id)
        .await
        .expect("batch_get")
        .expect("the batch exists")
}

/// (total, pending, completed, discarded, cancelled)
fn counters(row: &BatchRow) -> (i64, i64, i64, i64, i64) {
    (
        row.total,
        row.pending,
        row.completed,
        row.discarded,
        row.cancelled,
    )
}

async fn run_to<S: Store>(store: &Arc<S>, id: JobId, outcome: Outcome, secs: i64) {
    let row = claim_exactly(store, "default", "member", id, at(secs)).await;
    assert_eq!(
        finish(store, id, row.fence, outcome, at(secs)).await,
        vec![id]
    );
}

fn completed() -> Outcome {
    Outcome::Completed {
        result: Some(json!("ok")),
    }
}

fn discarded() -> Outcome {
    Outcome::Discard {
        error: attempt_error(1, at(1), "boom"),
    }
}

/// Every outcome is counted as it happens, jobs added to the open batch are counted, the
/// callback waits (blocked) until the batch is closed and nothing is pending, and is then
/// released once with the counts in its args; a retried member moves the counters back and
/// forth but never fires the batch again.
pub async fn counts_and_fires_once<S: Store>(store: Arc<S>) {
    let created = create(&store, members(3), false).await;
    let [a, b, c] = [created.jobs[0], created.jobs[1], created.jobs[2]];
    let callback = created.callback.expect("a callback");
    assert_eq!(get(&store, callback).await.state, JobState::Blocked);
    let row = batch(&store, created.batch).await;
    assert_eq!(row.state, BatchState::Open);
    assert_eq!(row.callback, Some(callback));
    assert_eq!(counters(&row), (3, 3, 0, 0, 0));
    assert_eq!(store.job_batch(a).await.unwrap(), Some(created.batch));
    assert_eq!(store.job_batch(callback).await.unwrap(), None);

    run_to(&store, a, completed(), 1).await;
    run_to(&store, b, discarded(), 2).await;
    store
        .job_cancel(JobCancelParams { id: c, now: at(3) })
        .await
        .expect("job_cancel");
    // Nothing pending, but the batch is open: it does not fire.
    let row = batch(&store, created.batch).await;
    assert_eq!(counters(&row), (3, 0, 1, 1, 1));
    assert_eq!(row.state, BatchState::Open);
    assert_eq!(get(&store, callback).await.state, JobState::Blocked);

    // A job added to the open batch (as a member's handler would) and the close.
    let added = add(&store, created.batch, members(1), false)
        .await
        .expect("add");
    let d = added.jobs[0];
    assert_eq!(added.callback, Some(callback));
    let closed = add(&store, created.batch, vec![], true)
        .await
        .expect("close");
    assert!(closed.jobs.is_empty());
    let row = batch(&store, created.batch).await;
    assert_eq!(row.state, BatchState::Running);
    assert_eq!(counters(&row), (4, 1, 1, 1, 1));
    assert_eq!(get(&store, callback).await.state, JobState::Blocked);
    let refused = add(&store, created.batch, members(1), false).await;
    expect_err_kind(refused, StoreErrorKind::Conflict);

    run_to(&store, d, completed(), 4).await;
    let row = batch(&store, created.batch).await;
    assert_eq!(row.state, BatchState::Finished);
    assert_eq!(row.finished_at, Some(at(4)));
    assert_eq!(counters(&row), (4, 0, 2, 1, 1));
    let fired = get(&store, callback).await;
    assert_eq!(fired.state, JobState::Available);
    assert_eq!(
        fired.args,
        json!({"campaign": 7, "batch": {
            "id": created.batch.0, "total": 4, "completed": 2, "discarded": 1, "cancelled": 1
        }})
    );

    // The discarded member retried: pending again, then completed; the callback (now
    // claimed and completed) is not released a second time.
    let row = claim_exactly(&store, "callbacks", "done", callback, at(5)).await;
    finish(&store, callback, row.fence, completed(), at(5)).await;
    store
        .job_retry(JobRetryParams { id: b, now: at(6) })
        .await
        .expect("job_retry");
    assert_eq!(
        counters(&batch(&store, created.batch).await),
        (4, 1, 2, 0, 1)
    );
    run_to(&store, b, completed(), 7).await;
    let row = batch(&store, created.batch).await;
    assert_eq!(counters(&row), (4, 0, 3, 0, 1));
    assert_eq!(
        row.finished_at,
        Some(at(4)),
        "fired once, at the first finish"
    );
    assert_eq!(get(&store, callback).await.state, JobState::Completed);
    let callbacks = all_jobs(&store)
        .await
        .into_iter()
        .filter(|job| job.kind == "done")
        .count();
    assert_eq!(callbacks, 1);
}

/// A batch closed with nothing pending fires in the call that closes it; one without a
/// callback just finishes; adding to a closed batch is refused.
pub async fn closed_empty_fires_at_once<S: Store>(store: Arc<S>) {
    let created = create(&store, vec![], true).await;
    let callback = created.callback.expect("a callback");
    let row = batch(&store, created.batch).await;
    assert_eq!(row.state, BatchState::Finished);
    let fired = get(&store, callback).await;
    assert_eq!(fired.state, JobState::Available);
    assert_eq!(fired.args["batch"]["total"], json!(0));

    let plain = store
        .batch_insert(BatchInsertParams::new("plain", members(1), t0()))
        .await
        .expect("batch_insert");
    assert_eq!(plain.callback, None);
    assert_eq!(batch(&store, plain.batch).await.state, BatchState::Running);
    run_to(&store, plain.jobs[0], completed(), 1).await;
    assert_eq!(batch(&store, plain.batch).await.state, BatchState::Finished);
    let refused = add(&store, plain.batch, members(1), false).await;
    expect_err_kind(refused, StoreErrorKind::Conflict);
}

/// Cancelling a batch cancels its waiting jobs and its callback, asks its running ones to
/// stop, and refuses further jobs; their ends are still counted, and the callback never runs.
pub async fn cancel_cancels_unfinished<S: Store>(store: Arc<S>) {
    let created = create(&store, members(3), false).await;
    let [a, b, c] = [created.jobs[0], created.jobs[1], created.jobs[2]];
    let callback = created.callback.unwrap();
    run_to(&store, a, completed(), 1).await;
    let running = claim_exactly(&store, "default", "member", b, at(2)).await;
    let row = store
        .batch_cancel(created.batch, at(3))
        .await
        .expect("batch_cancel");
    assert_eq!(row.state, BatchState::Cancelled);
    assert_eq!(counters(&row), (3, 1, 1, 0, 1));
    assert_eq!(get(&store, c).await.state, JobState::Cancelled);
    assert_eq!(get(&store, b).await.cancel_requested_at, Some(at(3)));
    assert_eq!(get(&store, callback).await.state, JobState::Cancelled);
    expect_err_kind(
        add(&store, created.batch, members(1), false).await,
        StoreErrorKind::Conflict,
    );
    finish(
        &store,
        b,
        running.fence,
        Outcome::Cancel { error: None },
        at(4),
    )
    .await;
    let row = batch(&store, created.batch).await;
    assert_eq!(row.state, BatchState::Cancelled);
    assert_eq!(counters(&row), (3, 0, 1, 0, 2));
    assert_eq!(get(&store, callback).await.state, JobState::Cancelled);
    expect_err_kind(
        store.batch_cancel(BatchId(i64::MAX - 3), at(5)).await,
        StoreErrorKind::NotFound,
    );
}

/// Bad input names its field and writes nothing: a callback whose args are not an object or
/// carry the counts' key, a job with an idempotency key or another tenant, an unknown batch,
/// another tenant's batch, a bad list limit.
pub async fn bad_input_writes_nothing<S: Store>(store: Arc<S>) {
    let mut params = BatchInsertParams::new("b", members(2), t0());
    params.callback = Some(job("done").with_args(json!([1])));
    expect_invalid(store.batch_insert(params.clone()).await, "callback.args");
    params.callback = Some(job("done").with_args(json!({"batch": 1})));
    expect_invalid(store.batch_insert(params.clone()).await, "callback.args");
    params.callback = None;
    params.jobs[1].unique_key = Some("k".into());
    expect_invalid(
        store.batch_insert(params.clone()).await,
        "jobs[1].unique_key",
    );
    params.jobs[1].unique_key = None;
    params.jobs[0].tenant = Some("acme".into());
    expect_invalid(store.batch_insert(params.clone()).await, "jobs[0].tenant");
    params.jobs[0].queue = "bad queue".into();
    expect_invalid(store.batch_insert(params).await, "jobs[0].queue");
    expect_invalid(
        store
            .batch_insert(BatchInsertParams::new("has space", vec![], t0()))
            .await,
        "name",
    );
    assert!(all_jobs(&store).await.is_empty());
    let none = store
        .batch_list(BatchListParams {
            limit: 10,
            ..BatchListParams::default()
        })
        .await
        .expect("batch_list");
    assert!(none.is_empty());

    expect_err_kind(
        add(&store, BatchId(i64::MAX - 3), members(1), false).await,
        StoreErrorKind::NotFound,
    );
    let mut theirs = BatchInsertParams::new("theirs", vec![], t0());
    theirs.tenant = Some("acme".into());
    theirs.close = false;
    let theirs = store.batch_insert(theirs).await.expect("batch_insert");
    expect_err_kind(
        add(&store, theirs.batch, members(1), false).await,
        StoreErrorKind::NotFound,
    );
    expect_invalid(
        store
            .batch_list(BatchListParams {
                limit: 0,
                ..BatchListParams::default()
            })
            .await,
        "limit",
    );
}

/// Lists filter by tenant and state and page by id, newest first.
pub async fn list_filters<S: Store>(store: Arc<S>) {
    let open = create(&store, members(1), false).await;
    let running = create(&store, members(1), true).await;
    let mut acme = BatchInsertParams::new("acme", vec![], t0());
    acme.tenant = Some("acme".into());
    let acme = store.batch_insert(acme).await.expect("batch_insert");
    let list = |tenant: Option<&str>, state: Option<BatchState>, before: Option<BatchId>| {
        let store = store.clone();
        let params = BatchListParams {
            tenant: tenant.map(str::to_owned),
            state,
            before,
            limit: 10,
        };
        async move {
            store
                .batch_list(params)
                .await
                .expect("batch_list")
                .into_iter()
                .map(|row| row.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, None, None).await,
        vec![acme.batch, running.batch, open.batch]
    );
    assert_eq!(list(Some("acme"), None, None).await, vec![acme.batch]);
    assert_eq!(
        list(None, Some(BatchState::Open), None).await,
        vec![open.batch]
    );
    assert_eq!(
        list(None, Some(BatchState::Running), None).await,
        vec![running.batch]
    );
    assert_eq!(
        list(None, Some(BatchState::Finished), None).await,
        vec![acme.batch]
    );
    assert_eq!(
        list(None, None, Some(running.batch)).await,
        vec![open.batch]
    );
}

/// Finishing the last member of a closed batch wakes the callback's queue, as an insert into
/// it would. Skipped for a store that delivers no events.
pub async fn completion_wakes_callback_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = store.subscribe() else {
        eprintln!(
            "skipped batch::completion_wakes_callback_queue: the {} store delivers no events",
            store.name()
        );
        return;
    };
    let created = create(&store, members(1), true).await;
    let member = created.jobs[0];
    let row = claim_exactly(&store, "default", "member", member, at(1)).await;
    // Whatever came before is drained; the callback's queue had no event since its insert.
    while events.try_recv().is_ok() {}
    finish(&store, member, row.fence, completed(), at(2)).await;
    let wanted = StoreEvent::JobsAvailable {
        queue: "callbacks".into(),
    };
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if event == wanted => return,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the callback's queue is woken");
}

/// A delete that would strand a job is refused with the reason and changes nothing: a job
/// others wait for (the error names them), an unfinished batch member, an unfired callback.
/// Once the dependency is cancelled (its edge's policy applied) it can be deleted, and so can
/// a finished member, whose batch keeps its counts.
pub async fn delete_refuses_to_strand<S: Store>(store: Arc<S>) {
    let flow = store
        .workflow_insert(WorkflowInsertParams::new(
            "del",
            vec![
                WorkflowNode {
                    name: "p".into(),
                    job: job("p"),
                    depends_on: vec![],
                },
                WorkflowNode {
                    name: "c".into(),
                    job: job("c"),
                    depends_on: vec![Dependency::node("p").policy(DepPolicy::Cancel)],
                },
            ],
            t0(),
        ))
        .await
        .expect("workflow_insert");
    let (p, c) = (flow.jobs[0].1, flow.jobs[1].1);
    let err = expect_err_kind(store.job_delete(p).await, StoreErrorKind::Conflict);
    assert!(err.to_string().contains(&c.to_string()), "{err}");
    assert_eq!(get(&store, p).await.state, JobState::Available);
    assert_eq!(get(&store, c).await.state, JobState::Blocked);
    store
        .job_cancel(JobCancelParams { id: p, now: at(1) })
        .await
        .expect("job_cancel");
    assert_eq!(get(&store, c).await.state, JobState::Cancelled);
    store
        .job_delete(p)
        .await
        .expect("a cancelled dependency is deleted");

    let created = create(&store, members(2), true).await;
    let [a, b] = [created.jobs[0], created.jobs[1]];
    let err = expect_err_kind(store.job_delete(a).await, StoreErrorKind::Conflict);
    assert!(err.to_string().contains("batch"), "{err}");
    let err = expect_err_kind(
        store.job_delete(created.callback.unwrap()).await,
        StoreErrorKind::Conflict,
    );
    assert!(err.to_string().contains("callback"), "{err}");
    run_to(&store, a, completed(), 2).await;
    store
        .job_delete(a)
        .await
        .expect("a finished member is deleted");
    assert_eq!(
        counters(&batch(&store, created.batch).await),
        (2, 1, 1, 0, 0)
    );
    run_to(&store, b, completed(), 3).await;
    assert_eq!(
        batch(&store, created.batch).await.state,
        BatchState::Finished
    );
}

/// Bulk operations and retries keep what `job_delete` keeps: a delete by filter skips a job
/// others wait for, an unfinished batch member and an unfired callback; a retry (one job or
/// by filter) never releases a `blocked` job, which waits for its dependencies or its batch.
pub async fn bulk_ops_refuse_to_strand<S: Store>(store: Arc<S>) {
    use stoker_core::{
        BulkAction, BulkFilter, BulkOpCreateParams, BulkOpStepParams, JobRetryParams,
    };
    let strand = |mut job: JobInsert| {
        job.queue = "strand".to_owned();
        job
    };
    let flow = store
        .workflow_insert(WorkflowInsertParams::new(
            "bulk",
            vec![
                WorkflowNode {
                    name: "p".into(),
                    job: strand(job("p")),
                    depends_on: vec![],
                },
                WorkflowNode {
                    name: "c".into(),
                    job: strand(job("c")),
                    depends_on: vec![Dependency::node("p").policy(DepPolicy::Cancel)],
                },
            ],
            t0(),
        ))
        .await
        .expect("workflow_insert");
    let (p, c) = (flow.jobs[0].1, flow.jobs[1].1);
    let mut params = BatchInsertParams::new("bulk", vec![strand(job("m"))], t0());
    params.callback = Some(strand(callback()));
    params.close = true;
    let created = store.batch_insert(params).await.expect("batch_insert");
    let (member, fired) = (created.jobs[0], created.callback.expect("callback"));

    // A retry of a blocked job changes nothing, one job or by filter.
    for blocked in [c, fired] {
        let row = store
            .job_retry(JobRetryParams {
                id: blocked,
                now: at(1),
            })
            .await
            .expect("job_retry");
        assert_eq!(row.state, JobState::Blocked, "job {blocked}");
    }
    let filter = BulkFilter {
        queues: vec!["strand".into()],
        ..BulkFilter::default()
    };
    let run = |action: BulkAction, filter: BulkFilter, secs: i64| {
        let store = Arc::clone(&store);
        async move {
            let op = store
                .bulk_op_create(BulkOpCreateParams {
                    action,
                    filter,
                    priority: None,
                    run_at: None,
                    created_by: Some("test".into()),
                    now: at(secs),
                })
                .await
                .expect("bulk_op_create");
            while store
                .bulk_op_step(BulkOpStepParams {
                    limit: 100,
                    now: at(secs),
                })
                .await
                .expect("bulk_op_step")
                .is_some()
            {}
            store
                .bulk_op_get(op.id)
                .await
                .expect("bulk_op_get")
                .expect("the operation")
        }
    };
    run(BulkAction::Retry, filter, 2).await;
    assert_eq!(get(&store, c).await.state, JobState::Blocked);
    assert_eq!(get(&store, fired).await.state, JobState::Blocked);

    // A delete by filter deletes none of these three: each would strand a waiting job (the
    // dependent itself may go: nothing waits for it).
    let kept = [p, member, fired];
    let filter = BulkFilter {
        ids: kept.to_vec(),
        ..BulkFilter::default()
    };
    let op = run(BulkAction::Delete, filter, 3).await;
    assert_eq!((op.matched, op.done, op.skipped), (3, 0, 3), "{op:?}");
    for id in kept {
        assert!(
            store.job_get(id).await.expect("job_get").is_some(),
            "job {id} was deleted"
        );
    }
}
