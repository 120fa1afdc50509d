//! Workflows (issue 18): blocked jobs invisible to claims, edges resolved in the transaction
//! that finishes the parent, every parent outcome under every edge policy, cycles and bad
//! targets refused with nothing written, dynamic fan-out, and cancel and retry propagation.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use stoker_core::{
    DepPolicy, Dependency, JobCancelParams, JobFinish, JobId, JobRetryParams, JobState, Outcome,
    Store, StoreErrorKind, WorkflowCancelParams, WorkflowId, WorkflowInsertParams,
    WorkflowInserted, WorkflowNode, WorkflowState,
};

use crate::fixture::{
    all_jobs, at, attempt_error, claim, claim_exactly, expect_err_kind, expect_invalid, finish,
    finish_many, get, insert_one, job, running, stats, t0,
};

/// A node of `kind` named `name`, waiting for `deps` (node names) under `policy`.
fn node(name: &str, deps: &[&str], policy: DepPolicy) -> WorkflowNode {
    WorkflowNode {
        name: name.to_owned(),
        job: job(name),
        depends_on: deps
            .iter()
            .map(|dep| Dependency::node(*dep).policy(policy))
            .collect(),
    }
}

async fn create<S: Store>(store: &Arc<S>, nodes: Vec<WorkflowNode>) -> WorkflowInserted {
    store
        .workflow_insert(WorkflowInsertParams::new("wf", nodes, t0()))
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

async fn state_of<S: Store>(store: &Arc<S>, id: JobId) -> JobState {
    get(store, id).await.state
}

async fn workflow_state<S: Store>(store: &Arc<S>, id: WorkflowId) -> WorkflowState {
    store
        .workflow_get(id)
        .await
        .expect("workflow_get")
        .expect("the workflow exists")
        .state
}

/// Claims job `id` (its kind is its node name) and finishes it with `outcome` at `now`.
async fn run_to<S: Store>(
    store: &Arc<S>,
    id: JobId,
    kind: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
) {
    let row = claim_exactly(store, "default", kind, id, now).await;
    assert_eq!(finish(store, id, row.fence, outcome, now).await, vec![id]);
}

fn completed(result: Value) -> Outcome {
    Outcome::Completed {
        result: Some(result),
    }
}

fn discarded() -> Outcome {
    Outcome::Discard {
        error: attempt_error(1, at(1), "boom"),
    }
}

/// A diamond (a; b, c after a; d after b and c): only `a` can be claimed; completing it makes
/// `b` and `c` available in the same call; `d` waits for both; the workflow completes with
/// `d`'s result, and `d` reads its dependencies' results.
pub async fn diamond_runs_in_dependency_order<S: Store>(store: Arc<S>) {
    let wf = create(
        &store,
        vec![
            node("a", &[], DepPolicy::Cancel),
            node("b", &["a"], DepPolicy::Cancel),
            node("c", &["a"], DepPolicy::Cancel),
            node("d", &["b", "c"], DepPolicy::Cancel),
        ],
    )
    .await;
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|name| id_of(&wf, name));
    for id in [b, c, d] {
        assert_eq!(state_of(&store, id).await, JobState::Blocked);
    }
    let claimed = claim(&store, "default", 10, "w1", at(1)).await;
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(
        workflow_state(&store, wf.workflow).await,
        WorkflowState::Running
    );
    finish(&store, a, claimed[0].fence, completed(json!(1)), at(2)).await;
    assert_eq!(state_of(&store, b).await, JobState::Available);
    assert_eq!(state_of(&store, c).await, JobState::Available);
    assert_eq!(state_of(&store, d).await, JobState::Blocked);

    run_to(&store, b, "b", completed(json!("b")), at(3)).await;
    assert_eq!(
        state_of(&store, d).await,
        JobState::Blocked,
        "d still waits for c"
    );
    run_to(&store, c, "c", completed(json!("c")), at(4)).await;
    assert_eq!(state_of(&store, d).await, JobState::Available);

    let results = store.job_dependency_results(d).await.expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].id, b);
    assert_eq!(results[0].node.as_deref(), Some("b"));
    assert_eq!(results[0].result, Some(json!("b")));
    assert_eq!(results[1].result, Some(json!("c")));
    assert_eq!(results[1].state, JobState::Completed);

    run_to(&store, d, "d", completed(json!({"done": true})), at(5)).await;
    let row = store.workflow_get(wf.workflow).await.unwrap().unwrap();
    assert_eq!(row.state, WorkflowState::Completed);
    assert_eq!(row.counts.completed, 4);
    assert_eq!(row.result, Some(json!({"d": {"done": true}})));

    let graph = store
        .workflow_jobs(wf.workflow)
        .await
        .expect("workflow_jobs");
    assert_eq!(graph.len(), 4);
    let d_row = graph.iter().find(|job| job.node == "d").unwrap();
    assert_eq!(
        d_row
            .depends_on
            .iter()
            .map(|edge| edge.id)
            .collect::<Vec<_>>(),
        vec![b, c]
    );
    assert!(d_row.depends_on.iter().all(|edge| edge.resolved));
}

