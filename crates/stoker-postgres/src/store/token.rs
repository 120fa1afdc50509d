//! API tokens stored as data (issue 17, item 2) on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use stoker_core::{
    StoreError, StoreResult, TokenCreateParams, TokenRow, TOKEN_TOUCH_EVERY_SECONDS,
};

use super::PgStore;
use crate::error::store_error;

const COLUMNS: &str =
    "id, name, scopes, tenant, secret_hash, created_at, expires_at, last_used_at, revoked_at";

fn token_row(row: &PgRow) -> StoreResult<TokenRow> {
    let get_err = |err: sqlx::Error| StoreError::Corrupt(format!("cannot read a token: {err}"));
    Ok(TokenRow {
        id: row.try_get("id").map_err(get_err)?,
        name: row.try_get("name").map_err(get_err)?,
        scopes: row.try_get("scopes").map_err(get_err)?,
        tenant: row.try_get("tenant").map_err(get_err)?,
        secret_hash: row.try_get("secret_hash").map_err(get_err)?,
        created_at: row.try_get("created_at").map_err(get_err)?,
        expires_at: row.try_get("expires_at").map_err(get_err)?,
        last_used_at: row.try_get("last_used_at").map_err(get_err)?,
        revoked_at: row.try_get("revoked_at").map_err(get_err)?,
    })
}

impl PgStore {
    fn token_table(&self) -> String {
        format!("\"{}\".stoker_tokens", self.inner.schema)
    }

    pub(super) async fn token_create_impl(
        &self,
        params: TokenCreateParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<TokenRow> {
        let token = params.token;
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "INSERT INTO {} (id, name, scopes, tenant, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}",
            self.token_table()
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.scopes)
        .bind(&token.tenant)
        .bind(&token.secret_hash)
        .bind(token.created_at)
        .bind(token.expires_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::Conflict(format!("token {:?} exists", token.id)))?;
        let row = token_row(&row)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(row)
    }

    pub(super) async fn token_get_impl(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} WHERE id = $1",
            self.token_table()
        ))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(token_row)
        .transpose()
    }

    pub(super) async fn token_list_impl(&self) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} ORDER BY created_at, id",
            self.token_table()
        ))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(token_row).collect()
    }

    pub(super) async fn token_revoke_impl(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<TokenRow> {
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "UPDATE {} SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING {COLUMNS}",
            self.token_table()
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::NotFound(format!("token {id:?}")))?;
        let row = token_row(&row)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(row)
    }

    pub(super) async fn token_touch_impl(&self, id: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let cutoff = now - chrono::Duration::seconds(TOKEN_TOUCH_EVERY_SECONDS);
        let done = sqlx::query(&format!(
            "UPDATE {} SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
            self.token_table()
        ))
        .bind(id)
        .bind(now)
        .bind(cutoff)
        .execute(&self.inner.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }
}
