//! Behaviours specific to the PostgreSQL store: schema handling, the migrator under
//! concurrency, LISTEN/NOTIFY across processes, notification coalescing and the listener's
//! life cycle. The store-agnostic behaviours live in the conformance suite
//! (`tests/conformance.rs`).
//!
//! Set `STOKER_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`) to run
//! the tests that need a database; without it they return early, saying so. Each test works in
//! a fresh schema named `stoker_pgspec_*` and drops it at the end.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::{Connection, Executor, PgConnection};
use stoker_core::{
    Capabilities, JobCancelParams, JobClaimParams, JobFinish, JobFinishParams, JobId, JobInsert,
    JobInsertParams, JobStageParams, JobState, Outcome, Store, StoreError, StoreErrorKind,
    StoreEvent, StoreTx,
};
use stoker_postgres::PgStore;
use tokio::sync::broadcast::{self, error::RecvError};

const WAIT: Duration = Duration::from_secs(10);

fn database_url(test: &str) -> Option<String> {
    let url = std::env::var("STOKER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("skipped {test}: STOKER_TEST_DATABASE_URL is unset");
    }
    url
}

/// A schema name no other test (or run) uses.
fn fresh_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    format!(
        "stoker_pgspec_{secs}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

async fn drop_schema(url: &str, schema: &str) {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await
        .expect("drop the test schema");
}

async fn store(url: &str, schema: &str) -> PgStore {
    PgStore::builder(url)
        .schema(schema)
        .max_connections(10)
        .build()
        .await
        .expect("connect")
}

/// A migrated store in `schema` that does not listen for notifications (poll-only mode).
async fn poll_only_store(url: &str, schema: &str) -> PgStore {
    let store = PgStore::builder(url)
        .schema(schema)
        .listen(false)
        .build()
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).expect("a valid instant")
}

fn job(queue: &str) -> JobInsert {
    let mut job = JobInsert::new("pg", json!({"n": 1}));
    job.queue = queue.to_owned();
    job
}

/// Waits for the first event matching `wanted`, skipping others.
async fn expect_event(
    events: &mut broadcast::Receiver<StoreEvent>,
    what: &str,
    wanted: impl Fn(&StoreEvent) -> bool,
) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the event channel closed waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
}

/// Waits until the store's listener listens (it sends `Resync` when it starts).
async fn listening(events: &mut broadcast::Receiver<StoreEvent>) {
    expect_event(events, "Resync", |event| *event == StoreEvent::Resync).await;
}

fn available(queue: &'static str) -> impl Fn(&StoreEvent) -> bool {
    move |event| matches!(event, StoreEvent::JobsAvailable { queue: q } if q == queue)
}

/// The number of connections the store's listener holds open.
async fn listener_connections(url: &str, schema: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(format!("stoker-listener {schema}"))
        .fetch_one(&mut conn)
        .await
        .expect("count listener connections")
}

#[tokio::test]
async fn schema_names_are_validated_before_connecting() {
    // Nothing listens on port 1: a name that got past validation would fail to connect.
    let url = "postgres://nobody@127.0.0.1:1/none";
    for bad in [
        "",
        "Public",
        "1jobs",
        "jobs-1",
        "jobs\"; DROP",
        &"a".repeat(64),
    ] {
        let err = PgStore::builder(url)
            .schema(bad)
            .build()
            .await
            .expect_err("an invalid schema name is refused");
        assert!(
            matches!(&err, StoreError::Invalid(invalid) if invalid.field == "schema"),
            "{bad:?}: {err}"
        );
    }
    let err = PgStore::builder(url)
        .max_connections(0)
        .build()
        .await
        .expect_err("zero connections is refused");
    assert_eq!(err.kind(), StoreErrorKind::Invalid);
}

#[tokio::test]
async fn unreachable_database_is_busy() {
    // (A refused connection would be retried until the pool's 30 s acquire timeout; a host
    // that does not resolve fails at once.)
    let err = PgStore::connect("postgres://nobody@stoker-test.invalid/none")
        .await
        .expect_err("the host does not resolve");
    assert_eq!(err.kind(), StoreErrorKind::Busy, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_a_fresh_schema() {
    let Some(url) = database_url("concurrent_migrations_of_a_fresh_schema") else {
        return;
    };
    let schema = fresh_schema();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(store(&url, &schema).await);
    }
    assert!(!stores[0].migrations_current().await.expect("current"));

    let migrations = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move { store.migrate().await })
    });
    for migrated in futures_join(migrations).await {
        migrated.expect("migrate");
    }
    for store in &stores {
        assert!(store.migrations_current().await.expect("current"));
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".stoker_migrations ORDER BY version"
    ))
    .fetch_all(stores[0].pool())
    .await
    .expect("list applied migrations");
    // Each migration exactly once: no version twice (the ORDER BY makes a repeat adjacent),
    // and every one this build knows of (migrations_current above). Not a literal list, so
    // branches that add migrations (12, job search) merge without touching it.
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1])
            && versions[..8] == [1, 2, 3, 4, 5, 6, 7, 8],
        "each migration is applied exactly once: {versions:?}"
    );
    // And again, now a no-op.
    stores[1].migrate().await.expect("migrate again");

    drop(stores);
    drop_schema(&url, &schema).await;
}

