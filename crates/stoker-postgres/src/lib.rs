//! The PostgreSQL store for [Stoker](https://example.invalid/stoker): any number of worker
//! processes on any number of machines share one database, coordinated by row locks
//! (`FOR UPDATE SKIP LOCKED`), `LISTEN/NOTIFY` and advisory locks.
//!
//! [`PgStore`] implements [`stoker_core::Store`], and [`stoker_core::StoreTx`] over
//! [`sqlx::PgConnection`], so an application can enqueue jobs inside its own transaction: the
//! jobs exist (and workers hear of them) only if that transaction commits.
//!
//! # Quick start
//!
//! ```no_run
//! use serde_json::json;
//! use stoker_core::{JobClaimParams, JobInsert, JobInsertParams, Store, StoreTx};
//! use stoker_postgres::PgStore;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::builder("postgres://postgres@127.0.0.1:5432/app")
//!     .schema("stoker")
//!     .build()
//!     .await?;
//! store.migrate().await?; // once at start-up: creates or upgrades the schema
//!
//! let now = chrono::Utc::now();
//! let job = JobInsert::new("email", json!({"to": "ada@example.com"}));
//! let inserted = store.job_insert_many(JobInsertParams::new(vec![job], now)).await?;
//!
//! // The outbox pattern: the job is inserted only if the order is.
//! let mut tx = store.pool().begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
//! let receipt = JobInsert::new("receipt", json!({"order": 42}));
//! store.job_insert_many_tx(&mut tx, JobInsertParams::new(vec![receipt], now)).await?;
//! tx.commit().await?;
//!
//! let claimed = store
//!     .job_claim(JobClaimParams {
//!         queue: "default".into(),
//!         kinds: vec![],
//!         limit: 10,
//!         worker_id: "worker-1".into(),
//!         now: chrono::Utc::now(),
//!         lease: None, // or Some(lease) for a pull worker without a heartbeat row
//!     })
//!     .await?;
//! # let _ = (inserted, claimed);
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! Everything lives in one schema (default `public`, see [`PgStoreBuilder::schema`]), so
//! several stores can share a database. Runtime SQL qualifies every table with the schema
//! rather than relying on `search_path`, because
//! [`job_insert_many_tx`](stoker_core::StoreTx::job_insert_many_tx) runs on the caller's
//! connection.
//!
//! | table | holds |
//! |---|---|
//! | `stoker_jobs` | the jobs (fillfactor 80) |
//! | `stoker_queues` | queues that were ever paused or resumed |
//! | `stoker_workers` | one heartbeat row per worker process |
//! | `stoker_leader` | the leader lease |
//! | `stoker_job_counts` | counts of finished jobs per queue, kind and state |
//! | `stoker_migrations` | the applied migrations |
//!
//! `stoker_jobs` has four indexes besides its primary key: the fetch index
//! `(queue, priority DESC, run_at, id) WHERE state IN ('available', 'retryable') AND NOT
//! scheduled`, the schedule index `(run_at, id) WHERE scheduled` for jobs waiting for a
//! `run_at` in the future, `(state, id)` for listing, pruning and the rescuer, and the unique
//! index `(COALESCE(tenant, ''), unique_key) WHERE unique_key IS NOT NULL` for idempotency keys
//! scoped by tenant.
//!
//! A running job is held either by its worker's heartbeat row in `stoker_workers` or, for a
//! pull worker (a process that takes jobs from a server and has no row), by a lease in its
//! `lease_expires_at` column: set by a claim made with a lease, moved by
//! [`job_extend_lease`](stoker_core::Store::job_extend_lease) (fenced by the claim's `fence`, and
//! never past the lease's end), cleared by every acknowledgement. The column is in no index, so extending a lease is a HOT update. The
//! rescuer's query ([`job_list_stuck`](stoker_core::Store::job_list_stuck)) reads the running
//! jobs through the `(state, id)` index: a leased job is stuck once its
//! lease has ended, one without a lease once its worker's heartbeat is stale or its row gone.
//!
//! Finished counts are kept by statement-level triggers with transition tables on insert,
//! update and delete of `stoker_jobs`: one upsert per statement that moves rows into or out of
//! a finished state, whatever issued it (the store, or SQL by hand), and nothing at all for
//! statements that involve no finished row, such as inserts and claims. So
//! [`job_stats`](stoker_core::Store::job_stats) stays fast with millions of finished jobs.
//!
//! [`migrate`](stoker_core::Store::migrate) applies the embedded migrations in one
//! transaction under an advisory lock keyed by the schema name: safe when many processes start
//! at once. Building a store never migrates.
//!
//! ## The claim
//!
//! A claim is one statement. Its plan on a table with 100,000 completed and 100,000
//! future-scheduled jobs, the same under a generic plan (with `$n` in place of the values):
//!
//! ```text
//! Update on stoker_jobs j
//!   InitPlan 2 (returns $3)
//!     ->  Limit
//!           InitPlan 1 (returns $0)
//!             ->  Index Scan using stoker_queues_pkey on stoker_queues
//!                   Index Cond: (name = 'default'::text)
//!                   Filter: paused
//!           ->  LockRows
//!                 ->  Result
//!                       One-Time Filter: (NOT $0)
//!                       ->  Index Scan using stoker_jobs_fetch_idx on stoker_jobs
//!                             Index Cond: ((queue = 'default'::text) AND (run_at <= '2030-01-01 00:00:00+00'))
//!                             Filter: (state = ANY ('{available,retryable}'::text[]))
//!   ->  Index Scan using stoker_jobs_pkey on stoker_jobs j
//!         Index Cond: (id = ANY ($3))
//! ```
//!
//! # Events
//!
//! Each schema has one notification channel, `stoker_<schema>` (see
//! [`PgStore::notify_channel`]), with payloads `a:<queue>` (jobs available) and `c:<id>`
//! (cancel requested). The first [`subscribe`](stoker_core::Store::subscribe) starts one
//! listener task per store, on its own connection; it sends
//! [`StoreEvent::Resync`](stoker_core::StoreEvent::Resync) whenever it (re)starts listening,
//! and stops when the last clone of the store is dropped.
//!
//! "Jobs available" notifications are coalesced per queue and process: at most one per
//! [`notify_interval`](PgStoreBuilder::notify_interval). The first insert in a quiet interval
//! notifies at once, in its own statement; later inserts in the interval are covered by one
//! trailing notification sent after they commit. So a burst of inserts sends about one
//! notification per interval (in our tests, 1,000 concurrent single inserts sent about 180 with
//! the default 2 ms, and about 35 with 20 ms), while a lone insert is heard at once.
//!
//! `subscribe` must be called within a Tokio runtime (the listener is a task); outside one it
//! returns `None`.
//!
//! # Limits
//!
//! - Needs PostgreSQL 11 or later (tested on 15).
//! - Timestamps are stored with microsecond precision: a `now` with nanoseconds comes back
//!   rounded to the microsecond.
//! - The event listener uses one connection beyond [`PgStoreBuilder::max_connections`].
//! - Behind a transaction-pooling proxy such as PgBouncer, turn
//!   [`listen`](PgStoreBuilder::listen) off (`LISTEN` needs a session): workers then poll. The
//!   store still sends notifications for processes that do listen. sqlx uses prepared
//!   statements, so such a proxy must support them (PgBouncer 1.21 or later, with
//!   `max_prepared_statements` set).
//! - Notifications of [`job_insert_many_tx`](stoker_core::StoreTx::job_insert_many_tx) are
//!   part of the caller's transaction and not coalesced: one per queue per transaction.
//! - Claims walk the fetch index in priority order: in a queue with many future-scheduled jobs
//!   of a higher priority than its due jobs, a claim steps over those future jobs first.
//! - Pruning by `keep_last` sorts the finished jobs of each queue over the limit (there is no
//!   index on `finished_at`), with memory bounded by the batch size.
//! - Counts of unfinished jobs (`available`, `running`, `retryable`) are counted live, so
//!   stats cost time linear in the number of unfinished jobs.
//! - Finished counts are kept by triggers: `TRUNCATE stoker_jobs` resets them, but disabling
//!   the triggers (or `session_replication_role = replica`) while changing jobs makes them
//!   drift.
//! - State changes are never HOT updates (`state` is indexed); progress reports and lease
//!   extensions are.
//! - A bulk retry ([`job_retry_many`](stoker_core::Store::job_retry_many)) is one statement per
//!   batch that locks the oldest matching finished jobs with `FOR UPDATE SKIP LOCKED`: rows a
//!   concurrent statement holds (another bulk retry, a prune) are skipped, so a batch may come
//!   back short while matching jobs remain. For a rare state (the dead letters) it sorts that
//!   state's jobs by id; for a common one it walks the primary key, so a call costs time linear
//!   in the jobs it passes over before filling its batch.
//! - Leases run on the callers' clocks: a lease ends at the claim's (or extension's) `now` plus
//!   the lease, and the rescuer compares it with its own `now`. Keep the clocks of the
//!   processes that share a database in sync, or give leases a margin.
//! - Ids are drawn for duplicates too, so ids have gaps; like any sequence, ids follow insert
//!   order, not commit order.
#![warn(missing_docs)]

mod builder;
mod coalescer;
mod error;
// Failure groups, bulk operations and job logs (issue 13).
mod failures;
// History (issue 13).
mod history;
mod listener;
mod migrate;
mod row;
// --- stream search ---
mod search;
mod sql;
mod store;

pub use builder::{
    PgStoreBuilder, ACQUIRE_TIMEOUT_DEFAULT, MAX_CONNECTIONS_DEFAULT, NOTIFY_INTERVAL_DEFAULT,
    SCHEMA_DEFAULT, SCHEMA_MAX_LEN,
};
pub use store::PgStore;
