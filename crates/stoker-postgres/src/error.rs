//! Mapping driver errors to [`StoreError`], so `sqlx::Error` never leaks into the public API.

use stoker_core::StoreError;

/// SQLSTATEs after which retrying the operation may succeed: the server is shutting down or
/// out of connections, a lock could not be taken, or the transaction lost a race.
const TRANSIENT_SQLSTATES: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "53300", // too_many_connections
    "55P03", // lock_not_available
];

/// Converts a driver error: connection trouble, pool timeouts and transient SQLSTATEs become
/// [`StoreError::Busy`], everything else [`StoreError::Database`].
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    if is_transient(&err) {
        StoreError::busy(err)
    } else {
        StoreError::database(err)
    }
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exceptions.
            code.starts_with("08") || TRANSIENT_SQLSTATES.contains(&code.as_ref())
        }),
        _ => false,
    }
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_core::StoreErrorKind;

    #[test]
    fn pool_timeouts_and_io_errors_are_busy() {
        assert_eq!(
            store_error(sqlx::Error::PoolTimedOut).kind(),
            StoreErrorKind::Busy
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            store_error(sqlx::Error::Io(io)).kind(),
            StoreErrorKind::Busy
        );
    }

    #[test]
    fn other_errors_are_database_errors() {
        assert_eq!(
            store_error(sqlx::Error::RowNotFound).kind(),
            StoreErrorKind::Other
        );
        assert_eq!(
            store_error(sqlx::Error::PoolClosed).kind(),
            StoreErrorKind::Other
        );
        assert!(matches!(
            store_error(sqlx::Error::Protocol("bad".into())),
            StoreError::Database { .. }
        ));
    }
}