/// Joins spawned tasks, in order.
async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.expect("the task does not panic"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_another_store_on_the_same_schema() {
    let Some(url) = database_url("events_reach_another_store_on_the_same_schema") else {
        return;
    };
    let schema = fresh_schema();
    // Two stores with their own pools: as two processes would be.
    let sender = store(&url, &schema).await;
    let receiver = store(&url, &schema).await;
    sender.migrate().await.expect("migrate");
    assert_eq!(receiver.capabilities(), Capabilities::SHARED);
    let mut events = receiver.subscribe().expect("listening by default");
    listening(&mut events).await;

    sender
        .job_insert_many(JobInsertParams::new(vec![job("cross")], now()))
        .await
        .expect("insert");
    expect_event(&mut events, "JobsAvailable(cross)", available("cross")).await;

    let claimed = sender
        .job_claim(JobClaimParams {
            queue: "cross".into(),
            kinds: vec![],
            limit: 1,
            worker_id: "w".into(),
            now: now(),
            lease: None,
        })
        .await
        .expect("claim");
    let id = claimed[0].id;
    sender
        .job_cancel(JobCancelParams { id, now: now() })
        .await
        .expect("cancel");
    expect_event(&mut events, "JobCancelRequested", |event| {
        *event == StoreEvent::JobCancelRequested { id }
    })
    .await;

    drop((sender, receiver));
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_inserts_are_coalesced() {
    let Some(url) = database_url("bursts_of_inserts_are_coalesced") else {
        return;
    };
    let schema = fresh_schema();
    let interval = Duration::from_millis(20);
    let store = Arc::new(
        PgStore::builder(&url)
            .schema(&schema)
            .notify_interval(interval)
            .build()
            .await
            .expect("connect"),
    );
    store.migrate().await.expect("migrate");
    let mut listener = PgListener::connect(&url).await.expect("listener");
    listener
        .listen(store.notify_channel())
        .await
        .expect("listen");

    let started = std::time::Instant::now();
    let inserts = (0..1000).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .job_insert_many(JobInsertParams::new(vec![job("burst")], now()))
                .await
        })
    });
    for inserted in futures_join(inserts).await {
        inserted.expect("insert");
    }
    let elapsed = started.elapsed();

    // Collect until the channel has been quiet for a while (the trailing notification of the
    // burst arrives at most one interval after the last commit).
    let mut received = 0u32;
    while let Ok(notification) =
        tokio::time::timeout(Duration::from_millis(500), listener.recv()).await
    {
        let notification = notification.expect("receive");
        assert_eq!(notification.payload(), "a:burst");
        received += 1;
    }
    // One leading and at most one trailing notification per interval.
    let intervals = u32::try_from(elapsed.as_millis() / interval.as_millis()).unwrap_or(u32::MAX);
    eprintln!("1000 inserts in {elapsed:?} sent {received} notifications");
    assert!(received >= 1, "the burst sent no notification at all");
    assert!(
        received <= 2 * intervals + 2,
        "{received} notifications for {intervals} intervals"
    );
    assert!(received < 500, "{received} notifications for 1000 inserts");

    // After a quiet interval, a lone insert notifies at once (leading edge).
    tokio::time::sleep(interval * 2).await;
    store
        .job_insert_many(JobInsertParams::new(vec![job("burst")], now()))
        .await
        .expect("insert");
    let notification = tokio::time::timeout(interval / 2, listener.recv())
        .await
        .expect("a lone insert notifies before its interval ends")
        .expect("receive");
    assert_eq!(notification.payload(), "a:burst");

    drop(store);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_insert_of_a_burst_is_always_announced() {
    let Some(url) = database_url("the_last_insert_of_a_burst_is_always_announced") else {
        return;
    };
    let schema = fresh_schema();
    let store = PgStore::builder(&url)
        .schema(&schema)
        .notify_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let mut events = store.subscribe().expect("listening");
    listening(&mut events).await;

    // The first insert leads; the second, within the interval, must be announced by the
    // trailing notification (after it committed), not left to a poll.
    store
        .job_insert_many(JobInsertParams::new(vec![job("first")], now()))
        .await
        .expect("insert");
    expect_event(&mut events, "JobsAvailable(first)", available("first")).await;
    store
        .job_insert_many(JobInsertParams::new(vec![job("first")], now()))
        .await
        .expect("insert");
    expect_event(
        &mut events,
        "trailing JobsAvailable(first)",
        available("first"),
    )
    .await;

    drop(store);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stops_with_the_last_clone_of_the_store() {
    let Some(url) = database_url("the_listener_stops_with_the_last_clone_of_the_store") else {
        return;
    };
    let schema = fresh_schema();
    let store = store(&url, &schema).await;
    store.migrate().await.expect("migrate");
    let clone = store.clone();
    let mut events = store.subscribe().expect("listening");
    let mut more = clone.subscribe().expect("listening");
    listening(&mut events).await;
    listening(&mut more).await;
    assert_eq!(
        listener_connections(&url, &schema).await,
        1,
        "one listener per store, however many clones subscribe"
    );

    drop(store);
    // A clone still holds the store: the listener keeps running.
    clone
        .job_insert_many(JobInsertParams::new(vec![job("alive")], now()))
        .await
        .expect("insert");
    expect_event(&mut events, "JobsAvailable(alive)", available("alive")).await;

    drop(clone);
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(RecvError::Closed) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the event channel closes when the store is dropped"
    );
    let deadline = std::time::Instant::now() + WAIT;
    while listener_connections(&url, &schema).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener's connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connection_resyncs_and_recovers() {
    let Some(url) = database_url("a_lost_listener_connection_resyncs_and_recovers") else {
        return;
    };
    let schema = fresh_schema();
    let store = store(&url, &schema).await;
    store.migrate().await.expect("migrate");
    let mut events = store.subscribe().expect("listening");
    listening(&mut events).await;

    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("stoker-listener {schema}"))
    .fetch_all(store.pool())
    .await
    .expect("terminate the listener's backend");
    assert_eq!(terminated, vec![true]);
    listening(&mut events).await;

    store
        .job_insert_many(JobInsertParams::new(vec![job("after")], now()))
        .await
        .expect("insert");
    expect_event(&mut events, "JobsAvailable(after)", available("after")).await;

    drop(store);
    drop_schema(&url, &schema).await;
}