/// Every parent outcome (completed, discarded, cancelled while running, cancelled while
/// waiting) under every policy: a completed parent releases the child; a failed one cancels
/// it (and its own dependent) under `cancel`, releases it under `run`, and holds it (the
/// workflow `held`) under `hold`. No combination leaves a child blocked with nothing to
/// resolve it but an operator's retry under `hold`.
pub async fn matrix_outcome_by_policy<S: Store>(store: Arc<S>) {
    #[derive(Debug, Clone, Copy)]
    enum End {
        Completed,
        Discarded,
        CancelledRunning,
        CancelledWaiting,
    }
    for end in [
        End::Completed,
        End::Discarded,
        End::CancelledRunning,
        End::CancelledWaiting,
    ] {
        for policy in DepPolicy::ALL {
            let wf = create(
                &store,
                vec![
                    node("p", &[], DepPolicy::Cancel),
                    node("c", &["p"], policy),
                    node("g", &["c"], DepPolicy::Cancel),
                ],
            )
            .await;
            let [p, c, g] = ["p", "c", "g"].map(|name| id_of(&wf, name));
            match end {
                End::Completed => run_to(&store, p, "p", completed(json!("ok")), at(1)).await,
                End::Discarded => run_to(&store, p, "p", discarded(), at(1)).await,
                End::CancelledRunning => {
                    run_to(&store, p, "p", Outcome::Cancel { error: None }, at(1)).await
                }
                End::CancelledWaiting => {
                    store
                        .job_cancel(JobCancelParams { id: p, now: at(1) })
                        .await
                        .expect("job_cancel");
                }
            }
            let case = format!("{end:?} x {policy}");
            let (child, grandchild, workflow) = match (end, policy) {
                (End::Completed, _) | (_, DepPolicy::Run) => (
                    JobState::Available,
                    JobState::Blocked,
                    WorkflowState::Running,
                ),
                (_, DepPolicy::Cancel) => (
                    JobState::Cancelled,
                    JobState::Cancelled,
                    WorkflowState::Failed,
                ),
                (_, DepPolicy::Hold) => (JobState::Blocked, JobState::Blocked, WorkflowState::Held),
            };
            assert_eq!(state_of(&store, c).await, child, "child, {case}");
            assert_eq!(state_of(&store, g).await, grandchild, "grandchild, {case}");
            assert_eq!(
                workflow_state(&store, wf.workflow).await,
                workflow,
                "workflow, {case}"
            );
            if child == JobState::Available {
                let results = store.job_dependency_results(c).await.unwrap();
                assert_eq!(results.len(), 1, "{case}");
                assert_eq!(results[0].policy, policy, "{case}");
                let parent = get(&store, p).await.state;
                assert_eq!(results[0].state, parent, "{case}");
                // The child runs and completes; the grandchild follows.
                run_to(&store, c, "c", completed(json!(null)), at(2)).await;
                assert_eq!(state_of(&store, g).await, JobState::Available, "{case}");
                run_to(&store, g, "g", completed(json!(null)), at(3)).await;
                let expected = match end {
                    End::Completed => WorkflowState::Completed,
                    _ => WorkflowState::Failed,
                };
                assert_eq!(
                    workflow_state(&store, wf.workflow).await,
                    expected,
                    "{case}"
                );
            }
            // Claims never see a blocked job: nothing is left to claim in any case.
            assert!(
                claim(&store, "default", 10, "w1", at(4)).await.is_empty(),
                "{case}"
            );
        }
    }
}

