//! [`Store::job_claim`]: order, due times, limits, filters and concurrent claimers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker_core::{JobId, JobInsert, JobState, Outcome, Priority, Store, QUEUE_DEFAULT};

use crate::fixture::{
    all_jobs, at, attempt_error, claim, claim_exactly, claim_ids, claim_params, finish, get,
    insert, job, job_in, stage, stats, t0,
};

/// Higher priority first, then earlier `run_at`, then lower id.
pub async fn orders_by_priority_run_at_id<S: Store>(store: Arc<S>) {
    let scheduled = |priority: Priority, run_at: i64| {
        let mut job = job("ordered");
        job.priority = priority;
        job.run_at = Some(at(run_at));
        job
    };
    let ids = insert(
        &store,
        vec![
            scheduled(Priority::NORMAL, -10), // a
            scheduled(Priority::HIGH, 0),     // b
            scheduled(Priority::NORMAL, -20), // c
            scheduled(Priority::NORMAL, -10), // d: same as a, inserted later
            scheduled(Priority::LOW, -30),    // e
            scheduled(Priority::CRITICAL, 0), // f
        ],
        at(-60),
    )
    .await;
    let [a, b, c, d, e, f] = ids[..] else {
        unreachable!()
    };

    assert_eq!(stage(&store, t0()).await, 6, "all six are due");
    let mut first_two = claim_ids(&store, QUEUE_DEFAULT, 2, t0()).await;
    first_two.sort();
    let mut expected = vec![b, f];
    expected.sort();
    assert_eq!(
        first_two, expected,
        "the two highest priorities are taken first"
    );

    for (step, want) in [c, a, d, e].into_iter().enumerate() {
        let got = claim_ids(&store, QUEUE_DEFAULT, 1, t0()).await;
        assert_eq!(got, vec![want], "claim {step} after the first two");
    }
    assert!(claim_ids(&store, QUEUE_DEFAULT, 1, t0()).await.is_empty());
}

/// A job inserted with a future `run_at` waits in the schedule: it is `available` all along,
/// but no claim takes it until `now` reaches its `run_at` and a stage has run since; staging
/// moves nothing early. A job inserted due (no `run_at`, or one not after the insert's `now`)
/// is claimable at once.
pub async fn future_run_at_waits<S: Store>(store: Arc<S>) {
    let mut later = job("later");
    later.run_at = Some(at(60));
    let mut due = job("due");
    due.run_at = Some(t0());
    let ids = insert(&store, vec![later, due, job("now")], t0()).await;
    let id = ids[0];

    let mut now = claim_ids(&store, QUEUE_DEFAULT, 10, t0()).await;
    now.sort();
    assert_eq!(
        now,
        vec![ids[1], ids[2]],
        "due at insert: claimable at once"
    );
    assert_eq!(stage(&store, at(59)).await, 0, "nothing is due at 59 s");
    assert!(claim_ids(&store, QUEUE_DEFAULT, 10, at(59))
        .await
        .is_empty());
    assert_eq!(get(&store, id).await.state, JobState::Available);
    assert!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(61))
            .await
            .is_empty(),
        "due but not staged yet"
    );
    assert_eq!(stage(&store, at(60)).await, 1, "due at 60 s");
    assert_eq!(stage(&store, at(60)).await, 0, "staged once");
    assert_eq!(get(&store, id).await.state, JobState::Available);
    assert_eq!(
        claim_ids(&store, QUEUE_DEFAULT, 10, at(60)).await,
        vec![id],
        "run_at <= now is due once staged"
    );
}

/// Never more than `limit` jobs per claim.
pub async fn limit_respected<S: Store>(store: Arc<S>) {
    insert(&store, (0..10).map(|_| job("limited")).collect(), t0()).await;

    assert!(
        claim_ids(&store, QUEUE_DEFAULT, 0, t0()).await.is_empty(),
        "limit 0 claims nothing"
    );
    let sizes: Vec<usize> = {
        let mut sizes = Vec::new();
        for _ in 0..5 {
            sizes.push(claim_ids(&store, QUEUE_DEFAULT, 3, t0()).await.len());
        }
        sizes
    };
    assert_eq!(sizes, vec![3, 3, 3, 1, 0]);
}

/// A claimed job is `running`, `attempt + 1`, `attempted_at = now`, `worker_id` set; the
/// returned row is the stored row.
pub async fn sets_running_fields<S: Store>(store: Arc<S>) {
    let id = insert(&store, vec![job("work")], t0()).await[0];
    let before = get(&store, id).await;

    let claimed = claim(&store, QUEUE_DEFAULT, 5, "worker-7", at(5)).await;
    assert_eq!(claimed.len(), 1);
    let row = &claimed[0];
    assert_eq!(row.id, id);
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, 1);
    assert_eq!(row.attempted_at, Some(at(5)));
    assert_eq!(row.worker_id.as_deref(), Some("worker-7"));
    assert_eq!(row.run_at, before.run_at, "claiming leaves run_at alone");
    assert_eq!(row.created_at, before.created_at);
    assert_eq!(row.args, before.args);
    assert_eq!(row.finished_at, None);
    assert_eq!(row.lease_expires_at, None, "no lease was asked for");
    assert_eq!(
        &get(&store, id).await,
        row,
        "the returned row is what the store holds"
    );
}

