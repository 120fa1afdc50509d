//! Tenant-bound claims (issue 17, item 1) on PostgreSQL.

use stoker_core::{JobClaimParams, JobRow, StoreResult};

use super::{lease_end, PgStore};
use crate::error::store_error;
use crate::row::{job_columns, job_row};

impl PgStore {
    /// The claim of `Sql::job_claim` limited to tenant `$7`, with an optional kind filter in
    /// `$6` (null for every kind). Built per call: only tenant-bound pull workers use it.
    fn claim_tenant_sql(&self) -> String {
        let s = format!("\"{}\"", self.inner.schema);
        let j_cols = job_columns(Some("j"));
        format!(
            "UPDATE {s}.stoker_jobs j \
             SET state = 'running', attempt = j.attempt + 1, fence = j.fence + 1, \
                 attempted_at = $1, worker_id = $2, lease_expires_at = $5, flow_slots = NULL \
             WHERE j.id = ANY(ARRAY( \
                 SELECT id FROM {s}.stoker_jobs \
                 WHERE state IN ('available', 'retryable') AND NOT scheduled \
                   AND queue = $3 AND run_at <= $1 AND tenant = $7 \
                   AND ($6::text[] IS NULL OR kind = ANY($6)) \
                   AND NOT EXISTS (SELECT 1 FROM {s}.stoker_queues WHERE name = $3 AND paused) \
                 ORDER BY priority DESC, run_at, id \
                 LIMIT $4 \
                 FOR UPDATE SKIP LOCKED \
             )) \
             RETURNING {j_cols}"
        )
    }

    pub(super) async fn job_claim_tenant_impl(
        &self,
        params: JobClaimParams,
        tenant: &str,
    ) -> StoreResult<Vec<JobRow>> {
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let lease_end = params
            .lease
            .map(|lease| lease_end(params.now, lease))
            .transpose()?;
        // A queue some limit applies to takes the limited claim (issue 16), for a tenant too.
        if let Some(limits) = self.flow_limits_for(&params.queue).await? {
            return self
                .flow_claim(&params, lease_end, limits, Some(tenant))
                .await;
        }
        let kinds = (!params.kinds.is_empty()).then_some(&params.kinds);
        let rows = sqlx::query(&self.claim_tenant_sql())
            .bind(params.now)
            .bind(&params.worker_id)
            .bind(&params.queue)
            .bind(i64::from(params.limit))
            .bind(lease_end)
            .bind(kinds)
            .bind(tenant)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        let mut jobs = rows.iter().map(job_row).collect::<StoreResult<Vec<_>>>()?;
        // RETURNING order is unspecified: restore the fetch order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }
}

// --- stream tenant ---
impl PgStore {
    /// The waiting jobs of tenant `$1` per queue, as `HistorySql::depths` counts every
    /// tenant's. Built per call: only tenant-scoped readers use it.
    fn depths_tenant_sql(&self) -> String {
        let s = format!("\"{}\"", self.inner.schema);
        format!(
            "SELECT queue, count(*) FILTER (WHERE NOT scheduled), \
                    count(*) FILTER (WHERE scheduled), \
                    min(run_at) FILTER (WHERE NOT scheduled) \
             FROM {s}.stoker_jobs WHERE state IN ('available', 'retryable') AND tenant = $1 \
             GROUP BY queue ORDER BY queue"
        )
    }

    /// The age rules of `Sql::job_prune` (`$1` completed, `$2` cancelled, `$3` discarded
    /// before) limited to tenant `$4`, at most `$5` rows. The workflow guard repeats the
    /// prune's: a job of a workflow with an unfinished job, or with an unfinished dependent,
    /// stays. The counters follow through the delete trigger, in the same statement.
    fn prune_tenant_sql(&self) -> String {
        let s = format!("\"{}\"", self.inner.schema);
        let jobs = format!("{s}.stoker_jobs");
        let deps = format!("{s}.stoker_deps");
        let finished = "('completed', 'discarded', 'cancelled')";
        let needed = format!(
            "(t.workflow_id IS NULL OR NOT EXISTS ( \
                 SELECT 1 FROM {jobs} w WHERE w.workflow_id = t.workflow_id \
                   AND w.state NOT IN {finished} OFFSET 0)) \
             AND (NOT t.has_dependents OR NOT EXISTS ( \
                 SELECT 1 FROM {deps} d JOIN {jobs} c ON c.id = d.child_id \
                 WHERE d.parent_id = t.id AND c.state NOT IN {finished} OFFSET 0))"
        );
        format!(
            "DELETE FROM {jobs} WHERE id IN ( \
                 SELECT id FROM ( \
                     SELECT t.id, t.finished_at FROM {jobs} t \
                     WHERE $1::timestamptz IS NOT NULL AND t.state = 'completed' \
                       AND t.finished_at < $1 AND t.tenant = $4 AND {needed} \
                     UNION ALL \
                     SELECT t.id, t.finished_at FROM {jobs} t \
                     WHERE $2::timestamptz IS NOT NULL AND t.state = 'cancelled' \
                       AND t.finished_at < $2 AND t.tenant = $4 AND {needed} \
                     UNION ALL \
                     SELECT t.id, t.finished_at FROM {jobs} t \
                     WHERE $3::timestamptz IS NOT NULL AND t.state = 'discarded' \
                       AND t.finished_at < $3 AND t.tenant = $4 AND {needed} \
                 ) doomed \
                 ORDER BY finished_at, id \
                 LIMIT $5 \
             ) AND state IN {finished} AND tenant = $4"
        )
    }

    pub(super) async fn queue_depths_tenant_impl(
        &self,
        tenant: &str,
    ) -> StoreResult<Vec<stoker_core::QueueDepth>> {
        let rows = sqlx::query(&self.depths_tenant_sql())
            .bind(tenant)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                Ok(stoker_core::QueueDepth {
                    queue: row.try_get(0).map_err(store_error)?,
                    due: row.try_get(1).map_err(store_error)?,
                    scheduled: row.try_get(2).map_err(store_error)?,
                    oldest_due_at: row.try_get(3).map_err(store_error)?,
                })
            })
            .collect()
    }

    pub(super) async fn job_prune_tenant_impl(
        &self,
        params: stoker_core::JobPruneParams,
        tenant: &str,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<u64> {
        params.validate_for_tenant()?;
        if params.limit == 0 {
            return Ok(0);
        }
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let deleted = sqlx::query(&self.prune_tenant_sql())
            .bind(params.completed_before)
            .bind(params.cancelled_before)
            .bind(params.discarded_before)
            .bind(tenant)
            .bind(i64::from(params.limit))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected();
        self.audit_on(&mut tx, super::audited::counted(audit, deleted).as_ref())
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(deleted)
    }
}
