//! API tokens stored as data (issue 17, item 2) on SQLite.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use stoker_core::{
    StoreError, StoreResult, TokenCreateParams, TokenRow, TOKEN_TOUCH_EVERY_SECONDS,
};

use super::SqliteStore;
use crate::error::db_error;
use crate::row::{column, from_json, micros, time_column, time_column_opt, to_json};
use stoker_core::AuditEntry;

const COLUMNS: &str =
    "id, name, scopes, tenant, secret_hash, created_at, expires_at, last_used_at, revoked_at";

fn token_from_row(row: &SqliteRow) -> StoreResult<TokenRow> {
    Ok(TokenRow {
        id: column(row, 0, "id")?,
        name: column(row, 1, "name")?,
        scopes: from_json("scopes", &column::<String>(row, 2, "scopes")?)?,
        tenant: column(row, 3, "tenant")?,
        secret_hash: column(row, 4, "secret_hash")?,
        created_at: time_column(row, 5, "created_at")?,
        expires_at: time_column_opt(row, 6, "expires_at")?,
        last_used_at: time_column_opt(row, 7, "last_used_at")?,
        revoked_at: time_column_opt(row, 8, "revoked_at")?,
    })
}

impl SqliteStore {
    pub(super) async fn token_create_impl(
        &self,
        params: TokenCreateParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<TokenRow> {
        let token = params.token;
        let mut conn = self.write().await?;
        let mut tx = super::begin_write(&mut conn).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO stoker_tokens (id, name, scopes, tenant, secret_hash, created_at, \
             expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING \
             RETURNING {COLUMNS}"
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(to_json(&token.scopes)?)
        .bind(&token.tenant)
        .bind(&token.secret_hash)
        .bind(micros(token.created_at))
        .bind(token.expires_at.map(micros))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::Conflict(format!("token {:?} exists", token.id)))?;
        let row = token_from_row(&row)?;
        super::audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(row)
    }

    pub(super) async fn token_get_impl(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM stoker_tokens WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.read().await?)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    pub(super) async fn token_list_impl(&self) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM stoker_tokens ORDER BY created_at, id"
        ))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.iter().map(token_from_row).collect()
    }

    pub(super) async fn token_revoke_impl(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> StoreResult<TokenRow> {
        let mut conn = self.write().await?;
        let mut tx = super::begin_write(&mut conn).await?;
        let row = sqlx::query(&format!(
            "UPDATE stoker_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 \
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("token {id:?}")))?;
        let row = token_from_row(&row)?;
        super::audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(row)
    }

    pub(super) async fn token_touch_impl(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let cutoff = now - chrono::Duration::seconds(TOKEN_TOUCH_EVERY_SECONDS);
        let done = sqlx::query(
            "UPDATE stoker_tokens SET last_used_at = ?2 \
             WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?3)",
        )
        .bind(id)
        .bind(micros(now))
        .bind(micros(cutoff))
        .execute(&mut *self.write().await?)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }
}
