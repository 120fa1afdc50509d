//! Batches (issue 18) on SQLite: the insert of a batch's jobs with its counters, its close,
//! its cancel, and its reads. Counters move and the callback is released by the trigger of
//! migration 21, in the transaction of each member's finish; the close runs the same two
//! statements as the trigger's release, so both fire a batch the same way.

use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use stoker_core::{
    BatchId, BatchInsertParams, BatchInserted, BatchListParams, BatchRow, BatchState, JobId,
    JobInsertParams, JobState, StoreError, StoreEvent, StoreResult, WorkflowId, WorkflowListParams,
    WorkflowRow,
};

use super::{begin_write, SqliteStore};
use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::insert;
use crate::row::{column, micros, time_column, time_column_opt, to_json};

/// A batch's row as an insert reads it: tenant, closed_at, cancelled_at, callback.
type BatchHead = (Option<String>, Option<i64>, Option<i64>, Option<i64>);

/// What a refused delete reads: state, batch, jobs waiting (JSON), batch it is the callback of.
type DeleteRead = (String, Option<i64>, Option<String>, Option<i64>);

/// A job a batch cancel cancelled: queue, kind, tenant, id, has_dependents.
type CancelledRow = (String, String, Option<String>, i64, bool);

/// The columns of a batch row, in the order [`batch_row`] reads them.
const BATCH_COLS: &str = "id, name, tenant, callback_id, total, pending, completed, discarded, \
                          cancelled, created_at, closed_at, finished_at, cancelled_at";

/// Releases the callback of batch `?1` at `?2` (microseconds) if the batch is closed with
/// nothing pending and has not fired, merging its counts into the callback's args; returns the
/// callback's queue if it is due now. The trigger of migration 21 runs the same release.
const FIRE_CALLBACK_SQL: &str = "
UPDATE stoker_jobs
SET state = 'available',
    scheduled = run_at > ?2,
    args = json_set(args, '$.batch', json((
        SELECT json_object('id', b.id, 'total', b.total, 'completed', b.completed,
                           'discarded', b.discarded, 'cancelled', b.cancelled)
        FROM stoker_batches AS b WHERE b.id = ?1)))
WHERE state = 'blocked' AND id = (
    SELECT callback_id FROM stoker_batches
    WHERE id = ?1 AND closed_at IS NOT NULL AND pending = 0
      AND finished_at IS NULL AND cancelled_at IS NULL)
RETURNING queue, scheduled";

/// Marks batch `?1` finished at `?2` once closed with nothing pending; after
/// [`FIRE_CALLBACK_SQL`].
const FINISH_BATCH_SQL: &str = "
UPDATE stoker_batches SET finished_at = ?2
WHERE id = ?1 AND closed_at IS NOT NULL AND pending = 0 AND finished_at IS NULL";

fn batch_row(row: &SqliteRow) -> StoreResult<BatchRow> {
    let closed_at = time_column_opt(row, 10, "closed_at")?;
    let finished_at = time_column_opt(row, 11, "finished_at")?;
    let cancelled_at = time_column_opt(row, 12, "cancelled_at")?;
    Ok(BatchRow {
        id: BatchId(column(row, 0, "id")?),
        name: column(row, 1, "name")?,
        tenant: column(row, 2, "tenant")?,
        callback: column::<Option<i64>>(row, 3, "callback_id")?.map(JobId),
        total: column(row, 4, "total")?,
        pending: column(row, 5, "pending")?,
        completed: column(row, 6, "completed")?,
        discarded: column(row, 7, "discarded")?,
        cancelled: column(row, 8, "cancelled")?,
        created_at: time_column(row, 9, "created_at")?,
        state: BatchRow::derive_state(closed_at, finished_at, cancelled_at),
        closed_at,
        finished_at,
        cancelled_at,
    })
}

