//! Two stores opened on one database, as two processes sharing it: the guarantees that hold
//! "across every process".
//!
//! These take two handles on the same, freshly migrated database, so [`conformance_tests!`]
//! cannot make them from its one-store factory: each store's own tests call them, opening the
//! second handle the way a second process would.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker_core::{
    JobId, JobInsert, JobInsertParams, LeaderElectParams, QueueParams, Store, StoreEvent,
    QUEUE_DEFAULT,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Barrier;

use crate::fixture::{all_jobs, at, claim_ids, claim_params, insert, job, job_in, t0};

/// Claimers on both handles race over 4,000 jobs: every job is claimed exactly once.
pub async fn claims_exactly_once<S: Store>(a: Arc<S>, b: Arc<S>) {
    const JOBS: usize = 4_000;
    let jobs: Vec<JobInsert> = (0..JOBS)
        .map(|i| JobInsert::new("shared", json!({"i": i})))
        .collect();
    let inserted: HashSet<JobId> = insert(&a, jobs, t0()).await.into_iter().collect();

    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                let worker = format!("claimer-{n}");
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .job_claim(claim_params(QUEUE_DEFAULT, 50, &worker, at(1)))
                        .await
                        .unwrap_or_else(|err| panic!("{worker}: claim failed: {err}"));
                    if batch.is_empty() {
                        break mine;
                    }
                    mine.extend(batch.iter().map(|row| row.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.expect("claimer panicked") {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen, inserted);
}

/// Candidates on both handles race at the same instant: exactly one leads, and both handles
/// agree who.
pub async fn leader_exclusive<S: Store>(a: Arc<S>, b: Arc<S>) {
    for round in 0..3 {
        let now = at(round * 100);
        let barrier = Arc::new(Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let leader_id = format!("candidate-{round}-{n}");
                    let params = LeaderElectParams {
                        leader_id: leader_id.clone(),
                        now,
                        ttl: Duration::from_secs(30),
                    };
                    barrier.wait().await;
                    let won = store
                        .leader_attempt_elect(params)
                        .await
                        .expect("leader_attempt_elect");
                    won.then_some(leader_id)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.expect("candidate panicked"));
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one leader, got {winners:?}"
        );
        for store in [&a, &b] {
            let leader = store
                .leader_get(now)
                .await
                .expect("leader_get")
                .expect("a leader");
            assert_eq!(leader.leader_id, winners[0]);
        }
    }
}

/// Inserts of one idempotency key racing on both handles make one job.
pub async fn unique_key_race<S: Store>(a: Arc<S>, b: Arc<S>) {
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut job = job("race");
                job.unique_key = Some("only-once".into());
                barrier.wait().await;
                store
                    .job_insert_many(JobInsertParams::new(vec![job], t0()))
                    .await
                    .unwrap_or_else(|err| panic!("task {n}: a racing insert must not fail: {err}"))
                    [0]
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("insert task panicked"));
    }
    assert_eq!(
        results.iter().filter(|r| !r.duplicate).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().map(|r| r.id).collect::<HashSet<_>>().len(),
        1,
        "{results:?}"
    );
    assert_eq!(all_jobs(&b).await.len(), 1);
}

/// A queue paused through one handle yields nothing to claims through the other, until it is
/// resumed through either.
pub async fn pause_seen_by_other<S: Store>(a: Arc<S>, b: Arc<S>) {
    let ids = insert(
        &a,
        vec![job_in("mail", "send"), job_in("mail", "send")],
        t0(),
    )
    .await;
    let queue = |secs| QueueParams {
        queue: "mail".into(),
        now: at(secs),
    };
    a.queue_pause(queue(1)).await.expect("queue_pause");
    assert!(claim_ids(&b, "mail", 10, at(2)).await.is_empty());
    assert_eq!(
        b.queue_list().await.expect("queue_list"),
        a.queue_list().await.expect("queue_list")
    );
    b.queue_resume(queue(3)).await.expect("queue_resume");
    assert_eq!(claim_ids(&a, "mail", 10, at(4)).await, ids);
}

/// With [`Capabilities::cross_process_events`](stoker_core::Capabilities), an insert through
/// one handle wakes a subscriber of the other; skipped, with the reason printed, for a store
/// whose events stay in-process.
///
/// The other handle may still be starting to listen when the first insert notifies: a store
/// says so with [`StoreEvent::Resync`] (events before it may be lost), and the behaviour then
/// inserts again, as a worker re-checks on `Resync`.
pub async fn events_cross_process<S: Store>(a: Arc<S>, b: Arc<S>) {
    if !a.capabilities().cross_process_events {
        eprintln!(
            "skipped shared::events_cross_process: the {} store's events stay in-process",
            a.name()
        );
        return;
    }
    let mut events = b
        .subscribe()
        .expect("a store with cross-process events can subscribe");
    let wait = async {
        let mut inserts = 0;
        loop {
            insert(&a, vec![job_in("cross", "k")], at(inserts)).await;
            inserts += 1;
            loop {
                match events.recv().await {
                    Ok(StoreEvent::JobsAvailable { queue }) if queue == "cross" => return,
                    Ok(StoreEvent::Resync) | Err(RecvError::Lagged(_)) => break,
                    Ok(_) => continue,
                    Err(RecvError::Closed) => panic!("the event channel closed"),
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("JobsAvailable from the other handle within 5 s");
}
