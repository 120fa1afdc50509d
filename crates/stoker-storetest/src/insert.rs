//! [`Store::job_insert_many`]: ids, defaults, options, idempotency keys and bulk inserts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use stoker_core::{
    JobId, JobInsertParams, JobListParams, JobState, Metadata, Priority, Store, QUEUE_DEFAULT,
};
use tokio::sync::Barrier;

use crate::fixture::{all_jobs, at, get, insert, insert_many, job, list, stats, t0};

/// One result per job, in input order; ids are distinct and grow in input order, so a batch
/// runs first in, first out.
pub async fn returns_ids_in_order<S: Store>(store: Arc<S>) {
    let jobs = (0..5)
        .map(|i| stoker_core::JobInsert::new(format!("kind{i}"), json!({"i": i})))
        .collect();
    let ids = insert(&store, jobs, t0()).await;

    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids should grow in input order: {ids:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let row = get(&store, *id).await;
        assert_eq!(
            row.kind,
            format!("kind{i}"),
            "result {i} should be the id of input job {i}"
        );
        assert_eq!(row.args, json!({"i": i}));
    }
}

/// An empty batch inserts nothing and returns nothing.
pub async fn empty_batch_is_noop<S: Store>(store: Arc<S>) {
    let inserted = store
        .job_insert_many(JobInsertParams::new(Vec::new(), t0()))
        .await
        .expect("job_insert_many");
    assert!(inserted.is_empty());
    assert!(all_jobs(&store).await.is_empty());
    assert!(stats(&store).await.is_empty());
}

/// A job with every option at its default is stored with exactly those defaults, run_at = now.
pub async fn defaults_applied<S: Store>(store: Arc<S>) {
    let id = insert(&store, vec![job("email")], at(3)).await[0];
    let row = get(&store, id).await;

    assert_eq!(row.id, id);
    assert_eq!(row.kind, "email");
    assert_eq!(row.queue, QUEUE_DEFAULT);
    assert_eq!(row.args, json!({"kind": "email"}));
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.priority, Priority::NORMAL);
    assert_eq!(row.attempt, 0);
    assert_eq!(row.max_attempts, 5);
    assert_eq!(row.run_at, at(3), "run_at defaults to the insert's now");
    assert_eq!(row.created_at, at(3));
    assert_eq!(row.unique_key, None);
    assert_eq!(row.tenant, None);
    assert_eq!(row.metadata, Metadata::default());
    assert!(row.errors.is_empty());
    assert_eq!(row.result, None);
    assert_eq!(row.progress, None);
    assert_eq!(row.timeout_ms, None);
    assert_eq!(row.attempted_at, None);
    assert_eq!(row.finished_at, None);
    assert_eq!(row.worker_id, None);
    assert_eq!(row.cancel_requested_at, None);
}

/// Every option of [`stoker_core::JobInsert`] comes back unchanged from `job_get`.
pub async fn options_round_trip<S: Store>(store: Arc<S>) {
    let parent = insert(&store, vec![job("parent")], t0()).await[0];
    let args = json!({
        "to": "ada@example.com",
        "nested": {"list": [1, 2.5, "three", null, true], "unicode": "héllo ✓"},
    });
    let mut full = stoker_core::JobInsert::new("send_email", args.clone());
    full.queue = "mail.out:eu-1".into();
    full.priority = Priority(-3);
    full.max_attempts = 12;
    // Microseconds survive; stores keep at least that precision.
    let run_at = at(3600) + chrono::Duration::microseconds(250_007);
    full.run_at = Some(run_at);
    full.unique_key = Some("order-42:welcome".into());
    full.tenant = Some("acme".into());
    full.metadata = Metadata {
        correlation_id: Some("req-7f3a".into()),
        parent_id: Some(parent),
        source: Some("api:checkout".into()),
        tags: vec!["welcome".into(), "eu".into()],
        cron: None,
        on_finish: None,
    };
    full.timeout_ms = Some(30_000);
    let created_at = at(10) + chrono::Duration::microseconds(999_999);
    let id = insert(&store, vec![full.clone()], created_at).await[0];

    let row = get(&store, id).await;
    assert_eq!(row.kind, full.kind);
    assert_eq!(row.queue, full.queue);
    assert_eq!(row.args, args);
    assert_eq!(row.priority, full.priority);
    assert_eq!(row.max_attempts, 12);
    assert_eq!(row.run_at, run_at, "run_at keeps its microseconds");
    assert_eq!(row.unique_key, full.unique_key);
    assert_eq!(row.tenant, full.tenant);
    assert_eq!(row.metadata, full.metadata);
    assert_eq!(row.timeout_ms, Some(30_000));
    assert_eq!(row.created_at, created_at);
    assert_eq!(
        row.state,
        JobState::Available,
        "a scheduled job is available"
    );
    assert_eq!(row.attempt, 0);
    assert_eq!(row.fence, 0, "no claim yet");
    assert_eq!(row.backoff, None);
}

