//! Tenant-bound claims (issue 17, item 1) on SQLite.

use stoker_core::{JobClaimParams, JobRow, StoreResult};

use super::{lease_end, SqliteStore};
use crate::error::db_error;
use crate::row::{job_columns, job_from_row, micros, to_json};

/// The claim of [`super::CLAIM_SQL`] limited to tenant `?7`, with an optional kind filter in
/// `?6` (a JSON array, or null for every kind).
const CLAIM_TENANT_SQL: &str = concat!(
    "UPDATE stoker_jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1, attempted_at = ?1,
    worker_id = ?2, lease_expires_at = ?5, flow_slots = NULL
WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE state IN ('available', 'retryable') AND scheduled = 0
      AND queue = ?3 AND +run_at <= ?1 AND tenant = ?7
      AND (?6 IS NULL OR kind IN (SELECT value FROM json_each(?6)))
      AND NOT EXISTS (SELECT 1 FROM stoker_queues WHERE name = ?3 AND paused)
    ORDER BY priority DESC, run_at, id
    LIMIT ?4)
RETURNING ",
    job_columns!()
);

impl SqliteStore {
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
        let kinds = if params.kinds.is_empty() {
            None
        } else {
            Some(to_json(&params.kinds)?)
        };
        let rows = sqlx::query(CLAIM_TENANT_SQL)
            .bind(micros(params.now))
            .bind(&params.worker_id)
            .bind(&params.queue)
            .bind(i64::from(params.limit))
            .bind(lease_end.map(micros))
            .bind(kinds)
            .bind(tenant)
            .fetch_all(&mut *self.write().await?)
            .await
            .map_err(db_error)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives rows in no particular order.
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }
}