/// Under `hold`, retrying the failed parent resumes the workflow: when the parent completes,
/// the held child is released.
pub async fn hold_resumes_after_retry<S: Store>(store: Arc<S>) {
    let wf = create(
        &store,
        vec![
            node("p", &[], DepPolicy::Cancel),
            node("c", &["p"], DepPolicy::Hold),
        ],
    )
    .await;
    let (p, c) = (id_of(&wf, "p"), id_of(&wf, "c"));
    run_to(&store, p, "p", discarded(), at(1)).await;
    let row = store.workflow_get(wf.workflow).await.unwrap().unwrap();
    assert_eq!((row.state, row.held), (WorkflowState::Held, 1));

    store
        .job_retry(JobRetryParams { id: p, now: at(2) })
        .await
        .expect("job_retry");
    assert_eq!(
        workflow_state(&store, wf.workflow).await,
        WorkflowState::Running
    );
    assert_eq!(state_of(&store, c).await, JobState::Blocked);
    run_to(&store, p, "p", completed(json!(2)), at(3)).await;
    assert_eq!(state_of(&store, c).await, JobState::Available);
    run_to(&store, c, "c", completed(json!(3)), at(4)).await;
    assert_eq!(
        workflow_state(&store, wf.workflow).await,
        WorkflowState::Completed
    );
}

/// A cascade of cancels through a chain is counted: the finished counts show every job the
/// trigger cancelled, and a waiting blocked job can be cancelled by hand.
pub async fn cancel_cascade_is_counted<S: Store>(store: Arc<S>) {
    let wf = create(
        &store,
        vec![
            node("a", &[], DepPolicy::Cancel),
            node("b", &["a"], DepPolicy::Cancel),
            node("c", &["b"], DepPolicy::Cancel),
            node("d", &["c"], DepPolicy::Cancel),
            node("e", &[], DepPolicy::Cancel),
            node("f", &["e"], DepPolicy::Cancel),
        ],
    )
    .await;
    run_to(&store, id_of(&wf, "a"), "a", discarded(), at(1)).await;
    for name in ["b", "c", "d"] {
        assert_eq!(
            state_of(&store, id_of(&wf, name)).await,
            JobState::Cancelled,
            "{name}"
        );
    }
    let f = store
        .job_cancel(JobCancelParams {
            id: id_of(&wf, "f"),
            now: at(2),
        })
        .await
        .expect("cancel a blocked job");
    assert_eq!(f.state, JobState::Cancelled);
    let counts = stats(&store).await;
    for name in ["b", "c", "d", "f"] {
        assert_eq!(
            counts.get(&("default".to_owned(), name.to_owned(), "cancelled")),
            Some(&1),
            "{name} counted as cancelled: {counts:?}"
        );
    }
    assert_eq!(
        counts.get(&("default".to_owned(), "a".to_owned(), "discarded")),
        Some(&1)
    );
}

