//! The CLI talking straight to a database, through [`stoker::Client`].

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use stoker::core::JobRetryManyParams;
use stoker::maintenance::RescuerConfig;
use stoker::{Client, EnqueueOptions, JobFilter, JobId, JobState, WorkerRow};

use super::backend::{merge_queues, EnqueueInput, RetryProgress, StatsOutput};
use super::CliError;
use crate::api::jobs::matching_count;
use crate::api::model::{EnqueueResponse, JobList, JobView, QueueView, WorkerView};
use crate::handlers;

/// A client over the store a database URL names, validating built-in kinds' args.
pub(crate) struct Direct {
    client: Client,
    url: String,
}

impl Direct {
    /// Opens the database. Unless `create` is set, a SQLite file that does not exist is an
    /// error rather than a new empty database, and so is a database without Stoker's current
    /// schema: both mean the URL is wrong or `stoker migrate` has not run.
    pub(crate) async fn connect(url: &str, create: bool) -> Result<Direct, CliError> {
        if !create {
            if let Some(path) = sqlite_path(url) {
                if !Path::new(&path).exists() {
                    return Err(CliError::Invalid(format!(
                        "no database at {path}: check --database-url, or create it with \
                         `stoker migrate`"
                    )));
                }
            }
        }
        let store = stoker::connect(url).await.map_err(|err| match err {
            stoker::Error::Config(message) => CliError::Invalid(message),
            source => CliError::Connect {
                url: stoker::redact_url(url),
                source,
            },
        })?;
        let client = Client::new(store).with_registry(Arc::new(handlers::builtin()));
        let direct = Direct {
            client,
            url: url.to_owned(),
        };
        if !create && !direct.client.store().migrations_current().await? {
            return Err(CliError::Other(format!(
                "the database at {} does not have Stoker's current schema: run `stoker migrate`",
                direct.display_url()
            )));
        }
        Ok(direct)
    }

    /// The URL without a password, for messages.
    pub(crate) fn display_url(&self) -> String {
        stoker::redact_url(&self.url)
    }

    pub(crate) async fn migrate(&self) -> Result<(), CliError> {
        Ok(self.client.migrate().await?)
    }

    pub(crate) async fn enqueue(&self, input: EnqueueInput) -> Result<EnqueueResponse, CliError> {
        let mut opts = EnqueueOptions::new().source("cli");
        if let Some(queue) = input.queue {
            opts = opts.queue(queue);
        }
        if let Some(priority) = input.priority {
            opts = opts.priority(priority);
        }
        if let Some(at) = input.run_at {
            opts = opts.run_at(at);
        }
        if let Some(delay) = input.delay {
            opts = opts.delay(delay);
        }
        if let Some(max_attempts) = input.max_attempts {
            opts = opts.max_attempts(max_attempts);
        }
        if let Some(key) = input.unique_key {
            opts = opts.unique_key(key);
        }
        if let Some(tenant) = input.tenant {
            opts = opts.tenant(tenant);
        }
        if let Some(id) = input.correlation_id {
            opts = opts.correlation_id(id);
        }
        for tag in input.tags {
            opts = opts.tag(tag);
        }
        if let Some(timeout) = input.timeout {
            opts = opts.timeout(timeout);
        }
        let inserted = self
            .client
            .enqueue_raw(input.kind, input.args, opts)
            .await?;
        Ok(EnqueueResponse {
            id: inserted.id,
            duplicate: inserted.duplicate,
        })
    }

    pub(crate) async fn list(&self, filter: &JobFilter) -> Result<JobList, CliError> {
        let page = self.client.list(filter).await?;
        Ok(JobList {
            jobs: page.jobs.into_iter().map(JobView::from).collect(),
            next_cursor: page.next,
        })
    }

