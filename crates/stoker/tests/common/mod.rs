//! Stores for the runtime tests: a fresh, migrated, isolated one per test.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use stoker::postgres::PgStore;
use stoker::sqlite::SqliteStore;
use stoker::{Client, Store, WorkerEvent};
use tokio::sync::broadcast;

/// A SQLite store in its own temporary directory, which lives as long as the test process.
pub async fn sqlite() -> Arc<SqliteStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stoker.db");
    std::mem::forget(dir);
    let store = SqliteStore::open(&path).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    Arc::new(store)
}

/// The PostgreSQL URL tests use.
pub fn postgres_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL")
        .expect("STOKER_TEST_DATABASE_URL must be set for the PostgreSQL tests")
}

/// Drops schemas these tests made more than ten minutes ago (a whole run takes about one),
/// once per test binary, so repeated runs do not pile schemas up in the database.
async fn drop_leftover_schemas(url: &str) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let pool = sqlx::PgPool::connect(url).await.expect("connect postgres");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname LIKE 'stoker\\_rt\\_%' OR nspname LIKE 'stoker\\_crash\\_%'",
    )
    .fetch_all(&pool)
    .await
    .expect("list test schemas");
    let cutoff = chrono::Utc::now().timestamp() - 600;
    for schema in schemas {
        let made_at = schema
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse::<i64>().ok());
        if made_at.is_some_and(|secs| secs < cutoff) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(err) = sqlx::query(&drop).execute(&pool).await {
                eprintln!("could not drop leftover schema {schema}: {err}");
            }
        }
    }
    pool.close().await;
}

/// A name for a new test schema: `<prefix>_<unix seconds>_<random>`, so leftovers can be
/// swept by age.
pub async fn new_schema(prefix: &str) -> String {
    drop_leftover_schemas(&postgres_url()).await;
    format!(
        "{prefix}_{}_{:08x}",
        chrono::Utc::now().timestamp(),
        rand::random::<u32>()
    )
}

/// A PostgreSQL store in a schema of its own.
pub async fn postgres() -> Arc<PgStore> {
    let schema = new_schema("stoker_rt").await;
    let store = PgStore::builder(&postgres_url())
        .schema(&schema)
        .max_connections(8)
        .build()
        .await
        .expect("connect postgres");
    store.migrate().await.expect("migrate postgres");
    Arc::new(store)
}

/// Waits for `count` acknowledgements matching `pred`, failing the test after `timeout`.
pub async fn wait_events(
    events: &mut broadcast::Receiver<WorkerEvent>,
    count: usize,
    timeout: Duration,
    pred: impl Fn(&WorkerEvent) -> bool,
) -> Vec<WorkerEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pred(&event) => seen.push(event),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                panic!("test fell {n} events behind")
            }
            Ok(Err(err)) => panic!("worker events closed: {err}"),
            Err(_) => panic!(
                "timed out after {timeout:?} with {} of {count} events: {seen:?}",
                seen.len()
            ),
        }
    }
    seen
}

/// A client over a store, as the tests use it.
pub fn client<S: Store>(store: &Arc<S>) -> Client {
    Client::new(Arc::clone(store)).into_dyn()
}