/// A job's own backoff is stored and returned as given, alone and in a bulk insert (with and
/// without keys), next to jobs without one.
pub async fn backoff_round_trip<S: Store>(store: Arc<S>) {
    let backoff = stoker_core::JobBackoff {
        base_seconds: 1.5,
        factor: 3.0,
        max_seconds: 600.0,
        jitter: 0.25,
    };
    let mut own = job("own_backoff");
    own.backoff = Some(backoff);
    let alone = insert(&store, vec![own.clone()], t0()).await[0];
    let mut keyed = own.clone();
    keyed.unique_key = Some("backoff-key".into());
    let bulk = insert(&store, vec![own, job("kind_backoff"), keyed], t0()).await;
    for id in [alone, bulk[0], bulk[2]] {
        assert_eq!(get(&store, id).await.backoff, Some(backoff), "job {id}");
    }
    assert_eq!(get(&store, bulk[1]).await.backoff, None);
}

/// A second insert with the same key returns the first job's id, `duplicate: true`, and
/// writes nothing (also for a job with no tenant).
pub async fn unique_key_returns_existing<S: Store>(store: Arc<S>) {
    for tenant in [None, Some("acme")] {
        let mut first = job("charge");
        first.unique_key = Some("payment-1".into());
        first.tenant = tenant.map(str::to_owned);
        first.args = json!({"n": 1});
        let mut second = first.clone();
        second.args = json!({"n": 2});
        second.priority = Priority::HIGH;

        let a = insert_many(&store, vec![first], t0()).await[0];
        assert!(!a.duplicate, "the first insert of a key is not a duplicate");
        let b = insert_many(&store, vec![second], at(1)).await[0];
        assert!(
            b.duplicate,
            "a second insert of key payment-1 (tenant {tenant:?}) is a duplicate"
        );
        assert_eq!(b.id, a.id, "a duplicate returns the existing job's id");

        let row = get(&store, a.id).await;
        assert_eq!(
            row.args,
            json!({"n": 1}),
            "the existing job is not overwritten"
        );
        assert_eq!(row.priority, Priority::NORMAL);
        assert_eq!(row.created_at, t0());
    }
    let rows = all_jobs(&store).await;
    assert_eq!(rows.len(), 2, "one job per (tenant, key): {rows:?}");
}

/// The same key in two tenants (and with no tenant) makes separate jobs.
pub async fn unique_key_scoped_by_tenant<S: Store>(store: Arc<S>) {
    let keyed = |tenant: Option<&str>| {
        let mut job = job("sync");
        job.unique_key = Some("nightly".into());
        job.tenant = tenant.map(str::to_owned);
        job
    };
    let a = insert_many(&store, vec![keyed(Some("a"))], t0()).await[0];
    let b = insert_many(&store, vec![keyed(Some("b"))], t0()).await[0];
    let none = insert_many(&store, vec![keyed(None)], t0()).await[0];
    assert!(!a.duplicate && !b.duplicate && !none.duplicate);
    assert_ne!(a.id, b.id);
    assert_ne!(a.id, none.id);
    assert_ne!(b.id, none.id);

    let again = insert_many(&store, vec![keyed(Some("b"))], at(1)).await[0];
    assert!(again.duplicate);
    assert_eq!(again.id, b.id);

    for (tenant, id) in [("a", a.id), ("b", b.id)] {
        let rows = list(
            &store,
            JobListParams {
                tenant: Some(tenant.into()),
                ..JobListParams::default()
            },
        )
        .await;
        assert_eq!(crate::fixture::ids(&rows), vec![id]);
    }
    assert_eq!(all_jobs(&store).await.len(), 3);
}

