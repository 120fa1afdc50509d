//! Parents that wait for their children (issue 18): a running job enqueues children it waits
//! for, finishes by waiting, stays `blocked` with its result kept (never claimed again), and
//! completes in the transaction that finishes its last child; every child outcome under every
//! policy; a deleted child, a rescued parent and nested parents never strand anyone; a stale
//! fence or bad input writes nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use stoker_core::{
    ChildrenInsertParams, DepPolicy, FinishedJob, JobCancelParams, JobId, JobInsert,
    JobRetryParams, JobRow, JobState, Outcome, Store, WaitChildrenParams, MAX_ARGS_BYTES_DEFAULT,
};

use crate::fixture::{
    all_jobs, at, attempt_error, claim, claim_exactly, expect_invalid, finish, get, job, rescue,
    running, stats, t0,
};

/// Enqueues `kinds` as children of the running `parent` under `policy` at `now`.
async fn children<S: Store>(
    store: &Arc<S>,
    parent: &JobRow,
    kinds: &[&str],
    policy: DepPolicy,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    store
        .job_children_insert(params(
            parent,
            kinds.iter().map(|k| job(k)).collect(),
            policy,
            now,
        ))
        .await
        .expect("job_children_insert")
        .expect("the parent is held")
        .into_iter()
        .map(|inserted| inserted.id)
        .collect()
}

fn params(
    parent: &JobRow,
    jobs: Vec<JobInsert>,
    policy: DepPolicy,
    now: DateTime<Utc>,
) -> ChildrenInsertParams {
    ChildrenInsertParams {
        parent: parent.id,
        fence: parent.fence,
        jobs,
        policy,
        now,
        max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
    }
}

/// Finishes the running `parent` as one that waits for its children, with `result`.
async fn wait<S: Store>(
    store: &Arc<S>,
    parent: &JobRow,
    result: Value,
    now: DateTime<Utc>,
) -> FinishedJob {
    store
        .job_wait_children(WaitChildrenParams {
            id: parent.id,
            fence: parent.fence,
            result: Some(result),
            now,
        })
        .await
        .expect("job_wait_children")
        .expect("the parent is held")
}

/// Claims the child `id` of `kind` and finishes it with `outcome` at `now`.
async fn run_child<S: Store>(
    store: &Arc<S>,
    id: JobId,
    kind: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
) {
    let row = claim_exactly(store, "default", kind, id, now).await;
    assert_eq!(finish(store, id, row.fence, outcome, now).await, vec![id]);
}

fn done() -> Outcome {
    Outcome::Completed {
        result: Some(json!("child")),
    }
}

fn discarded() -> Outcome {
    Outcome::Discard {
        error: attempt_error(1, at(1), "boom"),
    }
}

async fn pending<S: Store>(store: &Arc<S>, id: JobId) -> i64 {
    store
        .job_children(id)
        .await
        .expect("job_children")
        .expect("a parent")
        .pending
}

/// A parent with two children: waiting leaves it `blocked` with its result kept and out of
/// every claim; the first child's completion leaves it waiting, the last one's completes it
/// (attempt unchanged: it never ran again), counted once; its wait reads back.
pub async fn parent_completes_after_its_children<S: Store>(store: Arc<S>) {
    let parent = running(&store, "parent", t0()).await;
    let kids = children(&store, &parent, &["c1", "c2"], DepPolicy::Cancel, at(1)).await;
    for kid in &kids {
        let row = get(&store, *kid).await;
        assert_eq!(row.state, JobState::Available);
        assert_eq!(
            row.metadata.parent_id, None,
            "lineage is the client's to set"
        );
    }
    assert_eq!(pending(&store, parent.id).await, 2);
    let waiting = wait(&store, &parent, json!({"p": 1}), at(2)).await;
    assert_eq!(waiting.state, JobState::Blocked);
    let row = get(&store, parent.id).await;
    assert_eq!(row.state, JobState::Blocked);
    assert_eq!(row.result, Some(json!({"p": 1})));
    assert_eq!(row.finished_at, None);

    run_child(&store, kids[0], "c1", done(), at(3)).await;
    assert_eq!(get(&store, parent.id).await.state, JobState::Blocked);
    assert_eq!(pending(&store, parent.id).await, 1);
    let claimed = claim(&store, "default", 10, "w1", at(4)).await;
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![kids[1]],
        "a waiting parent is never claimed"
    );
    finish(&store, kids[1], claimed[0].fence, done(), at(5)).await;
    let row = get(&store, parent.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, Some(json!({"p": 1})), "the result is kept");
    assert_eq!(row.attempt, 1, "it did not run again");
    assert_eq!(row.finished_at, Some(at(5)));
    let counted = stats(&store).await;
    assert_eq!(
        counted.get(&("default".to_owned(), "parent".to_owned(), "completed")),
        Some(&1)
    );
    assert_eq!(
        counted.get(&("default".to_owned(), "parent".to_owned(), "blocked")),
        None
    );
    let read = store.job_children(parent.id).await.unwrap().unwrap();
    assert_eq!((read.pending, read.failed), (0, 0));
    assert_eq!(read.states.completed, 2);
    assert!(read.unresolved.is_empty());
    assert_eq!(store.job_children(kids[0]).await.unwrap(), None);
}

