//! Sealed job payloads (issue 17 item 4) on SQLite: the walk and the swap of a key rotation.
//! `args` and `result` are JSON text; `json_extract` finds a sealed value by its `$enc` key
//! (quoted in the path, as `$` starts one) and compares it by its nonce.

use sqlx::sqlite::SqliteRow;
use stoker_core::{JobId, JobSealedListParams, SealedJob, SealedRewrite, StoreResult};

use super::{begin_write, SqliteStore};
use crate::error::db_error;
use crate::row::{column, from_json, to_json};

fn sealed_job(row: &SqliteRow) -> StoreResult<SealedJob> {
    Ok(SealedJob {
        id: JobId(column(row, 0, "id")?),
        kind: column(row, 1, "kind")?,
        tenant: column(row, 2, "tenant")?,
        args: from_json("args", column(row, 3, "args")?)?,
        result: column::<Option<&str>>(row, 4, "result")?
            .map(|text| from_json("result", text))
            .transpose()?,
    })
}

impl SqliteStore {
    pub(super) async fn job_sealed_list_impl(
        &self,
        params: JobSealedListParams,
    ) -> StoreResult<Vec<SealedJob>> {
        // json_extract gives NULL for a missing key and for a value that is no object, so
        // plain payloads never match.
        let rows = sqlx::query(
            "SELECT id, kind, tenant, args, result FROM stoker_jobs \
             WHERE id > ?1 AND ( \
               (json_extract(args, '$.\"$enc\"') IS NOT NULL \
                 AND (?2 IS NULL OR json_extract(args, '$.kid') <> ?2)) \
               OR (result IS NOT NULL AND json_extract(result, '$.\"$enc\"') IS NOT NULL \
                 AND (?2 IS NULL OR json_extract(result, '$.kid') <> ?2))) \
             ORDER BY id LIMIT ?3",
        )
        .bind(params.after.0)
        .bind(params.except_kid.map(i64::from))
        .bind(i64::from(params.limit))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.iter().map(sealed_job).collect()
    }

    pub(super) async fn job_sealed_rewrite_impl(
        &self,
        rewrites: Vec<SealedRewrite>,
    ) -> StoreResult<u64> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let mut replaced = 0;
        for rewrite in rewrites {
            let column = if rewrite.result { "result" } else { "args" };
            let done = sqlx::query(&format!(
                "UPDATE stoker_jobs SET {column} = ?1 \
                 WHERE id = ?2 AND json_extract({column}, '$.n') = ?3"
            ))
            .bind(to_json(&rewrite.value)?)
            .bind(rewrite.id.0)
            .bind(&rewrite.old_nonce)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            replaced += done.rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
        Ok(replaced)
    }
}