async fn batch_on(conn: &mut SqliteConnection, id: BatchId) -> StoreResult<Option<BatchRow>> {
    let row = sqlx::query(&format!(
        "SELECT {BATCH_COLS} FROM stoker_batches WHERE id = ?1"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(batch_row).transpose()
}

impl SqliteStore {
    pub(super) async fn batch_insert_impl(
        &self,
        params: BatchInsertParams,
    ) -> StoreResult<BatchInserted> {
        params.validate()?;
        // A batch's jobs and callback are submissions like any insert's: the enqueue quotas
        // (issue 16) are taken in the same transaction, all or none.
        let quotas = self
            .flow_quota_demand(params.jobs.iter().chain(&params.callback))
            .await?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, &quotas, params.now).await?;
        }
        let now = micros(params.now);

        let (batch, callback) = match params.batch {
            Some(id) => {
                let found: Option<BatchHead> = sqlx::query_as(
                    "SELECT tenant, closed_at, cancelled_at, callback_id
                         FROM stoker_batches WHERE id = ?1",
                )
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
                match found {
                    None => return Err(StoreError::NotFound(format!("batch {id}"))),
                    Some((tenant, ..)) if tenant != params.tenant => {
                        return Err(StoreError::NotFound(format!("batch {id}")))
                    }
                    Some((_, _, Some(_), _)) => {
                        return Err(StoreError::Conflict(format!(
                            "batch {id} is cancelled: no job can be added to it"
                        )))
                    }
                    Some((_, Some(_), _, _)) if !params.jobs.is_empty() => {
                        return Err(StoreError::Conflict(format!(
                            "batch {id} is closed: no job can be added to it"
                        )))
                    }
                    Some((.., callback)) => (id, callback.map(JobId)),
                }
            }
            None => {
                let id = BatchId(
                    sqlx::query_scalar(
                        "INSERT INTO stoker_batches (name, tenant, created_at)
                         VALUES (?1, ?2, ?3) RETURNING id",
                    )
                    .bind(&params.name)
                    .bind(&params.tenant)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?,
                );
                let callback = match &params.callback {
                    None => None,
                    Some(job) => {
                        let inserted = insert::insert_jobs(
                            &mut tx,
                            &JobInsertParams {
                                jobs: vec![job.clone()],
                                now: params.now,
                                max_args_bytes: params.max_args_bytes,
                            },
                        )
                        .await?;
                        let callback = inserted.jobs[0].id;
                        // Blocked in this transaction: no claim sees it before the release.
                        sqlx::query(
                            "UPDATE stoker_jobs SET state = 'blocked', scheduled = 0 WHERE id = ?1",
                        )
                        .bind(callback.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                        sqlx::query("UPDATE stoker_batches SET callback_id = ?1 WHERE id = ?2")
                            .bind(callback.0)
                            .bind(id.0)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                        Some(callback)
                    }
                };
                (id, callback)
            }
        };

        let mut ids: Vec<i64> = Vec::new();
        let mut queues: Vec<String> = Vec::new();
        if !params.jobs.is_empty() {
            let inserted = insert::insert_jobs(
                &mut tx,
                &JobInsertParams {
                    jobs: params.jobs.clone(),
                    now: params.now,
                    max_args_bytes: params.max_args_bytes,
                },
            )
            .await?;
            ids = inserted.jobs.iter().map(|job| job.id.0).collect();
            queues = inserted.queues;
            sqlx::query(
                "UPDATE stoker_jobs SET batch_id = ?1
                 WHERE id IN (SELECT value FROM json_each(?2))",
            )
            .bind(batch.0)
            .bind(to_json(&ids)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "UPDATE stoker_batches SET total = total + ?1, pending = pending + ?1
                 WHERE id = ?2",
            )
            .bind(ids.len() as i64)
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        if params.close {
            sqlx::query(
                "UPDATE stoker_batches SET closed_at = COALESCE(closed_at, ?1) WHERE id = ?2",
            )
            .bind(now)
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let released: Option<(String, bool)> = sqlx::query_as(FIRE_CALLBACK_SQL)
                .bind(batch.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query(FINISH_BATCH_SQL)
                .bind(batch.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if let Some((queue, false)) = released {
                queues.push(queue);
            }
        }
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        self.notify_available(queues);
        Ok(BatchInserted {
            batch,
            jobs: ids.into_iter().map(JobId).collect(),
            callback,
        })
    }

    pub(super) async fn batch_get_impl(&self, id: BatchId) -> StoreResult<Option<BatchRow>> {
        batch_on(&mut *self.read().await?, id).await
    }

    pub(super) async fn batch_list_impl(
        &self,
        params: BatchListParams,
    ) -> StoreResult<Vec<BatchRow>> {
        params.validate()?;
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM stoker_batches
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR id < ?2)
               AND CASE ?3
                       WHEN 'cancelled' THEN cancelled_at IS NOT NULL
                       WHEN 'finished' THEN cancelled_at IS NULL AND finished_at IS NOT NULL
                       WHEN 'running' THEN cancelled_at IS NULL AND finished_at IS NULL
                                           AND closed_at IS NOT NULL
                       WHEN 'open' THEN cancelled_at IS NULL AND closed_at IS NULL
                       ELSE 1 END
             ORDER BY id DESC LIMIT ?4"
        ))
        .bind(&params.tenant)
        .bind(params.before.map(|id| id.0))
        .bind(params.state.map(BatchState::as_str))
        .bind(i64::from(params.limit))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.iter().map(batch_row).collect()
    }

    pub(super) async fn batch_cancel_impl(
        &self,
        id: BatchId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<BatchRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let now = micros(at);
        // Marked first: the member trigger then counts the cancels but never releases the
        // callback.
        let found: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE stoker_batches
             SET cancelled_at = COALESCE(cancelled_at, ?1), closed_at = COALESCE(closed_at, ?1)
             WHERE id = ?2 AND finished_at IS NULL RETURNING callback_id",
        )
        .bind(now)
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut running: Vec<i64> = Vec::new();
        let mut parents: Vec<i64> = Vec::new();
        if let Some(callback) = found {
            let cancelled: Vec<CancelledRow> = sqlx::query_as(
                "UPDATE stoker_jobs SET state = 'cancelled', finished_at = ?1, scheduled = 0
                 WHERE (batch_id = ?2 AND state IN ('blocked', 'available', 'retryable'))
                    OR (id = ?3 AND state = 'blocked')
                 RETURNING queue, kind, tenant, id, has_dependents",
            )
            .bind(now)
            .bind(id.0)
            .bind(callback)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            let mut counts = CountDeltas::default();
            for (queue, kind, tenant, job, has_dependents) in &cancelled {
                counts.entered(queue, kind, tenant.as_deref(), JobState::Cancelled);
                if *has_dependents {
                    parents.push(*job);
                }
            }
            counts.apply(&mut tx).await?;
            running = sqlx::query_scalar(
                "UPDATE stoker_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?1)
                 WHERE batch_id = ?2 AND state = 'running' RETURNING id",
            )
            .bind(now)
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let row = batch_on(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?;
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        for job in running {
            self.notify(StoreEvent::JobCancelRequested { id: JobId(job) });
        }
        if !parents.is_empty() {
            self.wake_released(parents).await;
        }
        Ok(row)
    }

    pub(super) async fn job_batch_impl(&self, id: JobId) -> StoreResult<Option<BatchId>> {
        let batch: Option<Option<i64>> =
            sqlx::query_scalar("SELECT batch_id FROM stoker_jobs WHERE id = ?1")
                .bind(id.0)
                .fetch_optional(&mut *self.read().await?)
                .await
                .map_err(db_error)?;
        Ok(batch.flatten().map(BatchId))
    }

    pub(super) async fn workflow_list_impl(
        &self,
        params: WorkflowListParams,
    ) -> StoreResult<Vec<WorkflowRow>> {
        params.validate()?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM stoker_workflows
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(&params.tenant)
        .bind(params.before.map(|id| id.0))
        .bind(i64::from(params.limit))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.workflow_get_impl(WorkflowId(id)).await? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Why `job_delete` keeps the job `id` (not running), if it does: jobs blocked on it, an
    /// unfinished batch it belongs to, or a batch whose callback it is.
    pub(super) async fn delete_refusal(
        conn: &mut SqliteConnection,
        id: JobId,
    ) -> StoreResult<Option<String>> {
        let row: Option<DeleteRead> = sqlx::query_as(
            "SELECT j.state, j.batch_id,
                    (SELECT json_group_array(child_id) FROM (
                        SELECT d.child_id FROM stoker_deps AS d
                        JOIN stoker_jobs AS c ON c.id = d.child_id
                        WHERE d.parent_id = j.id AND NOT d.resolved AND c.state = 'blocked'
                        ORDER BY d.child_id LIMIT 10)),
                    (SELECT b.id FROM stoker_batches AS b WHERE b.callback_id = j.id)
             FROM stoker_jobs AS j WHERE j.id = ?1",
        )
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let Some((state, batch, waiting, callback_of)) = row else {
            return Ok(None);
        };
        let waiting: Vec<i64> = match waiting {
            Some(text) => serde_json::from_str(&text)
                .map_err(|err| StoreError::Corrupt(format!("waiting jobs: {err}")))?,
            None => Vec::new(),
        };
        Ok(stoker_core::batch::delete_refusal(
            id,
            &state,
            batch.map(BatchId),
            &waiting,
            callback_of.map(BatchId),
        ))
    }
}