/// Every child outcome (discarded, cancelled) under every policy, for a parent already
/// waiting: `cancel` cancels it, `run` completes it, `hold` keeps it waiting until the child
/// is retried and completes.
pub async fn matrix_outcome_by_policy<S: Store>(store: Arc<S>) {
    for policy in DepPolicy::ALL {
        for cancel in [false, true] {
            let kind = format!("p-{policy}-{cancel}");
            let child_kind = format!("c-{policy}-{cancel}");
            let parent = running(&store, &kind, t0()).await;
            let kid = children(&store, &parent, &[&child_kind], policy, at(1)).await[0];
            assert_eq!(
                wait(&store, &parent, json!(1), at(2)).await.state,
                JobState::Blocked
            );
            if cancel {
                store
                    .job_cancel(JobCancelParams {
                        id: kid,
                        now: at(3),
                    })
                    .await
                    .expect("job_cancel");
            } else {
                run_child(&store, kid, &child_kind, discarded(), at(3)).await;
            }
            let expected = match policy {
                DepPolicy::Cancel => JobState::Cancelled,
                DepPolicy::Run => JobState::Completed,
                DepPolicy::Hold => JobState::Blocked,
            };
            let row = get(&store, parent.id).await;
            assert_eq!(
                row.state,
                expected,
                "{policy} after a child {}",
                if cancel { "cancelled" } else { "discarded" }
            );
            if policy == DepPolicy::Hold {
                let read = store.job_children(parent.id).await.unwrap().unwrap();
                assert_eq!(read.unresolved.len(), 1, "the held child is listed");
                assert_eq!(read.unresolved[0].policy, DepPolicy::Hold);
                store
                    .job_retry(JobRetryParams {
                        id: kid,
                        now: at(4),
                    })
                    .await
                    .expect("job_retry");
                run_child(&store, kid, &child_kind, done(), at(5)).await;
                assert_eq!(get(&store, parent.id).await.state, JobState::Completed);
            } else {
                assert_eq!(row.finished_at, Some(at(3)));
                // A later retry of the child changes nothing for the parent.
                store
                    .job_retry(JobRetryParams {
                        id: kid,
                        now: at(4),
                    })
                    .await
                    .expect("job_retry");
                run_child(&store, kid, &child_kind, done(), at(5)).await;
                assert_eq!(get(&store, parent.id).await.state, expected);
            }
        }
    }
}

/// A child that fails under `cancel` while its parent still runs asks the parent to stop,
/// and the parent's wait then ends it cancelled; under `run` the wait completes it at once.
pub async fn failure_while_the_parent_runs<S: Store>(store: Arc<S>) {
    let parent = running(&store, "strict", t0()).await;
    let kid = children(&store, &parent, &["c-strict"], DepPolicy::Cancel, at(1)).await[0];
    run_child(&store, kid, "c-strict", discarded(), at(2)).await;
    let row = get(&store, parent.id).await;
    assert_eq!(row.state, JobState::Running);
    assert_eq!(
        row.cancel_requested_at,
        Some(at(2)),
        "the parent is asked to stop"
    );
    let finished = wait(&store, &parent, json!(1), at(3)).await;
    assert_eq!(finished.state, JobState::Cancelled);
    assert_eq!(
        stats(&store)
            .await
            .get(&("default".to_owned(), "strict".to_owned(), "cancelled")),
        Some(&1)
    );

    let parent = running(&store, "lenient", at(4)).await;
    let kid = children(&store, &parent, &["c-lenient"], DepPolicy::Run, at(4)).await[0];
    run_child(&store, kid, "c-lenient", discarded(), at(5)).await;
    assert_eq!(get(&store, parent.id).await.cancel_requested_at, None);
    assert_eq!(
        wait(&store, &parent, json!(2), at(6)).await.state,
        JobState::Completed
    );
}

/// Waiting with every child already finished, or with none at all, completes at once.
pub async fn nothing_pending_completes_at_once<S: Store>(store: Arc<S>) {
    let parent = running(&store, "quick", t0()).await;
    let kid = children(&store, &parent, &["c-quick"], DepPolicy::Cancel, at(1)).await[0];
    run_child(&store, kid, "c-quick", done(), at(2)).await;
    let finished = wait(&store, &parent, json!("r"), at(3)).await;
    assert_eq!(finished.state, JobState::Completed);
    let row = get(&store, parent.id).await;
    assert_eq!(
        (row.result, row.finished_at),
        (Some(json!("r")), Some(at(3)))
    );

    let lone = running(&store, "lone", at(4)).await;
    assert_eq!(
        wait(&store, &lone, json!(0), at(5)).await.state,
        JobState::Completed
    );
    assert_eq!(store.job_children(lone.id).await.unwrap(), None);
}

