//! Helpers for testing code that uses Stoker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stoker_core::{
    Capabilities, FinishedJob, InsertedJob, JobCancelParams, JobClaimParams, JobFinishParams,
    JobId, JobInsertParams, JobLeaseParams, JobListParams, JobProgressParams, JobPruneParams,
    JobRetryManyParams, JobRetryParams, JobRow, JobStageParams, JobState, JobStuckParams,
    LeaderElectParams, LeaderRow, LeaseExtended, QueueParams, QueueRow, StateCount, Store,
    StoreEvent, StoreResult, WorkerHeartbeatParams, WorkerHeartbeatReply, WorkerRow,
};
use tokio::sync::broadcast;

use crate::{Client, JobFilter};

/// Asserts that a job of `kind` is waiting to run (available or retryable) and returns the
/// newest one.
///
/// # Panics
///
/// If there is none, listing the kinds that are waiting instead.
///
/// ```
/// # async fn demo(client: stoker::Client) {
/// // after the code under test enqueued a welcome e-mail:
/// let job = stoker::testing::assert_enqueued(&client, "email").await;
/// assert_eq!(job.args["to"], "ada@example.com");
/// # }
/// ```
pub async fn assert_enqueued<S: Store + ?Sized>(client: &Client<S>, kind: &str) -> JobRow {
    let waiting = JobFilter::new()
        .state(JobState::Available)
        .state(JobState::Retryable)
        .limit(JobFilter::LIMIT_MAX);
    let page = client
        .list(&waiting.clone().kind(kind).limit(1))
        .await
        .expect("listing jobs failed");
    if let Some(job) = page.jobs.into_iter().next() {
        return job;
    }
    let others = client.list(&waiting).await.expect("listing jobs failed");
    let mut kinds: Vec<String> = others.jobs.into_iter().map(|job| job.kind).collect();
    kinds.sort();
    kinds.dedup();
    panic!("expected a job of kind {kind:?} to be enqueued; waiting kinds: {kinds:?}");
}

/// Waits until the job reaches `state`, checking every few milliseconds, and returns it.
///
/// # Panics
///
/// If `timeout` passes first, showing the job as it was last seen.
pub async fn wait_for_state<S: Store + ?Sized>(
    client: &Client<S>,
    id: stoker_core::JobId,
    state: JobState,
    timeout: Duration,
) -> JobRow {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = client.get(id).await.expect("fetching the job failed");
        match job {
            Some(job) if job.state == state => return job,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("job {id} did not reach {state} within {timeout:?}; last seen: {other:#?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A store that counts the calls made to it, by method, and passes them on: for tests and
/// benchmarks of how much a worker asks of its database (on PostgreSQL each call is one round
/// trip and, but for bulk inserts that meet existing idempotency keys, one statement).
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn stoker::Store>) {
/// use std::sync::Arc;
/// use stoker::testing::CountingStore;
///
/// let counting = Arc::new(CountingStore::new(store));
/// let client = stoker::Client::new(counting.clone());
/// client.stats().await.unwrap();
/// assert_eq!(counting.calls()["job_stats"], 1);
/// # }
/// ```
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            calls: Default::default(),
        }
    }

    /// Calls so far, by method.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// Forgets the calls so far.
    pub fn reset(&self) {
        self.calls.lock().expect("calls lock").clear();
    }

    fn count(&self, method: &'static str) {
        *self
            .calls
            .lock()
            .expect("calls lock")
            .entry(method)
            .or_default() += 1;
    }
}

