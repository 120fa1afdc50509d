//! The CLI's error, and the exit code each case maps to.

use std::process::ExitCode;

/// Why a command failed. Printed as `error: …` on standard error; [`CliError::exit_code`]
/// tells scripts which kind of failure it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad input: a flag's value, or input the store or server refused. Nothing was changed.
    /// Exit code 2, as for a usage error.
    #[error("{0}")]
    Invalid(String),
    /// The job (or other thing) asked for does not exist, e.g. "job 42 not found". Exit code 3.
    #[error("{0}")]
    NotFound(String),
    /// The operation does not apply to the job's current state, e.g. deleting a running job.
    /// Exit code 4.
    #[error("{0}")]
    Conflict(String),
    /// The server refused the API token. Exit code 5.
    #[error("{0}")]
    Unauthorized(String),
    /// The database could not be opened. Exit code 1.
    #[error("cannot open the database {url}: {source}")]
    Connect {
        /// The database URL, without its password.
        url: String,
        /// Why.
        #[source]
        source: stoker::Error,
    },
    /// The store failed. Exit code 1.
    #[error(transparent)]
    Store(stoker::Error),
    /// The server could not be reached, or answered with something that is not Stoker's API.
    /// Exit code 1.
    #[error("{message}")]
    Http {
        /// What went wrong, with the server's URL.
        message: String,
        /// The HTTP client's error, if there was one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The server failed the request (a 5xx, or another unexpected status). Exit code 1.
    #[error("the server failed the request (HTTP {status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// `stoker serve` failed. Exit code 1.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// `stoker bench` failed. Exit code 2 for options that make no sense, else 1.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// Anything else, e.g. the async runtime would not start. Exit code 1.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error: 2 bad input, 3 not found, 4 conflict, 5 refused
    /// token, 1 anything else.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    pub(crate) fn code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Conflict(_) => 4,
            CliError::Unauthorized(_) => 5,
            CliError::Bench(crate::bench::BenchError::Usage(_)) => 2,
            CliError::Connect { .. }
            | CliError::Store(_)
            | CliError::Http { .. }
            | CliError::Server { .. }
            | CliError::Serve(_)
            | CliError::Bench(_)
            | CliError::Other(_) => 1,
        }
    }
}

impl From<stoker::Error> for CliError {
    fn from(err: stoker::Error) -> Self {
        match err {
            stoker::Error::Invalid(invalid) => CliError::Invalid(invalid.to_string()),
            stoker::Error::NotFound(what) => CliError::NotFound(format!("{what} not found")),
            stoker::Error::Conflict(message) => CliError::Conflict(message),
            stoker::Error::Config(message) => CliError::Invalid(message),
            other => CliError::Store(other),
        }
    }
}

impl From<stoker::StoreError> for CliError {
    fn from(err: stoker::StoreError) -> Self {
        CliError::from(stoker::Error::from(err))
    }
}
