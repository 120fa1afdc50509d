//! Jobs released by a finished dependency wake their workers (issue 18): every path that
//! finishes a job others depend on (an acknowledgement, a cascade of cancels, a cancel, a bulk
//! operation, a workflow cancel) sends `JobsAvailable` for the queues that got released jobs,
//! as an insert into them does, so a worker that polls rarely still runs them at once.
//! Skipped, with the reason printed, for a store that delivers no events.

use std::sync::Arc;
use std::time::Duration;

use stoker_core::{
    BulkAction, BulkFilter, BulkOpCreateParams, BulkOpStepParams, DepPolicy, Dependency,
    JobCancelParams, JobId, JobInsert, JobState, Outcome, Store, StoreEvent, WorkflowCancelParams,
    WorkflowInsertParams, WorkflowInserted, WorkflowNode,
};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::fixture::{at, attempt_error, claim_exactly, finish, get, insert, job_in, t0};

/// How long the event may take: generous, since a store that sends none fails only by this
/// running out, and PostgreSQL delivers through a listener connection.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Subscribes, or prints why the behaviour is skipped and returns `None`.
fn subscribe<S: Store>(store: &Arc<S>, behaviour: &str) -> Option<broadcast::Receiver<StoreEvent>> {
    let receiver = store.subscribe();
    if receiver.is_none() {
        eprintln!(
            "skipped wake::{behaviour}: the {} store delivers no events (subscribe() is None)",
            store.name()
        );
    }
    receiver
}

fn available(queue: &str) -> StoreEvent {
    StoreEvent::JobsAvailable {
        queue: queue.to_owned(),
    }
}

/// Waits for `wanted`, skipping other events, and panics if it does not come in time.
async fn expect_event(events: &mut broadcast::Receiver<StoreEvent>, wanted: StoreEvent) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if event == wanted => return,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    if tokio::time::timeout(EVENT_TIMEOUT, wait).await.is_err() {
        panic!("still waiting for {wanted:?} after {EVENT_TIMEOUT:?}");
    }
}

/// Inserts a marker job into `queue` and waits for its event. Events arrive in order, so
/// every event of what came before has then been consumed, including any a store sends for
/// the queues of blocked jobs it inserts (PostgreSQL does): the event a behaviour waits for
/// next can only come from what it does after this.
async fn settle<S: Store>(
    store: &Arc<S>,
    events: &mut broadcast::Receiver<StoreEvent>,
    queue: &str,
) {
    insert(store, vec![job_in(queue, "marker")], t0()).await;
    expect_event(events, available(queue)).await;
}

/// A workflow node `name` of kind `name` in `queue`, waiting for `deps` under `policy`.
fn node(name: &str, queue: &str, deps: &[&str], policy: DepPolicy) -> WorkflowNode {
    WorkflowNode {
        name: name.to_owned(),
        job: job_in(queue, name),
        depends_on: deps
            .iter()
            .map(|dep| Dependency::node(*dep).policy(policy))
            .collect(),
    }
}

async fn create<S: Store>(store: &Arc<S>, nodes: Vec<WorkflowNode>) -> WorkflowInserted {
    store
        .workflow_insert(WorkflowInsertParams::new("wake", nodes, t0()))
        .await
        .expect("workflow_insert")
}

fn id_of(inserted: &WorkflowInserted, name: &str) -> JobId {
    inserted
        .jobs
        .iter()
        .find(|(node, _)| node == name)
        .unwrap_or_else(|| panic!("no node {name}"))
        .1
}

/// Completing the last dependency sends `JobsAvailable` for the released job's queue, even
/// when it is not the dependency's queue.
pub async fn completion_wakes_released_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "completion_wakes_released_queue") else {
        return;
    };
    let flow = create(
        &store,
        vec![
            node("p", "wake-done-p", &[], DepPolicy::Cancel),
            node("c", "wake-done-c", &["p"], DepPolicy::Cancel),
        ],
    )
    .await;
    settle(&store, &mut events, "wake-done-marker").await;

    let parent = id_of(&flow, "p");
    let row = claim_exactly(&store, "wake-done-p", "p", parent, at(1)).await;
    let done = Outcome::Completed { result: None };
    assert_eq!(
        finish(&store, parent, row.fence, done, at(2)).await,
        vec![parent]
    );
    expect_event(&mut events, available("wake-done-c")).await;
    assert_eq!(
        get(&store, id_of(&flow, "c")).await.state,
        JobState::Available
    );
}