/// A stale fence writes nothing (no child, no count) and a wait under it changes nothing;
/// an empty list and a bad job are refused naming the field.
pub async fn stale_fence_and_bad_input_write_nothing<S: Store>(store: Arc<S>) {
    let parent = running(&store, "guarded", t0()).await;
    let mut stale = parent.clone();
    stale.fence += 1;
    let before = all_jobs(&store).await.len();
    let refused = store
        .job_children_insert(params(&stale, vec![job("c")], DepPolicy::Cancel, at(1)))
        .await
        .expect("job_children_insert");
    assert!(refused.is_none());
    assert_eq!(all_jobs(&store).await.len(), before, "nothing was written");
    assert_eq!(store.job_children(parent.id).await.unwrap(), None);
    let waited = store
        .job_wait_children(WaitChildrenParams {
            id: parent.id,
            fence: stale.fence,
            result: None,
            now: at(1),
        })
        .await
        .expect("job_wait_children");
    assert!(waited.is_none());
    assert_eq!(get(&store, parent.id).await.state, JobState::Running);

    expect_invalid(
        store
            .job_children_insert(params(&parent, Vec::new(), DepPolicy::Cancel, at(1)))
            .await,
        "jobs",
    );
    expect_invalid(
        store
            .job_children_insert(params(
                &parent,
                vec![job("ok"), job("")],
                DepPolicy::Cancel,
                at(1),
            ))
            .await,
        "jobs[1].kind",
    );
    assert_eq!(all_jobs(&store).await.len(), before, "nothing was written");
}

/// A child deleted while its parent waits resolves its edge: under `run` the parent
/// completes, under `cancel` it ends cancelled. Nobody waits for a job that is gone.
pub async fn deleted_child_never_strands_the_parent<S: Store>(store: Arc<S>) {
    for (policy, expected) in [
        (DepPolicy::Run, JobState::Completed),
        (DepPolicy::Cancel, JobState::Cancelled),
    ] {
        let kind = format!("p-{policy}");
        let parent = running(&store, &kind, t0()).await;
        let kid = children(&store, &parent, &["doomed"], policy, at(1)).await[0];
        wait(&store, &parent, json!(1), at(2)).await;
        store.job_delete(kid).await.expect("job_delete");
        assert_eq!(get(&store, parent.id).await.state, expected, "{policy}");
    }
}

/// A worker lost while its parent ran: the rescued parent runs again (its children are still
/// counted), waits, and completes with its last child.
pub async fn rescued_parent_still_waits<S: Store>(store: Arc<S>) {
    let parent = running(&store, "fragile", t0()).await;
    let kid = children(&store, &parent, &["c-fragile"], DepPolicy::Cancel, at(1)).await[0];
    let lost = Outcome::Retry {
        error: attempt_error(1, at(2), "worker lost"),
        run_at: at(2),
    };
    assert_eq!(
        rescue(&store, parent.id, parent.fence, lost, at(2)).await,
        vec![parent.id]
    );
    let again = claim_exactly(&store, "default", "fragile", parent.id, at(3)).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(
        wait(&store, &again, json!("second"), at(4)).await.state,
        JobState::Blocked
    );
    run_child(&store, kid, "c-fragile", done(), at(5)).await;
    let row = get(&store, parent.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, Some(json!("second")));
}

/// Nested parents: a grandparent waits for a parent that waits for a child; the child's
/// completion completes both, in its one transaction. A duplicate child (same idempotency
/// key) is waited for once.
pub async fn nested_parents_complete_together<S: Store>(store: Arc<S>) {
    let grand = running(&store, "grand", t0()).await;
    let parent_id = children(&store, &grand, &["mid"], DepPolicy::Cancel, at(1)).await[0];
    let parent = claim_exactly(&store, "default", "mid", parent_id, at(2)).await;
    let mut leaf = job("leaf");
    leaf.unique_key = Some("only-once".to_owned());
    let first = store
        .job_children_insert(params(
            &parent,
            vec![leaf.clone()],
            DepPolicy::Cancel,
            at(3),
        ))
        .await
        .unwrap()
        .unwrap();
    let again = store
        .job_children_insert(params(&parent, vec![leaf], DepPolicy::Cancel, at(3)))
        .await
        .unwrap()
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(
        pending(&store, parent.id).await,
        1,
        "a duplicate is waited for once"
    );
    assert_eq!(
        wait(&store, &parent, json!("mid"), at(4)).await.state,
        JobState::Blocked
    );
    assert_eq!(
        wait(&store, &grand, json!("grand"), at(5)).await.state,
        JobState::Blocked
    );
    run_child(&store, first[0].id, "leaf", done(), at(6)).await;
    assert_eq!(get(&store, parent.id).await.state, JobState::Completed);
    let grand_row = get(&store, grand.id).await;
    assert_eq!(grand_row.state, JobState::Completed);
    assert_eq!(grand_row.finished_at, Some(at(6)));
}
