//! Management actions with their audit rows (issue 17, item 3) on PostgreSQL: each action's
//! statements and the audit row in one transaction, so the row exists if and only if the
//! change committed. The plain operations keep their own (mostly single-statement) paths.

use sqlx::Connection;
use stoker_core::{
    AuditEntry, AuditedAction, AuditedOutcome, JobId, JobRow, JobState, QueueParams, StoreError,
    StoreResult,
};

use super::{filter, job_row, limit, not_found, validate_retry_states, PgStore};
use crate::error::store_error;
use crate::failures;

/// `entry` with `affected` set to `count`, or no row at all when the action changed nothing
/// (a batch over many jobs that found none).
pub(super) fn counted(entry: Option<AuditEntry>, count: u64) -> Option<AuditEntry> {
    if count == 0 {
        return None;
    }
    entry.map(|entry| AuditEntry {
        affected: Some(i64::try_from(count).unwrap_or(i64::MAX)),
        ..entry
    })
}

impl PgStore {
    pub(super) async fn audited_impl(
        &self,
        action: AuditedAction,
        entry: AuditEntry,
    ) -> StoreResult<AuditedOutcome> {
        let audit = Some(entry);
        let sql = &self.inner.sql;
        Ok(match action {
            AuditedAction::JobCancel(params) => AuditedOutcome::Job(
                self.job_update_audited(&sql.job_cancel, params.id, params.now, audit)
                    .await?,
            ),
            AuditedAction::JobRetry(params) => AuditedOutcome::Job(
                self.job_update_audited(&sql.job_retry, params.id, params.now, audit)
                    .await?,
            ),
            AuditedAction::JobDelete(id) => {
                AuditedOutcome::Job(self.job_delete_audited(id, audit).await?)
            }
            AuditedAction::QueuePause(params) => {
                self.queue_set_audited(&sql.queue_pause, &params, audit)
                    .await?;
                AuditedOutcome::Done
            }
            AuditedAction::QueueResume(params) => {
                self.listener_ready().await;
                self.queue_set_audited(&sql.queue_resume, &params, audit)
                    .await?;
                AuditedOutcome::Done
            }
            AuditedAction::JobRetryMany(params) => {
                validate_retry_states(&params.states)?;
                if params.limit == 0 {
                    return Ok(AuditedOutcome::Changed(Vec::new()));
                }
                let states: Vec<&str> = params.states.iter().map(|state| state.as_str()).collect();
                self.listener_ready().await;
                let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
                // The rows as `job_retry_many_jobs` reads them: the retried jobs, for live
                // events (issue 13), each with the count of queues notified.
                #[allow(clippy::type_complexity)]
                let rows: Vec<(
                    i64,
                    String,
                    String,
                    Option<String>,
                    i32,
                    Option<String>,
                    i64,
                )> = sqlx::query_as(&sql.job_retry_many)
                    .bind(&states)
                    .bind(filter(&params.queues))
                    .bind(filter(&params.kinds))
                    .bind(&params.tenant)
                    .bind(limit(params.limit))
                    .bind(params.now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?;
                let changed: Vec<stoker_core::ChangedJob> = rows
                    .into_iter()
                    .map(|(id, queue, kind, tenant, attempt, correlation_id, _)| {
                        stoker_core::ChangedJob {
                            id: JobId(id),
                            state: JobState::Available,
                            queue,
                            kind,
                            tenant,
                            attempt,
                            correlation_id,
                        }
                    })
                    .collect();
                self.audit_on(&mut tx, counted(audit, changed.len() as u64).as_ref())
                    .await?;
                tx.commit().await.map_err(store_error)?;
                AuditedOutcome::Changed(changed)
            }
            AuditedAction::JobPrune {
                params,
                tenant: Some(tenant),
            } => AuditedOutcome::Count(self.job_prune_tenant_impl(params, &tenant, audit).await?),
            AuditedAction::JobPrune {
                params,
                tenant: None,
            } => {
                let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
                let deleted = self.job_prune_on(&mut tx, params).await?;
                self.audit_on(&mut tx, counted(audit, deleted).as_ref())
                    .await?;
                tx.commit().await.map_err(store_error)?;
                AuditedOutcome::Count(deleted)
            }
            AuditedAction::CronWrite(params) => {
                AuditedOutcome::Cron(self.cron_write_impl(params, audit).await?)
            }
            AuditedAction::CronDelete(name) => {
                AuditedOutcome::Cron(self.cron_delete_impl(&name, audit).await?)
            }
            AuditedAction::CronFire(params) => {
                AuditedOutcome::CronFire(self.cron_fire_impl(params, audit).await?)
            }
            AuditedAction::AlertWrite(params) => {
                AuditedOutcome::Alert(self.alert_write_impl(params, audit).await?)
            }
            AuditedAction::AlertDelete(name) => {
                AuditedOutcome::Alert(self.alert_delete_impl(&name, audit).await?)
            }
            AuditedAction::TokenCreate(params) => {
                AuditedOutcome::Token(self.token_create_impl(params, audit).await?)
            }
            AuditedAction::TokenRevoke { id, now } => {
                AuditedOutcome::Token(self.token_revoke_impl(&id, now, audit).await?)
            }
            AuditedAction::LimitSet(params) => {
                AuditedOutcome::Limit(self.limit_set_impl(params, audit).await?)
            }
            AuditedAction::LimitDelete(name) => {
                AuditedOutcome::Limit(self.limit_delete_impl(&name, audit).await?)
            }
            AuditedAction::BulkOpCreate(params) => AuditedOutcome::BulkOp(
                failures::op_create(&self.inner.pool, &self.inner.schema, &params, audit).await?,
            ),
            AuditedAction::BulkOpAbort { id, now } => AuditedOutcome::BulkOp(
                failures::op_abort(&self.inner.pool, &self.inner.schema, id, now, audit).await?,
            ),
        })
    }

    /// A cancel or retry (`sql`, binding the id and the time) with its audit row. A job the
    /// statement leaves alone (finished, or running) is returned as it is, and no row is
    /// written: nothing changed.
    async fn job_update_audited(
        &self,
        sql: &str,
        id: JobId,
        now: chrono::DateTime<chrono::Utc>,
        audit: Option<AuditEntry>,
    ) -> StoreResult<JobRow> {
        self.listener_ready().await;
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(sql)
            .bind(id.0)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        match row {
            Some(row) => {
                let job = job_row(&row)?;
                self.audit_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(store_error)?;
                Ok(job)
            }
            None => {
                drop(tx);
                self.fetch_job(id).await?.ok_or_else(|| not_found(id))
            }
        }
    }

    /// [`Store::job_delete`](stoker_core::Store::job_delete) with its audit row, by the same
    /// rules: twice at most, so a job that stops running between the delete and the check is
    /// deleted on the second try.
    async fn job_delete_audited(
        &self,
        id: JobId,
        audit: Option<AuditEntry>,
    ) -> StoreResult<JobRow> {
        for _ in 0..2 {
            let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
            let deleted = sqlx::query(&self.inner.sql.job_delete)
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
            if let Some(row) = deleted {
                let job = job_row(&row)?;
                self.audit_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(store_error)?;
                return Ok(job);
            }
            drop(tx);
            match self.fetch_job(id).await? {
                None => return Err(not_found(id)),
                Some(job) if job.state == JobState::Running => break,
                Some(_) => {
                    if let Some(reason) = self.delete_refusal(id).await? {
                        return Err(StoreError::Conflict(reason));
                    }
                    continue;
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "job {id} is running: cancel it first"
        )))
    }

    /// A queue pause or resume (`sql`) with its audit row. The row is written even when the
    /// queue already was as asked: the operator's request stands recorded.
    async fn queue_set_audited(
        &self,
        sql: &str,
        params: &QueueParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<()> {
        stoker_core::validate_queue(&params.queue)?;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        sqlx::query(sql)
            .bind(&params.queue)
            .bind(params.now)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(())
    }
}