/// A discarded parent cancels its child on a `cancel` edge, and that cancel releases the
/// grandchild on a `run` edge: the grandchild's queue gets the event.
pub async fn cascade_wakes_released_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "cascade_wakes_released_queue") else {
        return;
    };
    let flow = create(
        &store,
        vec![
            node("p", "wake-cascade-p", &[], DepPolicy::Cancel),
            node("c", "wake-cascade-c", &["p"], DepPolicy::Cancel),
            node("g", "wake-cascade-g", &["c"], DepPolicy::Run),
        ],
    )
    .await;
    settle(&store, &mut events, "wake-cascade-marker").await;

    let parent = id_of(&flow, "p");
    let row = claim_exactly(&store, "wake-cascade-p", "p", parent, at(1)).await;
    let discard = Outcome::Discard {
        error: attempt_error(1, at(2), "no"),
    };
    assert_eq!(
        finish(&store, parent, row.fence, discard, at(2)).await,
        vec![parent]
    );
    expect_event(&mut events, available("wake-cascade-g")).await;
    assert_eq!(
        get(&store, id_of(&flow, "c")).await.state,
        JobState::Cancelled
    );
    assert_eq!(
        get(&store, id_of(&flow, "g")).await.state,
        JobState::Available
    );
}

/// Cancelling a waiting job releases its dependent on a `run` edge, with the event.
pub async fn cancel_wakes_released_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "cancel_wakes_released_queue") else {
        return;
    };
    let flow = create(
        &store,
        vec![
            node("p", "wake-cancel-p", &[], DepPolicy::Run),
            node("c", "wake-cancel-c", &["p"], DepPolicy::Run),
        ],
    )
    .await;
    settle(&store, &mut events, "wake-cancel-marker").await;

    let cancelled = store
        .job_cancel(JobCancelParams {
            id: id_of(&flow, "p"),
            now: at(1),
        })
        .await
        .expect("job_cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    expect_event(&mut events, available("wake-cancel-c")).await;
}

/// A bulk cancel that finishes a job others depend on wakes the released job's queue.
pub async fn bulk_cancel_wakes_released_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "bulk_cancel_wakes_released_queue") else {
        return;
    };
    let flow = create(
        &store,
        vec![
            node("p", "wake-bulk-p", &[], DepPolicy::Run),
            node("c", "wake-bulk-c", &["p"], DepPolicy::Run),
        ],
    )
    .await;
    settle(&store, &mut events, "wake-bulk-marker").await;

    store
        .bulk_op_create(BulkOpCreateParams {
            action: BulkAction::Cancel,
            filter: BulkFilter {
                queues: vec!["wake-bulk-p".to_owned()],
                ..BulkFilter::default()
            },
            priority: None,
            run_at: None,
            created_by: Some("test".into()),
            now: at(1),
        })
        .await
        .expect("bulk_op_create");
    let mut steps = 0;
    while store
        .bulk_op_step(BulkOpStepParams {
            limit: 100,
            now: at(1),
        })
        .await
        .expect("bulk_op_step")
        .is_some()
    {
        steps += 1;
        assert!(steps < 1_000, "the bulk operation never ends");
    }
    assert_eq!(
        get(&store, id_of(&flow, "p")).await.state,
        JobState::Cancelled
    );
    expect_event(&mut events, available("wake-bulk-c")).await;
}

/// Cancelling a workflow releases a job outside it that depends on one of its jobs on a `run`
/// edge, with the event.
pub async fn workflow_cancel_wakes_released_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "workflow_cancel_wakes_released_queue") else {
        return;
    };
    let first = create(&store, vec![node("p", "wake-wfc-p", &[], DepPolicy::Run)]).await;
    let outside: JobInsert = job_in("wake-wfc-c", "c");
    create(
        &store,
        vec![WorkflowNode {
            name: "c".to_owned(),
            job: outside,
            depends_on: vec![Dependency::job(id_of(&first, "p")).policy(DepPolicy::Run)],
        }],
    )
    .await;
    settle(&store, &mut events, "wake-wfc-marker").await;

    store
        .workflow_cancel(WorkflowCancelParams {
            id: first.workflow,
            now: at(1),
        })
        .await
        .expect("workflow_cancel");
    expect_event(&mut events, available("wake-wfc-c")).await;
}
