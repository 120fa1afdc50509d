//! Workers and rescue: heartbeats, leases, stuck jobs of silent or vanished workers and of
//! lapsed leases, and the worker registry.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stoker_core::{
    AttemptError, ErrorKind, JobCancelParams, JobId, JobInsert, JobLeaseParams, JobRow, JobState,
    JobStuckParams, LeaderElectParams, LeaseExtended, Outcome, QueueParams, Store, WorkerDetails,
    WorkerHeartbeatParams, WorkerHeartbeatReply, WorkerRow, QUEUE_DEFAULT,
};

use crate::fixture::{
    at, attempt_error, claim, claim_params, finish, get, ids, insert, job, job_in, running_leased,
    stage, t0,
};

fn heartbeat(id: &str, now: DateTime<Utc>) -> WorkerHeartbeatParams {
    WorkerHeartbeatParams {
        details: Default::default(),
        id: id.to_owned(),
        host: "host-1".into(),
        pid: 4242,
        queues: vec!["default".into(), "mail".into()],
        concurrency: 16,
        started_at: t0(),
        done_delta: 0,
        failed_delta: 0,
        running: Vec::new(),
        now,
    }
}

async fn beat<S: Store>(store: &Arc<S>, id: &str, now: DateTime<Utc>) {
    let reply = store
        .worker_heartbeat(heartbeat(id, now))
        .await
        .expect("worker_heartbeat");
    assert!(reply.cancel_requested.is_empty());
}

/// The stuck jobs with heartbeats older than `stale_before` and leases ended by `now`.
async fn stuck<S: Store>(
    store: &Arc<S>,
    stale_before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u32,
) -> Vec<JobId> {
    let rows = store
        .job_list_stuck(JobStuckParams {
            stale_before,
            now,
            limit,
        })
        .await
        .expect("job_list_stuck");
    assert!(rows.iter().all(|row| row.state == JobState::Running));
    ids(&rows)
}

/// Extends the lease of the claim `fence` of job `id` by `secs` seconds from `now`.
pub(crate) async fn extend<S: Store>(
    store: &Arc<S>,
    id: JobId,
    fence: i64,
    secs: u64,
    now: DateTime<Utc>,
) -> Option<LeaseExtended> {
    store
        .job_extend_lease(JobLeaseParams {
            id,
            fence,
            lease: Duration::from_secs(secs),
            now,
        })
        .await
        .expect("job_extend_lease")
}

/// Claims job `id` (which must be the only due job of its kind) again for `worker` at `now`
/// with a 30-second lease, and returns the running row.
async fn running_again<S: Store>(
    store: &Arc<S>,
    id: JobId,
    worker: &str,
    now: DateTime<Utc>,
) -> JobRow {
    let row = get(store, id).await;
    let mut params = claim_params(&row.queue, 1, worker, now);
    params.kinds = vec![row.kind.clone()];
    params.lease = Some(Duration::from_secs(30));
    let claimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(ids(&claimed), vec![id]);
    claimed.into_iter().next().expect("one row")
}

/// Claims exactly one job for `worker` at `now`, and returns its id.
async fn claim_one<S: Store>(store: &Arc<S>, worker: &str, now: DateTime<Utc>) -> JobId {
    let claimed = claim(store, QUEUE_DEFAULT, 1, worker, now).await;
    assert_eq!(claimed.len(), 1);
    claimed[0].id
}

