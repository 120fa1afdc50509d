//! Batches (issue 18) on PostgreSQL: the insert of a batch's jobs with its counters, its
//! close, its cancel, and its reads. Counters move and the callback is released by the
//! trigger and function of migration 19, in the transaction of each member's finish; the close
//! calls the same function, so there is one place that fires a batch.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};
use stoker_core::{
    BatchId, BatchInsertParams, BatchInserted, BatchListParams, BatchRow, BatchState, JobId,
    JobInsertParams, StoreError, StoreResult, WorkflowListParams, WorkflowRow,
};

use super::{InsertBatch, PgStore};
use crate::error::store_error;

/// A batch's row as an insert reads it: tenant, closed, cancelled, callback.
type BatchHead = (Option<String>, bool, bool, Option<i64>);

/// What a refused delete reads: state, batch, jobs waiting, batch it is the callback of.
type DeleteRead = (String, Option<i64>, Vec<i64>, Option<i64>);

/// The columns of a batch row, in the order [`batch_row`] reads them.
const BATCH_COLS: &str = "id, name, tenant, callback_id, total, pending, completed, discarded, \
                          cancelled, created_at, closed_at, finished_at, cancelled_at";

fn batch_row(row: &PgRow) -> StoreResult<BatchRow> {
    let get = |err: sqlx::Error| StoreError::Corrupt(format!("batch row: {err}"));
    let closed_at: Option<DateTime<Utc>> = row.try_get(10).map_err(get)?;
    let finished_at: Option<DateTime<Utc>> = row.try_get(11).map_err(get)?;
    let cancelled_at: Option<DateTime<Utc>> = row.try_get(12).map_err(get)?;
    Ok(BatchRow {
        id: BatchId(row.try_get(0).map_err(get)?),
        name: row.try_get(1).map_err(get)?,
        tenant: row.try_get(2).map_err(get)?,
        callback: row.try_get::<Option<i64>, _>(3).map_err(get)?.map(JobId),
        total: row.try_get(4).map_err(get)?,
        pending: row.try_get(5).map_err(get)?,
        completed: row.try_get(6).map_err(get)?,
        discarded: row.try_get(7).map_err(get)?,
        cancelled: row.try_get(8).map_err(get)?,
        created_at: row.try_get(9).map_err(get)?,
        state: BatchRow::derive_state(closed_at, finished_at, cancelled_at),
        closed_at,
        finished_at,
        cancelled_at,
    })
}

impl PgStore {
    fn batch_tables(&self) -> (String, String) {
        let s = &self.inner.schema;
        (
            format!("\"{s}\".stoker_jobs"),
            format!("\"{s}\".stoker_batches"),
        )
    }

