//! The store's connections: one writer, held behind a lock rather than in a pool, and a pool
//! of readers.
//!
//! sqlx's pool tests a connection each time it is returned, with a round trip to the thread
//! that runs SQLite, in a task of its own: measured on a one-row statement, 118 µs and ten
//! thread switches through a pool of one connection against 42 µs and two on a connection
//! held directly. Every write of the store goes through the one writer, so it is held
//! directly; reads are rarer and keep the pool, which opens and closes readers as needed.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use stoker_core::{StoreError, StoreResult};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::error::{db_error, invariant};

/// The one writer connection, shared by the store's clones; `None` once the store is closed.
#[derive(Clone)]
pub(crate) struct Writer {
    conn: Arc<Mutex<Option<SqliteConnection>>>,
    /// How long [`Writer::acquire`] waits for another user of the connection.
    busy_timeout: Duration,
}

impl Writer {
    pub(crate) fn new(conn: SqliteConnection, busy_timeout: Duration) -> Writer {
        Writer {
            conn: Arc::new(Mutex::new(Some(conn))),
            busy_timeout,
        }
    }

    /// Takes the connection, waiting up to the busy timeout while another task holds it.
    ///
    /// # Errors
    ///
    /// `Busy` if it stayed held for the whole busy timeout; `Database` if the store was
    /// closed.
    pub(crate) async fn acquire(&self) -> StoreResult<WriteConnection> {
        let guard = tokio::time::timeout(self.busy_timeout, Arc::clone(&self.conn).lock_owned())
            .await
            .map_err(|_| StoreError::Busy {
                message: format!(
                    "the SQLite writer connection stayed in use for the whole busy timeout \
                     ({:?})",
                    self.busy_timeout
                ),
                source: None,
            })?;
        OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map(|conn| WriteConnection { conn })
            .map_err(|_| invariant("the SQLite store is closed"))
    }

    /// Closes the connection once its current user is done with it; later acquires fail.
    pub(crate) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            if let Err(error) = conn.close().await {
                tracing::debug!(%error, "closing the SQLite writer connection failed");
            }
        }
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

/// The store's writer connection, held for as long as this value lives: the store's own
/// writes in this process wait for it (up to the busy timeout), so hold it briefly.
///
/// It dereferences to a [`SqliteConnection`], so an application can open its own transaction
/// on it and insert jobs in that transaction with
/// [`StoreTx::job_insert_many_tx`](stoker_core::StoreTx::job_insert_many_tx), the outbox
/// pattern. Begin with `BEGIN IMMEDIATE` when other processes share the file, so SQLite takes
/// the write lock up front instead of failing on a lock upgrade:
///
/// ```
/// # use serde_json::json;
/// # use stoker_core::{JobInsert, JobInsertParams, Store, StoreTx};
/// # use stoker_sqlite::SqliteStore;
/// use sqlx::Connection;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let store = SqliteStore::connect("sqlite::memory:").await?;
/// # store.migrate().await?;
/// let mut conn = store.write_connection().await?;
/// let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
/// // ... the application's own writes on &mut *tx ...
/// let job = JobInsert::new("welcome_email", json!({"user": 42}));
/// store
///     .job_insert_many_tx(&mut *tx, JobInsertParams::new(vec![job], chrono::Utc::now()))
///     .await?;
/// tx.commit().await?; // the job exists only if this commits
/// # Ok(())
/// # }
/// ```
///
/// A transaction dropped without a commit is rolled back before the connection's next
/// statement, whoever runs it.
pub struct WriteConnection {
    conn: OwnedMappedMutexGuard<Option<SqliteConnection>, SqliteConnection>,
}

impl Deref for WriteConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl fmt::Debug for WriteConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteConnection").finish_non_exhaustive()
    }
}

/// Where reads go: a pool of read-only connections, or, for an in-memory database (one
/// connection holds the whole database), the writer.
#[derive(Debug)]
pub(crate) enum Readers {
    Pool(SqlitePool),
    Writer,
}

/// A connection to read on, from [`Readers`].
pub(crate) enum ReadConnection {
    Pooled(PoolConnection<Sqlite>),
    Writer(WriteConnection),
}

impl ReadConnection {
    /// Takes a reader from `readers`, or the writer.
    pub(crate) async fn acquire(readers: &Readers, writer: &Writer) -> StoreResult<Self> {
        match readers {
            Readers::Pool(pool) => pool
                .acquire()
                .await
                .map(ReadConnection::Pooled)
                .map_err(db_error),
            Readers::Writer => writer.acquire().await.map(ReadConnection::Writer),
        }
    }
}

impl Deref for ReadConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match self {
            ReadConnection::Pooled(conn) => conn,
            ReadConnection::Writer(conn) => conn,
        }
    }
}

impl DerefMut for ReadConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            ReadConnection::Pooled(conn) => conn,
            ReadConnection::Writer(conn) => conn,
        }
    }
}