/// The first heartbeat creates the worker's row; later ones move `heartbeat_at` and add their
/// counter deltas.
pub async fn heartbeat_creates_and_updates<S: Store>(store: Arc<S>) {
    let reported = WorkerDetails {
        version: Some("1.2.3".into()),
        stopping: false,
        // The store fills it from the heartbeat's own list.
        running: vec![JobId(999)],
        run_ms_total: 1500,
        rss_bytes: Some(1 << 20),
        cpu_ms: Some(250),
        // --- stream tenant ---
        // A worker bound to a tenant (issue 17) keeps it in its row.
        tenant: Some("acme".into()),
    };
    let first = WorkerHeartbeatParams {
        details: reported.clone(),
        done_delta: 3,
        failed_delta: 1,
        ..heartbeat("w1", at(10))
    };
    assert_eq!(
        store
            .worker_heartbeat(first)
            .await
            .expect("worker_heartbeat"),
        WorkerHeartbeatReply {
            leader_vacant: true,
            ..WorkerHeartbeatReply::default()
        },
        "no running jobs, no jobs at all, no leader"
    );
    let expected = WorkerRow {
        id: "w1".into(),
        host: "host-1".into(),
        pid: 4242,
        queues: vec!["default".into(), "mail".into()],
        concurrency: 16,
        started_at: t0(),
        heartbeat_at: at(10),
        jobs_done: 3,
        jobs_failed: 1,
        details: Some(WorkerDetails {
            running: Vec::new(),
            ..reported
        }),
    };
    assert_eq!(
        store.worker_list().await.expect("worker_list"),
        vec![expected.clone()]
    );

    let second = WorkerHeartbeatParams {
        details: Default::default(),
        done_delta: 2,
        failed_delta: 0,
        ..heartbeat("w1", at(20))
    };
    store
        .worker_heartbeat(second)
        .await
        .expect("worker_heartbeat");
    let third = WorkerHeartbeatParams {
        details: WorkerDetails {
            stopping: true,
            ..WorkerDetails::default()
        },
        done_delta: 0,
        failed_delta: 4,
        ..heartbeat("w1", at(30))
    };
    store
        .worker_heartbeat(third)
        .await
        .expect("worker_heartbeat");
    assert_eq!(
        store.worker_list().await.expect("worker_list"),
        vec![WorkerRow {
            heartbeat_at: at(30),
            jobs_done: 5,
            jobs_failed: 5,
            details: Some(WorkerDetails {
                stopping: true,
                ..WorkerDetails::default()
            }),
            ..expected
        }]
    );
}

/// Running jobs of a worker whose heartbeat is older than `stale_before`, and of a worker with
/// no row, are stuck (oldest attempt first, at most `limit`); a fresh worker's are not.
pub async fn stuck_jobs_of_silent_and_missing_workers<S: Store>(store: Arc<S>) {
    insert(&store, (0..4).map(|_| job("work")).collect(), t0()).await;
    beat(&store, "silent", t0()).await;
    beat(&store, "fresh", t0()).await;
    let silent_job = claim_one(&store, "silent", at(1)).await;
    let fresh_job = claim_one(&store, "fresh", at(2)).await;
    let ghost_job = claim_one(&store, "ghost", at(3)).await;
    beat(&store, "fresh", at(50)).await;

    // Without leases, `now` plays no part: only heartbeats (and missing rows) count.
    for now in [at(0), at(60), at(100_000)] {
        assert_eq!(
            stuck(&store, at(30), now, 10).await,
            vec![silent_job, ghost_job]
        );
        assert_eq!(
            stuck(&store, at(30), now, 1).await,
            vec![silent_job],
            "limit applies"
        );
        assert!(!stuck(&store, at(30), now, 10).await.contains(&fresh_job));
        assert_eq!(
            stuck(&store, at(0), now, 10).await,
            vec![ghost_job],
            "with every heartbeat fresh, only the job of the worker with no row is stuck"
        );
        assert_eq!(
            stuck(&store, at(60), now, 10).await,
            vec![silent_job, fresh_job, ghost_job]
        );
    }
    assert!(
        stuck(&store, at(30), at(30), 0).await.is_empty(),
        "limit 0 lists nothing"
    );
}

