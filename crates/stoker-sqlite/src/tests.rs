//! Tests of what is specific to SQLite: opening, URLs, sharing a file between stores, the
//! schema's indexes and finished counts, and bulk speed. Behaviour common to every store lives in
//! the conformance suite (`tests/conformance.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, Row};
use stoker_core::{
    JobCancelParams, JobClaimParams, JobFinish, JobFinishParams, JobId, JobInsert, JobInsertParams,
    JobListParams, JobPruneParams, JobRetryManyParams, JobRetryParams, JobStageParams, JobState,
    Outcome, StateCount, Store, StoreErrorKind, StoreEvent, StoreTx,
};
use tempfile::TempDir;

use crate::{SqliteStore, SqliteStoreBuilder, Synchronous};

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000 + secs, 0).expect("a valid instant")
}

fn claim(queue: &str, limit: u32, worker: &str, now: DateTime<Utc>) -> JobClaimParams {
    JobClaimParams {
        queue: queue.into(),
        kinds: Vec::new(),
        limit,
        worker_id: worker.into(),
        now,
        lease: None,
    }
}

fn jobs(count: usize, kind: &str) -> Vec<JobInsert> {
    (0..count)
        .map(|n| JobInsert::new(kind, json!({"n": n})))
        .collect()
}

async fn file_store(dir: &TempDir) -> SqliteStore {
    let store = SqliteStore::open(dir.path().join("stoker.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
}

async fn insert(store: &SqliteStore, jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Vec<JobId> {
    store
        .job_insert_many(JobInsertParams::new(jobs, now))
        .await
        .expect("insert")
        .into_iter()
        .map(|inserted| inserted.id)
        .collect()
}

#[tokio::test]
async fn parses_urls() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://?mode=memory",
    ] {
        let builder = SqliteStoreBuilder::from_url(url).expect(url);
        assert!(builder.in_memory, "{url} is in memory");
    }
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a.db");
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
    ] {
        let builder = SqliteStoreBuilder::from_url(&url).expect(&url);
        assert!(!builder.in_memory, "{url} is a file");
        let store = builder.build().await.expect("opens and creates the file");
        store.migrate().await.expect("migrate");
        assert!(path.exists());
        store.close().await;
    }
    for url in ["postgres://localhost/db", "sqlite://", "file.db"] {
        let error = SqliteStoreBuilder::from_url(url).expect_err(url);
        assert_eq!(error.kind(), StoreErrorKind::Invalid, "{url}: {error}");
    }
}

#[tokio::test]
async fn in_memory_is_one_shared_database() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    // Writes go through the writer, reads through the reader pool: they must see each other.
    let ids = insert(&store, jobs(3, "email"), t(0)).await;
    let clone = store.clone();
    assert_eq!(clone.job_get(ids[0]).await.unwrap().unwrap().kind, "email");
    assert_eq!(
        clone
            .job_list(JobListParams {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        3
    );
    // Two in-memory stores are two databases.
    let other = SqliteStore::open(":memory:").await.unwrap();
    assert!(!other.migrations_current().await.unwrap());
}

#[tokio::test]
async fn applies_connection_settings() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("stoker.db");
    let pragma = |store: SqliteStore, name: &'static str| async move {
        sqlx::query(&format!("PRAGMA {name}"))
            .fetch_one(&mut *store.write_connection().await.unwrap())
            .await
            .unwrap()
            .get::<i64, _>(0)
    };
    let store = SqliteStore::open(&path).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma(store.clone(), "synchronous").await, 1, "NORMAL");
    assert_eq!(pragma(store.clone(), "busy_timeout").await, 10_000);
    store.close().await;

    let store = SqliteStore::builder(&path)
        .synchronous(Synchronous::Full)
        .busy_timeout(Duration::from_millis(1500))
        .max_readers(2)
        .build()
        .await
        .unwrap();
    assert_eq!(pragma(store.clone(), "synchronous").await, 2, "FULL");
    assert_eq!(pragma(store.clone(), "busy_timeout").await, 1500);
    // Readers refuse writes.
    let error = sqlx::query("CREATE TABLE nope (x)")
        .execute(&mut *store.read().await.unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("readonly"), "{error}");
}

