//! The audit log (issue 17, item 3) on SQLite: append, list newest first, prune by age.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use stoker_core::{AuditEntry, AuditListParams, AuditRow, StoreResult};

use super::SqliteStore;
use crate::error::db_error;
use crate::row::{column, from_json, micros, time_column, to_json};

const COLUMNS: &str =
    "id, at, actor, token_id, via, tenant, action, target, filter, affected, source";

fn audit_from_row(row: &SqliteRow) -> StoreResult<AuditRow> {
    Ok(AuditRow {
        id: column(row, 0, "id")?,
        entry: AuditEntry {
            at: time_column(row, 1, "at")?,
            actor: column(row, 2, "actor")?,
            token_id: column(row, 3, "token_id")?,
            via: column(row, 4, "via")?,
            tenant: column(row, 5, "tenant")?,
            action: column(row, 6, "action")?,
            target: column(row, 7, "target")?,
            filter: column::<Option<String>>(row, 8, "filter")?
                .map(|text| from_json("filter", &text))
                .transpose()?,
            affected: column(row, 9, "affected")?,
            source: column(row, 10, "source")?,
        },
    })
}

/// Appends the audit row of a management action on `conn`, inside the action's own
/// transaction (issue 17), so the row commits or rolls back with the change. `None` writes
/// nothing: the plain operation.
pub(crate) async fn audit_insert_on(
    conn: &mut SqliteConnection,
    entry: Option<&AuditEntry>,
) -> StoreResult<()> {
    if let Some(entry) = entry {
        entry.validate()?;
        insert(conn, entry).await?;
    }
    Ok(())
}

async fn insert(conn: &mut SqliteConnection, entry: &AuditEntry) -> StoreResult<AuditRow> {
    let filter = entry.filter.as_ref().map(to_json).transpose()?;
    let row = sqlx::query(&format!(
        "INSERT INTO stoker_audit (at, actor, token_id, via, tenant, action, target, filter, \
             affected, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             RETURNING {COLUMNS}"
    ))
    .bind(micros(entry.at))
    .bind(&entry.actor)
    .bind(&entry.token_id)
    .bind(&entry.via)
    .bind(&entry.tenant)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(filter)
    .bind(entry.affected)
    .bind(&entry.source)
    .fetch_one(conn)
    .await
    .map_err(db_error)?;
    audit_from_row(&row)
}

impl SqliteStore {
    pub(super) async fn audit_append_impl(&self, entry: AuditEntry) -> StoreResult<AuditRow> {
        insert(&mut *self.write().await?, &entry).await
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
            "SELECT {COLUMNS} FROM stoker_audit \
             WHERE (?1 IS NULL OR tenant = ?1) \
               AND (?2 IS NULL OR action = ?2) \
               AND (?3 IS NULL OR substr(action, 1, length(?3)) = ?3) \
               AND (?4 IS NULL OR actor = ?4) \
               AND (?5 IS NULL OR at >= ?5) \
               AND (?6 IS NULL OR at < ?6) \
               AND id < COALESCE(?7, 9223372036854775807) \
             ORDER BY id DESC LIMIT ?8"
        ))
        .bind(&params.tenant)
        .bind(exact)
        .bind(prefix)
        .bind(&params.actor)
        .bind(params.since.map(micros))
        .bind(params.until.map(micros))
        .bind(params.before_id)
        .bind(i64::from(params.limit))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.iter().map(audit_from_row).collect()
    }

    pub(super) async fn audit_prune_impl(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM stoker_audit WHERE id IN ( \
                 SELECT id FROM stoker_audit WHERE at < ?1 ORDER BY at, id LIMIT ?2)",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&mut *self.write().await?)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