/// A leased job is stuck once its lease ends (at `now` >= `lease_expires_at`), whatever its
/// worker's row says: a pull worker with no row is not stuck before then, and a fresh row does
/// not save a lapsed lease. Jobs without a lease keep the heartbeat rule, and both kinds come
/// out together, oldest attempt first.
pub async fn stuck_leased_jobs_when_lease_ends<S: Store>(store: Arc<S>) {
    beat(&store, "fresh", t0()).await;
    beat(&store, "silent", t0()).await;
    // A pull worker with no row; a leased job of a worker with a fresh row; one of a worker
    // whose row goes silent; a job without a lease of a worker with no row.
    let pull = running_leased(&store, job_in("pull", "k"), "pull:alpha", 30, at(1)).await;
    let fresh = running_leased(&store, job_in("fresh", "k"), "fresh", 10, at(2)).await;
    let silent = running_leased(&store, job_in("silent", "k"), "silent", 50, at(3)).await;
    insert(&store, vec![job_in("ghost", "k")], at(4)).await;
    let ghost = claim(&store, "ghost", 1, "ghost", at(4)).await[0].id;
    assert_eq!(pull.lease_expires_at, Some(at(31)));
    assert_eq!(fresh.lease_expires_at, Some(at(12)));
    assert_eq!(silent.lease_expires_at, Some(at(53)));
    beat(&store, "fresh", at(100)).await;

    // Every heartbeat counts as fresh (stale_before at 0) or as silent (at 1,000).
    for stale_before in [at(0), at(1000)] {
        let cases = [
            (at(5), vec![]),
            (at(11), vec![]),
            (at(12), vec![fresh.id]),
            (at(30), vec![fresh.id]),
            (at(31), vec![pull.id, fresh.id]),
            (at(52), vec![pull.id, fresh.id]),
            (at(53), vec![pull.id, fresh.id, silent.id]),
        ];
        for (now, leased) in cases {
            // The job without a lease of the worker with no row is stuck throughout.
            let expected: Vec<JobId> = leased.into_iter().chain([ghost]).collect();
            assert_eq!(
                stuck(&store, stale_before, now, 10).await,
                expected,
                "stale_before {stale_before}, now {now}"
            );
        }
    }
    assert_eq!(
        stuck(&store, at(1000), at(1000), 2).await,
        vec![pull.id, fresh.id],
        "limit applies across both rules"
    );
}

/// Extending a lease of the running attempt moves `lease_expires_at` to `now + lease` and
/// returns it; the job is then stuck only after the new end.
pub async fn extend_lease_moves_expiry<S: Store>(store: Arc<S>) {
    let held = running_leased(&store, job("held"), "pull:alpha", 30, at(1)).await;
    let other = running_leased(&store, job("other"), "pull:alpha", 30, at(1)).await;
    let extended = extend(&store, held.id, 1, 60, at(20)).await;
    assert_eq!(
        extended,
        Some(LeaseExtended {
            expires_at: at(80),
            cancel_requested: false,
            worker_id: Some("pull:alpha".into()),
        })
    );
    let row = get(&store, held.id).await;
    assert_eq!(row.lease_expires_at, Some(at(80)));
    assert_eq!(
        row,
        JobRow {
            lease_expires_at: Some(at(80)),
            ..held.clone()
        },
        "only the lease moves"
    );
    assert_eq!(
        get(&store, other.id).await,
        other,
        "other jobs keep their lease"
    );
    assert_eq!(stuck(&store, at(0), at(31), 10).await, vec![other.id]);
    assert_eq!(
        stuck(&store, at(0), at(80), 10).await,
        vec![held.id, other.id]
    );

    // A lease may also be shortened; and a job held without a lease can be given one.
    assert_eq!(
        extend(&store, held.id, 1, 5, at(21))
            .await
            .map(|e| e.expires_at),
        Some(at(26))
    );
    insert(&store, vec![job("plain")], t0()).await;
    let mut params = claim_params(QUEUE_DEFAULT, 1, "w1", at(2));
    params.kinds = vec!["plain".into()];
    let plain = store.job_claim(params).await.expect("job_claim").remove(0);
    assert_eq!(plain.lease_expires_at, None);
    assert_eq!(
        extend(&store, plain.id, 1, 10, at(3))
            .await
            .map(|e| e.expires_at),
        Some(at(13))
    );
}