/// The store copies the WAL into the database file in the background, so no commit has to:
/// here the log never reaches the 1,000 pages at which SQLite checkpoints inside a commit,
/// and the file grows all the same.
#[tokio::test]
async fn checkpoints_the_wal_in_the_background() {
    let dir = TempDir::new().unwrap();
    let store = file_store(&dir).await;
    let file = dir.path().join("stoker.db");
    let size = || std::fs::metadata(&file).expect("database file").len();
    let before = size();
    insert(&store, jobs(2_000, "grow"), t(0)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while size() < before + 100_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {} bytes ({before} before the insert)",
            size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing was lost on the way: a fresh connection reads every job from the file.
    store.close().await;
    let store = SqliteStore::open(&file).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stoker_jobs WHERE kind = 'grow'")
        .fetch_one(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(count, 2_000);
}

#[tokio::test]
async fn does_not_migrate_on_open() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path().join("stoker.db"))
        .await
        .unwrap();
    assert!(!store.migrations_current().await.unwrap());
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_one_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("stoker.db");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let store = SqliteStore::open(&path).await?;
            store.migrate().await?;
            store.migrations_current().await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().expect("migrate"));
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM stoker_migrations")
        .fetch_all(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    // Every version this build knows of, each once (streams own disjoint numbers, so the
    // list may have gaps on a branch).
    let known: Vec<i64> = crate::migrate::MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .collect();
    assert_eq!(versions, known, "each migration recorded once");
}

/// A database at schema version 1 (from a build before leases and the schedule) is upgraded
/// in place: its jobs keep every field and have no lease, a job waiting for a future `run_at`
/// moves into the schedule, and leases work afterwards.
#[tokio::test]
async fn upgrades_a_version_1_database() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path().join("stoker.db"))
        .await
        .unwrap();
    let v1 = format!(
        "{} CREATE TABLE stoker_migrations (
             version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL,
             applied_at INTEGER NOT NULL) STRICT;
         INSERT INTO stoker_migrations VALUES (1, 'init', 0);",
        crate::migrate::MIGRATIONS[0].sql
    );
    sqlx::raw_sql(&v1)
        .execute(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    // A due job, and one scheduled for 2100 (run_at in microseconds), as version 1 wrote them;
    // and a completed one inserted by hand, which version 1's triggers never counted.
    sqlx::raw_sql(
        "INSERT INTO stoker_jobs (id, kind, queue, args, state, priority, attempt, max_attempts,
                                  run_at, metadata, errors, created_at, finished_at)
         VALUES (1, 'old', 'default', '{}', 'available', 0, 0, 5, 0, '{}', '[]', 0, NULL),
                (2, 'later', 'default', '{}', 'available', 0, 0, 5, 4102444800000000, '{}',
                 '[]', 0, NULL),
                (3, 'old', 'default', '{}', 'completed', 0, 1, 5, 0, '{}', '[]', 0, 1)",
    )
    .execute(&mut *store.write_connection().await.unwrap())
    .await
    .unwrap();
    assert!(!store.migrations_current().await.unwrap());

    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    // Version 4 recounts the finished jobs.
    check_counts(&store).await;
    let old = store.job_get(JobId(1)).await.unwrap().unwrap();
    assert_eq!((old.kind.as_str(), old.lease_expires_at), ("old", None));
    let mut params = claim("default", 10, "pull:a", t(1));
    params.lease = Some(Duration::from_secs(30));
    let claimed = store.job_claim(params).await.unwrap();
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![JobId(1)],
        "the future job is in the schedule"
    );
    assert_eq!(claimed[0].lease_expires_at, Some(t(31)));

    let in_2101: DateTime<Utc> = "2101-01-01T00:00:00Z".parse().unwrap();
    let staged = store
        .job_stage(JobStageParams {
            now: in_2101,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(staged, 1);
    let claimed = store
        .job_claim(claim("default", 10, "w", in_2101))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![JobId(2)]
    );
}

