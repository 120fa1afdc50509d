//! Per-job enqueue options, and the job-to-be that they shape.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use stoker_core::{
    InvalidInput, JobBackoff, JobId, JobInsert, Metadata, OnFinish, Priority, MAX_ATTEMPTS_DEFAULT,
    QUEUE_DEFAULT,
};

use crate::{Backoff, Error, Job, Registry};

/// How one job is enqueued. Anything left unset falls back to the kind's defaults (see
/// [`Job`]), then to Stoker's.
///
/// ```
/// use std::time::Duration;
/// use stoker::{EnqueueOptions, Priority};
///
/// let opts = EnqueueOptions::new()
///     .queue("mailers")
///     .priority(Priority::HIGH)
///     .delay(Duration::from_secs(60))
///     .unique_key("welcome-email:user-42")
///     .correlation_id("req-7f3a");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    queue: Option<String>,
    priority: Option<Priority>,
    run_at: Option<DateTime<Utc>>,
    delay: Option<Duration>,
    max_attempts: Option<i32>,
    unique_key: Option<String>,
    tenant: Option<String>,
    metadata: Metadata,
    timeout: Option<Duration>,
    backoff: Option<Backoff>,
}

impl EnqueueOptions {
    /// No options: every default applies.
    pub fn new() -> Self {
        EnqueueOptions::default()
    }

    /// The queue to wait in.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: impl Into<Priority>) -> Self {
        self.priority = Some(priority.into());
        self
    }

    /// Run no earlier than `at`. Not together with [`EnqueueOptions::delay`].
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Run no earlier than `delay` from now. Not together with [`EnqueueOptions::run_at`].
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The most attempts the job gets, at least 1.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// An idempotency key: while a job with this key (and tenant) exists, enqueueing another
    /// returns the existing job, marked as a duplicate, and writes nothing.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// The tenant the job belongs to.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Ties the job to a request or workflow; passed on to the jobs it enqueues.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(id.into());
        self
    }

    /// The job that caused this one.
    pub fn parent_id(mut self, id: JobId) -> Self {
        self.metadata.parent_id = Some(id);
        self
    }

    /// Who enqueued the job.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.metadata.source = Some(source.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.metadata.tags.push(tag.into());
        self
    }

    /// Posts the job's outcome to `url` when it reaches a final state (completed, discarded or
    /// cancelled): a job of the built-in `webhook` kind, on the `default` queue, inserted in
    /// the same transaction as the final state change, so it is retried and never lost (see
    /// [`OnFinish`] for the body). The URL is checked when the job is enqueued: absolute,
    /// `http` or `https`, at most 2048 bytes.
    ///
    /// ```
    /// use stoker::EnqueueOptions;
    ///
    /// let opts = EnqueueOptions::new().on_finish("https://example.com/hooks/done");
    /// ```
    pub fn on_finish(mut self, url: impl Into<String>) -> Self {
        self.metadata.on_finish = Some(OnFinish::new(url));
        self
    }

    /// As [`on_finish`](Self::on_finish), with the delivery job on `queue` (a queue where some
    /// worker serves the `webhook` kind).
    pub fn on_finish_via(mut self, url: impl Into<String>, queue: impl Into<String>) -> Self {
        self.metadata.on_finish = Some(OnFinish {
            url: url.into(),
            queue: Some(queue.into()),
        });
        self
    }

    /// The time limit of one attempt, overriding the kind's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The job's own retry backoff, overriding its kind's (as BullMQ's `backoff` option):
    /// checked when the job is enqueued (see [`JobBackoff::validate`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stoker::{Backoff, EnqueueOptions};
    ///
    /// let opts = EnqueueOptions::new().backoff(Backoff {
    ///     base: Duration::from_secs(10),
    ///     factor: 3.0,
    ///     max: Duration::from_secs(3600),
    ///     jitter: 0.2,
    /// });
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Fills what is unset from a parent job: correlation id, parent id and tenant.
    pub(crate) fn inherit(
        mut self,
        parent: JobId,
        metadata: &Metadata,
        tenant: Option<&str>,
    ) -> Self {
        if self.metadata.correlation_id.is_none() {
            self.metadata.correlation_id = metadata.correlation_id.clone();
        }
        if self.metadata.parent_id.is_none() {
            self.metadata.parent_id = Some(parent);
        }
        if self.tenant.is_none() {
            self.tenant = tenant.map(str::to_owned);
        }
        self
    }
}