/// A connection the database closed while it sat idle in the store's pool (a restart, an
/// administrator's `pg_terminate_backend`) is tested on its way out of the pool and replaced:
/// the store's next operations succeed without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_while_idle_are_replaced() {
    let Some(url) = database_url("connections_closed_while_idle_are_replaced") else {
        return;
    };
    let schema = fresh_schema();
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = poll_only_store(
        &format!("{url}{separator}application_name={schema}"),
        &schema,
    )
    .await;
    store
        .job_insert_many(JobInsertParams::new(vec![job("before")], now()))
        .await
        .expect("insert");

    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&schema)
    .fetch_all(&mut admin)
    .await
    .expect("terminate the store's backends");
    assert!(
        !terminated.is_empty() && terminated.iter().all(|done| *done),
        "{terminated:?}"
    );
    // Idle past the point where the pool tests a connection before handing it out.
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    for n in 0..3 {
        store
            .job_insert_many(JobInsertParams::new(vec![job("after")], now()))
            .await
            .unwrap_or_else(|error| panic!("insert {n} after the restart: {error}"));
    }
    let stats = store.job_stats().await.expect("stats");
    assert_eq!(stats.iter().map(|count| count.count).sum::<i64>(), 4);

    drop(store);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_mode_subscribes_to_nothing_but_still_notifies() {
    let Some(url) = database_url("poll_only_mode_subscribes_to_nothing_but_still_notifies") else {
        return;
    };
    let schema = fresh_schema();
    let store = poll_only_store(&url, &schema).await;
    assert!(store.subscribe().is_none());
    assert_eq!(store.capabilities(), Capabilities::LOCAL);

    // Processes that can listen still hear this one's inserts.
    let mut listener = PgListener::connect(&url).await.expect("listener");
    listener
        .listen(store.notify_channel())
        .await
        .expect("listen");
    store
        .job_insert_many(JobInsertParams::new(vec![job("polled")], now()))
        .await
        .expect("insert");
    let notification = tokio::time::timeout(WAIT, listener.recv())
        .await
        .expect("a notification")
        .expect("receive");
    assert_eq!(notification.payload(), "a:polled");
    assert_eq!(listener_connections(&url, &schema).await, 0);

    drop(store);
    drop_schema(&url, &schema).await;
}