/// Two stores on one file (as two processes would be) write at once: every multi-statement
/// write takes the lock up front, so neither fails on a lock upgrade, and no job is claimed
/// twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_share_one_file() {
    let dir = TempDir::new().unwrap();
    let a = file_store(&dir).await;
    let b = SqliteStore::open(dir.path().join("stoker.db"))
        .await
        .unwrap();

    let mut inserters = Vec::new();
    for store in [a.clone(), b.clone()] {
        inserters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..20 {
                let mut batch = jobs(50, "email");
                // Keys shared by both stores: each key is inserted once.
                batch[0].unique_key = Some(format!("key-{round}"));
                let inserted = store
                    .job_insert_many(JobInsertParams::new(batch, t(0)))
                    .await?;
                ids.extend(inserted.into_iter().filter(|i| !i.duplicate).map(|i| i.id));
            }
            stoker_core::StoreResult::Ok(ids)
        }));
    }
    let mut claimers = Vec::new();
    for (n, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        claimers.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            for _ in 0..60 {
                let jobs = store
                    .job_claim(claim("default", 20, &format!("w{n}"), t(1)))
                    .await?;
                let finishes = jobs
                    .iter()
                    .map(|job| JobFinish {
                        id: job.id,
                        fence: job.fence,
                        outcome: Outcome::Completed { result: None },
                    })
                    .collect();
                store
                    .job_finish_many(JobFinishParams {
                        finishes,
                        now: t(2),
                        rescue: false,
                    })
                    .await?;
                claimed.extend(jobs.into_iter().map(|job| job.id));
                tokio::task::yield_now().await;
            }
            stoker_core::StoreResult::Ok(claimed)
        }));
    }
    let mut inserted = HashSet::new();
    for task in inserters {
        for id in task.await.unwrap().expect("insert never fails with busy") {
            assert!(inserted.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(inserted.len(), 2 * 20 * 49 + 20);
    let mut claimed = HashSet::new();
    for task in claimers {
        for id in task.await.unwrap().expect("claim never fails with busy") {
            assert!(claimed.insert(id), "job {id} claimed twice");
        }
    }
    // Claim what is left, then every inserted job was claimed exactly once.
    loop {
        let jobs = a.job_claim(claim("default", 500, "w", t(1))).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            assert!(claimed.insert(job.id), "job {} claimed twice", job.id);
        }
    }
    assert_eq!(claimed, inserted);
}

/// Another process's write transaction makes writes wait up to the busy timeout, then fail
/// with `Busy`; once it ends, they go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_busy_after_the_timeout() {
    let dir = TempDir::new().unwrap();
    let a = file_store(&dir).await;
    let b = SqliteStore::builder(dir.path().join("stoker.db"))
        .busy_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let mut conn = a.write_connection().await.unwrap();
    let held = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
    for error in [
        b.job_insert_many(JobInsertParams::new(jobs(2, "k"), t(0)))
            .await
            .unwrap_err(),
        b.job_claim(claim("default", 1, "w", t(0)))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(error.kind(), StoreErrorKind::Busy, "{error}");
    }
    // Reads are not blocked by a writer in WAL mode.
    assert!(b.job_stats().await.unwrap().is_empty());
    held.commit().await.unwrap();
    insert(&b, jobs(2, "k"), t(0)).await;
}

/// While the application holds the store's write connection, the store's own writes wait for
/// it up to the busy timeout and then fail with `Busy`; reads go on. Once it is given back,
/// writes go through; once the store is closed, they fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_connection_makes_writes_wait() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::builder(dir.path().join("stoker.db"))
        .busy_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let insert_one = || store.job_insert_many(JobInsertParams::new(jobs(1, "k"), t(0)));
    let held = store.write_connection().await.unwrap();
    let started = Instant::now();
    let error = insert_one().await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Busy, "{error}");
    assert!(error.to_string().contains("busy timeout"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(store.job_stats().await.unwrap().is_empty());
    drop(held);
    insert_one().await.unwrap();

    store.close().await;
    let error = insert_one().await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Other, "{error}");
    assert!(error.to_string().contains("closed"), "{error}");
}

#[tokio::test]
async fn unique_keys_are_scoped_by_tenant() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let keyed = |key: &str, tenant: Option<&str>| {
        let mut job = JobInsert::new("email", json!({}));
        job.unique_key = Some(key.into());
        job.tenant = tenant.map(Into::into);
        job
    };
    let first = store
        .job_insert_many(JobInsertParams::new(
            vec![
                keyed("k", None),
                keyed("k", Some("a")),
                JobInsert::new("email", json!({})),
                keyed("k", None),
                keyed("k", Some("b")),
                keyed("k", Some("a")),
            ],
            t(0),
        ))
        .await
        .unwrap();
    let dup: Vec<bool> = first.iter().map(|i| i.duplicate).collect();
    assert_eq!(dup, [false, false, false, true, false, true]);
    assert_eq!(first[3].id, first[0].id);
    assert_eq!(first[5].id, first[1].id);
    let again = store
        .job_insert_many(JobInsertParams::new(
            vec![
                keyed("k", Some("b")),
                keyed("other", None),
                keyed("k", None),
            ],
            t(1),
        ))
        .await
        .unwrap();
    assert_eq!(again[0].id, first[4].id);
    assert!(again[0].duplicate && !again[1].duplicate && again[2].duplicate);
    assert_eq!(again[2].id, first[0].id);
    // Ids skipped for duplicates are never used, and ids keep growing.
    assert!(again[1].id > first[4].id);
}

