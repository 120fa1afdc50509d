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