    pub(crate) async fn get(&self, id: JobId) -> Result<JobView, CliError> {
        self.client
            .get(id)
            .await?
            .map(JobView::from)
            .ok_or_else(|| CliError::NotFound(format!("job {id} not found")))
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<JobView, CliError> {
        Ok(self.client.retry(id).await?.into())
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<JobView, CliError> {
        Ok(self.client.cancel(id).await?.into())
    }

    pub(crate) async fn delete(&self, id: JobId) -> Result<JobView, CliError> {
        Ok(self.client.delete(id).await?.into())
    }

    /// Retries discarded jobs batch by batch, reporting the running count after each batch.
    ///
    /// Stops when a batch comes back short, or once as many jobs were retried as matched at
    /// the start, so jobs that fail again while the loop runs are not retried twice.
    pub(crate) async fn retry_discarded(
        &self,
        queues: &[String],
        kinds: &[String],
        batch: u32,
        progress: &mut dyn RetryProgress,
    ) -> Result<u64, CliError> {
        for queue in queues {
            stoker::core::validate_queue(queue).map_err(stoker::Error::from)?;
        }
        let counts = self.client.store().job_stats().await?;
        let bound = matching_count(&counts, &[JobState::Discarded], queues, kinds);
        progress.start(Some(bound));
        let mut done = 0u64;
        while done < bound {
            let limit = u64::from(batch).min(bound - done) as u32;
            let retried = self
                .client
                .store()
                .job_retry_many(JobRetryManyParams {
                    states: vec![JobState::Discarded],
                    queues: queues.to_vec(),
                    kinds: kinds.to_vec(),
                    tenant: None,
                    limit,
                    now: self.client.clock().now(),
                })
                .await?;
            done += retried;
            progress.update(done);
            if retried < u64::from(limit) {
                break;
            }
        }
        Ok(done)
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueView>, CliError> {
        let rows = self.client.queues().await?;
        let stats = self.client.stats().await?;
        Ok(merge_queues(&rows, &stats))
    }

    pub(crate) async fn pause(&self, queue: &str) -> Result<(), CliError> {
        Ok(self.client.pause(queue).await?)
    }

    pub(crate) async fn resume(&self, queue: &str) -> Result<(), CliError> {
        Ok(self.client.resume(queue).await?)
    }

    pub(crate) async fn workers(&self) -> Result<Vec<WorkerView>, CliError> {
        let now = self.client.clock().now();
        let stale_after = RescuerConfig::default().stale_after;
        Ok(self
            .client
            .workers()
            .await?
            .into_iter()
            .map(|worker| worker_view(worker, now, stale_after))
            .collect())
    }

    pub(crate) async fn stats(&self) -> Result<StatsOutput, CliError> {
        Ok(self.client.stats().await?.into())
    }
}

/// A worker row as the API shows it. Alive means a heartbeat within the rescuer's default
/// `stale_after`: a server configured with a longer one may still count an older heartbeat as
/// alive.
fn worker_view(
    worker: WorkerRow,
    now: DateTime<Utc>,
    stale_after: std::time::Duration,
) -> WorkerView {
    let alive = (now - worker.heartbeat_at)
        .to_std()
        .map_or(true, |age| age <= stale_after);
    WorkerView {
        pull: worker.id.starts_with("pull:"),
        id: worker.id,
        host: worker.host,
        pid: worker.pid,
        queues: worker.queues,
        concurrency: worker.concurrency,
        started_at: worker.started_at,
        heartbeat_at: worker.heartbeat_at,
        alive,
        jobs_done: worker.jobs_done,
        jobs_failed: worker.jobs_failed,
    }
}

/// How many discarded jobs match the filters, from the store's per-queue-and-kind counts.
/// The file a SQLite URL names, or `None` for other stores and in-memory databases.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://./a.db").as_deref(), Some("./a.db"));
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db").as_deref(),
            Some("/tmp/a.db")
        );
        assert_eq!(sqlite_path("sqlite:a.db?mode=rwc").as_deref(), Some("a.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
