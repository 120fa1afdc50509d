//! Parents that wait for their children (issue 18) on SQLite: the insert of waited children,
//! the parent's finish that waits, and the read of a wait. Edges are resolved, and a waiting
//! parent finished, by the triggers of migration 25, never here.

use stoker_core::{
    ChildrenInsertParams, ChildrenWait, DepPolicy, FinishedJob, InsertedJob, JobId,
    JobInsertParams, StoreError, StoreResult, WaitChildrenParams, WaitedChild, WorkflowCounts,
    CHILDREN_LIST_MAX,
};

use super::{begin_write, SqliteStore};
use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::insert;
use crate::row::{from_micros, micros, parse_state, to_json};

/// Whether job `?1` is running under fence `?2` with its lease alive at `?3`.
const HELD_SQL: &str = "SELECT 1 FROM stoker_jobs
WHERE id = ?1 AND state = 'running' AND fence = ?2
  AND (lease_expires_at IS NULL OR lease_expires_at > ?3)";

/// Links the jobs of the JSON array `?3` to parent `?1` under policy `?2`: those unfinished
/// and waited for by no job yet (a duplicate may be an older job).
const LINK_SQL: &str = "UPDATE stoker_jobs SET awaited_by = ?1, await_policy = ?2
WHERE id IN (SELECT value FROM json_each(?3)) AND id <> ?1 AND awaited_by IS NULL
  AND state <> 'completed' AND state <> 'discarded' AND state <> 'cancelled'
RETURNING id";

/// Finishes running job `?3` (fence `?4`, lease alive at `?2`) as a waiting parent with
/// result `?1`: cancelled if a child failed under 'cancel', blocked while children are
/// pending, else completed. `finished_at` is written either way, so the finish triggers see
/// the change (their WHEN passes only for a finished state).
const WAIT_SQL: &str = "UPDATE stoker_jobs
SET state = CASE WHEN COALESCE(children_failed, 0) > 0 THEN 'cancelled'
                 WHEN COALESCE(children_pending, 0) > 0 THEN 'blocked'
                 ELSE 'completed' END,
    result = ?1,
    finished_at = CASE WHEN COALESCE(children_failed, 0) > 0
                         OR COALESCE(children_pending, 0) = 0
                       THEN ?2 ELSE finished_at END,
    scheduled = 0,
    lease_expires_at = NULL
WHERE id = ?3 AND state = 'running' AND fence = ?4
  AND (lease_expires_at IS NULL OR lease_expires_at > ?2)
RETURNING id, state, run_at, attempt, queue, kind, attempted_at, worker_id, tenant,
          has_dependents OR batch_id IS NOT NULL";

/// A row [`WAIT_SQL`] returns.
type WaitRow = (
    i64,
    String,
    i64,
    i32,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    bool,
);

fn policy(text: &str) -> StoreResult<DepPolicy> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown child policy {text:?}")))
}

impl SqliteStore {
    pub(super) async fn job_children_insert_impl(
        &self,
        params: ChildrenInsertParams,
    ) -> StoreResult<Option<Vec<InsertedJob>>> {
        params.validate()?;
        // Children are submissions like any insert: the enqueue quotas (issue 16) are taken
        // in the same transaction.
        let quotas = self.flow_quota_demand(params.jobs.iter()).await?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let held: Option<i64> = sqlx::query_scalar(HELD_SQL)
            .bind(params.parent.0)
            .bind(params.fence)
            .bind(micros(params.now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if held.is_none() {
            return Ok(None);
        }
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, &quotas, params.now).await?;
        }
        let inserted = insert::insert_jobs(
            &mut tx,
            &JobInsertParams {
                jobs: params.jobs,
                now: params.now,
                max_args_bytes: params.max_args_bytes,
            },
        )
        .await?;
        let ids: Vec<i64> = inserted.jobs.iter().map(|job| job.id.0).collect();
        let linked: Vec<i64> = sqlx::query_scalar(LINK_SQL)
            .bind(params.parent.0)
            .bind(params.policy.as_str())
            .bind(to_json(&ids)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "UPDATE stoker_jobs
             SET children_pending = COALESCE(children_pending, 0) + ?2,
                 children_failed = COALESCE(children_failed, 0)
             WHERE id = ?1",
        )
        .bind(params.parent.0)
        .bind(linked.len() as i64)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        self.notify_available(inserted.queues);
        Ok(Some(inserted.jobs))
    }

    pub(super) async fn job_wait_children_impl(
        &self,
        params: WaitChildrenParams,
    ) -> StoreResult<Option<FinishedJob>> {
        let result = params.result.as_ref().map(to_json).transpose()?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row: Option<WaitRow> = sqlx::query_as(WAIT_SQL)
            .bind(result)
            .bind(micros(params.now))
            .bind(params.id.0)
            .bind(params.fence)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some((id, state, run_at, attempt, queue, kind, attempted_at, worker_id, tenant, wakes)) =
            row
        else {
            return Ok(None);
        };
        let state = parse_state(&state)?;
        // The store keeps the finished counts (see `crate::counts`).
        let mut counts = CountDeltas::default();
        counts.entered(&queue, &kind, tenant.as_deref(), state);
        counts.apply(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        if wakes && state.is_finished() {
            self.wake_released(vec![id]).await;
        }
        Ok(Some(FinishedJob {
            id: JobId(id),
            state,
            run_at: from_micros("run_at", run_at)?,
            attempt,
            queue,
            kind,
            attempted_at: attempted_at
                .map(|at| from_micros("attempted_at", at))
                .transpose()?,
            worker_id,
            tenant,
        }))
    }

    pub(super) async fn job_children_impl(&self, id: JobId) -> StoreResult<Option<ChildrenWait>> {
        let mut conn = self.read().await?;
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT children_pending, children_failed FROM stoker_jobs WHERE id = ?1",
        )
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let Some((Some(pending), failed)) = row else {
            return Ok(None);
        };
        let by_state: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM stoker_jobs WHERE awaited_by = ?1 GROUP BY state",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut states = WorkflowCounts::default();
        for (state, count) in by_state {
            states.add(parse_state(&state)?, count);
        }
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, kind, state, await_policy FROM stoker_jobs
             WHERE awaited_by = ?1 AND await_policy IS NOT NULL ORDER BY id LIMIT ?2",
        )
        .bind(id.0)
        .bind(CHILDREN_LIST_MAX as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let unresolved = rows
            .into_iter()
            .map(|(child, kind, state, edge_policy)| {
                Ok(WaitedChild {
                    id: JobId(child),
                    kind,
                    state: parse_state(&state)?,
                    policy: policy(&edge_policy)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(ChildrenWait {
            pending,
            failed: failed.unwrap_or(0),
            states,
            unresolved,
        }))
    }
}