/// The same key twice in one batch: the second is a duplicate of the first.
pub async fn unique_key_twice_in_one_batch<S: Store>(store: Arc<S>) {
    let mut first = job("invoice");
    first.unique_key = Some("inv-9".into());
    first.args = json!({"copy": 1});
    let plain = job("invoice");
    let mut second = first.clone();
    second.args = json!({"copy": 2});

    let inserted = insert_many(&store, vec![first, plain, second], t0()).await;
    assert!(!inserted[0].duplicate);
    assert!(!inserted[1].duplicate);
    assert!(
        inserted[2].duplicate,
        "the second use of inv-9 in the batch is a duplicate"
    );
    assert_eq!(inserted[2].id, inserted[0].id);
    assert_ne!(inserted[1].id, inserted[0].id);

    let rows = all_jobs(&store).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(get(&store, inserted[0].id).await.args, json!({"copy": 1}));
}

/// A batch whose every key is taken inserts nothing and returns the existing ids, in order.
pub async fn bulk_of_taken_keys_only<S: Store>(store: Arc<S>) {
    let keyed = |key: &str| {
        let mut job = job("report");
        job.unique_key = Some(key.into());
        job
    };
    let first = insert(&store, vec![keyed("a"), keyed("b")], t0()).await;
    let again = insert_many(&store, vec![keyed("b"), keyed("a")], at(1)).await;
    assert!(again.iter().all(|job| job.duplicate), "{again:?}");
    assert_eq!(
        again.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![first[1], first[0]],
        "each duplicate carries the id of the job holding its key"
    );
    assert_eq!(all_jobs(&store).await.len(), 2);
}

/// 10,000 jobs in one call: 10,000 distinct ids, growing in input order, all stored.
pub async fn bulk_10000_in_one_call<S: Store>(store: Arc<S>) {
    const COUNT: usize = 10_000;
    let jobs = (0..COUNT)
        .map(|i| stoker_core::JobInsert::new("bulk", json!({"i": i})))
        .collect();
    let ids = insert(&store, jobs, t0()).await;

    assert_eq!(ids.len(), COUNT);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        COUNT,
        "ids are distinct"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids grow in input order"
    );
    for i in [0, 1, 4_999, COUNT - 1] {
        assert_eq!(
            get(&store, ids[i]).await.args,
            json!({"i": i}),
            "result {i} is input {i}"
        );
    }
    let counts = stats(&store).await;
    assert_eq!(
        counts,
        crate::fixture::expected_stats(&[(
            QUEUE_DEFAULT,
            "bulk",
            JobState::Available,
            COUNT as i64
        )])
    );
}

/// Four tasks insert 2,000 jobs each at once: every task's results map to its own inputs, in
/// order, though their ids interleave in the table.
pub async fn bulk_concurrent<S: Store>(store: Arc<S>) {
    const TASKS: usize = 4;
    const COUNT: usize = 2_000;
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let jobs = (0..COUNT)
                    .map(|i| stoker_core::JobInsert::new("bulk", json!({"task": task, "i": i})))
                    .collect();
                barrier.wait().await;
                store
                    .job_insert_many(JobInsertParams::new(jobs, t0()))
                    .await
                    .unwrap_or_else(|err| panic!("task {task}: a concurrent insert failed: {err}"))
            })
        })
        .collect();

    let mut results = Vec::new();
    for handle in tasks {
        results.push(handle.await.expect("insert task panicked"));
    }
    let by_id: HashMap<JobId, serde_json::Value> = all_jobs(&store)
        .await
        .into_iter()
        .map(|row| (row.id, row.args))
        .collect();
    assert_eq!(by_id.len(), TASKS * COUNT, "every job stored");
    let mut all = HashSet::new();
    for (task, inserted) in results.iter().enumerate() {
        assert_eq!(inserted.len(), COUNT, "task {task}: one result per job");
        assert!(inserted.iter().all(|job| !job.duplicate));
        assert!(
            inserted.windows(2).all(|w| w[0].id < w[1].id),
            "task {task}: ids grow in input order"
        );
        for (i, job) in inserted.iter().enumerate() {
            assert_eq!(
                by_id.get(&job.id),
                Some(&json!({"task": task, "i": i})),
                "task {task}: result {i} is input {i}"
            );
            assert!(all.insert(job.id), "id {:?} returned twice", job.id);
        }
    }
}

