//! Mapping driver errors to [`StoreError`], so `sqlx::Error` never reaches the public API.

use stoker_core::StoreError;

/// SQLite's primary result codes for "try again": `SQLITE_BUSY` and `SQLITE_LOCKED`.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// Maps a driver error: a busy or locked database, a pool timeout or an I/O failure is
/// [`StoreError::Busy`] (retrying may succeed); anything else is [`StoreError::Database`].
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    let busy = match &error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            // Extended result codes (e.g. SQLITE_BUSY_SNAPSHOT = 517) keep the primary code
            // in their low byte.
            .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        _ => false,
    };
    if busy {
        StoreError::busy(error)
    } else {
        StoreError::database(error)
    }
}

/// A [`StoreError::Database`] for a broken invariant that no driver error describes.
pub(crate) fn invariant(message: impl Into<String>) -> StoreError {
    StoreError::Database {
        message: message.into(),
        source: None,
    }
}
