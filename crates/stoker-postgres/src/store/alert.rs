//! Alert rules (issue 13, item 8) on PostgreSQL: the rows, the compare-and-set transition
//! with its delivery jobs, the event history.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Connection, Row};
use stoker_core::alert::{
    AlertEvent, AlertEventKind, AlertRow, AlertRule, AlertState, AlertStatus,
    AlertTransitionParams, AlertWriteMode, AlertWriteParams, ALERT_EVENTS_KEEP,
};
use stoker_core::{InvalidInput, JobId, JobInsertParams, StoreError, StoreResult};

use super::{InsertBatch, PgStore};
use crate::error::store_error;

const COLUMNS: &str =
    "definition, state, since, clear_since, value, version, created_at, updated_at";

fn corrupt(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |err| StoreError::Corrupt(format!("cannot read {what}: {err}"))
}

fn alert_row(row: &PgRow) -> StoreResult<AlertRow> {
    let get_err = corrupt("an alert rule");
    let definition: Value = row.try_get("definition").map_err(&get_err)?;
    let rule: AlertRule = serde_json::from_value(definition)
        .map_err(|err| StoreError::Corrupt(format!("alert rule is not valid: {err}")))?;
    let state: String = row.try_get("state").map_err(&get_err)?;
    Ok(AlertRow {
        rule,
        status: AlertStatus {
            state: AlertState::parse(&state).map_err(|err| StoreError::Corrupt(err.to_string()))?,
            since: row.try_get("since").map_err(&get_err)?,
            clear_since: row.try_get("clear_since").map_err(&get_err)?,
            value: row.try_get("value").map_err(&get_err)?,
        },
        version: row.try_get("version").map_err(&get_err)?,
        created_at: row.try_get("created_at").map_err(&get_err)?,
        updated_at: row.try_get("updated_at").map_err(&get_err)?,
    })
}

impl PgStore {
    fn alert_table(&self) -> String {
        format!("\"{}\".stoker_alert", self.inner.schema)
    }

    fn alert_events_table(&self) -> String {
        format!("\"{}\".stoker_alert_events", self.inner.schema)
    }

    pub(super) async fn alert_write_impl(
        &self,
        params: AlertWriteParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<AlertRow> {
        params.rule.validate()?;
        let table = self.alert_table();
        let insert = format!(
            "INSERT INTO {table} (name, definition, state, version, created_at, updated_at) \
             VALUES ($1, $2, 'ok', 1, $3, $3)"
        );
        let sql = match params.mode {
            AlertWriteMode::Create => {
                format!("{insert} ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}")
            }
            AlertWriteMode::Update => format!(
                "UPDATE {table} SET definition = $2, version = version + 1, updated_at = $3 \
                 WHERE name = $1 RETURNING {COLUMNS}"
            ),
            AlertWriteMode::Upsert => format!(
                "{insert} ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
                 version = stoker_alert.version + 1, updated_at = excluded.updated_at \
                 WHERE stoker_alert.definition <> excluded.definition RETURNING {COLUMNS}"
            ),
        };
        let definition = serde_json::to_value(&params.rule)
            .map_err(|err| InvalidInput::new("rule", err.to_string()))?;
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(&sql)
            .bind(&params.rule.name)
            .bind(definition)
            .bind(params.now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let name = &params.rule.name;
        match (row, params.mode) {
            (Some(row), _) => {
                let row = alert_row(&row)?;
                self.audit_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(store_error)?;
                Ok(row)
            }
            (None, AlertWriteMode::Create) => Err(StoreError::Conflict(format!(
                "an alert rule named {name:?} already exists"
            ))),
            (None, AlertWriteMode::Update) => {
                Err(StoreError::NotFound(format!("alert rule {name:?}")))
            }
            (None, AlertWriteMode::Upsert) => {
                drop(tx);
                self.alert_get_impl(name)
                    .await?
                    .ok_or_else(|| StoreError::Busy {
                        message: format!("alert rule {name:?} was deleted while it was written"),
                        source: None,
                    })
            }
        }
    }

    pub(super) async fn alert_get_impl(&self, name: &str) -> StoreResult<Option<AlertRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} WHERE name = $1",
            self.alert_table()
        ))
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(alert_row)
        .transpose()
    }

    pub(super) async fn alert_list_impl(&self) -> StoreResult<Vec<AlertRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} ORDER BY name",
            self.alert_table()
        ))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?
        .iter()
        .map(alert_row)
        .collect()
    }

    pub(super) async fn alert_delete_impl(
        &self,
        name: &str,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<AlertRow> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1 RETURNING {COLUMNS}",
            self.alert_table()
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::NotFound(format!("alert rule {name:?}")))?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1",
            self.alert_events_table()
        ))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        alert_row(&row)
    }

    pub(super) async fn alert_transition_impl(
        &self,
        params: AlertTransitionParams,
    ) -> StoreResult<Option<AlertRow>> {
        let batch = InsertBatch::new(JobInsertParams {
            jobs: params.jobs,
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        })?;
        self.listener_ready().await;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        // The compare-and-set: a concurrent evaluator waits for the row lock, then finds the
        // version moved and writes nothing.
        let status = &params.status;
        let row = sqlx::query(&format!(
            "UPDATE {} SET state = $3, since = $4, clear_since = $5, value = $6, \
             version = version + 1 WHERE name = $1 AND version = $2 RETURNING {COLUMNS}",
            self.alert_table()
        ))
        .bind(&params.name)
        .bind(params.version)
        .bind(status.state.as_str())
        .bind(status.since)
        .bind(status.clear_since)
        .bind(status.value)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let jobs = if batch.len() == 0 {
            Vec::new()
        } else {
            // Notified inside the transaction: delivered at commit.
            let queues = batch.distinct_queues();
            batch.insert(&mut tx, &self.inner.sql, &queues).await?.0
        };
        if let Some((kind, value, threshold)) = params.event {
            let events = self.alert_events_table();
            sqlx::query(&format!(
                "INSERT INTO {events} (name, kind, value, threshold, at, job_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(&params.name)
            .bind(kind.as_str())
            .bind(value)
            .bind(threshold)
            .bind(params.now)
            .bind(jobs.first().map(|job| job.id.0))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            sqlx::query(&format!(
                "DELETE FROM {events} WHERE name = $1 AND id <= (SELECT id FROM {events} \
                 WHERE name = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)"
            ))
            .bind(&params.name)
            .bind(i64::from(ALERT_EVENTS_KEEP))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        alert_row(&row).map(Some)
    }

    pub(super) async fn alert_events_impl(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<AlertEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT id, name, kind, value, threshold, at, job_id FROM {} \
             WHERE name = $1 ORDER BY id DESC LIMIT $2",
            self.alert_events_table()
        ))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let get_err = corrupt("an alert event");
                let kind: String = row.try_get("kind").map_err(&get_err)?;
                Ok(AlertEvent {
                    id: row.try_get("id").map_err(&get_err)?,
                    name: row.try_get("name").map_err(&get_err)?,
                    kind: AlertEventKind::parse(&kind)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    value: row.try_get("value").map_err(&get_err)?,
                    threshold: row.try_get("threshold").map_err(&get_err)?,
                    at: row.try_get("at").map_err(&get_err)?,
                    job_id: row
                        .try_get::<Option<i64>, _>("job_id")
                        .map_err(&get_err)?
                        .map(JobId),
                })
            })
            .collect()
    }
}