/// Extending is fenced like a finish: a wrong attempt, a job that is not running (waiting,
/// finished, rescued, claimed again by another) or an unknown job gets `None`, and nothing
/// changes.
pub async fn extend_lease_fenced<S: Store>(store: Arc<S>) {
    let held = running_leased(&store, job("held"), "pull:alpha", 30, at(1)).await;
    for attempt in [0, 2] {
        assert_eq!(extend(&store, held.id, attempt, 60, at(10)).await, None);
    }
    assert_eq!(
        get(&store, held.id).await,
        held,
        "a wrong attempt changes nothing"
    );

    let waiting = insert(&store, vec![job("waiting")], t0()).await[0];
    let before = get(&store, waiting).await;
    assert_eq!(extend(&store, waiting, 0, 60, at(10)).await, None);
    assert_eq!(extend(&store, waiting, 1, 60, at(10)).await, None);
    assert_eq!(get(&store, waiting).await, before);
    assert_eq!(
        extend(&store, crate::fixture::UNKNOWN_ID, 1, 60, at(10)).await,
        None
    );

    let done = running_leased(&store, job("done"), "pull:alpha", 30, at(1)).await;
    let completed = Outcome::Completed { result: None };
    assert_eq!(
        finish(&store, done.id, 1, completed, at(5)).await,
        vec![done.id]
    );
    let finished = get(&store, done.id).await;
    assert_eq!(extend(&store, done.id, 1, 60, at(10)).await, None);
    assert_eq!(get(&store, done.id).await, finished);
    assert_eq!(finished.lease_expires_at, None);

    // The lease lapses and the rescuer retries the job: the old holder's extension is refused,
    // before and after another worker claims it again.
    assert_eq!(stuck(&store, at(0), at(31), 10).await, vec![held.id]);
    let lost = Outcome::Retry {
        error: AttemptError {
            kind: ErrorKind::WorkerLost,
            ..attempt_error(1, at(31), "the lease of pull:alpha lapsed")
        },
        run_at: at(31),
    };
    assert_eq!(
        crate::fixture::rescue(&store, held.id, 1, lost, at(31)).await,
        vec![held.id]
    );
    let rescued = get(&store, held.id).await;
    assert_eq!(rescued.state, JobState::Retryable);
    assert_eq!(rescued.lease_expires_at, None);
    assert_eq!(extend(&store, held.id, 1, 60, at(32)).await, None);
    assert_eq!(get(&store, held.id).await, rescued);

    let again = running_again(&store, held.id, "pull:beta", at(40)).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(again.lease_expires_at, Some(at(70)));
    assert_eq!(extend(&store, held.id, 1, 60, at(41)).await, None);
    assert_eq!(
        get(&store, held.id).await,
        again,
        "the new attempt's lease is untouched"
    );
    assert_eq!(
        extend(&store, held.id, 2, 60, at(41))
            .await
            .map(|e| e.expires_at),
        Some(at(101))
    );
}

/// Extending tells the holder when a cancel was requested (and still extends, so the holder
/// has time to stop and report it).
pub async fn extend_lease_reports_cancel_requested<S: Store>(store: Arc<S>) {
    let held = running_leased(&store, job("held"), "pull:alpha", 30, at(1)).await;
    assert_eq!(
        extend(&store, held.id, 1, 30, at(5)).await,
        Some(LeaseExtended {
            expires_at: at(35),
            cancel_requested: false,
            worker_id: Some("pull:alpha".into()),
        })
    );
    store
        .job_cancel(JobCancelParams {
            id: held.id,
            now: at(6),
        })
        .await
        .expect("job_cancel");
    assert_eq!(
        extend(&store, held.id, 1, 30, at(7)).await,
        Some(LeaseExtended {
            expires_at: at(37),
            cancel_requested: true,
            worker_id: Some("pull:alpha".into()),
        })
    );
    let row = get(&store, held.id).await;
    assert_eq!(row.lease_expires_at, Some(at(37)));
    assert_eq!(row.cancel_requested_at, Some(at(6)));
    assert_eq!(row.state, JobState::Running);
}