/// The outbox insert and the count triggers work on a connection whose search_path does not
/// include the store's schema, and counts stay right through manual SQL too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_search_path_and_manual_sql_keep_counts_right() {
    let Some(url) = database_url("foreign_search_path_and_manual_sql_keep_counts_right") else {
        return;
    };
    let schema = fresh_schema();
    let store = store(&url, &schema).await;
    store.migrate().await.expect("migrate");

    let mut conn = PgConnection::connect(&url).await.expect("connect");
    conn.execute("SET search_path TO pg_catalog")
        .await
        .expect("set search_path");
    let mut tx = conn.begin().await.expect("begin");
    let inserted = store
        .job_insert_many_tx(
            &mut tx,
            JobInsertParams::new(vec![job("outbox"), job("outbox")], now()),
        )
        .await
        .expect("insert on the caller's connection");
    // Finishing rows from that connection fires the count trigger with its search_path.
    let finished = format!(
        "UPDATE \"{schema}\".stoker_jobs SET state = 'completed', finished_at = now() \
         WHERE id = $1"
    );
    sqlx::query(&finished)
        .bind(inserted[0].id.0)
        .execute(&mut *tx)
        .await
        .expect("manual update");
    tx.commit().await.expect("commit");

    let counts = |stats: Vec<stoker_core::StateCount>| {
        let mut counts: Vec<(JobState, i64)> = stats
            .into_iter()
            .map(|count| (count.state, count.count))
            .collect();
        counts.sort_by_key(|(state, _)| state.as_str());
        counts
    };
    assert_eq!(
        counts(store.job_stats().await.expect("stats")),
        vec![(JobState::Available, 1), (JobState::Completed, 1)]
    );

    // Finished rows inserted by hand count too, whatever the statement's search_path.
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".stoker_jobs (kind, queue, args, state, max_attempts, run_at, \
                                               created_at, finished_at) \
         VALUES ('outbox', 'outbox', '{{}}', 'discarded', 1, now(), now(), now()), \
                ('outbox', 'outbox', '{{}}', 'discarded', 1, now(), now(), now())"
    ))
    .execute(&mut conn)
    .await
    .expect("manual insert");
    assert_eq!(
        counts(store.job_stats().await.expect("stats")),
        vec![
            (JobState::Available, 1),
            (JobState::Completed, 1),
            (JobState::Discarded, 2)
        ]
    );
    sqlx::query(&format!(
        "DELETE FROM \"{schema}\".stoker_jobs WHERE state = 'discarded'"
    ))
    .execute(&mut conn)
    .await
    .expect("manual delete of the inserted rows");

    // A manual delete moves the finished count too.
    sqlx::query(&format!(
        "DELETE FROM \"{schema}\".stoker_jobs WHERE state = 'completed'"
    ))
    .execute(&mut conn)
    .await
    .expect("manual delete");
    assert_eq!(
        counts(store.job_stats().await.expect("stats")),
        vec![(JobState::Available, 1)]
    );

    // Acknowledging through the store from a claim.
    let claimed = store
        .job_claim(JobClaimParams {
            queue: "outbox".into(),
            kinds: vec![],
            limit: 10,
            worker_id: "w".into(),
            now: now(),
            lease: None,
        })
        .await
        .expect("claim");
    store
        .job_finish_many(JobFinishParams {
            finishes: vec![JobFinish {
                id: claimed[0].id,
                fence: 1,
                outcome: Outcome::Completed { result: None },
            }],
            now: now(),
            rescue: false,
        })
        .await
        .expect("finish");
    assert_eq!(
        counts(store.job_stats().await.expect("stats")),
        vec![(JobState::Completed, 1)]
    );

    drop(store);
    drop_schema(&url, &schema).await;
}