/// A kind's defaults, which options override.
#[derive(Debug, Clone, Copy)]
struct KindDefaults {
    queue: &'static str,
    priority: Priority,
    max_attempts: i32,
    timeout: Option<Duration>,
}

impl KindDefaults {
    const STOKER: KindDefaults = KindDefaults {
        queue: QUEUE_DEFAULT,
        priority: Priority::NORMAL,
        max_attempts: MAX_ATTEMPTS_DEFAULT,
        timeout: None,
    };
}

/// A job ready to be enqueued, typed or raw, for [`Client::enqueue_many`](crate::Client::enqueue_many).
///
/// Building one never fails; a problem (args that do not encode, or fail validation) is
/// reported when the batch is enqueued, and then nothing in the batch is written.
///
/// ```
/// use serde_json::json;
/// use stoker::{EnqueueOptions, NewJob};
///
/// let jobs: Vec<NewJob> = (0..3)
///     .map(|n| NewJob::raw("thumbnail", json!({"image": n}), EnqueueOptions::new().queue("media")))
///     .collect();
/// ```
#[derive(Debug)]
pub struct NewJob {
    kind: String,
    args: Result<Value, Error>,
    opts: EnqueueOptions,
    defaults: KindDefaults,
    typed_validation: Result<(), InvalidInput>,
}

impl NewJob {
    /// A typed job with default options.
    pub fn new<J: Job>(job: J) -> Self {
        NewJob::with(job, EnqueueOptions::new())
    }

    /// A typed job with options.
    pub fn with<J: Job>(job: J, opts: EnqueueOptions) -> Self {
        let typed_validation = job.validate();
        let args = serde_json::to_value(&job).map_err(|source| Error::Encode {
            what: "job args",
            source,
        });
        NewJob {
            kind: J::KIND.to_owned(),
            args,
            opts,
            defaults: KindDefaults {
                queue: J::QUEUE,
                priority: J::PRIORITY,
                max_attempts: J::MAX_ATTEMPTS,
                timeout: J::timeout(),
            },
            typed_validation,
        }
    }

    /// A job of any kind with JSON args. If the client has a [`Registry`] with a handler for
    /// the kind, that handler validates the args (for a typed job: they must decode into it).
    pub fn raw(kind: impl Into<String>, args: Value, opts: EnqueueOptions) -> Self {
        NewJob {
            kind: kind.into(),
            args: Ok(args),
            opts,
            defaults: KindDefaults::STOKER,
            typed_validation: Ok(()),
        }
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    // --- stream workflows ---
    /// The same job with its options passed through `f` (lineage inherited by a job that
    /// adds to its own batch).
    pub(crate) fn map_options(mut self, f: impl FnOnce(EnqueueOptions) -> EnqueueOptions) -> Self {
        self.opts = f(self.opts);
        self
    }

    /// Everything resolved against defaults and `now`, validated by its handler if known.
    pub(crate) fn resolve(
        self,
        now: DateTime<Utc>,
        registry: Option<&Registry>,
    ) -> Result<JobInsert, Error> {
        let args = self.args?;
        self.typed_validation?;
        if let Some(handler) = registry.and_then(|registry| registry.get(&self.kind)) {
            handler.validate(&args)?;
        }
        let opts = self.opts;
        let run_at = match (opts.run_at, opts.delay) {
            (Some(_), Some(_)) => {
                return Err(
                    InvalidInput::new("run_at", "set either run_at or delay, not both").into(),
                )
            }
            (Some(at), None) => Some(at),
            (None, Some(delay)) => Some(crate::client::delayed(now, delay, "delay")?),
            (None, None) => None,
        };
        let timeout = opts.timeout.or(self.defaults.timeout);
        let timeout_ms =
            match timeout {
                Some(timeout) => Some(i64::try_from(timeout.as_millis()).map_err(|_| {
                    InvalidInput::new("timeout", format!("{timeout:?} is too long"))
                })?),
                None => None,
            };
        Ok(JobInsert {
            kind: self.kind,
            queue: opts.queue.unwrap_or_else(|| self.defaults.queue.to_owned()),
            args,
            priority: opts.priority.unwrap_or(self.defaults.priority),
            max_attempts: opts.max_attempts.unwrap_or(self.defaults.max_attempts),
            run_at,
            unique_key: opts.unique_key,
            tenant: opts.tenant,
            metadata: opts.metadata,
            timeout_ms,
            backoff: opts.backoff.map(JobBackoff::from),
        })
    }
}