/// The rescuer finishes a stuck job with its attempt (a `WorkerLost` retry); a late finish
/// from the lost worker, before and after the job is claimed again, is rejected.
pub async fn late_finish_after_rescue_rejected<S: Store>(store: Arc<S>) {
    insert(&store, vec![job("work")], t0()).await;
    beat(&store, "lost", t0()).await;
    let id = claim_one(&store, "lost", at(1)).await;

    let stuck_rows = store
        .job_list_stuck(JobStuckParams {
            stale_before: at(30),
            now: at(31),
            limit: 10,
        })
        .await
        .expect("job_list_stuck");
    assert_eq!(ids(&stuck_rows), vec![id]);
    let row = &stuck_rows[0];
    let error = AttemptError {
        attempt: row.attempt,
        at: at(31),
        kind: ErrorKind::WorkerLost,
        message: "worker lost stopped heartbeating".into(),
        backtrace: None,
    };
    let rescue = Outcome::Retry {
        error: error.clone(),
        run_at: at(40),
    };
    assert_eq!(
        finish(&store, id, row.fence, rescue, at(31)).await,
        vec![id]
    );
    let rescued = get(&store, id).await;
    assert_eq!(rescued.state, JobState::Retryable);
    assert_eq!(rescued.errors, vec![error]);
    assert!(
        stuck(&store, at(30), at(31), 10).await.is_empty(),
        "a rescued job is no longer stuck"
    );

    let late = Outcome::Completed {
        result: Some(json!("late")),
    };
    assert!(finish(&store, id, 1, late.clone(), at(35)).await.is_empty());
    assert_eq!(get(&store, id).await, rescued);

    beat(&store, "new", at(40)).await;
    stage(&store, at(40)).await;
    assert_eq!(claim_one(&store, "new", at(40)).await, id);
    let reclaimed = get(&store, id).await;
    assert_eq!(reclaimed.attempt, 2);
    assert!(finish(&store, id, 1, late, at(41)).await.is_empty());
    assert_eq!(get(&store, id).await, reclaimed);
}

/// A heartbeat returns the jobs among `running` with a cancel requested.
pub async fn heartbeat_returns_cancel_requested<S: Store>(store: Arc<S>) {
    insert(&store, (0..4).map(|_| job("work")).collect(), t0()).await;
    let mut running = ids(&claim(&store, QUEUE_DEFAULT, 3, "w1", at(1)).await);
    running.sort();
    let waiting = ids(&crate::fixture::all_jobs(&store).await)
        .into_iter()
        .find(|id| !running.contains(id))
        .expect("one job is waiting");
    for id in [running[1], waiting] {
        store
            .job_cancel(JobCancelParams { id, now: at(2) })
            .await
            .expect("job_cancel");
    }

    let params = WorkerHeartbeatParams {
        details: Default::default(),
        running: running.clone(),
        ..heartbeat("w1", at(3))
    };
    let reply = store
        .worker_heartbeat(params)
        .await
        .expect("worker_heartbeat");
    assert_eq!(reply.cancel_requested, vec![running[1]]);
    let params = WorkerHeartbeatParams {
        details: Default::default(),
        running: vec![running[0], running[2]],
        ..heartbeat("w1", at(4))
    };
    assert!(store
        .worker_heartbeat(params)
        .await
        .expect("worker_heartbeat")
        .cancel_requested
        .is_empty());
}