// `#[async_trait]` must see the methods it rewrites, so the macro writes the whole impl.
macro_rules! counting_store {
    ($(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for CountingStore {
            fn name(&self) -> &'static str {
                self.inner.name()
            }

            fn capabilities(&self) -> Capabilities {
                self.inner.capabilities()
            }

            fn subscribe(&self) -> Option<broadcast::Receiver<StoreEvent>> {
                self.inner.subscribe()
            }

            async fn leader_resign(&self, leader_id: &str) -> StoreResult<()> {
                self.count("leader_resign");
                self.inner.leader_resign(leader_id).await
            }

            async fn worker_remove(&self, id: &str) -> StoreResult<()> {
                self.count("worker_remove");
                self.inner.worker_remove(id).await
            }

            // Recurring schedules (issue 15).
            async fn cron_get(&self, name: &str) -> StoreResult<Option<stoker_core::cron::CronRow>> {
                self.count("cron_get");
                self.inner.cron_get(name).await
            }

            async fn cron_delete(&self, name: &str) -> StoreResult<stoker_core::cron::CronRow> {
                self.count("cron_delete");
                self.inner.cron_delete(name).await
            }

            async fn cron_history(&self, name: &str, limit: u32) -> StoreResult<Vec<stoker_core::cron::CronRun>> {
                self.count("cron_history");
                self.inner.cron_history(name, limit).await
            }

            async fn failure_group_get(
                &self,
                fingerprint: &str,
            ) -> StoreResult<Option<stoker_core::FailureGroup>> {
                self.count("failure_group_get");
                self.inner.failure_group_get(fingerprint).await
            }

            // --- stream alerts ---
            async fn alert_write(&self, params: stoker_core::alert::AlertWriteParams) -> StoreResult<stoker_core::alert::AlertRow> {
                self.count("alert_write");
                self.inner.alert_write(params).await
            }

            async fn alert_get(&self, name: &str) -> StoreResult<Option<stoker_core::alert::AlertRow>> {
                self.count("alert_get");
                self.inner.alert_get(name).await
            }

            async fn alert_list(&self) -> StoreResult<Vec<stoker_core::alert::AlertRow>> {
                self.count("alert_list");
                self.inner.alert_list().await
            }

            async fn alert_delete(&self, name: &str) -> StoreResult<stoker_core::alert::AlertRow> {
                self.count("alert_delete");
                self.inner.alert_delete(name).await
            }

            async fn alert_transition(&self, params: stoker_core::alert::AlertTransitionParams) -> StoreResult<Option<stoker_core::alert::AlertRow>> {
                self.count("alert_transition");
                self.inner.alert_transition(params).await
            }

            async fn alert_events(&self, name: &str, limit: u32) -> StoreResult<Vec<stoker_core::alert::AlertEvent>> {
                self.count("alert_events");
                self.inner.alert_events(name, limit).await
            }

            // --- stream flow ---
            async fn limit_delete(&self, name: &str) -> StoreResult<stoker_core::LimitRow> {
                self.count("limit_delete");
                self.inner.limit_delete(name).await
            }

            fn limit_wake_at(&self, queue: &str) -> Option<chrono::DateTime<chrono::Utc>> {
                self.inner.limit_wake_at(queue)
            }

            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.count(stringify!($name));
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

counting_store! {
        async fn migrate(&self) -> StoreResult<()>;
        async fn migrations_current(&self) -> StoreResult<bool>;
        async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<JobRow>;
        async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<JobRow>>;
        async fn job_delete(&self, id: JobId) -> StoreResult<JobRow>;
        async fn job_finish_many(&self, params: JobFinishParams) -> StoreResult<Vec<FinishedJob>>;
        async fn job_get(&self, id: JobId) -> StoreResult<Option<JobRow>>;
        async fn job_insert_many(&self, params: JobInsertParams) -> StoreResult<Vec<InsertedJob>>;
        async fn job_list(&self, params: JobListParams) -> StoreResult<Vec<JobRow>>;
        async fn job_extend_lease(&self, params: JobLeaseParams) -> StoreResult<Option<LeaseExtended>>;
        async fn job_list_stuck(&self, params: JobStuckParams) -> StoreResult<Vec<JobRow>>;
        async fn job_progress(&self, params: JobProgressParams) -> StoreResult<bool>;
        async fn job_prune(&self, params: JobPruneParams) -> StoreResult<u64>;
        async fn job_retry(&self, params: JobRetryParams) -> StoreResult<JobRow>;
        async fn job_retry_many(&self, params: JobRetryManyParams) -> StoreResult<u64>;
        async fn job_stage(&self, params: JobStageParams) -> StoreResult<u64>;
        async fn job_stats(&self) -> StoreResult<Vec<StateCount>>;
        async fn leader_get(&self, now: chrono::DateTime<chrono::Utc>) -> StoreResult<Option<LeaderRow>>;
        async fn leader_attempt_elect(&self, params: LeaderElectParams) -> StoreResult<bool>;
        async fn queue_list(&self) -> StoreResult<Vec<QueueRow>>;
        async fn queue_pause(&self, params: QueueParams) -> StoreResult<()>;
        async fn queue_resume(&self, params: QueueParams) -> StoreResult<()>;
        async fn worker_heartbeat(&self, params: WorkerHeartbeatParams) -> StoreResult<WorkerHeartbeatReply>;
        async fn worker_list(&self) -> StoreResult<Vec<WorkerRow>>;
        async fn worker_prune(&self, before: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;
        async fn cron_write(&self, params: stoker_core::cron::CronWriteParams) -> StoreResult<stoker_core::cron::CronRow>;
        async fn cron_list(&self) -> StoreResult<Vec<stoker_core::cron::CronRow>>;
        async fn cron_due(&self, now: chrono::DateTime<chrono::Utc>, limit: u32) -> StoreResult<stoker_core::cron::CronDue>;
        async fn cron_fire(&self, params: stoker_core::cron::CronFireParams) -> StoreResult<stoker_core::cron::CronFireOutcome>;
        // Failure groups, bulk operations and job logs (issue 13).
        async fn failure_group_list(&self, params: stoker_core::FailureGroupListParams) -> StoreResult<Vec<stoker_core::FailureGroup>>;
        async fn bulk_op_create(&self, params: stoker_core::BulkOpCreateParams) -> StoreResult<stoker_core::BulkOpRow>;
        async fn bulk_op_get(&self, id: i64) -> StoreResult<Option<stoker_core::BulkOpRow>>;
        async fn bulk_op_list(&self, params: stoker_core::BulkOpListParams) -> StoreResult<Vec<stoker_core::BulkOpRow>>;
        async fn bulk_op_abort(&self, id: i64, now: chrono::DateTime<chrono::Utc>) -> StoreResult<stoker_core::BulkOpRow>;
        async fn bulk_op_step(&self, params: stoker_core::BulkOpStepParams) -> StoreResult<Option<stoker_core::BulkOpRow>>;
        async fn bulk_op_step_jobs(&self, params: stoker_core::BulkOpStepParams) -> StoreResult<Option<stoker_core::BulkOpStep>>;
        async fn job_retry_many_jobs(&self, params: JobRetryManyParams) -> StoreResult<Vec<stoker_core::ChangedJob>>;
        async fn job_log_append(&self, params: stoker_core::JobLogParams) -> StoreResult<Option<stoker_core::JobLogAppended>>;
        async fn job_logs(&self, id: JobId) -> StoreResult<Vec<stoker_core::JobLogLine>>;
        // History (issue 13).
        async fn history_record(&self, params: stoker_core::HistoryRecordParams) -> StoreResult<()>;
        async fn history_query(&self, params: stoker_core::HistoryQueryParams) -> StoreResult<Vec<stoker_core::HistoryValue>>;
        async fn history_rollup(&self, params: stoker_core::HistoryRollupParams) -> StoreResult<stoker_core::HistoryRollupReport>;
        async fn queue_depths(&self) -> StoreResult<Vec<stoker_core::QueueDepth>>;
        // --- stream search ---
        async fn job_search(&self, params: stoker_core::JobSearchParams) -> StoreResult<stoker_core::JobSearchPage>;
        async fn job_count(&self, criteria: stoker_core::JobCriteria) -> StoreResult<stoker_core::JobCount>;
        // --- stream tokens ---
        async fn token_create(&self, params: stoker_core::TokenCreateParams) -> StoreResult<stoker_core::TokenRow>;
        async fn token_get(&self, id: &str) -> StoreResult<Option<stoker_core::TokenRow>>;
        async fn token_list(&self) -> StoreResult<Vec<stoker_core::TokenRow>>;
        async fn token_revoke(&self, id: &str, now: chrono::DateTime<chrono::Utc>) -> StoreResult<stoker_core::TokenRow>;
        async fn token_touch(&self, id: &str, now: chrono::DateTime<chrono::Utc>) -> StoreResult<bool>;
        // --- stream flow ---
        async fn limit_set(&self, params: stoker_core::LimitSetParams) -> StoreResult<stoker_core::LimitRow>;
        async fn limit_list(&self) -> StoreResult<Vec<stoker_core::LimitRow>>;
        async fn limit_usage(&self, now: chrono::DateTime<chrono::Utc>) -> StoreResult<Vec<stoker_core::LimitUsage>>;
        async fn limit_push_back(&self, params: stoker_core::LimitPushBackParams) -> StoreResult<()>;
        async fn limit_reconcile(&self) -> StoreResult<u64>;
        // --- stream wf ---
        async fn workflow_insert(&self, params: stoker_core::WorkflowInsertParams) -> StoreResult<stoker_core::WorkflowInserted>;
        async fn workflow_get(&self, id: stoker_core::WorkflowId) -> StoreResult<Option<stoker_core::WorkflowRow>>;
        async fn workflow_jobs(&self, id: stoker_core::WorkflowId) -> StoreResult<Vec<stoker_core::WorkflowJob>>;
        async fn workflow_cancel(&self, params: stoker_core::WorkflowCancelParams) -> StoreResult<stoker_core::WorkflowRow>;
        async fn job_dependency_results(&self, id: JobId) -> StoreResult<Vec<stoker_core::DependencyResult>>;
        async fn job_workflow(&self, id: JobId) -> StoreResult<Option<(stoker_core::WorkflowId, String)>>;
        // --- stream tenancy ---
        async fn job_claim_tenant(&self, params: JobClaimParams, tenant: &str) -> StoreResult<Vec<JobRow>>;
        async fn audit_append(&self, entry: stoker_core::AuditEntry) -> StoreResult<stoker_core::AuditRow>;
        async fn audit_list(&self, params: stoker_core::AuditListParams) -> StoreResult<Vec<stoker_core::AuditRow>>;
        async fn audit_prune(&self, before: chrono::DateTime<chrono::Utc>, limit: u32) -> StoreResult<u64>;
        async fn audited(&self, action: stoker_core::AuditedAction, entry: stoker_core::AuditEntry) -> StoreResult<stoker_core::AuditedOutcome>;
        // --- stream ops ---
        async fn failure_group_counts(&self, params: stoker_core::FailureCountParams) -> StoreResult<Vec<stoker_core::FailureHour>>;
        // --- stream crypt ---
        async fn job_sealed_list(&self, params: stoker_core::JobSealedListParams) -> StoreResult<Vec<stoker_core::SealedJob>>;
        async fn job_sealed_rewrite(&self, rewrites: Vec<stoker_core::SealedRewrite>) -> StoreResult<u64>;
        // --- stream workflows ---
        async fn batch_insert(&self, params: stoker_core::BatchInsertParams) -> StoreResult<stoker_core::BatchInserted>;
        async fn batch_get(&self, id: stoker_core::BatchId) -> StoreResult<Option<stoker_core::BatchRow>>;
        async fn batch_list(&self, params: stoker_core::BatchListParams) -> StoreResult<Vec<stoker_core::BatchRow>>;
        async fn batch_cancel(&self, id: stoker_core::BatchId, now: chrono::DateTime<chrono::Utc>) -> StoreResult<stoker_core::BatchRow>;
        async fn job_batch(&self, id: JobId) -> StoreResult<Option<stoker_core::BatchId>>;
        async fn workflow_list(&self, params: stoker_core::WorkflowListParams) -> StoreResult<Vec<stoker_core::WorkflowRow>>;
        async fn job_children_insert(&self, params: stoker_core::ChildrenInsertParams) -> StoreResult<Option<Vec<stoker_core::InsertedJob>>>;
        async fn job_wait_children(&self, params: stoker_core::WaitChildrenParams) -> StoreResult<Option<stoker_core::FinishedJob>>;
        async fn job_children(&self, id: JobId) -> StoreResult<Option<stoker_core::ChildrenWait>>;
        // --- stream tenant ---
        async fn queue_depths_tenant(&self, tenant: &str) -> StoreResult<Vec<stoker_core::QueueDepth>>;
        async fn job_prune_tenant(&self, params: JobPruneParams, tenant: &str) -> StoreResult<u64>;
}