/// A claim with a lease gives every job it takes `lease_expires_at = now + lease`; a claim
/// without one leaves it `None`, also for a job that was leased before.
pub async fn lease_sets_expiry<S: Store>(store: Arc<S>) {
    let ids = insert(&store, (0..3).map(|_| job("leased")).collect(), t0()).await;
    let mut params = claim_params(QUEUE_DEFAULT, 2, "pull:alpha", at(5));
    params.lease = Some(Duration::from_secs(30));
    let claimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(ids_of(&claimed), vec![ids[0], ids[1]]);
    for row in &claimed {
        assert_eq!(row.state, JobState::Running);
        assert_eq!(row.worker_id.as_deref(), Some("pull:alpha"));
        assert_eq!(row.attempted_at, Some(at(5)));
        assert_eq!(row.lease_expires_at, Some(at(35)));
        assert_eq!(&get(&store, row.id).await, row, "the lease is stored");
    }

    let mut params = claim_params(QUEUE_DEFAULT, 1, "pull:beta", at(6));
    params.lease = Some(Duration::from_millis(1500));
    let short = store.job_claim(params).await.expect("job_claim");
    assert_eq!(ids_of(&short), vec![ids[2]]);
    assert_eq!(
        short[0].lease_expires_at,
        Some(at(6) + chrono::Duration::milliseconds(1500)),
        "sub-second leases keep their milliseconds"
    );

    // Handed back unrun, then claimed again without a lease: no lease is left over.
    finish(&store, ids[0], 1, Outcome::HandBack, at(7)).await;
    let again = claim(&store, QUEUE_DEFAULT, 1, "w1", at(8)).await;
    assert_eq!(ids_of(&again), vec![ids[0]]);
    assert_eq!(again[0].lease_expires_at, None);
}

fn ids_of(rows: &[stoker_core::JobRow]) -> Vec<JobId> {
    let mut ids: Vec<JobId> = rows.iter().map(|row| row.id).collect();
    ids.sort();
    ids
}

/// Only the given kinds are claimed; others stay available.
pub async fn kinds_filter<S: Store>(store: Arc<S>) {
    let ids = insert(&store, vec![job("a"), job("b"), job("c"), job("a")], t0()).await;
    let mut params = claim_params(QUEUE_DEFAULT, 10, "w1", t0());
    params.kinds = vec!["a".into(), "c".into()];
    let mut claimed: Vec<JobId> = store
        .job_claim(params)
        .await
        .expect("job_claim")
        .iter()
        .map(|row| row.id)
        .collect();
    claimed.sort();
    assert_eq!(claimed, vec![ids[0], ids[2], ids[3]]);
    assert_eq!(get(&store, ids[1]).await.state, JobState::Available);
}

/// A claim takes jobs from its own queue only.
pub async fn other_queues_untouched<S: Store>(store: Arc<S>) {
    let ids = insert(
        &store,
        vec![
            job_in("q1", "k"),
            job_in("q2", "k"),
            job_in("q1", "k"),
            job("k"),
        ],
        t0(),
    )
    .await;
    assert_eq!(
        claim_ids(&store, "q1", 10, t0()).await,
        vec![ids[0], ids[2]]
    );
    for id in [ids[1], ids[3]] {
        let row = get(&store, id).await;
        assert_eq!(row.state, JobState::Available);
        assert_eq!(row.attempt, 0);
    }
    assert_eq!(claim_ids(&store, "q2", 10, t0()).await, vec![ids[1]]);
}

/// A `retryable` job is claimed once its backoff `run_at` passes, as attempt 2.
pub async fn retryable_due_claimed<S: Store>(store: Arc<S>) {
    let row = crate::fixture::running(&store, "flaky", t0()).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(1), "boom"),
        run_at: at(30),
    };
    assert_eq!(finish(&store, row.id, 1, retry, at(1)).await, vec![row.id]);

    assert!(claim_ids(&store, QUEUE_DEFAULT, 10, at(29))
        .await
        .is_empty());
    let again = claim_exactly(&store, QUEUE_DEFAULT, "flaky", row.id, at(30)).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(again.attempted_at, Some(at(30)));
    assert_eq!(again.errors.len(), 1, "the history survives the claim");
}

/// 8 claimers race over 10,000 jobs in batches of 50: each job is claimed exactly once.
pub async fn concurrent_claimers_10000<S: Store>(store: Arc<S>) {
    const JOBS: usize = 10_000;
    const CLAIMERS: usize = 8;
    let jobs: Vec<JobInsert> = (0..JOBS)
        .map(|i| JobInsert::new("race", json!({"i": i})))
        .collect();
    let inserted: HashSet<JobId> = insert(&store, jobs, t0()).await.into_iter().collect();

    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = Arc::clone(&store);
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
                    assert!(batch.len() <= 50);
                    for row in batch {
                        assert_eq!(row.worker_id.as_deref(), Some(worker.as_str()));
                        assert_eq!(row.attempt, 1, "job {} claimed twice", row.id);
                        mine.push(row.id);
                    }
                }
            })
        })
        .collect();

    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for id in task.await.expect("claimer panicked") {
            total += 1;
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(total, JOBS);
    assert_eq!(seen, inserted, "every inserted job was claimed");
    assert!(claim_ids(&store, QUEUE_DEFAULT, 50, at(2)).await.is_empty());
    assert_eq!(
        stats(&store).await,
        crate::fixture::expected_stats(&[(QUEUE_DEFAULT, "race", JobState::Running, JOBS as i64)])
    );
    assert!(all_jobs(&store)
        .await
        .iter()
        .all(|row| row.state == JobState::Running));
}