/// A heartbeat stands in for polling: it names the worker's queues that are not paused and
/// hold a due job (available or retryable, `run_at <= now`, staged), and no others.
pub async fn heartbeat_reports_due_queues<S: Store>(store: Arc<S>) {
    let scheduled = |queue: &str, secs: i64| JobInsert {
        run_at: Some(at(secs)),
        ..job_in(queue, "work")
    };
    insert(
        &store,
        vec![
            scheduled("due", 5),
            scheduled("later", 100),
            scheduled("held", 5),
            scheduled("retrying", 5),
            scheduled("not-mine", 5),
        ],
        t0(),
    )
    .await;
    store
        .queue_pause(QueueParams {
            queue: "held".into(),
            now: at(1),
        })
        .await
        .expect("queue_pause");
    // A retryable job whose backoff has passed is due too.
    stage(&store, at(6)).await;
    let retrying = claim(&store, "retrying", 1, "w0", at(6)).await;
    let error = attempt_error(1, at(7), "boom");
    finish(
        &store,
        retrying[0].id,
        1,
        Outcome::Retry {
            error,
            run_at: at(8),
        },
        at(7),
    )
    .await;

    let mine = ["due", "later", "held", "retrying", "empty"]
        .map(str::to_owned)
        .to_vec();
    let due_at = |secs: i64| {
        let store = Arc::clone(&store);
        let queues = mine.clone();
        async move {
            stage(&store, at(secs)).await;
            let params = WorkerHeartbeatParams {
                details: Default::default(),
                queues,
                ..heartbeat("w1", at(secs))
            };
            let mut due = store
                .worker_heartbeat(params)
                .await
                .expect("worker_heartbeat")
                .due_queues;
            due.sort();
            due
        }
    };
    assert_eq!(due_at(4).await, Vec::<String>::new(), "nothing is due yet");
    assert_eq!(
        due_at(7).await,
        vec!["due".to_owned()],
        "the retry waits for its backoff"
    );
    assert_eq!(
        due_at(10).await,
        vec!["due".to_owned(), "retrying".to_owned()]
    );
    assert_eq!(
        due_at(200).await,
        vec!["due".to_owned(), "later".to_owned(), "retrying".to_owned()]
    );
}

/// `worker_prune` deletes rows with an old heartbeat and counts them; `worker_remove` deletes
/// one row; `worker_list` lists rows by id.
pub async fn worker_prune_remove_list<S: Store>(store: Arc<S>) {
    assert!(store.worker_list().await.expect("worker_list").is_empty());
    beat(&store, "w-c", at(20)).await;
    beat(&store, "w-a", at(0)).await;
    beat(&store, "w-d", at(30)).await;
    beat(&store, "w-b", at(10)).await;
    let listed = |rows: Vec<WorkerRow>| rows.into_iter().map(|row| row.id).collect::<Vec<_>>();
    assert_eq!(
        listed(store.worker_list().await.expect("worker_list")),
        ["w-a", "w-b", "w-c", "w-d"]
    );

    assert_eq!(store.worker_prune(at(15)).await.expect("worker_prune"), 2);
    assert_eq!(
        listed(store.worker_list().await.expect("worker_list")),
        ["w-c", "w-d"]
    );
    assert_eq!(store.worker_prune(at(15)).await.expect("worker_prune"), 0);

    store.worker_remove("w-c").await.expect("worker_remove");
    assert_eq!(
        listed(store.worker_list().await.expect("worker_list")),
        ["w-d"]
    );
    beat(&store, "w-c", at(40)).await;
    assert_eq!(
        listed(store.worker_list().await.expect("worker_list")),
        ["w-c", "w-d"],
        "a removed worker can come back"
    );
}

/// A heartbeat says whether the leader's seat is vacant: no leader, or a term that expired at
/// the heartbeat's `now`.
pub async fn heartbeat_reports_leader_vacancy<S: Store>(store: Arc<S>) {
    let vacant = |secs: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .worker_heartbeat(heartbeat("w2", at(secs)))
                .await
                .expect("worker_heartbeat")
                .leader_vacant
        }
    };
    assert!(vacant(0).await, "nobody has led yet");
    let elected = store
        .leader_attempt_elect(LeaderElectParams {
            leader_id: "w1".into(),
            now: at(1),
            ttl: Duration::from_secs(10),
        })
        .await
        .expect("leader_attempt_elect");
    assert!(elected);
    assert!(!vacant(2).await, "w1 leads");
    assert!(vacant(11).await, "w1's term expired");
    store.leader_resign("w1").await.expect("leader_resign");
    assert!(vacant(3).await, "w1 resigned");
}
