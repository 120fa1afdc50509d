//! The client's side of failure groups, bulk operations and job logs (issue 13).
//!
//! Every surface (the HTTP API, the CLI, a Rust application) goes through these methods, so
//! validation and tenant rules live in one place:
//!
//! - failure groups span every tenant: a tenant-scoped client cannot list them;
//! - a bulk operation from a tenant-scoped client is limited to that tenant (its filter's
//!   tenant is set, or refused if it names another); such a client sees, lists and aborts
//!   only operations whose filter is its tenant's (another tenant's is not found);
//! - a job's logs are visible to whoever sees the job.

use stoker_core::{
    validate_fingerprint, BulkAction, BulkFilter, BulkOpCreateParams, BulkOpListParams, BulkOpRow,
    FailureGroup, FailureGroupListParams, JobId, JobLogAppended, JobLogLine, JobLogParams,
    StateView, Store,
};

use crate::{Client, Error, Result};

/// A bulk operation to start: [`Client::bulk_start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    /// What to do to each matching job.
    pub action: BulkAction,
    /// Which jobs: at least one criterion.
    pub filter: BulkFilter,
    /// The new priority, for [`BulkAction::SetPriority`] only.
    pub priority: Option<stoker_core::Priority>,
    /// The new `run_at`, for [`BulkAction::SetRunAt`] only.
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who asks (an API token's name, `cli`...), kept with the operation.
    pub created_by: Option<String>,
}