#[tokio::test]
async fn args_round_trip_exactly() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let values = [
        json!({"nested": {"list": [1, 2.5, -3, true, null]}, "unicode": "é ✓ \u{1F600} \"q\" \\"}),
        json!("a plain string"),
        json!(null),
        json!(12345678901234567_i64),
        json!(u64::MAX),
        json!(0.1),
        json!([]),
    ];
    let batch = values
        .iter()
        .map(|args| JobInsert::new("k", args.clone()))
        .collect();
    let ids = insert(&store, batch, t(0)).await;
    for (id, args) in ids.iter().zip(&values) {
        assert_eq!(&store.job_get(*id).await.unwrap().unwrap().args, args);
    }
}

#[tokio::test]
async fn ids_are_never_reused() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let ids = insert(&store, jobs(3, "k"), t(0)).await;
    store.job_delete(ids[2]).await.unwrap();
    store.job_delete(ids[1]).await.unwrap();
    let next = insert(&store, jobs(1, "k"), t(0)).await;
    assert!(next[0] > ids[2], "{} reuses a deleted id", next[0]);
}

#[tokio::test]
async fn outbox_insert_follows_the_callers_transaction() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut events = store.subscribe().unwrap();

    // An in-memory store reads through its one connection too: give it back before reading.
    let mut conn = store.write_connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let rolled_back = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(jobs(2, "k"), t(0)))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    drop(conn);
    assert!(store.job_get(rolled_back[0].id).await.unwrap().is_none());

    let mut conn = store.write_connection().await.unwrap();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let committed = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(jobs(2, "k"), t(0)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(conn);
    assert!(store.job_get(committed[1].id).await.unwrap().is_some());

    // Outside any transaction it commits on its own.
    let mut conn = store.write_connection().await.unwrap();
    let alone = store
        .job_insert_many_tx(&mut conn, JobInsertParams::new(jobs(1, "k"), t(0)))
        .await
        .unwrap();
    drop(conn);
    assert!(store.job_get(alone[0].id).await.unwrap().is_some());
    assert!(events.try_recv().is_err(), "no events from the outbox path");

    // A bad job leaves the caller's transaction untouched.
    let mut conn = store.write_connection().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut bad = jobs(2, "k");
    bad[1].queue = "not a queue".into();
    let error = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(bad, t(0)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn events_on_insert_retry_resume_and_cancel() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut events = store.subscribe().unwrap();
    let mut batch = jobs(3, "k");
    batch[1].queue = "mail".into();
    let ids = insert(&store, batch, t(0)).await;
    let mut got = vec![events.try_recv().unwrap(), events.try_recv().unwrap()];
    got.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        got,
        [
            StoreEvent::JobsAvailable {
                queue: "default".into()
            },
            StoreEvent::JobsAvailable {
                queue: "mail".into()
            }
        ]
    );
    assert!(events.try_recv().is_err(), "one event per queue");

    let claimed = store.job_claim(claim("mail", 1, "w", t(1))).await.unwrap();
    store
        .job_cancel(stoker_core::JobCancelParams {
            id: claimed[0].id,
            now: t(2),
        })
        .await
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::JobCancelRequested { id: ids[1] }
    );
    store
        .job_retry(JobRetryParams {
            id: ids[0],
            now: t(3),
        })
        .await
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        StoreEvent::JobsAvailable {
            queue: "default".into()
        }
    );
}

