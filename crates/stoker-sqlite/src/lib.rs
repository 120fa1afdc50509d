//! The SQLite store for [Stoker](https://example.invalid/stoker): a durable background job
//! queue in one database file, with zero set-up.
//!
//! [`SqliteStore`] implements [`stoker_core::Store`], so the Stoker worker runtime, client and
//! server run on it unchanged, and [`stoker_core::StoreTx`] for
//! [`sqlx::SqliteConnection`], so an application can insert jobs inside its own transaction
//! (the outbox pattern).
//!
//! # Quick start
//!
//! ```
//! use serde_json::json;
//! use stoker_core::{JobClaimParams, JobInsert, JobInsertParams, Store};
//! use stoker_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> stoker_core::StoreResult<()> {
//! // A file path works the same: SqliteStore::open("jobs.db").
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//!
//! let now = chrono::Utc::now();
//! let email = JobInsert::new("email", json!({"to": "ada@example.com"}));
//! let inserted = store
//!     .job_insert_many(JobInsertParams::new(vec![email], now))
//!     .await?;
//!
//! let claimed = store
//!     .job_claim(JobClaimParams {
//!         queue: "default".into(),
//!         kinds: Vec::new(),
//!         limit: 10,
//!         worker_id: "worker-1".into(),
//!         now,
//!         lease: None, // or Some(lease) for a pull worker without a heartbeat row
//!     })
//!     .await?;
//! assert_eq!(claimed[0].id, inserted[0].id);
//! # Ok(())
//! # }
//! ```
//!
//! # Inserting in your own transaction
//!
//! ```
//! # use serde_json::json;
//! # use stoker_core::{JobInsert, JobInsertParams, Store, StoreTx};
//! # use stoker_sqlite::SqliteStore;
//! use sqlx::Connection;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = SqliteStore::connect("sqlite::memory:").await?;
//! # store.migrate().await?;
//! let mut conn = store.write_connection().await?;
//! let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
//! // ... the application's own writes on &mut *tx ...
//! let job = JobInsert::new("welcome_email", json!({"user": 42}));
//! store
//!     .job_insert_many_tx(&mut *tx, JobInsertParams::new(vec![job], chrono::Utc::now()))
//!     .await?;
//! tx.commit().await?; // the job exists only if this commits
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! The database runs in WAL mode, so reads never block the writer nor the writer reads. All
//! writes of one store go through a single connection, so they never contend with each other
//! for SQLite's lock; reads use a small pool of their own. The writer is held directly, not
//! through a pool: sqlx's pool tests each connection it gets back with one more round trip to
//! SQLite's thread, which tripled the cost of a one-row statement when measured. Every write that takes more than
//! one statement runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock before
//! reading, so several processes can share one database file without deadlocking on a lock
//! upgrade: they take turns, each waiting up to the busy timeout. A third connection copies
//! the WAL back into the database file (a checkpoint) in the background a few times a second
//! while it grows, so that work, with its fsyncs, does not land inside a commit that a job's
//! enqueue or claim is waiting on; SQLite still checkpoints in a commit when writes outpace
//! it.
//!
//! A claim is one `UPDATE … RETURNING` statement over a partial index of due jobs. A batch of
//! inserts is a few multi-row `INSERT` statements (1,024 jobs each) in one transaction, and a
//! batch of acknowledgements is one `UPDATE … FROM` statement, never a round trip per job.
//! Counts of finished jobs, per queue, kind and tenant, are kept in a table that every path
//! moving a job into or out of a finished state updates in the same transaction, so
//! [`Store::job_stats`] stays fast with millions of them. Rows changed by SQL written outside
//! Stoker are not counted. Waiting jobs (`blocked`, `available`, `retryable`) are counted live
//! by a walk of a covering index that holds only them (schema version 23), reading no table
//! row; running ones, at most the cluster's concurrency, through the `(state, id)` index. A
//! counter written by every insert and claim would cost the single writer more, and every new
//! path that moves a waiting job would have to remember it: a backlog of millions of waiting
//! jobs makes a stats read slower (see Limits).
//!
//! A running job is held either by its worker's heartbeat row or, for a pull worker (a process
//! that takes jobs from a server and has no row), by a lease: a claim made with a lease sets
//! the job's `lease_expires_at`, [`Store::job_extend_lease`] moves it (one primary-key update,
//! fenced by the claim's `fence`, and never past the lease's end), and every acknowledgement
//! clears it. The rescuer's query
//! ([`Store::job_list_stuck`]) reads the running jobs only: a leased job is stuck once its
//! lease has ended, one without a lease once its worker's heartbeat is stale or its row gone.
//! A bulk retry ([`Store::job_retry_many`]) is one `UPDATE … RETURNING` statement per batch.
//!
//! # Limits
//!
//! - **Waiting and running jobs are counted live.** [`Store::job_stats`] and
//!   [`Store::queue_depths`](stoker_core::Store::queue_depths) read finished counts from counters but count the waiting jobs'
//!   entries of a covering index: about 15 ms for 40,000 waiting jobs, proportionally more
//!   for a backlog of millions.
//! - **One writer at a time.** SQLite serialises writes to a database, across every process
//!   that shares it. Throughput is that of one writer: high for a single machine, but
//!   workers on several machines need PostgreSQL.
//! - **Events stay in the process.** [`Store::subscribe`] delivers events caused by this
//!   process only ([`Capabilities::LOCAL`](stoker_core::Capabilities::LOCAL)): a worker
//!   sees jobs that another process inserts on its next poll, not at once.
//! - **No events from [`StoreTx::job_insert_many_tx`].** The caller's transaction may still
//!   roll back and SQLite cannot tie an event to its commit; workers find those jobs by
//!   polling.
//! - **Your transaction holds the writer.** While an application holds the connection from
//!   [`SqliteStore::write_connection`], the store's own writes in this process wait for it
//!   (up to the busy timeout). Keep such transactions short.
//! - **Durability.** The default [`Synchronous::Normal`] survives a crash or `kill -9` of the
//!   process; a power loss or operating-system crash may roll back the last commits before
//!   it. Choose [`Synchronous::Full`] to survive those too, at the cost of a disk sync per
//!   write transaction.
//! - **Local disks only.** WAL mode needs shared memory between the processes that open the
//!   file, so the database must not live on a network file system.
//! - **In-memory databases** (`sqlite::memory:`) use one connection for everything and
//!   vanish when the last clone of the store is dropped; they are for tests and examples.
//! - **Claim order.** A claim scans its queue in priority order and skips jobs scheduled in
//!   the future; a very large number of future jobs at a higher priority than the due ones
//!   makes claims of that queue slower.
//! - **Bulk retries sort.** Each call of [`Store::job_retry_many`] reads every finished job in
//!   the states it names (through the `(state, id)` index) and sorts them by id to take the
//!   oldest batch: retrying a million completed jobs a thousand at a time reads more than it
//!   retries. Retrying the dead letters (`discarded`), which are few, is cheap.
//! - **Leases run on the callers' clocks.** A lease ends at the claim's (or extension's) `now`
//!   plus the lease, and the rescuer compares it with its own `now`: keep the clocks of the
//!   processes that share a database in sync, or give leases a margin.
//! - **SQLite 3.38 or newer** is needed (JSON operators, `RETURNING`, `UPDATE … FROM`); the
//!   bundled SQLite is newer.
//!
//! [`Store::job_stats`]: stoker_core::Store::job_stats
//! [`Store::job_extend_lease`]: stoker_core::Store::job_extend_lease
//! [`Store::job_list_stuck`]: stoker_core::Store::job_list_stuck
//! [`Store::job_retry_many`]: stoker_core::Store::job_retry_many
//! [`Store::subscribe`]: stoker_core::Store::subscribe
//! [`StoreTx::job_insert_many_tx`]: stoker_core::StoreTx::job_insert_many_tx

#![warn(missing_docs)]

mod builder;
mod checkpoint;
mod connection;
mod counts;
mod error;
// Failure groups, bulk operations and job logs (issue 13).
mod failures;
mod finish;
// History (issue 13).
mod history;
mod insert;
mod migrate;
mod prune;
mod row;
// --- stream search ---
mod search;
mod store;

pub use builder::{SqliteStoreBuilder, Synchronous, BUSY_TIMEOUT_DEFAULT, MAX_READERS_DEFAULT};
pub use connection::WriteConnection;
pub use store::{SqliteStore, EVENT_CAPACITY};

#[cfg(test)]
mod tests;