impl BulkRequest {
    /// A request to apply `action` to the jobs matching `filter`.
    pub fn new(action: BulkAction, filter: BulkFilter) -> Self {
        BulkRequest {
            action,
            filter,
            priority: None,
            run_at: None,
            created_by: None,
        }
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// Lists failure groups, most recently seen first: `params.since`/`until` select groups
    /// seen in a range, `kind` one kind's, `tenant` one tenant's. A client scoped to a tenant
    /// (issue 17) lists only its tenant's groups: a tenant's failed jobs form groups of their
    /// own (see [`fingerprint_of_tenant`](stoker_core::fingerprint_of_tenant)).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `limit`, `kind` or `until`; [`Error::TenantForbidden`] naming
    /// `tenant` if a scoped client names another tenant; a store error.
    pub async fn failure_groups(
        &self,
        mut params: FailureGroupListParams,
    ) -> Result<Vec<FailureGroup>> {
        params.tenant = self.tenant_for(params.tenant.take(), "tenant")?;
        params.validate()?;
        Ok(self.store().failure_group_list(params).await?)
    }

    /// One failure group by fingerprint. A client scoped to a tenant gets `None` for a group
    /// that is not its tenant's.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `fingerprint` if it is not 16 lowercase hex digits; a store
    /// error.
    pub async fn failure_group(&self, fingerprint: &str) -> Result<Option<FailureGroup>> {
        validate_fingerprint("fingerprint", fingerprint)?;
        Ok(self
            .store()
            .failure_group_get(fingerprint)
            .await?
            .filter(|group| self.sees(group.tenant.as_deref())))
    }

    /// Starts a bulk operation: checks the request and that its filter matches at least one
    /// job, records it, and returns it `running`. The leader's bulk runner (a maintenance
    /// service) then applies it in bounded batches; follow it with [`Client::bulk_op`].
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field; [`Error::NotFound`] (`job matching the filter`)
    /// when no job matches; [`Error::TenantForbidden`] if a tenant-scoped client names
    /// another tenant; a store error.
    pub async fn bulk_start(&self, request: BulkRequest) -> Result<BulkOpRow> {
        let mut filter = request.filter;
        filter.tenant = self.tenant_for(filter.tenant, "filter.tenant")?;
        let params = BulkOpCreateParams {
            action: request.action,
            filter,
            priority: request.priority,
            run_at: request.run_at,
            created_by: request.created_by,
            now: self.clock().now(),
        };
        if let Some(run_at) = params.run_at {
            crate::client::check_run_at(run_at)?;
        }
        params.validate()?;
        // The store names the operation in the row and counts the jobs it matched.
        let entry = self.audit_entry(
            "bulk.start",
            None,
            Some(serde_json::json!({"action": params.action, "filter": params.filter})),
            None,
        );
        Ok(self
            .store()
            .audited(stoker_core::AuditedAction::BulkOpCreate(params), entry)
            .await?
            .bulk_op()?)
    }

    /// Retries every failed job of a failure group (discarded, or retryable and waiting for
    /// its backoff): a bulk operation.
    ///
    /// # Errors
    ///
    /// As [`Client::bulk_start`]; [`Error::NotFound`] if there is no such group.
    pub async fn retry_failure_group(
        &self,
        fingerprint: &str,
        created_by: Option<String>,
    ) -> Result<BulkOpRow> {
        self.group_op(
            fingerprint,
            BulkAction::Retry,
            vec![StateView::Discarded, StateView::Retryable],
            created_by,
        )
        .await
    }

    /// Discards every job of a failure group still waiting to retry (dead letter): a bulk
    /// operation.
    ///
    /// # Errors
    ///
    /// As [`Client::bulk_start`]; [`Error::NotFound`] if there is no such group.
    pub async fn discard_failure_group(
        &self,
        fingerprint: &str,
        created_by: Option<String>,
    ) -> Result<BulkOpRow> {
        self.group_op(
            fingerprint,
            BulkAction::Discard,
            vec![
                StateView::Retryable,
                StateView::Available,
                StateView::Scheduled,
            ],
            created_by,
        )
        .await
    }

    async fn group_op(
        &self,
        fingerprint: &str,
        action: BulkAction,
        states: Vec<StateView>,
        created_by: Option<String>,
    ) -> Result<BulkOpRow> {
        validate_fingerprint("fingerprint", fingerprint)?;
        // A client limited to a tenant gets NotFound for an unknown group and for another
        // tenant's, so a group of another tenant's failures is not revealed.
        if self.failure_group(fingerprint).await?.is_none() {
            return Err(Error::NotFound(format!("failure group {fingerprint}")));
        }
        let filter = BulkFilter {
            states,
            failure_group: Some(fingerprint.to_owned()),
            ..BulkFilter::default()
        };
        let mut request = BulkRequest::new(action, filter);
        request.created_by = created_by;
        self.bulk_start(request).await
    }

    /// One bulk operation, with its progress.
    ///
    /// # Errors
    ///
    /// A store error. A tenant-scoped client gets `None` for another tenant's operation.
    pub async fn bulk_op(&self, id: i64) -> Result<Option<BulkOpRow>> {
        Ok(self
            .store()
            .bulk_op_get(id)
            .await?
            .filter(|op| self.sees(op.filter.tenant.as_deref())))
    }

    /// Bulk operations, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `limit` or `before_id`; a store error. A tenant-scoped client
    /// gets only its tenant's operations.
    pub async fn bulk_ops(&self, mut params: BulkOpListParams) -> Result<Vec<BulkOpRow>> {
        params.validate()?;
        if self.tenant().is_none() {
            return Ok(self.store().bulk_op_list(params).await?);
        }
        // A client limited to a tenant sees the operations whose filter is its tenant's
        // (a scoped client's filter always names it): read pages until the page is full.
        let limit = params.limit as usize;
        let mut own = Vec::new();
        loop {
            let page = self.store().bulk_op_list(params.clone()).await?;
            let last = page.last().map(|op| op.id);
            let full = page.len() == params.limit as usize;
            own.extend(
                page.into_iter()
                    .filter(|op| self.sees(op.filter.tenant.as_deref())),
            );
            if own.len() >= limit || !full {
                own.truncate(limit);
                return Ok(own);
            }
            params.before_id = last;
        }
    }

    /// Aborts a running bulk operation: batches already applied stay applied.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] (also for another tenant's operation from a tenant-scoped client);
    /// [`Error::Conflict`] if it already ended; a store error.
    pub async fn bulk_abort(&self, id: i64) -> Result<BulkOpRow> {
        if self.tenant().is_some() && self.bulk_op(id).await?.is_none() {
            return Err(Error::NotFound(format!("bulk operation {id}")));
        }
        // The store counts the jobs done before the abort in the row.
        let entry = self.audit_entry("bulk.abort", Some(format!("op {id}")), None, None);
        let action = stoker_core::AuditedAction::BulkOpAbort {
            id,
            now: self.clock().now(),
        };
        Ok(self.store().audited(action, entry).await?.bulk_op()?)
    }

    /// A job's log lines, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such job (or a scoped client cannot see it); a store
    /// error.
    pub async fn job_logs(&self, id: JobId) -> Result<Vec<JobLogLine>> {
        if self.get(id).await?.is_none() {
            return Err(Error::NotFound(format!("job {id}")));
        }
        Ok(self.store().job_logs(id).await?)
    }

    /// Appends log lines to a job reserved by a pull worker, fenced like
    /// [`Client::progress_reserved`]: lines past the job's limits
    /// ([`JOB_LOG_MAX_LINES`](stoker_core::JOB_LOG_MAX_LINES),
    /// [`JOB_LOG_MAX_BYTES`](stoker_core::JOB_LOG_MAX_BYTES)) are dropped and counted.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `lines` or `lines[i]`; [`Error::LeaseLost`];
    /// [`Error::NotFound`]; a store error.
    pub async fn log_reserved(
        &self,
        id: JobId,
        fence: i64,
        lines: Vec<String>,
    ) -> Result<JobLogAppended> {
        let params = JobLogParams {
            id,
            fence,
            lines,
            now: self.clock().now(),
        };
        params.validate()?;
        // Another tenant's job is not found by a client limited to a tenant (issue 17).
        self.require_visible(id).await?;
        match self.store().job_log_append(params).await? {
            Some(appended) => Ok(appended),
            None => Err(match self.store().job_get(id).await? {
                Some(_) => Error::LeaseLost { id, fence },
                None => Error::NotFound(format!("job {id}")),
            }),
        }
    }
}

// --- stream ops ---
impl<S: Store + ?Sized> Client<S> {
    /// How many failed attempts each group had per hour, for the hours overlapping
    /// `params.from .. params.to`, by fingerprint then hour (hours without one are left out).
    /// Sum a group's hours for its count in the range; the hours themselves draw its
    /// sparkline. Kept as long as the history's hours (90 days by default).
    ///
    /// ```
    /// # async fn demo() -> Result<(), stoker::Error> {
    /// use std::sync::Arc;
    /// use chrono::{Duration, Utc};
    /// use stoker::{sqlite::SqliteStore, Client, FailureCountParams, FailureGroupListParams};
    ///
    /// let client = Client::new(Arc::new(SqliteStore::connect("sqlite::memory:").await?));
    /// client.migrate().await?;
    /// let now = Utc::now();
    /// let groups = client
    ///     .failure_groups(FailureGroupListParams { limit: 20, ..Default::default() })
    ///     .await?;
    /// if !groups.is_empty() {
    ///     let hours = client
    ///         .failure_group_counts(FailureCountParams {
    ///             fingerprints: groups.iter().map(|g| g.fingerprint.clone()).collect(),
    ///             from: now - Duration::hours(24),
    ///             to: now,
    ///         })
    ///         .await?;
    ///     let last_day: i64 = hours.iter().map(|h| h.count).sum();
    ///     println!("{last_day} failed attempts in the last 24 hours");
    /// }
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `fingerprints` or `to` (see
    /// [`FailureCountParams::validate`](stoker_core::FailureCountParams::validate)); a store
    /// error. A client scoped to a tenant counts only its tenant's groups: another's have no
    /// hours for it.
    pub async fn failure_group_counts(
        &self,
        mut params: stoker_core::FailureCountParams,
    ) -> Result<Vec<stoker_core::FailureHour>> {
        params.validate()?;
        if self.tenant().is_some() {
            // At most FAILURE_COUNT_MAX_GROUPS reads, each of one row by its key.
            let mut own = Vec::with_capacity(params.fingerprints.len());
            for fingerprint in params.fingerprints {
                if self.failure_group(&fingerprint).await?.is_some() {
                    own.push(fingerprint);
                }
            }
            if own.is_empty() {
                return Ok(Vec::new());
            }
            params.fingerprints = own;
        }
        Ok(self.store().failure_group_counts(params).await?)
    }

    /// [`Client::failure_group_counts`] for any range, as the API and the CLI ask: from
    /// `since` to `until` (or now). An empty range (ending at or before its start) or no
    /// fingerprints has no hours; a range longer than
    /// [`FAILURE_COUNT_MAX_RANGE_SECS`](stoker_core::FAILURE_COUNT_MAX_RANGE_SECS) counts its
    /// last stretch of that length (hours are kept far less long anyway).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `fingerprints` (too many, or one malformed); a store error.
    pub async fn failure_group_hours(
        &self,
        fingerprints: Vec<String>,
        since: chrono::DateTime<chrono::Utc>,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<stoker_core::FailureHour>> {
        let to = until.unwrap_or_else(|| self.clock().now());
        if fingerprints.is_empty() || to <= since {
            return Ok(Vec::new());
        }
        let longest = chrono::Duration::seconds(stoker_core::FAILURE_COUNT_MAX_RANGE_SECS);
        let from = match to.checked_sub_signed(longest) {
            Some(earliest) if earliest > since => earliest,
            _ => since,
        };
        self.failure_group_counts(stoker_core::FailureCountParams {
            fingerprints,
            from,
            to,
        })
        .await
    }
}
