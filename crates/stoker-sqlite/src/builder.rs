//! Opening a store: where the database lives and how its connections are set up.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use stoker_core::{InvalidInput, StoreErrorKind, StoreResult};

use crate::connection::{Readers, Writer};
use crate::error::db_error;
use crate::SqliteStore;

/// How long an operation waits for the database before failing with
/// [`StoreError::Busy`](stoker_core::StoreError::Busy): 10 seconds.
pub const BUSY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How many connections serve reads: 4.
pub const MAX_READERS_DEFAULT: u32 = 4;

/// How many result rows a connection buffers for the task reading them.
const ROW_BUFFER_SIZE: usize = 1024;

/// How long an idle reader connection stays open.
const READER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often opening the writer retries while another process holds the lock that switching a
/// new database to WAL mode needs (SQLite does not wait for that lock by itself).
const OPEN_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// When SQLite makes a commit durable: the trade-off between write speed and what survives a
/// power loss. See SQLite's [`synchronous` pragma].
///
/// [`synchronous` pragma]: https://www.sqlite.org/pragma.html#pragma_synchronous
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous = NORMAL`, the default. In WAL mode every commit survives a crash or
    /// `kill -9` of the process, which is what Stoker promises; after a power loss or an
    /// operating-system crash the last few commits before it may be rolled back (the database
    /// stays consistent). Much faster than [`Synchronous::Full`], because SQLite syncs to disk
    /// only at checkpoints.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is synced to disk before it returns, so commits also
    /// survive a power loss, at the cost of one `fsync` per write transaction.
    Full,
}

impl Synchronous {
    fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        }
    }
}

/// Configures and opens a [`SqliteStore`]; made by [`SqliteStore::builder`] or
/// [`SqliteStoreBuilder::from_url`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use stoker_sqlite::{SqliteStore, Synchronous};
///
/// # async fn example() -> stoker_core::StoreResult<()> {
/// let store = SqliteStore::builder("jobs.db")
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(30))
///     .max_readers(8)
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    options: SqliteConnectOptions,
    pub(crate) in_memory: bool,
    synchronous: Synchronous,
    busy_timeout: Duration,
    max_readers: u32,
}

impl SqliteStoreBuilder {
    /// A builder for the database file at `path`, created on [`build`](Self::build) if it is
    /// missing. The path `:memory:` means a private in-memory database, as with
    /// [`SqliteStore::connect`]`("sqlite::memory:")`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        if path == Path::new(":memory:") {
            // A fresh database, private to the one connection that opens it.
            return Self::with_options(SqliteConnectOptions::new().in_memory(true), true);
        }
        Self::with_options(SqliteConnectOptions::new().filename(path), false)
    }

    /// A builder for a database URL: `sqlite://path`, `sqlite:path` or `sqlite::memory:`.
    ///
    /// A file is created if it is missing. SQLite URI parameters after `?` are passed on
    /// (`mode=memory` also makes an in-memory database).
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`](stoker_core::StoreError::Invalid) for field `url` if the URL is
    /// not a SQLite URL.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                InvalidInput::new(
                    "url",
                    format!(
                        "{url:?} is not a SQLite URL: expected sqlite://path, sqlite:path \
                         or sqlite::memory:"
                    ),
                )
            })?;
        let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory =
            database == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
        if database.is_empty() && !in_memory {
            return Err(InvalidInput::new("url", format!("{url:?} names no database file")).into());
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| InvalidInput::new("url", error.to_string()))?;
        Ok(Self::with_options(options, in_memory))
    }

    fn with_options(options: SqliteConnectOptions, in_memory: bool) -> Self {
        SqliteStoreBuilder {
            options,
            in_memory,
            synchronous: Synchronous::default(),
            busy_timeout: BUSY_TIMEOUT_DEFAULT,
            max_readers: MAX_READERS_DEFAULT,
        }
    }

    /// When commits become durable. Defaults to [`Synchronous::Normal`].
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long an operation waits for the database (a lock held by another process, or this
    /// store's writer connection while another task uses it) before it fails with
    /// [`StoreError::Busy`](stoker_core::StoreError::Busy). Defaults to
    /// [`BUSY_TIMEOUT_DEFAULT`] (10 seconds).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many connections serve reads (`job_get`, `job_list`, `job_stats`...) next to the one
    /// writer connection; at least 1. Defaults to [`MAX_READERS_DEFAULT`] (4). An in-memory
    /// database ignores it: it has exactly one connection.
    pub fn max_readers(mut self, max_readers: u32) -> Self {
        self.max_readers = max_readers;
        self
    }

    /// Opens the database. It does not create or upgrade the schema: call
    /// [`Store::migrate`](stoker_core::Store::migrate) for that.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`](stoker_core::StoreError::Busy) if the database stayed locked for
    /// the whole busy timeout; [`StoreError::Database`](stoker_core::StoreError::Database) if
    /// it cannot be opened.
    pub async fn build(self) -> StoreResult<SqliteStore> {
        let base = self
            .options
            .busy_timeout(self.busy_timeout)
            .synchronous(self.synchronous.to_sqlx())
            .foreign_keys(false)
            // Workflows: a cancelled job's trigger cancels its dependents, whose own trigger
            // must run in turn (see migration 16).
            .pragma("recursive_triggers", "ON")
            // Rows cross from SQLite's thread to the caller's task through a channel; a deep
            // one lets a 1,000-job claim or list stream without a wake-up per row.
            .row_buffer_size(ROW_BUFFER_SIZE);
        if self.in_memory {
            // An in-memory database lives as long as its connection, and each connection has
            // its own, so the store keeps exactly one for everything.
            let conn = base.connect().await.map_err(db_error)?;
            return Ok(SqliteStore::from_connections(
                Writer::new(conn, self.busy_timeout),
                Readers::Writer,
                None,
            ));
        }
        let writer = open_writer(
            base.clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
            self.busy_timeout,
        )
        .await?;
        // Readers run after the writer made the file WAL (a persistent setting); `query_only`
        // keeps them from ever taking the write lock by mistake.
        let reader = SqlitePoolOptions::new()
            .max_connections(self.max_readers.max(1))
            .min_connections(0)
            .idle_timeout(READER_IDLE_TIMEOUT)
            .acquire_timeout(self.busy_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(base.clone().pragma("query_only", "ON"));
        // A connection of its own, so a checkpoint, fsyncs and all, never holds up a reader.
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(READER_IDLE_TIMEOUT)
            .acquire_timeout(self.busy_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(base);
        Ok(SqliteStore::from_connections(
            writer,
            Readers::Pool(reader),
            Some(checkpointer),
        ))
    }
}

/// Opens the one writer connection, retrying while another process holds the exclusive lock
/// that switching a new database to WAL mode takes (SQLite's busy timeout does not cover it).
async fn open_writer(options: SqliteConnectOptions, busy_timeout: Duration) -> StoreResult<Writer> {
    let deadline = tokio::time::Instant::now() + busy_timeout;
    loop {
        match options.connect().await.map_err(db_error) {
            Ok(conn) => return Ok(Writer::new(conn, busy_timeout)),
            Err(error)
                if error.kind() == StoreErrorKind::Busy
                    && tokio::time::Instant::now() + OPEN_RETRY_INTERVAL < deadline =>
            {
                tracing::debug!(%error, "database locked while opening; retrying");
                tokio::time::sleep(OPEN_RETRY_INTERVAL).await;
            }
            Err(error) => return Err(error),
        }
    }
}
