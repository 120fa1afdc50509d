//! Typed jobs: a serde struct that knows its kind and how to perform itself.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use stoker_core::{InvalidInput, Priority, MAX_ATTEMPTS_DEFAULT, QUEUE_DEFAULT};

use crate::{Backoff, JobContext, JobError};

/// A kind of job, with typed args.
///
/// The struct itself is the job's args: it is stored as JSON when enqueued and decoded again
/// when a worker runs it. The associated constants set the kind's defaults, which
/// [`EnqueueOptions`](crate::EnqueueOptions) can override per job.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stoker::{InvalidInput, Job, JobContext, JobError};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail {
///     to: String,
///     subject: String,
/// }
///
/// impl Job for SendEmail {
///     const KIND: &'static str = "email";
///     const MAX_ATTEMPTS: i32 = 10;
///     type Output = String;
///
///     fn validate(&self) -> Result<(), InvalidInput> {
///         if !self.to.contains('@') {
///             return Err(InvalidInput::new("to", format!("{:?} is not an e-mail address", self.to)));
///         }
///         Ok(())
///     }
///
///     async fn perform(self, _ctx: JobContext) -> Result<String, JobError> {
///         Ok(format!("sent {:?} to {}", self.subject, self.to))
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name: how handlers are found. Keep it stable; stored jobs refer to it.
    const KIND: &'static str;
    /// The queue jobs of this kind go to unless told otherwise. Defaults to `default`.
    const QUEUE: &'static str = QUEUE_DEFAULT;
    /// Their priority unless told otherwise. Defaults to [`Priority::NORMAL`].
    const PRIORITY: Priority = Priority::NORMAL;
    /// Their attempt limit unless told otherwise. Defaults to 5.
    const MAX_ATTEMPTS: i32 = MAX_ATTEMPTS_DEFAULT;

    /// What a successful attempt returns; stored as the job's result.
    type Output: Serialize + Send + 'static;

    /// Checks the args before the job is written. Defaults to accepting everything.
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`] naming the field at fault; the job is not enqueued.
    fn validate(&self) -> Result<(), InvalidInput> {
        Ok(())
    }

    /// How long one attempt may run before it is stopped and counted as failed. Defaults to no
    /// limit; a job's own [`EnqueueOptions::timeout`](crate::EnqueueOptions::timeout) wins.
    fn timeout() -> Option<Duration> {
        None
    }

    /// How long to wait after failed attempt number `attempt` (1 for the first). Defaults to
    /// [`Backoff::default`]: exponential with jitter.
    fn backoff(attempt: i32) -> Duration {
        Backoff::default().delay(attempt)
    }

    /// Does the work.
    fn perform(
        self,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}
