//! The audit log (issue 17, item 3) on PostgreSQL: append, list newest first, prune by age.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;
use stoker_core::{AuditEntry, AuditListParams, AuditRow, StoreError, StoreResult};

use super::PgStore;
use crate::error::store_error;

const COLUMNS: &str =
    "id, at, actor, token_id, via, tenant, action, target, filter, affected, source";

fn audit_row(row: &PgRow) -> StoreResult<AuditRow> {
    let get_err =
        |err: sqlx::Error| StoreError::Corrupt(format!("cannot read an audit row: {err}"));
    Ok(AuditRow {
        id: row.try_get("id").map_err(get_err)?,
        entry: AuditEntry {
            at: row.try_get("at").map_err(get_err)?,
            actor: row.try_get("actor").map_err(get_err)?,
            token_id: row.try_get("token_id").map_err(get_err)?,
            via: row.try_get("via").map_err(get_err)?,
            tenant: row.try_get("tenant").map_err(get_err)?,
            action: row.try_get("action").map_err(get_err)?,
            target: row.try_get("target").map_err(get_err)?,
            filter: row.try_get("filter").map_err(get_err)?,
            affected: row.try_get("affected").map_err(get_err)?,
            source: row.try_get("source").map_err(get_err)?,
        },
    })
}

/// Appends the audit row of a management action on `conn`, inside the action's own
/// transaction (issue 17), so the row commits or rolls back with the change. `None` writes
/// nothing: the plain operation.
pub(crate) async fn audit_insert_on(
    conn: &mut PgConnection,
    schema: &str,
    entry: Option<&AuditEntry>,
) -> StoreResult<()> {
    if let Some(entry) = entry {
        entry.validate()?;
        insert(conn, schema, entry).await?;
    }
    Ok(())
}

async fn insert(
    conn: &mut PgConnection,
    schema: &str,
    entry: &AuditEntry,
) -> StoreResult<AuditRow> {
    let row = sqlx::query(&format!(
        "INSERT INTO \"{schema}\".stoker_audit (at, actor, token_id, via, tenant, action, \
         target, filter, affected, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING {COLUMNS}"
    ))
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.token_id)
    .bind(&entry.via)
    .bind(&entry.tenant)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&entry.filter)
    .bind(entry.affected)
    .bind(&entry.source)
    .fetch_one(conn)
    .await
    .map_err(store_error)?;
    audit_row(&row)
}

impl PgStore {
    fn audit_table(&self) -> String {
        format!("\"{}\".stoker_audit", self.inner.schema)
    }

    pub(super) async fn audit_append_impl(&self, entry: AuditEntry) -> StoreResult<AuditRow> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        insert(&mut conn, &self.inner.schema, &entry).await
    }

    /// Appends `entry` in the transaction on `conn`: see [`audit_insert_on`].
    pub(super) async fn audit_on(
        &self,
        conn: &mut PgConnection,
        entry: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        audit_insert_on(conn, &self.inner.schema, entry).await
    }

    pub(super) async fn audit_list_impl(
        &self,
        params: AuditListParams,
    ) -> StoreResult<Vec<AuditRow>> {
        params.validate()?;
        // `job.` lists every `job.*` action.
        let (exact, prefix) = match &params.action {
            Some(action) if action.ends_with('.') => (None, Some(action.as_str())),
            Some(action) => (Some(action.as_str()), None),
            None => (None, None),
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} \
             WHERE ($1::text IS NULL OR tenant = $1) \
               AND ($2::text IS NULL OR action = $2) \
               AND ($3::text IS NULL OR left(action, length($3)) = $3) \
               AND ($4::text IS NULL OR actor = $4) \
               AND ($5::timestamptz IS NULL OR at >= $5) \
               AND ($6::timestamptz IS NULL OR at < $6) \
               AND id < COALESCE($7::int8, 9223372036854775807) \
             ORDER BY id DESC LIMIT $8",
            self.audit_table()
        ))
        .bind(&params.tenant)
        .bind(exact)
        .bind(prefix)
        .bind(&params.actor)
        .bind(params.since)
        .bind(params.until)
        .bind(params.before_id)
        .bind(i64::from(params.limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(audit_row).collect()
    }

    pub(super) async fn audit_prune_impl(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let table = self.audit_table();
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE id = ANY(ARRAY( \
                 SELECT id FROM {table} WHERE at < $1 ORDER BY at, id LIMIT $2))"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.inner.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
