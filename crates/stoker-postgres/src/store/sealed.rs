//! Sealed job payloads (issue 17 item 4) on PostgreSQL: the walk and the swap of a key
//! rotation. `args` and `result` are `jsonb`, so a sealed value is found by its `$enc` key and
//! compared by its nonce without the store knowing anything else of it.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use stoker_core::{JobId, JobSealedListParams, SealedJob, SealedRewrite, StoreError, StoreResult};

use super::PgStore;
use crate::error::store_error;

fn sealed_job(row: &PgRow) -> StoreResult<SealedJob> {
    let get_err = |err: sqlx::Error| StoreError::Corrupt(format!("cannot read a job: {err}"));
    Ok(SealedJob {
        id: JobId(row.try_get("id").map_err(get_err)?),
        kind: row.try_get("kind").map_err(get_err)?,
        tenant: row.try_get("tenant").map_err(get_err)?,
        args: row.try_get("args").map_err(get_err)?,
        result: row.try_get("result").map_err(get_err)?,
    })
}

impl PgStore {
    pub(super) async fn job_sealed_list_impl(
        &self,
        params: JobSealedListParams,
    ) -> StoreResult<Vec<SealedJob>> {
        // `->>` gives NULL for a missing key and for a value that is no object, so plain
        // payloads never match. The kid is compared as text: it is a JSON number in both.
        let rows = sqlx::query(&format!(
            "SELECT id, kind, tenant, args, result FROM \"{}\".stoker_jobs \
             WHERE id > $1 AND ( \
               (args->>'$enc' IS NOT NULL AND ($2::text IS NULL OR args->>'kid' <> $2)) \
               OR (result->>'$enc' IS NOT NULL AND ($2::text IS NULL OR result->>'kid' <> $2))) \
             ORDER BY id LIMIT $3",
            self.inner.schema
        ))
        .bind(params.after.0)
        .bind(params.except_kid.map(|kid| kid.to_string()))
        .bind(i64::from(params.limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(sealed_job).collect()
    }

    pub(super) async fn job_sealed_rewrite_impl(
        &self,
        rewrites: Vec<SealedRewrite>,
    ) -> StoreResult<u64> {
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let mut replaced = 0;
        for rewrite in rewrites {
            let column = if rewrite.result { "result" } else { "args" };
            let done = sqlx::query(&format!(
                "UPDATE \"{}\".stoker_jobs SET {column} = $1 \
                 WHERE id = $2 AND {column}->>'n' = $3",
                self.inner.schema
            ))
            .bind(Json::<&Value>(&rewrite.value))
            .bind(rewrite.id.0)
            .bind(&rewrite.old_nonce)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            replaced += done.rows_affected();
        }
        tx.commit().await.map_err(store_error)?;
        Ok(replaced)
    }
}