/// A fan-out of 200 jobs acknowledged in one batch releases the fan-in job exactly once, in
/// that batch's transaction.
pub async fn fan_in_released_by_one_batch<S: Store>(store: Arc<S>) {
    let mut nodes = vec![node("root", &[], DepPolicy::Cancel)];
    let names: Vec<String> = (0..200).map(|i| format!("leaf{i}")).collect();
    for name in &names {
        let mut leaf = node(name, &["root"], DepPolicy::Cancel);
        leaf.job = job("leaf");
        nodes.push(leaf);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    nodes.push(node("join", &refs, DepPolicy::Run));
    let wf = create(&store, nodes).await;
    run_to(
        &store,
        id_of(&wf, "root"),
        "root",
        completed(json!(0)),
        at(1),
    )
    .await;
    let leaves = claim(&store, "default", 500, "w1", at(2)).await;
    assert_eq!(leaves.len(), 200, "every leaf, and not the join");
    let finishes = leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| JobFinish {
            id: leaf.id,
            fence: leaf.fence,
            outcome: if i == 7 {
                discarded()
            } else {
                completed(json!(i))
            },
        })
        .collect();
    assert_eq!(finish_many(&store, finishes, at(3)).await.len(), 200);
    let join = id_of(&wf, "join");
    let row = get(&store, join).await;
    assert_eq!(row.state, JobState::Available);
    let claimed = claim(&store, "default", 10, "w1", at(4)).await;
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![join]
    );
    let results = store.job_dependency_results(join).await.unwrap();
    assert_eq!(results.len(), 200);
    assert_eq!(
        results
            .iter()
            .filter(|result| result.state == JobState::Discarded)
            .count(),
        1
    );
}

/// A cycle, an unknown node, an unknown job, another tenant's job, a failed job under
/// `cancel` and too many jobs are each refused naming the node and field, with nothing
/// written.
pub async fn bad_input_writes_nothing<S: Store>(store: Arc<S>) {
    let mut other = job("other");
    other.tenant = Some("acme".to_owned());
    let other = insert_one(&store, other, t0()).await;
    let dead = running(&store, "dead", t0()).await;
    finish(&store, dead.id, dead.fence, discarded(), at(1)).await;
    let before = all_jobs(&store).await.len();

    let cycle = vec![
        node("a", &["c"], DepPolicy::Cancel),
        node("b", &["a"], DepPolicy::Cancel),
        node("c", &["b"], DepPolicy::Cancel),
    ];
    expect_invalid(
        store
            .workflow_insert(WorkflowInsertParams::new("wf", cycle, t0()))
            .await,
        "nodes[0].depends_on",
    );
    expect_invalid(
        store
            .workflow_insert(WorkflowInsertParams::new(
                "wf",
                vec![node("a", &["nope"], DepPolicy::Cancel)],
                t0(),
            ))
            .await,
        "nodes[0].depends_on[0]",
    );
    for (target, policy) in [
        (JobId(i64::MAX - 7), DepPolicy::Run),
        (other, DepPolicy::Run),
        (dead.id, DepPolicy::Cancel),
    ] {
        let nodes = vec![
            node("ok", &[], DepPolicy::Cancel),
            WorkflowNode {
                name: "b".to_owned(),
                job: job("b"),
                depends_on: vec![
                    Dependency::node("ok"),
                    Dependency::job(target).policy(policy),
                ],
            },
        ];
        expect_invalid(
            store
                .workflow_insert(WorkflowInsertParams::new("wf", nodes, t0()))
                .await,
            "nodes[1].depends_on[1]",
        );
    }
    let mut params = WorkflowInsertParams::new(
        "wf",
        vec![
            node("a", &[], DepPolicy::Cancel),
            node("b", &[], DepPolicy::Cancel),
        ],
        t0(),
    );
    params.max_jobs = 1;
    expect_invalid(store.workflow_insert(params).await, "nodes");
    expect_invalid(
        store
            .workflow_insert(WorkflowInsertParams::new(
                "bad name",
                vec![node("a", &[], DepPolicy::Cancel)],
                t0(),
            ))
            .await,
        "name",
    );
    assert_eq!(all_jobs(&store).await.len(), before, "nothing was written");
    assert!(store.workflow_get(WorkflowId(1)).await.unwrap().is_none());
}

