//! The store conformance suite (`stoker-storetest`) against [`PgStore`], each test in its own
//! schema, plus the outbox behaviours that need PostgreSQL's connection type.
//!
//! Set `STOKER_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`) to run
//! it; without it every test is listed as ignored (see `build.rs`). Each test's schema is
//! named `stoker_test_<unix seconds>_<random>`; schemas left by runs over ten minutes old are
//! dropped when the first store of a run is made.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use stoker_core::{
    JobInsert, JobInsertParams, JobListParams, JobState, Store, StoreErrorKind, StoreEvent, StoreTx,
};
use stoker_postgres::PgStore;

/// Connections per test store. Tests run in parallel (one per CPU by default), each with this
/// many pooled connections plus one listener: keep the total under PostgreSQL's default 100.
const MAX_CONNECTIONS: u32 = 10;

/// Schemas from runs older than this are dropped.
const LEFTOVER_AGE_SECS: u64 = 600;

fn database_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("STOKER_TEST_DATABASE_URL must name the test database")
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Drops `stoker_test_*` schemas made more than ten minutes ago (a whole run takes about one),
/// once per test run.
async fn drop_leftover_schemas(url: &str) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut conn = PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'stoker\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list test schemas");
    let cutoff = unix_secs().saturating_sub(LEFTOVER_AGE_SECS);
    for schema in schemas {
        let made_at = schema
            .strip_prefix("stoker_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if made_at.is_some_and(|secs| secs < cutoff) {
            // Another test binary may be dropping it at the same moment: that is fine.
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(err) = sqlx::query(&drop).execute(&mut conn).await {
                eprintln!("could not drop leftover schema {schema}: {err}");
            }
        }
    }
    let _ = conn.close().await;
}

/// A fresh, migrated store in a new schema, for one test.
async fn store() -> Arc<PgStore> {
    let url = database_url();
    drop_leftover_schemas(&url).await;
    let schema = format!("stoker_test_{}_{:08x}", unix_secs(), rand::random::<u32>());
    let store = open(&url, &schema).await;
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

/// Two stores on one new, migrated schema, as two processes sharing it would open it.
async fn store_pair() -> (Arc<PgStore>, Arc<PgStore>) {
    let first = store().await;
    let second = open(&database_url(), first.schema()).await;
    (first, Arc::new(second))
}

async fn open(url: &str, schema: &str) -> PgStore {
    PgStore::builder(url)
        .schema(schema)
        .max_connections(MAX_CONNECTIONS)
        .build()
        .await
        .expect("connect the PostgreSQL store")
}

stoker_storetest::conformance_tests!(
    store,
    #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
);

/// One test per [`stoker_storetest::shared`] behaviour, on two stores sharing one schema.
macro_rules! shared_tests {
    ($($behaviour:ident),* $(,)?) => {
        /// Two stores on one schema: what must hold across processes.
        mod shared {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
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
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn tx_insert_commits_with_the_caller() {
    let store = store().await;
    let mut tx = store.pool().begin().await.expect("begin");
    let inserted = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many_tx");
    assert_eq!(inserted.len(), 1);
    assert!(!inserted[0].duplicate);
    assert_eq!(
        store.job_get(inserted[0].id).await.expect("job_get"),
        None,
        "the job is invisible outside the transaction until it commits"
    );
    tx.commit().await.expect("commit");

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
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
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

    let mut tx = store.pool().begin().await.expect("begin");
    let inserted = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![outbox_job()], now()))
        .await
        .expect("job_insert_many_tx");
    tx.rollback().await.expect("rollback");

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

/// An invalid batch inside the caller's transaction is refused before anything is sent, so the
/// transaction stays usable: what it inserted before still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn tx_insert_invalid_batch_leaves_the_transaction_usable() {
    let store = store().await;
    let mut tx = store.pool().begin().await.expect("begin");
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

/// `JobsAvailable` for jobs inserted in the caller's transaction arrives only if it commits:
/// a rolled-back insert sends nothing (checked against a later insert's event, which the
/// listener receives in commit order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn tx_insert_notifies_only_on_commit() {
    let store = store().await;
    let mut events = store
        .subscribe()
        .expect("the PostgreSQL store listens by default");
    let in_queue = |queue: &str| {
        let mut job = JobInsert::new("outbox", json!({}));
        job.queue = queue.to_owned();
        job
    };

    let mut tx = store.pool().begin().await.expect("begin");
    store
        .job_insert_many_tx(
            &mut tx,
            JobInsertParams::new(vec![in_queue("rolled-back")], now()),
        )
        .await
        .expect("job_insert_many_tx");
    tx.rollback().await.expect("rollback");
    let mut tx = store.pool().begin().await.expect("begin");
    store
        .job_insert_many_tx(
            &mut tx,
            JobInsertParams::new(vec![in_queue("committed")], now()),
        )
        .await
        .expect("job_insert_many_tx");
    tx.commit().await.expect("commit");

    let wait = async {
        loop {
            match events.recv().await.expect("the event channel stays open") {
                StoreEvent::JobsAvailable { queue } if queue == "committed" => return,
                StoreEvent::JobsAvailable { queue } if queue == "rolled-back" => {
                    panic!("a rolled-back insert sent JobsAvailable")
                }
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("JobsAvailable for the committed insert within 5 s");
}
