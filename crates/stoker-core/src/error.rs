//! The one error type every store returns.

use crate::InvalidInput;

/// What went wrong in a store, by category, so callers can react without matching on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The job, queue or row asked for does not exist.
    NotFound,
    /// The input was refused before anything was written.
    Invalid,
    /// The operation does not apply to the row's current state (e.g. deleting a running job).
    Conflict,
    /// The database was busy or unreachable; the operation may succeed if retried.
    Busy,
    /// Anything else: a driver error, a failed migration, corrupt data.
    Other,
    /// A limit refused the operation for now (an enqueue quota); it may succeed later.
    Limited,
}

/// An error from a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The job, queue or row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The input was refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The operation does not apply to the row's current state.
    #[error("{0}")]
    Conflict(String),
    /// The database was busy, locked or unreachable; retrying may succeed.
    #[error("database busy or unreachable: {message}")]
    Busy {
        /// What the driver said.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A stored value could not be decoded (e.g. an unknown state name).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrating the schema failed.
    #[error("migration {version} failed: {message}")]
    Migration {
        /// The migration that failed.
        version: i64,
        /// Why.
        message: String,
    },
    /// An insert would exceed an enqueue quota (issue 16, item 4); nothing was written.
    #[error("quota {limit:?} exceeded for {key:?}: retry in {retry_after:?}")]
    QuotaExceeded {
        /// The limit whose quota it is.
        limit: String,
        /// The limiter's key: the tenant, for a quota per tenant.
        key: String,
        /// How long until the submissions would fit.
        retry_after: std::time::Duration,
    },
    /// Any other database error.
    #[error("database error: {message}")]
    Database {
        /// What the driver said.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// The category of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound(_) => StoreErrorKind::NotFound,
            StoreError::Invalid(_) => StoreErrorKind::Invalid,
            StoreError::Conflict(_) => StoreErrorKind::Conflict,
            StoreError::Busy { .. } => StoreErrorKind::Busy,
            StoreError::QuotaExceeded { .. } => StoreErrorKind::Limited,
            StoreError::Corrupt(_) | StoreError::Migration { .. } | StoreError::Database { .. } => {
                StoreErrorKind::Other
            }
        }
    }

    /// A [`StoreError::Database`] wrapping a driver error.
    pub fn database(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// A [`StoreError::Busy`] wrapping a driver error.
    pub fn busy(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Busy {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }
}

/// `Result<T, StoreError>`.
pub type StoreResult<T> = Result<T, StoreError>;