/// Dependencies on existing jobs by id: a completed one counts as resolved, a running one
/// releases its dependent when it completes (and, failing under `run`, too).
pub async fn depends_on_existing_jobs<S: Store>(store: Arc<S>) {
    let done = running(&store, "done", t0()).await;
    finish(&store, done.id, done.fence, completed(json!("x")), at(1)).await;
    let busy = running(&store, "busy", at(1)).await;
    let nodes = vec![
        WorkflowNode {
            name: "after_done".to_owned(),
            job: job("after_done"),
            depends_on: vec![Dependency::job(done.id)],
        },
        WorkflowNode {
            name: "after_busy".to_owned(),
            job: job("after_busy"),
            depends_on: vec![Dependency::job(busy.id).policy(DepPolicy::Run)],
        },
    ];
    let wf = create(&store, nodes).await;
    assert_eq!(
        state_of(&store, id_of(&wf, "after_done")).await,
        JobState::Available
    );
    let after_busy = id_of(&wf, "after_busy");
    assert_eq!(state_of(&store, after_busy).await, JobState::Blocked);
    finish(&store, busy.id, busy.fence, discarded(), at(2)).await;
    assert_eq!(state_of(&store, after_busy).await, JobState::Available);
    let results = store.job_dependency_results(after_busy).await.unwrap();
    assert_eq!(results[0].node, None);
    assert_eq!(results[0].state, JobState::Discarded);
}

/// Jobs added to a running workflow (dynamic fan-out) may wait for its existing nodes by name;
/// the workflow is not complete until they are.
pub async fn dynamic_fan_out<S: Store>(store: Arc<S>) {
    let wf = create(&store, vec![node("root", &[], DepPolicy::Cancel)]).await;
    let root = id_of(&wf, "root");
    let row = claim_exactly(&store, "default", "root", root, at(1)).await;
    let mut add = WorkflowInsertParams::new(
        "",
        vec![
            node("x1", &[], DepPolicy::Cancel),
            node("x2", &["root"], DepPolicy::Cancel),
            node("join", &["x1", "x2"], DepPolicy::Cancel),
        ],
        at(1),
    );
    add.workflow = Some(wf.workflow);
    let added = store.workflow_insert(add.clone()).await.expect("add");
    assert_eq!(added.workflow, wf.workflow);
    // A name already in the workflow is refused.
    expect_invalid(store.workflow_insert(add).await, "nodes[0].name");
    finish(&store, root, row.fence, completed(json!(0)), at(2)).await;
    assert_eq!(
        workflow_state(&store, wf.workflow).await,
        WorkflowState::Running
    );
    run_to(
        &store,
        id_of(&added, "x1"),
        "x1",
        completed(json!(1)),
        at(3),
    )
    .await;
    run_to(
        &store,
        id_of(&added, "x2"),
        "x2",
        completed(json!(2)),
        at(3),
    )
    .await;
    run_to(
        &store,
        id_of(&added, "join"),
        "join",
        completed(json!(3)),
        at(4),
    )
    .await;
    let row = store.workflow_get(wf.workflow).await.unwrap().unwrap();
    assert_eq!(row.state, WorkflowState::Completed);
    assert_eq!(row.counts.total(), 4);
    assert_eq!(row.result, Some(json!({"join": 3})));
}

