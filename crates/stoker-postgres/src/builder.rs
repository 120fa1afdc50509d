//! Configuring and building a [`PgStore`].

use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Connection;
use stoker_core::{InvalidInput, StoreError, StoreResult};

use crate::error::store_error;
use crate::PgStore;

/// The schema a store uses unless told otherwise.
pub const SCHEMA_DEFAULT: &str = "public";
/// The pool size of a store that opens its own pool, unless told otherwise.
pub const MAX_CONNECTIONS_DEFAULT: u32 = 10;
/// How long a statement waits for a connection of the store's own pool (opening one included)
/// unless told otherwise: during a database outage, calls fail with `Busy` after this long
/// instead of hanging for sqlx's default 30 seconds.
pub const ACQUIRE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// The shortest time between two "jobs available" notifications for one queue from one
/// process, unless told otherwise.
pub const NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_millis(2);
/// The longest schema name: PostgreSQL's identifier limit.
pub const SCHEMA_MAX_LEN: usize = 63;
/// How long a connection of the store's own pool may sit idle before it is tested (one round
/// trip) on its way out of the pool. sqlx tests every connection by default, which costs each
/// statement a round trip: 2,446-2,523 enqueues a second one at a time against 2,913-2,944
/// without the test. Busy connections skip it; a connection idle through a database restart,
/// which takes longer than this, is caught by it and replaced.
const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Where the store's connections come from.
enum Source {
    Url(String),
    Pool(PgPool),
}

/// Configures a [`PgStore`]; made by [`PgStore::builder`] or [`PgStore::from_pool`].
///
/// Building connects but does not migrate: call [`Store::migrate`](stoker_core::Store::migrate)
/// once at start-up (or from a deploy step).
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> stoker_core::StoreResult<()> {
/// use std::time::Duration;
/// use stoker_postgres::PgStore;
///
/// let store = PgStore::builder("postgres://localhost/app")
///     .schema("jobs")
///     .max_connections(20)
///     .notify_interval(Duration::from_millis(5))
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PgStoreBuilder {
    source: Source,
    schema: String,
    max_connections: u32,
    acquire_timeout: Duration,
    listen: bool,
    notify_interval: Duration,
    async_ack_commit: bool,
}

impl PgStoreBuilder {
    pub(crate) fn from_url(url: &str) -> Self {
        Self::new(Source::Url(url.to_owned()))
    }

    pub(crate) fn from_pool(pool: PgPool) -> Self {
        Self::new(Source::Pool(pool))
    }

    fn new(source: Source) -> Self {
        PgStoreBuilder {
            source,
            schema: SCHEMA_DEFAULT.to_owned(),
            max_connections: MAX_CONNECTIONS_DEFAULT,
            acquire_timeout: ACQUIRE_TIMEOUT_DEFAULT,
            listen: true,
            notify_interval: NOTIFY_INTERVAL_DEFAULT,
            async_ack_commit: false,
        }
    }

    /// The schema holding the store's tables: 1 to 63 characters of lowercase ASCII letters,
    /// digits and `_`, not starting with a digit. Several stores (an app's tenants, or tests)
    /// can share a database, each in its own schema. Defaults to `public`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the store's own pool opens, at least 1. Ignored for a store built
    /// on the caller's pool. Defaults to 10.
    ///
    /// The event listener (see [`listen`](Self::listen)) uses one more connection, outside
    /// the pool.
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// How long a statement waits for a connection of the store's own pool, opening a new
    /// one included, before it fails with `Busy`: while the database is unreachable, every
    /// call fails after this long rather than hanging. Ignored for a store built on the
    /// caller's pool. Defaults to 3 seconds; must be longer than zero.
    pub fn acquire_timeout(mut self, acquire_timeout: Duration) -> Self {
        self.acquire_timeout = acquire_timeout;
        self
    }

    /// Whether [`subscribe`](stoker_core::Store::subscribe) listens for notifications. Turn it
    /// off behind a transaction-pooling proxy such as PgBouncer, where `LISTEN` does not work:
    /// `subscribe` then returns `None`, the capabilities are
    /// [`Capabilities::LOCAL`](stoker_core::Capabilities::LOCAL) and workers poll. The store
    /// still sends notifications, for processes that do listen. Defaults to `true`.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// The shortest time between two "jobs available" notifications for one queue from this
    /// process. The first insert after a quiet interval notifies at once; inserts within the
    /// interval after it are covered by one notification at its end. Zero notifies on every
    /// insert. Defaults to 2 ms.
    pub fn notify_interval(mut self, notify_interval: Duration) -> Self {
        self.notify_interval = notify_interval;
        self
    }

    // --- stream perf ---
    /// Whether a batch of acknowledgements (completions, retries, failures) commits without
    /// waiting for PostgreSQL to flush its WAL to disk (`synchronous_commit = off` for that
    /// transaction only; claims, inserts and everything else still wait). What it costs: a
    /// crash of the database server (not of a worker, and not a clean shutdown) can forget
    /// the acknowledgements of its last few hundred milliseconds, so those jobs run again,
    /// as after a worker crash: at-least-once delivery holds and nothing is lost, but a
    /// handler that is not idempotent can see a job twice more often. What it gives: measured
    /// with the drain's own statements, 5–35 % more jobs per second on a disk that takes
    /// 0.25 ms per flush (BENCHMARKS.md). Defaults to `false`.
    pub fn async_ack_commit(mut self, async_ack_commit: bool) -> Self {
        self.async_ack_commit = async_ack_commit;
        self
    }

    /// Validates the settings and, for a store given a URL, opens its pool (one connection
    /// at once, to fail early if the database is unreachable).
    ///
    /// That pool tests a connection (one round trip) before handing it out only if it sat
    /// idle for a second or more, not before every statement as sqlx does by default, so a
    /// connection that a database restart closed is replaced without an error. A pool passed
    /// to [`PgStore::from_pool`] keeps its own settings.
    ///
    /// # Errors
    ///
    /// `Invalid` for a bad schema name, a zero `max_connections` or `acquire_timeout`; `Busy`
    /// if the database is unreachable; `Database` for a bad URL or refused credentials.
    pub async fn build(self) -> StoreResult<PgStore> {
        validate_schema(&self.schema)?;
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                if self.max_connections == 0 {
                    return Err(InvalidInput::new("max_connections", "must be at least 1").into());
                }
                if self.acquire_timeout.is_zero() {
                    return Err(
                        InvalidInput::new("acquire_timeout", "must be longer than zero").into(),
                    );
                }
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            // A failed test closes the connection and the pool takes another.
                            Ok(meta.idle_for < TEST_IDLE_AFTER || conn.ping().await.is_ok())
                        })
                    })
                    .connect(&url)
                    .await
                    .map_err(store_error)?
            }
        };
        Ok(
            PgStore::new(pool, self.schema, self.listen, self.notify_interval)
                .with_async_ack_commit(self.async_ack_commit),
        )
    }
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never print it.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("PgStoreBuilder")
            .field("source", &source)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("listen", &self.listen)
            .field("notify_interval", &self.notify_interval)
            .field("async_ack_commit", &self.async_ack_commit)
            .finish()
    }
}