/// An insert that collides with a key another transaction holds uncommitted waits for it, and
/// when it commits, returns its job as the duplicate (found by a second look, since the
/// waiting statement's snapshot predates the commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_waiting_on_an_uncommitted_key_returns_the_winner() {
    let Some(url) = database_url("an_insert_waiting_on_an_uncommitted_key_returns_the_winner")
    else {
        return;
    };
    let schema = fresh_schema();
    let store = Arc::new(store(&url, &schema).await);
    store.migrate().await.expect("migrate");
    let keyed = |tenant: Option<&str>| {
        let mut job = job("keys");
        job.unique_key = Some("order-7".into());
        job.tenant = tenant.map(str::to_owned);
        job
    };

    let mut tx = store.pool().begin().await.expect("begin");
    let winner = store
        .job_insert_many_tx(&mut tx, JobInsertParams::new(vec![keyed(None)], now()))
        .await
        .expect("insert in the transaction");
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .job_insert_many(JobInsertParams::new(
                    vec![keyed(None), keyed(Some("t")), keyed(None)],
                    now(),
                ))
                .await
        })
    };
    // Let the second insert reach the unique index and block there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the insert waits for the open transaction"
    );
    tx.commit().await.expect("commit");

    let results = waiting.await.expect("no panic").expect("insert");
    assert_eq!(results.len(), 3);
    assert_eq!((results[0].id, results[0].duplicate), (winner[0].id, true));
    assert!(!results[1].duplicate, "another tenant's key is another key");
    assert_eq!((results[2].id, results[2].duplicate), (winner[0].id, true));

    drop(store);
    drop_schema(&url, &schema).await;
}

/// A store on the application's own pool shares its connections, listens on a connection of
/// its own, and leaves the pool open when dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_applications_pool() {
    let Some(url) = database_url("a_store_on_the_applications_pool") else {
        return;
    };
    let schema = fresh_schema();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .expect("the application's pool");
    let store = PgStore::from_pool(pool.clone(), &schema)
        .build()
        .await
        .expect("build on the pool");
    assert_eq!(store.schema(), schema);
    store.migrate().await.expect("migrate");
    let mut events = store.subscribe().expect("listening");
    listening(&mut events).await;
    store
        .job_insert_many(JobInsertParams::new(vec![job("shared")], now()))
        .await
        .expect("insert");
    expect_event(&mut events, "JobsAvailable(shared)", available("shared")).await;
    assert_eq!(listener_connections(&url, &schema).await, 1);

    drop(store);
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("the pool is still open");
    assert_eq!(one, 1);
    pool.close().await;
    drop_schema(&url, &schema).await;
}

/// A schema at version 1 (from a build before leases and the schedule) is upgraded in place:
/// its jobs keep every field and have no lease, a job waiting for a future `run_at` moves into
/// the schedule, and leases work afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_a_version_1_schema() {
    let Some(url) = database_url("upgrades_a_version_1_schema") else {
        return;
    };
    let schema = fresh_schema();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let v1 = format!(
        "BEGIN; \
         CREATE SCHEMA \"{schema}\"; \
         SET LOCAL search_path TO \"{schema}\"; \
         {} \
         CREATE TABLE stoker_migrations ( \
             version bigint PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO stoker_migrations (version, name) VALUES (1, 'init'); \
         INSERT INTO stoker_jobs (id, kind, queue, args, max_attempts, run_at, created_at) \
         VALUES (1, 'k', 'old', '{{}}', 5, '2000-01-01', '2000-01-01'), \
                (2, 'k', 'old', '{{}}', 5, '2100-01-01', '2000-01-01'); \
         COMMIT;",
        include_str!("../migrations/0001_init.sql")
    );
    conn.execute(sqlx::raw_sql(&v1))
        .await
        .expect("create a version 1 schema");
    let _ = conn.close().await;

    let store = store(&url, &schema).await;
    assert!(!store.migrations_current().await.expect("current"));
    store.migrate().await.expect("migrate");
    assert!(store.migrations_current().await.expect("current"));

    let old = store
        .job_get(JobId(1))
        .await
        .expect("job_get")
        .expect("the job survived");
    assert_eq!((old.queue.as_str(), old.lease_expires_at), ("old", None));
    let claimed = store
        .job_claim(JobClaimParams {
            queue: "old".into(),
            kinds: vec![],
            limit: 10,
            worker_id: "pull:a".into(),
            now: now(),
            lease: Some(Duration::from_secs(30)),
        })
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![JobId(1)],
        "the future job is in the schedule"
    );
    assert_eq!(
        claimed[0].lease_expires_at,
        Some(now() + chrono::Duration::seconds(30))
    );
    let in_2101: DateTime<Utc> = "2101-01-01T00:00:00Z".parse().unwrap();
    let staged = store
        .job_stage(JobStageParams {
            now: in_2101,
            limit: 10,
        })
        .await
        .expect("stage");
    assert_eq!(staged, 1);
    let claimed = store
        .job_claim(JobClaimParams {
            queue: "old".into(),
            kinds: vec![],
            limit: 10,
            worker_id: "w".into(),
            now: in_2101,
            lease: None,
        })
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![JobId(2)]
    );

    drop(store);
    drop_schema(&url, &schema).await;
}