/// Cancelling a workflow cancels its waiting jobs, requests the cancel of its running ones,
/// and refuses further jobs; an unknown workflow is not found.
pub async fn cancel_propagates<S: Store>(store: Arc<S>) {
    let wf = create(
        &store,
        vec![
            node("a", &[], DepPolicy::Cancel),
            node("b", &["a"], DepPolicy::Run),
            node("c", &[], DepPolicy::Cancel),
            node("d", &["b"], DepPolicy::Hold),
        ],
    )
    .await;
    let a = id_of(&wf, "a");
    let row = claim_exactly(&store, "default", "a", a, at(1)).await;
    let cancelled = store
        .workflow_cancel(WorkflowCancelParams {
            id: wf.workflow,
            now: at(2),
        })
        .await
        .expect("workflow_cancel");
    assert_eq!(cancelled.state, WorkflowState::Cancelled);
    assert_eq!(cancelled.counts.cancelled, 3);
    assert_eq!(cancelled.counts.running, 1);
    assert_eq!(get(&store, a).await.cancel_requested_at, Some(at(2)));
    // The running job ends (here it fails): nothing is released.
    finish(&store, a, row.fence, Outcome::Cancel { error: None }, at(3)).await;
    let states: HashSet<JobState> = all_jobs(&store).await.iter().map(|job| job.state).collect();
    assert_eq!(states, HashSet::from([JobState::Cancelled]));
    let counts = stats(&store).await;
    let cancelled_total: i64 = counts
        .iter()
        .filter(|((_, _, state), _)| *state == "cancelled")
        .map(|(_, count)| count)
        .sum();
    assert_eq!(cancelled_total, 4, "every job counted once: {counts:?}");

    let mut add = WorkflowInsertParams::new("", vec![node("late", &[], DepPolicy::Cancel)], at(4));
    add.workflow = Some(wf.workflow);
    expect_err_kind(store.workflow_insert(add).await, StoreErrorKind::Conflict);
    expect_err_kind(
        store
            .workflow_cancel(WorkflowCancelParams {
                id: WorkflowId(i64::MAX - 1),
                now: at(5),
            })
            .await,
        StoreErrorKind::NotFound,
    );
}

/// The pruner spares what a workflow still needs: a finished job of a workflow with an
/// unfinished job, and a finished job with an unfinished dependent outside any workflow; an
/// ordinary finished job goes as before, and the workflow's jobs go once it has finished.
pub async fn prune_spares_needed_results<S: Store>(store: Arc<S>) {
    let wf = create(
        &store,
        vec![
            node("a", &[], DepPolicy::Cancel),
            node("b", &["a"], DepPolicy::Cancel),
        ],
    )
    .await;
    let (a, b) = (id_of(&wf, "a"), id_of(&wf, "b"));
    run_to(&store, a, "a", completed(json!("input")), at(1)).await;
    let plain = running(&store, "plain", at(1)).await;
    finish(&store, plain.id, plain.fence, completed(json!(0)), at(1)).await;
    let parent = running(&store, "parent", at(1)).await;
    let outside = WorkflowNode {
        name: "outside".to_owned(),
        job: job("outside"),
        depends_on: vec![Dependency::job(parent.id)],
    };
    let other = create(&store, vec![outside]).await;
    finish(&store, parent.id, parent.fence, completed(json!(1)), at(1)).await;

    let prune = |before| stoker_core::JobPruneParams {
        completed_before: Some(before),
        limit: 100,
        ..stoker_core::JobPruneParams::default()
    };
    assert_eq!(store.job_prune(prune(at(10))).await.expect("job_prune"), 1);
    assert!(store.job_get(plain.id).await.unwrap().is_none());
    assert!(store.job_get(a).await.unwrap().is_some(), "b still needs a");
    assert!(
        store.job_get(parent.id).await.unwrap().is_some(),
        "outside still needs it"
    );
    assert_eq!(
        store.job_dependency_results(b).await.unwrap()[0].result,
        Some(json!("input"))
    );

    run_to(&store, b, "b", completed(json!(2)), at(11)).await;
    let outside = id_of(&other, "outside");
    run_to(&store, outside, "outside", completed(json!(3)), at(11)).await;
    assert_eq!(store.job_prune(prune(at(20))).await.expect("job_prune"), 4);
}