/// 16 tasks insert the same key at once: exactly one inserts, all get its id, one row exists.
pub async fn unique_key_concurrent<S: Store>(store: Arc<S>) {
    const TASKS: usize = 16;
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let mut job = job("race");
                job.unique_key = Some("only-once".into());
                job.args = json!({"task": i});
                barrier.wait().await;
                store
                    .job_insert_many(JobInsertParams::new(vec![job], t0()))
                    .await
                    .unwrap_or_else(|err| panic!("task {i}: a racing insert must not fail: {err}"))
            })
        })
        .collect();

    let mut results = Vec::new();
    for task in tasks {
        let inserted = task.await.expect("insert task panicked");
        assert_eq!(inserted.len(), 1);
        results.push(inserted[0]);
    }
    let fresh = results.iter().filter(|r| !r.duplicate).count();
    assert_eq!(fresh, 1, "exactly one racer inserts: {results:?}");
    let ids: HashSet<JobId> = results.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1, "every racer gets the same id: {results:?}");
    assert_eq!(all_jobs(&store).await.len(), 1, "one row");
}

/// A bulk insert mixing new keys, keys already taken, repeated keys and unkeyed jobs maps every
/// result to its own input: duplicates carry the existing ids, new jobs fresh ones.
pub async fn bulk_with_unique_keys<S: Store>(store: Arc<S>) {
    let keyed = |key: usize| {
        let mut job = job("keyed");
        job.unique_key = Some(format!("key-{key}"));
        job.args = json!({"key": key});
        job
    };
    let first = insert(&store, (0..1_000).map(keyed).collect(), t0()).await;

    // Keys 500..1500 (half taken), each followed by an unkeyed job, then key 1499 again.
    let mut batch = Vec::new();
    for key in 500..1_500 {
        batch.push(keyed(key));
        batch.push(job("plain"));
    }
    batch.push(keyed(1_499));
    let inserted = insert_many(&store, batch, at(1)).await;

    let mut fresh = HashSet::new();
    for (i, key) in (500..1_500).enumerate() {
        let (keyed, plain) = (inserted[2 * i], inserted[2 * i + 1]);
        if key < 1_000 {
            assert!(keyed.duplicate, "key-{key} was taken");
            assert_eq!(keyed.id, first[key], "key-{key} maps to its existing job");
        } else {
            assert!(!keyed.duplicate, "key-{key} is new");
            assert!(fresh.insert(keyed.id));
        }
        assert!(!plain.duplicate);
        assert!(fresh.insert(plain.id), "ids of new jobs are distinct");
    }
    let last = inserted[inserted.len() - 1];
    assert!(last.duplicate, "a key repeated in the batch is a duplicate");
    assert_eq!(last.id, inserted[2 * 999].id);
    assert!(first.iter().all(|id| !fresh.contains(id)));

    assert_eq!(
        get(&store, inserted[2 * 999].id).await.args,
        json!({"key": 1_499})
    );
    let counts = stats(&store).await;
    assert_eq!(
        counts,
        crate::fixture::expected_stats(&[
            (QUEUE_DEFAULT, "keyed", JobState::Available, 1_500),
            (QUEUE_DEFAULT, "plain", JobState::Available, 1_000),
        ])
    );
}
