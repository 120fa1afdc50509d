//! Where a command goes: a database directly, or a `stoker serve` over HTTP. Both answer with
//! the same types, so every command prints the same output (and the same JSON) either way.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use stoker::{JobId, Priority, Stats};

use super::direct::Direct;
use super::remote::Remote;
use super::CliError;
use crate::api::model::{
    EnqueueResponse, JobCounts, JobList, JobView, QueueView, StatsResponse, Throughput, WorkerView,
};
use crate::handlers::HandlerInfo;

/// A job to enqueue, as the flags of `stoker enqueue` describe it.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnqueueInput {
    pub(crate) kind: String,
    pub(crate) args: Value,
    pub(crate) queue: Option<String>,
    pub(crate) priority: Option<Priority>,
    pub(crate) run_at: Option<DateTime<Utc>>,
    pub(crate) delay: Option<Duration>,
    pub(crate) max_attempts: Option<i32>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) on_finish: Option<String>,
}

/// Job counts as `stoker stats` prints them: the API's [`StatsResponse`] with the throughput
/// history only when a server was asked (a database alone keeps none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StatsOutput {
    pub(crate) totals: JobCounts,
    pub(crate) queues: BTreeMap<String, JobCounts>,
    pub(crate) kinds: BTreeMap<String, JobCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) throughput: Option<Throughput>,
    pub(crate) tenants: BTreeMap<String, JobCounts>,
}

impl From<Stats> for StatsOutput {
    fn from(stats: Stats) -> Self {
        let counts = |map: BTreeMap<String, stoker::StateCounts>| {
            map.into_iter()
                .map(|(name, counts)| (name, JobCounts::from(counts)))
                .collect()
        };
        StatsOutput {
            totals: stats.totals.into(),
            queues: counts(stats.queues),
            kinds: counts(stats.kinds),
            throughput: None,
            tenants: counts(stats.tenants),
        }
    }
}

impl From<StatsResponse> for StatsOutput {
    fn from(stats: StatsResponse) -> Self {
        StatsOutput {
            totals: stats.totals,
            queues: stats.queues,
            kinds: stats.kinds,
            throughput: Some(stats.throughput),
            tenants: stats.tenants,
        }
    }
}

/// Told how a bulk retry is going, batch by batch.
pub(crate) trait RetryProgress {
    /// The retry starts; `total` is the most jobs it can retry, when known.
    fn start(&mut self, total: Option<u64>);
    /// `done` jobs were retried so far.
    fn update(&mut self, done: u64);
}

// --- stream search ---
/// A job search as `stoker jobs list` asks it: a query and criteria from flags (joined), a
/// page and whether to count.
#[derive(Debug, Clone)]
pub(crate) struct SearchInput {
    pub(crate) query: Option<String>,
    pub(crate) criteria: stoker::JobCriteria,
    pub(crate) cursor: Option<JobId>,
    pub(crate) direction: stoker::SearchDirection,
    pub(crate) limit: u32,
    pub(crate) count: bool,
}

/// A database or a server.
pub(crate) enum Backend {
    Direct(Direct),
    Remote(Remote),
}

impl Backend {
    /// Where the command went, for messages: the database URL (without password) or the
    /// server URL.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Direct(direct) => direct.display_url(),
            Backend::Remote(remote) => remote.base_url().to_owned(),
        }
    }

    pub(crate) async fn enqueue(&self, input: EnqueueInput) -> Result<EnqueueResponse, CliError> {
        match self {
            Backend::Direct(direct) => direct.enqueue(input).await,
            Backend::Remote(remote) => remote.enqueue(input).await,
        }
    }

    // --- stream search ---
    pub(crate) async fn search(&self, input: SearchInput) -> Result<JobList, CliError> {
        match self {
            Backend::Direct(direct) => direct.search(input).await,
            Backend::Remote(remote) => remote.search(input).await,
        }
    }

    pub(crate) async fn get(&self, id: JobId) -> Result<JobView, CliError> {
        match self {
            Backend::Direct(direct) => direct.get(id).await,
            Backend::Remote(remote) => remote.get_job(id).await,
        }
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<JobView, CliError> {
        match self {
            Backend::Direct(direct) => direct.retry(id).await,
            Backend::Remote(remote) => remote.retry(id).await,
        }
    }

    pub(crate) async fn retry_discarded(
        &self,
        queues: &[String],
        kinds: &[String],
        batch: u32,
        progress: &mut (dyn RetryProgress + Send),
    ) -> Result<u64, CliError> {
        match self {
            Backend::Direct(direct) => direct.retry_discarded(queues, kinds, batch, progress).await,
            Backend::Remote(remote) => remote.retry_discarded(queues, kinds, batch, progress).await,
        }
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<JobView, CliError> {
        match self {
            Backend::Direct(direct) => direct.cancel(id).await,
            Backend::Remote(remote) => remote.cancel(id).await,
        }
    }

    pub(crate) async fn delete(&self, id: JobId) -> Result<JobView, CliError> {
        match self {
            Backend::Direct(direct) => direct.delete(id).await,
            Backend::Remote(remote) => remote.delete(id).await,
        }
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueView>, CliError> {
        match self {
            Backend::Direct(direct) => direct.queues().await,
            Backend::Remote(remote) => remote.queues().await,
        }
    }

    pub(crate) async fn pause(&self, queue: &str) -> Result<(), CliError> {
        match self {
            Backend::Direct(direct) => direct.pause(queue).await,
            Backend::Remote(remote) => remote.pause(queue, true).await,
        }
    }

    pub(crate) async fn resume(&self, queue: &str) -> Result<(), CliError> {
        match self {
            Backend::Direct(direct) => direct.resume(queue).await,
            Backend::Remote(remote) => remote.pause(queue, false).await,
        }
    }

    pub(crate) async fn workers(&self) -> Result<Vec<WorkerView>, CliError> {
        match self {
            Backend::Direct(direct) => direct.workers().await,
            Backend::Remote(remote) => remote.workers().await,
        }
    }

    pub(crate) async fn stats(&self) -> Result<StatsOutput, CliError> {
        match self {
            Backend::Direct(direct) => direct.stats().await,
            Backend::Remote(remote) => remote.stats().await,
        }
    }

    pub(crate) async fn handlers(&self) -> Result<Vec<HandlerInfo>, CliError> {
        match self {
            Backend::Direct(_) => Ok(crate::handlers::describe()),
            Backend::Remote(remote) => remote.handlers().await,
        }
    }
}
