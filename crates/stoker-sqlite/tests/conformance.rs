//! The store conformance suite (`stoker-storetest`) against [`SqliteStore`], each test on its
//! own temporary database file, plus the outbox behaviours that need SQLite's connection type.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Connection;
use stoker_core::{
    JobInsert, JobInsertParams, JobListParams, JobState, Store, StoreErrorKind, StoreTx,
};
use stoker_sqlite::SqliteStore;
use tempfile::TempDir;

thread_local! {
    /// The temporary directories of the test running on this thread. Each test runs on its own
    /// thread, and the factory runs on it (the test body is `block_on`'d there), so a directory
    /// lives exactly as long as its test: it is removed when the test's thread exits.
    static TEMP_DIRS: RefCell<Vec<TempDir>> = const { RefCell::new(Vec::new()) };
}

/// A fresh, migrated store in a new temporary file, for one test.
async fn store() -> Arc<SqliteStore> {
    Arc::new(store_in_temp_file().await.0)
}

/// Two stores on one new, migrated temporary file, as two processes sharing it would open it.
async fn store_pair() -> (Arc<SqliteStore>, Arc<SqliteStore>) {
    let (first, path) = store_in_temp_file().await;
    let second = SqliteStore::open(&path)
        .await
        .expect("open the SQLite store again");
    (Arc::new(first), Arc::new(second))
}

/// A migrated store in a new temporary file, and the file's path.
async fn store_in_temp_file() -> (SqliteStore, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("stoker-conformance-")
        .tempdir()
        .expect("create a temporary directory");
    let path = dir.path().join("stoker.db");
    TEMP_DIRS.with(|dirs| dirs.borrow_mut().push(dir));
    let store = SqliteStore::open(&path)
        .await
        .expect("open the SQLite store");
    store.migrate().await.expect("migrate");
    (store, path)
}

stoker_storetest::conformance_tests!(store);

/// One test per [`stoker_storetest::shared`] behaviour, on two stores sharing one file.
macro_rules! shared_tests {
    ($($behaviour:ident),* $(,)?) => {
        /// Two handles on one database file: what must hold across processes.
        mod shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    let (a, b) = super::store_pair().await;
                    stoker_storetest::shared::$behaviour(a, b).await;
                }
            )*
        }
    };
}

shared_tests!(
    claims_exactly_once,
    leader_exclusive,
    unique_key_race,
    pause_seen_by_other,
    events_cross_process,
);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("a valid instant")
}

fn outbox_job() -> JobInsert {
    let mut job = JobInsert::new("outbox", json!({"order": 42}));
    job.unique_key = Some("order-42".into());
    job
}

/// Jobs inserted in the caller's transaction exist once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tx_insert_commits_with_the_caller() {
    let store = store().await;
    let mut conn = store.write_connection().await.expect("write_connection");
    let mut tx = conn.begin().await.expect("begin");
    let inserted = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many_tx");
    assert_eq!(inserted.len(), 1);
    assert!(!inserted[0].duplicate);
    tx.commit().await.expect("commit");
    drop(conn);

    let row = store
        .job_get(inserted[0].id)
        .await
        .expect("job_get")
        .expect("the job exists");
    assert_eq!(row.kind, "outbox");
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.created_at, now());
    let stats = store.job_stats().await.expect("job_stats");
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].state, stats[0].count), (JobState::Available, 1));
}

/// Jobs inserted in a transaction that rolls back never exist, take no unique key, and move
/// no count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tx_insert_rolls_back_with_the_caller() {
    let store = store().await;
    store
        .job_insert_many(JobInsertParams::new(
            vec![JobInsert::new("before", json!({}))],
            now(),
        ))
        .await
        .expect("job_insert_many");
    let stats_before = store.job_stats().await.expect("job_stats");

    let mut conn = store.write_connection().await.expect("write_connection");
    let mut tx = conn.begin().await.expect("begin");
    let inserted = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many_tx");
    tx.rollback().await.expect("rollback");
    drop(conn);

    assert_eq!(store.job_get(inserted[0].id).await.expect("job_get"), None);
    assert_eq!(store.job_stats().await.expect("job_stats"), stats_before);
    let listed = store
        .job_list(JobListParams {
            kinds: vec!["outbox".into()],
            limit: 10,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    assert!(listed.is_empty());
    let again = store
        .job_insert_many(JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many");
    assert!(
        !again[0].duplicate,
        "the rolled-back insert took no unique key"
    );
}

/// An invalid batch inside the caller's transaction is refused and leaves that transaction
/// usable: what it inserted before still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tx_insert_invalid_batch_leaves_the_transaction_usable() {
    let store = store().await;
    let mut conn = store.write_connection().await.expect("write_connection");
    let mut tx = conn.begin().await.expect("begin");
    let good = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many_tx");
    let bad = JobInsert::new("has space", json!({}));
    let refused = store
        .job_insert_many_tx(
            &mut tx,
            JobInsertParams::new(vec![JobInsert::new("ok", json!({})), bad], now()),
        )
        .await
        .expect_err("an invalid kind is refused");
    assert_eq!(refused.kind(), StoreErrorKind::Invalid);
    tx.commit().await.expect("commit");
    drop(conn);

    let all = store
        .job_list(JobListParams {
            limit: 10,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    assert_eq!(
        all.iter().map(|row| row.id).collect::<Vec<_>>(),
        vec![good[0].id]
    );
}