/// Counts of finished jobs come from the counters the store keeps and match a full count on
/// every path: ack, cancel, retry, bulk retry, delete and prune.
#[tokio::test]
async fn stats_counters_follow_every_path() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    insert(&store, jobs(6, "k"), t(0)).await;
    let claimed = store
        .job_claim(claim("default", 6, "w", t(1)))
        .await
        .unwrap();
    let outcome = |n: usize| match n % 3 {
        0 => Outcome::Completed { result: None },
        1 => Outcome::Cancel { error: None },
        _ => Outcome::HandBack,
    };
    store
        .job_finish_many(JobFinishParams {
            finishes: claimed
                .iter()
                .enumerate()
                .map(|(n, job)| JobFinish {
                    id: job.id,
                    fence: job.fence,
                    outcome: outcome(n),
                })
                .collect(),
            now: t(2),
            rescue: false,
        })
        .await
        .unwrap();
    check_counts(&store).await;
    store
        .job_retry(JobRetryParams {
            id: claimed[0].id,
            now: t(3),
        })
        .await
        .unwrap();
    check_counts(&store).await;
    store.job_delete(claimed[1].id).await.unwrap();
    check_counts(&store).await;
    let retried = store
        .job_retry_many(JobRetryManyParams {
            states: vec![JobState::Completed, JobState::Cancelled],
            queues: Vec::new(),
            kinds: Vec::new(),
            tenant: None,
            limit: 1,
            now: t(3),
        })
        .await
        .unwrap();
    assert_eq!(retried, 1);
    check_counts(&store).await;
    // Queued jobs cancelled: the first retried one, and the handed-back ones.
    let queued = store
        .job_list(JobListParams {
            states: vec![JobState::Available],
            kinds: Vec::new(),
            queues: Vec::new(),
            tenant: None,
            before_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(queued.len() >= 2, "{queued:?}");
    for job in &queued {
        store
            .job_cancel(JobCancelParams {
                id: job.id,
                now: t(4),
            })
            .await
            .unwrap();
        check_counts(&store).await;
    }
    store
        .job_prune(JobPruneParams {
            keep_last: Some(0),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    check_counts(&store).await;
    let stats = store.job_stats().await.unwrap();
    assert!(stats.iter().all(|c| !c.state.is_finished()), "{stats:?}");
}

/// An acknowledgement that fails part-way (here on an error text that is not JSON, which the
/// store never writes itself) changes nothing, counts included, and leaves no transaction
/// open on the writer: the next acknowledgement commits.
#[tokio::test]
async fn failed_finish_rolls_back_and_leaves_no_transaction_open() {
    let dir = TempDir::new().unwrap();
    let store = file_store(&dir).await;
    insert(&store, jobs(1, "k"), t(0)).await;
    let job = store
        .job_claim(claim("default", 1, "w", t(1)))
        .await
        .unwrap()
        .remove(0);
    let malformed = format!(
        r#"[[{}, {}, "discarded", false, true, 0, null, null, "not json"]]"#,
        job.id.0, job.attempt
    );
    crate::finish::run(store.writer(), 2_000_000, malformed, false)
        .await
        .unwrap_err();
    let unchanged = store.job_get(job.id).await.unwrap().unwrap();
    assert_eq!(unchanged.state, JobState::Running);
    check_counts(&store).await;

    let applied = store
        .job_finish_many(JobFinishParams {
            finishes: vec![JobFinish {
                id: job.id,
                fence: job.fence,
                outcome: Outcome::Completed { result: None },
            }],
            now: t(3),
            rescue: false,
        })
        .await
        .unwrap();
    assert_eq!(
        applied.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![job.id]
    );
    // Read through another connection: the change is committed, not pending in an open one.
    let reopened = file_store(&dir).await;
    let done = reopened.job_get(job.id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    check_counts(&reopened).await;
}

async fn check_counts(store: &SqliteStore) {
    let rows = sqlx::query(
        "SELECT queue, kind, state, COUNT(*), tenant, \
                SUM(state = 'available' AND scheduled = 1) \
         FROM stoker_jobs GROUP BY queue, kind, tenant, state",
    )
    .fetch_all(&mut *store.write_connection().await.unwrap())
    .await
    .unwrap();
    let mut expected: Vec<StateCount> = rows
        .iter()
        .map(|row| StateCount {
            queue: row.get(0),
            kind: row.get(1),
            state: row.get::<&str, _>(2).parse().unwrap(),
            count: row.get(3),
            tenant: row.get(4),
            scheduled: row.get(5),
        })
        .collect();
    let mut actual = store.job_stats().await.unwrap();
    let key = |c: &StateCount| {
        (
            c.queue.clone(),
            c.kind.clone(),
            c.tenant.clone(),
            c.state.as_str(),
        )
    };
    expected.sort_by_key(key);
    actual.sort_by_key(key);
    assert_eq!(actual, expected);
}

/// SQLite checks each partial index's predicate for every row a statement writes, and
/// evaluates an `IN` list of three or more values there through a temporary b-tree built
/// afresh per row: the finished index's `state IN (…)` once cost a fifth of the instructions
/// of a drain's statements (migration 5). Inserting, changing the state of and deleting a job
/// build none. (The workflow trigger's body, listed after the statement's own program, runs
/// only for a job that others depend on; its WHEN, run for every acknowledged row, is
/// checked by `workflow_trigger_when_builds_no_temporary_table`.)
#[tokio::test]
async fn job_writes_build_no_temporary_tables_per_row() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    for sql in [
        "INSERT INTO stoker_jobs (kind, queue, args, state, priority, max_attempts, run_at,
                                  created_at)
         VALUES ('k', 'q', '{}', 'available', 0, 1, 0, 0)",
        "UPDATE stoker_jobs SET state = 'running' WHERE id = 1",
        "UPDATE stoker_jobs SET state = 'completed', finished_at = 1 WHERE id = 1",
        "DELETE FROM stoker_jobs WHERE id = 1",
    ] {
        let program: Vec<String> = sqlx::query(&format!("EXPLAIN {sql}"))
            .fetch_all(&mut *store.write_connection().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(1))
            .collect();
        // The statement's own program: up to the first trigger program's `Init`.
        let own: Vec<&String> = program
            .iter()
            .enumerate()
            .take_while(|(i, op)| *i == 0 || *op != "Init")
            .map(|(_, op)| op)
            .collect();
        assert!(
            !own.iter().any(|op| *op == "OpenEphemeral"),
            "{sql} builds a temporary table: {program:?}"
        );
    }
}

// --- stream wf ---
/// The workflow trigger (migration 16) is called for every acknowledged row; its WHEN, the
/// start of its program up to the first jump out, must not build a temporary table.
#[tokio::test]
async fn workflow_trigger_when_builds_no_temporary_table() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let sql = "UPDATE stoker_jobs SET state = 'completed', finished_at = 1 WHERE id = 1";
    let program: Vec<String> = sqlx::query(&format!("EXPLAIN {sql}"))
        .fetch_all(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(1))
        .collect();
    let trigger_start = program
        .iter()
        .enumerate()
        .position(|(i, op)| i > 0 && op == "Init")
        .expect("the trigger's program");
    let when: Vec<&String> = program[trigger_start..]
        .iter()
        .take_while(|op| *op != "OpenRead" && *op != "OpenWrite")
        .collect();
    assert!(
        !when.iter().any(|op| *op == "OpenEphemeral"),
        "the trigger's WHEN builds a temporary table: {when:?}"
    );
    // A claim does not write `finished_at`: it never calls the workflow trigger. Nor does it
    // call flow control's slot release (issue 16), which the acknowledgement does itself
    // since migration 26: a per-row trigger on `state` was paid by every drain.
    let claim: Vec<String> =
        sqlx::query("EXPLAIN UPDATE stoker_jobs SET state = 'running' WHERE id = 1")
            .fetch_all(&mut *store.write_connection().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(1))
            .collect();
    assert_eq!(
        claim.iter().filter(|op| *op == "Program").count(),
        0,
        "{claim:?}"
    );
}

/// The hot queries stay index lookups whatever the table size.
#[tokio::test]
async fn hot_queries_use_their_indexes() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();

    let plan = |sql: &'static str| {
        let store = store.clone();
        async move {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&mut *store.write_connection().await.unwrap())
                .await
                .unwrap();
            rows.iter()
                .map(|row| row.get::<String, _>(3))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    for sql in [crate::store::CLAIM_SQL, crate::store::CLAIM_KINDS_SQL] {
        let plan = plan(sql).await;
        assert!(
            plan.contains("USING INDEX stoker_jobs_fetch_idx (queue=?)"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "claim sorts: {plan}");
    }
    // Only running jobs are read, through an index, whatever else the table holds.
    let stuck = plan(crate::store::STUCK_SQL).await;
    assert!(
        stuck.contains("SEARCH j USING INDEX stoker_jobs_state_idx (state=?)"),
        "{stuck}"
    );
    assert!(!stuck.contains("SCAN j"), "{stuck}");
    // Staging reads the schedule index, which holds only scheduled jobs, from the earliest.
    let stage = plan(crate::store::STAGE_SQL).await;
    assert!(
        stage.contains("INDEX stoker_jobs_scheduled_idx (run_at<?)"),
        "{stage}"
    );
    assert!(!stage.contains("TEMP B-TREE"), "{stage}");
    let extend = plan(crate::store::EXTEND_LEASE_SQL).await;
    assert!(extend.contains("USING INTEGER PRIMARY KEY"), "{extend}");
    let pick = plan(crate::store::RETRY_MANY_PICK_SQL).await;
    assert!(
        pick.contains("USING INDEX stoker_jobs_state_idx (state=?)"),
        "{pick}"
    );
    let retry_ids = plan(crate::store::RETRY_IDS_SQL).await;
    assert!(
        retry_ids.contains("USING INTEGER PRIMARY KEY"),
        "{retry_ids}"
    );
    assert!(!retry_ids.contains("SCAN stoker_jobs"), "{retry_ids}");
    // --- stream flow ---
    // The slot release tests whether any limiter has a slot taken through its partial index
    // (one probe), so a drain without limits never reads its finishes twice.
    let release = plan(crate::finish::RELEASE_SQL).await;
    assert!(
        release.contains("stoker_limit_state_running_idx (running>?)"),
        "{release}"
    );
    for sql in [
        crate::finish::COUNT_SQL,
        crate::finish::APPLY_SQL,
        crate::finish::RELEASE_SQL,
    ] {
        let finish = plan(sql).await;
        assert!(finish.contains("USING INTEGER PRIMARY KEY"), "{finish}");
        assert!(!finish.contains("stoker_jobs_state_idx"), "{finish}");
        assert!(!finish.contains("SCAN stoker_jobs"), "{finish}");
    }
    let existing = plan(crate::insert::EXISTING_SQL).await;
    assert!(
        existing.contains("USING INDEX stoker_jobs_unique_idx"),
        "{existing}"
    );
    for sql in [
        crate::prune::PRUNE_AGE_SQL,
        crate::prune::PRUNE_KEEP_LAST_SQL,
        crate::prune::KEEP_LAST_CUTOFF_SQL,
    ] {
        let plan = plan(sql).await;
        assert!(
            plan.contains("USING INDEX stoker_jobs_finished_idx (queue=?"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    // Claims must keep walking the fetch index in order once the table has statistics (a
    // user's ANALYZE, PRAGMA optimize): with `run_at` as a search term, an analyzed planner
    // skip-scans the priorities and sorts every due job on each claim (30 ms per claim with
    // 100k due jobs, against 1 ms).
    let now: i64 = 2_000_000_000_000_000;
    for (state, run_at, scheduled, rows) in [
        ("completed", now - 10, 0, 20_000),
        ("available", now + 86_400_000_000, 1, 20_000),
        ("available", now - 1_000_000, 0, 5_000),
    ] {
        sqlx::query(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows})
             INSERT INTO stoker_jobs (kind, queue, args, state, priority, max_attempts, run_at,
                                      created_at, scheduled)
             SELECT 'k', 'default', '{{}}', '{state}', 0, 5, {run_at} + n, 1, {scheduled} FROM g"
        ))
        .execute(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE")
        .execute(&mut *store.write_connection().await.unwrap())
        .await
        .unwrap();
    // The plan depends on the bound values here, so bind them as a claim does.
    for sql in [crate::store::CLAIM_SQL, crate::store::CLAIM_KINDS_SQL] {
        let plan = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .bind(now)
            .bind("w")
            .bind("default")
            .bind(50_i64)
            .bind(None::<i64>)
            .bind(r#"["k"]"#)
            .fetch_all(&mut *store.write_connection().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains("USING INDEX stoker_jobs_fetch_idx (queue=?)"),
            "{plan}"
        );
        assert!(
            !plan.contains("TEMP B-TREE"),
            "an analyzed claim sorts: {plan}"
        );
    }
}

/// 10,000 jobs in one call: one transaction, a handful of statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_ten_thousand_jobs_fast() {
    let dir = TempDir::new().unwrap();
    let store = file_store(&dir).await;
    let batch: Vec<JobInsert> = (0..10_000)
        .map(|n| {
            let mut job = JobInsert::new("email", json!({"to": format!("user{n}@example.com")}));
            if n % 10 == 0 {
                job.unique_key = Some(format!("key-{}", n % 2000));
            }
            job
        })
        .collect();
    let started = Instant::now();
    let inserted = store
        .job_insert_many(JobInsertParams::new(batch, t(0)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(inserted.len(), 10_000);
    assert_eq!(inserted.iter().filter(|i| i.duplicate).count(), 800);
    assert!(took < Duration::from_secs(2), "10,000 jobs took {took:?}");
    // Claims in priority order and finishes in one statement.
    let claimed = store
        .job_claim(claim("default", 1000, "w", t(1)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1000);
    assert!(claimed.windows(2).all(|w| w[0].id < w[1].id));
    let applied = store
        .job_finish_many(JobFinishParams {
            finishes: claimed
                .iter()
                .map(|job| JobFinish {
                    id: job.id,
                    fence: job.fence,
                    outcome: Outcome::Completed {
                        result: Some(json!({"ok": true})),
                    },
                })
                .collect(),
            now: t(2),
            rescue: false,
        })
        .await
        .unwrap();
    assert_eq!(applied.len(), 1000);
    let stats = store.job_stats().await.unwrap();
    let completed: i64 = stats
        .iter()
        .filter(|c| c.state == JobState::Completed)
        .map(|c| c.count)
        .sum();
    assert_eq!(completed, 1000);
}

/// Throughput and latency with a large table; run it in release mode:
/// `cargo test --release -p stoker-sqlite --lib -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it by hand in release mode"]
async fn throughput() {
    let dir = TempDir::new().unwrap();
    let store = file_store(&dir).await;
    // A million finished jobs, written directly so the setup is quick.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
         INSERT INTO stoker_jobs (kind, queue, args, state, priority, max_attempts, run_at,
                                  created_at, finished_at)
         SELECT 'email', 'default', '{}', 'completed', 0, 5, 0, 0, i FROM n",
    )
    .execute(&mut *store.write_connection().await.unwrap())
    .await
    .unwrap();

    let mut insert = Duration::MAX;
    let mut claim_1k = Duration::MAX;
    let mut finish_1k = Duration::MAX;
    let mut stats = Duration::MAX;
    for _ in 0..10 {
        let batch: Vec<JobInsert> = (0..10_000)
            .map(|n| JobInsert::new("email", json!({"to": format!("user{n}@example.com")})))
            .collect();
        let started = Instant::now();
        store
            .job_insert_many(JobInsertParams::new(batch, t(0)))
            .await
            .unwrap();
        insert = insert.min(started.elapsed());

        let started = Instant::now();
        let claimed = store
            .job_claim(claim("default", 1000, "w", t(1)))
            .await
            .unwrap();
        claim_1k = claim_1k.min(started.elapsed());

        let started = Instant::now();
        store
            .job_finish_many(JobFinishParams {
                finishes: claimed
                    .iter()
                    .map(|job| JobFinish {
                        id: job.id,
                        fence: job.fence,
                        outcome: Outcome::Completed { result: None },
                    })
                    .collect(),
                now: t(2),
                rescue: false,
            })
            .await
            .unwrap();
        finish_1k = finish_1k.min(started.elapsed());

        let started = Instant::now();
        store.job_stats().await.unwrap();
        stats = stats.min(started.elapsed());
    }
    eprintln!(
        "best of 10 with 1M finished jobs: insert 10k {insert:?} ({:.0} jobs/s), \
         claim 1k {claim_1k:?}, finish 1k {finish_1k:?}, stats {stats:?}",
        10_000.0 / insert.as_secs_f64()
    );
}

// --- stream dash ---
/// The waiting jobs' counts and the queue depths (issue 14) walk the covering index of the
/// waiting jobs (migration 23) and read no table row; the running jobs, few, go through the
/// `(state, id)` index.
#[tokio::test]
async fn waiting_counts_walk_the_covering_index() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    for (name, sql) in [
        ("job_stats", crate::store::STATS_SQL),
        ("queue_depths", crate::history::DEPTHS_SQL),
    ] {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut *store.write_connection().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("USING COVERING INDEX stoker_jobs_waiting_idx"),
            "{name}: {plan}"
        );
        assert!(
            !plan.lines().any(|line| line.trim() == "SCAN stoker_jobs"),
            "{name} reads the table: {plan}"
        );
    }
}