/// Checks a schema name: `[a-z_][a-z0-9_]{0,62}`. Such a name never needs escaping inside
/// double quotes, which is what makes building SQL with it safe.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = match chars.next() {
        Some(first) => {
            (first.is_ascii_lowercase() || first == '_')
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && schema.len() <= SCHEMA_MAX_LEN
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "schema",
            format!(
                "{schema:?} is not a valid schema name: use 1 to {SCHEMA_MAX_LEN} lowercase ASCII \
                 letters, digits and '_', not starting with a digit"
            ),
        )
        .into())
    }
}

/// The notification channel of a schema: `stoker_<schema>`, or, when that would pass
/// PostgreSQL's 63-byte identifier limit, a prefix of the schema name and a hash of all of it.
pub(crate) fn channel_name(schema: &str) -> String {
    let channel = format!("stoker_{schema}");
    if channel.len() <= SCHEMA_MAX_LEN {
        channel
    } else {
        // 7 + 39 + 1 + 16 = 63 bytes; schema names are ASCII, so slicing is safe.
        format!("stoker_{}_{:016x}", &schema[..39], fnv1a(schema.as_bytes()))
    }
}

/// The 64-bit FNV-1a hash: stable across builds and platforms, unlike std's hasher.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for good in ["public", "_x", "a", "stoker_test_1", &"a".repeat(63)] {
            assert!(validate_schema(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Public",
            "a-b",
            "a b",
            "a\"b",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate_schema(bad).unwrap_err();
            assert!(
                matches!(&err, StoreError::Invalid(invalid) if invalid.field == "schema"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn channel_names_fit_the_identifier_limit() {
        assert_eq!(channel_name("public"), "stoker_public");
        let long = "a".repeat(63);
        let channel = channel_name(&long);
        assert_eq!(channel.len(), 63);
        assert_ne!(channel, channel_name(&format!("{}b", "a".repeat(62))));
        assert_eq!(channel_name(&"b".repeat(56)).len(), 63);
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
