//! The CLI talking straight to a database, through [`stoker::Client`].

use std::path::Path;
use std::sync::Arc;

use stoker::{Client, EnqueueOptions, JobId, NewJob, RetryFilter};

use super::backend::{EnqueueInput, RetryProgress, StatsOutput};
use super::CliError;
use crate::api::model::{EnqueueResponse, JobList, JobView, QueueView, WorkerView};
use crate::handlers;

/// A client over the store a database URL names, validating built-in kinds' args.
pub(crate) struct Direct {
    client: Client,
    url: String,
}

impl Direct {
    /// The client, for commands kept in their own modules (cron, failures, history).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    // --- stream tenant ---
    /// The same database with the server's encryption (issue 17): jobs of encrypted kinds or
    /// queues are sealed before they are written, and sealed ones read opened.
    pub(crate) fn with_encryption(self, encryption: stoker::Encryption) -> Direct {
        Direct {
            client: self.client.with_encryption(encryption),
            url: self.url,
        }
    }

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
        // Management actions on the database directly are audited as the command line's,
        // with the operating-system user when known (issue 17).
        let actor = match std::env::var("USER") {
            Ok(user) if !user.is_empty() => format!("cli:{user}"),
            _ => "cli".to_owned(),
        };
        let client = Client::new(store)
            .with_registry(Arc::new(handlers::builtin()))
            .with_actor(stoker::Actor::new(actor, "cli"));
        let direct = Direct {
            client,
            url: url.to_owned(),
        };
        if !create && !direct.client.migrations_current().await? {
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
        if let Some(key) = input.idempotency_key {
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
        if let Some(url) = input.on_finish {
            opts = opts.on_finish(url);
        }
        let enqueued = self
            .client
            .enqueue_many_returning([NewJob::raw(input.kind, input.args, opts)])
            .await?
            .pop()
            .ok_or_else(|| CliError::Other("the store inserted no job for one request".into()))?;
        Ok(enqueued.into())
    }

    // --- stream search ---
    /// One page of a search: the query parsed here with the client's clock, joined with the
    /// flags' criteria.
    pub(crate) async fn search(
        &self,
        input: super::backend::SearchInput,
    ) -> Result<JobList, CliError> {
        let criteria = match input.query.as_deref() {
            Some(query) => {
                let parsed = self.client.parse_query(query)?;
                stoker::merge_criteria(parsed, input.criteria).map_err(stoker::Error::from)?
            }
            None => input.criteria,
        };
        let count = if input.count {
            Some(self.client.count(criteria.clone()).await?.into())
        } else {
            None
        };
        let mut params = stoker::JobSearchParams::new(criteria, input.limit);
        params.cursor = input.cursor;
        params.direction = input.direction;
        let page = self.client.search(params).await?;
        Ok(JobList {
            jobs: page.jobs.into_iter().map(JobView::from).collect(),
            next_cursor: page.older,
            prev_cursor: page.newer,
            partial: page.partial,
            scanned: page.scanned,
            count,
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
    /// The client bounds the retry by the jobs that matched when it started, so jobs that fail
    /// again while it runs are not retried twice.
    pub(crate) async fn retry_discarded(
        &self,
        queues: &[String],
        kinds: &[String],
        batch: u32,
        progress: &mut (dyn RetryProgress + Send),
    ) -> Result<u64, CliError> {
        let filter = RetryFilter {
            queues: queues.to_vec(),
            kinds: kinds.to_vec(),
            batch,
            ..RetryFilter::new()
        };
        let report = self
            .client
            .retry_many(&filter, |step| {
                if step.retried == 0 {
                    progress.start(Some(step.total));
                } else {
                    progress.update(step.retried);
                }
            })
            .await?;
        Ok(report.retried)
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueView>, CliError> {
        let queues = self.client.queue_overview().await?;
        Ok(queues.into_iter().map(QueueView::from).collect())
    }

    pub(crate) async fn pause(&self, queue: &str) -> Result<(), CliError> {
        Ok(self.client.pause(queue).await?)
    }

    pub(crate) async fn resume(&self, queue: &str) -> Result<(), CliError> {
        Ok(self.client.resume(queue).await?)
    }

    /// Workers, alive by the rescuer's default `stale_after` (a database alone does not say
    /// how a server's rescuer is configured).
    pub(crate) async fn workers(&self) -> Result<Vec<WorkerView>, CliError> {
        let workers = self.client.worker_overview().await?;
        Ok(workers.into_iter().map(WorkerView::from).collect())
    }

    pub(crate) async fn stats(&self) -> Result<StatsOutput, CliError> {
        Ok(self.client.stats().await?.into())
    }
}

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