    async fn batch_on(&self, conn: &mut PgConnection, id: BatchId) -> StoreResult<BatchRow> {
        let (_, batches) = self.batch_tables();
        let row = sqlx::query(&format!("SELECT {BATCH_COLS} FROM {batches} WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)?
            .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?;
        batch_row(&row)
    }

    pub(super) async fn batch_insert_impl(
        &self,
        params: BatchInsertParams,
    ) -> StoreResult<BatchInserted> {
        params.validate()?;
        let (jobs, batches) = self.batch_tables();
        let schema = &self.inner.schema;
        // A batch's jobs and callback are submissions like any insert's: the enqueue quotas
        // (issue 16) are taken in the same transaction, all or none.
        let quotas = self
            .flow_quota_demand(params.jobs.iter().chain(&params.callback))
            .await?;
        self.listener_ready().await;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, schema, &quotas, params.now).await?;
        }

        // Adding: the batch row stays locked to the commit, so a member's finish (whose
        // trigger updates it) and a cancel are ordered with this insert.
        let (batch, callback) = match params.batch {
            Some(id) => {
                let found: Option<BatchHead> = sqlx::query_as(&format!(
                    "SELECT tenant, closed_at IS NOT NULL, cancelled_at IS NOT NULL,
                                callback_id
                         FROM {batches} WHERE id = $1 FOR UPDATE"
                ))
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
                match found {
                    None => return Err(StoreError::NotFound(format!("batch {id}"))),
                    Some((tenant, ..)) if tenant != params.tenant => {
                        return Err(StoreError::NotFound(format!("batch {id}")))
                    }
                    Some((_, _, true, _)) => {
                        return Err(StoreError::Conflict(format!(
                            "batch {id} is cancelled: no job can be added to it"
                        )))
                    }
                    Some((_, true, _, _)) if !params.jobs.is_empty() => {
                        return Err(StoreError::Conflict(format!(
                            "batch {id} is closed: no job can be added to it"
                        )))
                    }
                    Some((.., callback)) => (id, callback.map(JobId)),
                }
            }
            None => {
                let id = BatchId(
                    sqlx::query_scalar(&format!(
                        "INSERT INTO {batches} (name, tenant, created_at) VALUES ($1, $2, $3)
                         RETURNING id"
                    ))
                    .bind(&params.name)
                    .bind(&params.tenant)
                    .bind(params.now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(store_error)?,
                );
                let callback = match &params.callback {
                    None => None,
                    Some(job) => {
                        let insert = InsertBatch::new(JobInsertParams {
                            jobs: vec![job.clone()],
                            now: params.now,
                            max_args_bytes: params.max_args_bytes,
                        })?;
                        // Inserted blocked in this transaction: no claim ever sees it
                        // before the batch releases it, so its queue is not announced.
                        let (inserted, _) = insert.insert(&mut tx, &self.inner.sql, &[]).await?;
                        let callback = inserted[0].id;
                        sqlx::query(&format!(
                            "UPDATE {jobs} SET state = 'blocked', scheduled = false WHERE id = $1"
                        ))
                        .bind(callback.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?;
                        sqlx::query(&format!(
                            "UPDATE {batches} SET callback_id = $1 WHERE id = $2"
                        ))
                        .bind(callback.0)
                        .bind(id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?;
                        Some(callback)
                    }
                };
                (id, callback)
            }
        };

        let mut ids: Vec<i64> = Vec::new();
        if !params.jobs.is_empty() {
            let insert = InsertBatch::new(JobInsertParams {
                jobs: params.jobs.clone(),
                now: params.now,
                max_args_bytes: params.max_args_bytes,
            })?;
            let queues = insert.distinct_queues();
            let (inserted, _) = insert.insert(&mut tx, &self.inner.sql, &queues).await?;
            ids = inserted.iter().map(|job| job.id.0).collect();
            sqlx::query(&format!(
                "UPDATE {jobs} SET batch_id = $1 WHERE id = ANY($2)"
            ))
            .bind(batch.0)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            sqlx::query(&format!(
                "UPDATE {batches} SET total = total + $1, pending = pending + $1 WHERE id = $2"
            ))
            .bind(ids.len() as i64)
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        if params.close {
            sqlx::query(&format!(
                "UPDATE {batches} SET closed_at = COALESCE(closed_at, $1) WHERE id = $2"
            ))
            .bind(params.now)
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            sqlx::query(&format!("SELECT \"{schema}\".stoker_batch_fire($1, $2)"))
                .bind(batch.0)
                .bind(params.now)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(BatchInserted {
            batch,
            jobs: ids.into_iter().map(JobId).collect(),
            callback,
        })
    }

    pub(super) async fn batch_get_impl(&self, id: BatchId) -> StoreResult<Option<BatchRow>> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        match self.batch_on(&mut conn, id).await {
            Ok(row) => Ok(Some(row)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn batch_list_impl(
        &self,
        params: BatchListParams,
    ) -> StoreResult<Vec<BatchRow>> {
        params.validate()?;
        let (_, batches) = self.batch_tables();
        let state = params.state.map(BatchState::as_str);
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM {batches}
             WHERE ($1::text IS NULL OR tenant = $1)
               AND ($2::int8 IS NULL OR id < $2)
               AND CASE $3::text
                       WHEN 'cancelled' THEN cancelled_at IS NOT NULL
                       WHEN 'finished' THEN cancelled_at IS NULL AND finished_at IS NOT NULL
                       WHEN 'running' THEN cancelled_at IS NULL AND finished_at IS NULL
                                           AND closed_at IS NOT NULL
                       WHEN 'open' THEN cancelled_at IS NULL AND closed_at IS NULL
                       ELSE true END
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(&params.tenant)
        .bind(params.before.map(|id| id.0))
        .bind(state)
        .bind(i64::from(params.limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(batch_row).collect()
    }

    pub(super) async fn batch_cancel_impl(
        &self,
        id: BatchId,
        now: DateTime<Utc>,
    ) -> StoreResult<BatchRow> {
        let (jobs, batches) = self.batch_tables();
        let channel = crate::builder::channel_name(&self.inner.schema);
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        // Marked first, under the row's lock: the member trigger then counts the cancels but
        // never releases the callback.
        let found: Option<Option<i64>> = sqlx::query_scalar(&format!(
            "UPDATE {batches}
             SET cancelled_at = COALESCE(cancelled_at, $1), closed_at = COALESCE(closed_at, $1)
             WHERE id = $2 AND finished_at IS NULL
             RETURNING callback_id"
        ))
        .bind(now)
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        if let Some(callback) = found {
            if let Some(callback) = callback {
                sqlx::query(&format!(
                    "UPDATE {jobs} SET state = 'cancelled', finished_at = $1, scheduled = false
                     WHERE id = $2 AND state = 'blocked'"
                ))
                .bind(now)
                .bind(callback)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            }
            sqlx::query(&format!(
                "WITH upd AS (
                     UPDATE {jobs} SET
                         state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
                         finished_at = CASE WHEN state = 'running' THEN finished_at ELSE $1 END,
                         scheduled = false,
                         cancel_requested_at = CASE WHEN state = 'running'
                                                    THEN COALESCE(cancel_requested_at, $1)
                                                    ELSE cancel_requested_at END
                     WHERE batch_id = $2
                       AND state IN ('blocked', 'available', 'retryable', 'running')
                     RETURNING id, state
                 )
                 SELECT count(pg_notify($3, 'c:' || id)) FROM upd WHERE state = 'running'"
            ))
            .bind(now)
            .bind(id.0)
            .bind(&channel)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        let row = self.batch_on(&mut tx, id).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(row)
    }

    pub(super) async fn job_batch_impl(&self, id: JobId) -> StoreResult<Option<BatchId>> {
        let (jobs, _) = self.batch_tables();
        let batch: Option<Option<i64>> =
            sqlx::query_scalar(&format!("SELECT batch_id FROM {jobs} WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(store_error)?;
        Ok(batch.flatten().map(BatchId))
    }

    pub(super) async fn workflow_list_impl(
        &self,
        params: WorkflowListParams,
    ) -> StoreResult<Vec<WorkflowRow>> {
        params.validate()?;
        let s = &self.inner.schema;
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM \"{s}\".stoker_workflows
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::int8 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(&params.tenant)
        .bind(params.before.map(|id| id.0))
        .bind(i64::from(params.limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.workflow_get_impl(stoker_core::WorkflowId(id)).await? {
                out.push(row);
            }
        }
        Ok(out)
    }
}

impl PgStore {
    /// Why `job_delete` keeps the job `id` (not running), if it does: jobs blocked on it, an
    /// unfinished batch it belongs to, or a batch whose callback it is.
    pub(super) async fn delete_refusal(&self, id: JobId) -> StoreResult<Option<String>> {
        let s = &self.inner.schema;
        let row: Option<DeleteRead> = sqlx::query_as(&format!(
            "SELECT j.state, j.batch_id,
                    ARRAY(SELECT d.child_id FROM \"{s}\".stoker_deps AS d
                          JOIN \"{s}\".stoker_jobs AS c ON c.id = d.child_id
                          WHERE d.parent_id = j.id AND NOT d.resolved AND c.state = 'blocked'
                          ORDER BY d.child_id LIMIT 10),
                    (SELECT b.id FROM \"{s}\".stoker_batches AS b WHERE b.callback_id = j.id)
             FROM \"{s}\".stoker_jobs AS j WHERE j.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(store_error)?;
        let Some((state, batch, waiting, callback_of)) = row else {
            return Ok(None);
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
