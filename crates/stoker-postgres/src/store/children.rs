//! Parents that wait for their children (issue 18) on PostgreSQL: the insert of waited
//! children, the parent's finish that waits, and the read of a wait. Edges are resolved, and
//! a waiting parent finished, by the triggers of migration 23, never here.

use serde_json::Value;
use sqlx::Connection;
use stoker_core::{
    ChildrenInsertParams, ChildrenWait, DepPolicy, FinishedJob, InsertedJob, JobId,
    JobInsertParams, JobState, StoreError, StoreResult, WaitChildrenParams, WaitedChild,
    WorkflowCounts, CHILDREN_LIST_MAX,
};

use super::{InsertBatch, PgStore};
use crate::error::store_error;
use crate::row::finished_row;

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

impl PgStore {
    fn jobs_table(&self) -> String {
        format!("\"{}\".stoker_jobs", self.inner.schema)
    }

    pub(super) async fn job_children_insert_impl(
        &self,
        params: ChildrenInsertParams,
    ) -> StoreResult<Option<Vec<InsertedJob>>> {
        params.validate()?;
        let jobs = self.jobs_table();
        // Children are submissions like any insert: the enqueue quotas (issue 16) are taken
        // in the same transaction.
        let quotas = self.flow_quota_demand(params.jobs.iter()).await?;
        self.listener_ready().await;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        // The parent's row stays locked to the commit, so its own finish waits for the count.
        let held: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM {jobs}
             WHERE id = $1 AND state = 'running' AND fence = $2
               AND (lease_expires_at IS NULL OR lease_expires_at > $3)
             FOR UPDATE"
        ))
        .bind(params.parent.0)
        .bind(params.fence)
        .bind(params.now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        if held.is_none() {
            return Ok(None);
        }
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, &self.inner.schema, &quotas, params.now).await?;
        }
        let batch = InsertBatch::new(JobInsertParams {
            jobs: params.jobs,
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        })?;
        let queues = batch.distinct_queues();
        let (inserted, _) = batch.insert(&mut tx, &self.inner.sql, &queues).await?;
        let ids: Vec<i64> = inserted.iter().map(|job| job.id.0).collect();
        // Unfinished and waited for by no job yet (a duplicate may be an older job).
        let linked: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE {jobs} SET awaited_by = $1, await_policy = $2
             WHERE id = ANY($3) AND id <> $1 AND awaited_by IS NULL
               AND state NOT IN ('completed', 'discarded', 'cancelled')
             RETURNING id"
        ))
        .bind(params.parent.0)
        .bind(params.policy.as_str())
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query(&format!(
            "UPDATE {jobs}
             SET children_pending = COALESCE(children_pending, 0) + $2,
                 children_failed = COALESCE(children_failed, 0)
             WHERE id = $1"
        ))
        .bind(params.parent.0)
        .bind(linked.len() as i32)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(inserted))
    }

    pub(super) async fn job_wait_children_impl(
        &self,
        params: WaitChildrenParams,
    ) -> StoreResult<Option<FinishedJob>> {
        let jobs = self.jobs_table();
        // `finished_at` and `state` are written either way; the finish triggers pass only for
        // a finished state.
        let row = sqlx::query(&format!(
            "UPDATE {jobs}
             SET state = CASE WHEN COALESCE(children_failed, 0) > 0 THEN 'cancelled'
                              WHEN COALESCE(children_pending, 0) > 0 THEN 'blocked'
                              ELSE 'completed' END,
                 result = $1,
                 finished_at = CASE WHEN COALESCE(children_failed, 0) > 0
                                      OR COALESCE(children_pending, 0) = 0
                                    THEN $2 ELSE finished_at END,
                 scheduled = false,
                 lease_expires_at = NULL
             WHERE id = $3 AND state = 'running' AND fence = $4
               AND (lease_expires_at IS NULL OR lease_expires_at > $2)
             RETURNING id, state, run_at, attempt, queue, kind, attempted_at, worker_id, tenant"
        ))
        .bind(params.result.map(sqlx::types::Json::<Value>))
        .bind(params.now)
        .bind(params.id.0)
        .bind(params.fence)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(finished_row).transpose()
    }

    pub(super) async fn job_children_impl(&self, id: JobId) -> StoreResult<Option<ChildrenWait>> {
        let jobs = self.jobs_table();
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let row: Option<(Option<i32>, Option<i32>)> = sqlx::query_as(&format!(
            "SELECT children_pending, children_failed FROM {jobs} WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error)?;
        let Some((Some(pending), failed)) = row else {
            return Ok(None);
        };
        let by_state: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT state, count(*) FROM {jobs} WHERE awaited_by = $1 GROUP BY state"
        ))
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
        let mut states = WorkflowCounts::default();
        for (state, count) in by_state {
            states.add(parse::<JobState>("state", &state)?, count);
        }
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(&format!(
            "SELECT id, kind, state, await_policy FROM {jobs}
             WHERE awaited_by = $1 AND await_policy IS NOT NULL ORDER BY id LIMIT $2"
        ))
        .bind(id.0)
        .bind(CHILDREN_LIST_MAX as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
        let unresolved = rows
            .into_iter()
            .map(|(child, kind, state, policy)| {
                Ok(WaitedChild {
                    id: JobId(child),
                    kind,
                    state: parse("state", &state)?,
                    policy: parse::<DepPolicy>("child policy", &policy)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(ChildrenWait {
            pending: i64::from(pending),
            failed: i64::from(failed.unwrap_or(0)),
            states,
            unresolved,
        }))
    }
}
