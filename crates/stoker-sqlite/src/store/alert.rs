//! Alert rules (issue 13, item 8) on SQLite: the rows, the compare-and-set transition with its
//! delivery jobs, the event history.

use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use stoker_core::alert::{
    AlertEvent, AlertEventKind, AlertRow, AlertRule, AlertState, AlertStatus,
    AlertTransitionParams, AlertWriteMode, AlertWriteParams, ALERT_EVENTS_KEEP,
};
use stoker_core::{JobId, JobInsertParams, StoreError, StoreEvent, StoreResult};

use super::{audit_insert_on, begin_write, SqliteStore};
use crate::error::db_error;
use crate::insert;
use crate::row::{column, from_json, micros, time_column, time_column_opt, to_json};
use stoker_core::AuditEntry;

const COLUMNS: &str =
    "definition, state, since, clear_since, value, version, created_at, updated_at";

/// `?1` name, `?2` definition, `?3` now.
const INSERT_SQL: &str = "
INSERT INTO stoker_alert (name, definition, state, version, created_at, updated_at)
VALUES (?1, ?2, 'ok', 1, ?3, ?3)";

/// Keeps the newest `?2` events of rule `?1`.
const EVENT_PRUNE_SQL: &str = "
DELETE FROM stoker_alert_events
WHERE name = ?1 AND id <= (SELECT id FROM stoker_alert_events WHERE name = ?1
                           ORDER BY id DESC LIMIT 1 OFFSET ?2)";

fn alert_from_row(row: &SqliteRow) -> StoreResult<AlertRow> {
    let rule: AlertRule = from_json("definition", column(row, 0, "definition")?)?;
    let state: &str = column(row, 1, "state")?;
    Ok(AlertRow {
        rule,
        status: AlertStatus {
            state: AlertState::parse(state).map_err(|err| StoreError::Corrupt(err.to_string()))?,
            since: time_column_opt(row, 2, "since")?,
            clear_since: time_column_opt(row, 3, "clear_since")?,
            value: column(row, 4, "value")?,
        },
        version: column(row, 5, "version")?,
        created_at: time_column(row, 6, "created_at")?,
        updated_at: time_column(row, 7, "updated_at")?,
    })
}

async fn get_on(conn: &mut SqliteConnection, name: &str) -> StoreResult<Option<AlertRow>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stoker_alert WHERE name = ?1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(alert_from_row)
    .transpose()
}

impl SqliteStore {
    pub(super) async fn alert_write_impl(
        &self,
        params: AlertWriteParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<AlertRow> {
        params.rule.validate()?;
        let sql = match params.mode {
            AlertWriteMode::Create => {
                format!("{INSERT_SQL} ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}")
            }
            AlertWriteMode::Update => format!(
                "UPDATE stoker_alert SET definition = ?2, version = version + 1, \
                 updated_at = ?3 WHERE name = ?1 RETURNING {COLUMNS}"
            ),
            // An unchanged definition is left as it is: a server restarted with the same
            // config disturbs no evaluation.
            AlertWriteMode::Upsert => format!(
                "{INSERT_SQL} ON CONFLICT (name) DO UPDATE SET \
                 definition = excluded.definition, version = stoker_alert.version + 1, \
                 updated_at = excluded.updated_at \
                 WHERE stoker_alert.definition <> excluded.definition RETURNING {COLUMNS}"
            ),
        };
        let name = &params.rule.name;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(to_json(&params.rule)?)
            .bind(micros(params.now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match (row, params.mode) {
            (Some(row), _) => {
                let row = alert_from_row(&row)?;
                audit_insert_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(row)
            }
            (None, AlertWriteMode::Create) => Err(StoreError::Conflict(format!(
                "an alert rule named {name:?} already exists"
            ))),
            (None, AlertWriteMode::Update) => {
                Err(StoreError::NotFound(format!("alert rule {name:?}")))
            }
            (None, AlertWriteMode::Upsert) => get_on(&mut tx, name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("alert rule {name:?}"))),
        }
    }

    pub(super) async fn alert_get_impl(&self, name: &str) -> StoreResult<Option<AlertRow>> {
        get_on(&mut *self.read().await?, name).await
    }

    pub(super) async fn alert_list_impl(&self) -> StoreResult<Vec<AlertRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM stoker_alert ORDER BY name"))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(alert_from_row).collect()
    }

    pub(super) async fn alert_delete_impl(
        &self,
        name: &str,
        audit: Option<AuditEntry>,
    ) -> StoreResult<AlertRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(&format!(
            "DELETE FROM stoker_alert WHERE name = ?1 RETURNING {COLUMNS}"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("alert rule {name:?}")))?;
        sqlx::query("DELETE FROM stoker_alert_events WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        alert_from_row(&row)
    }

    pub(super) async fn alert_transition_impl(
        &self,
        params: AlertTransitionParams,
    ) -> StoreResult<Option<AlertRow>> {
        let insert_params = JobInsertParams {
            jobs: params.jobs,
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        };
        insert::validate(&insert_params)?;
        let status = &params.status;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(&format!(
            "UPDATE stoker_alert SET state = ?3, since = ?4, clear_since = ?5, value = ?6, \
             version = version + 1 WHERE name = ?1 AND version = ?2 RETURNING {COLUMNS}"
        ))
        .bind(&params.name)
        .bind(params.version)
        .bind(status.state.as_str())
        .bind(status.since.map(micros))
        .bind(status.clear_since.map(micros))
        .bind(status.value)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let row = alert_from_row(&row)?;
        let inserted = insert::insert_jobs(&mut tx, &insert_params).await?;
        if let Some((kind, value, threshold)) = params.event {
            sqlx::query(
                "INSERT INTO stoker_alert_events (name, kind, value, threshold, at, job_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(&params.name)
            .bind(kind.as_str())
            .bind(value)
            .bind(threshold)
            .bind(micros(params.now))
            .bind(inserted.jobs.first().map(|job| job.id.0))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(EVENT_PRUNE_SQL)
                .bind(&params.name)
                .bind(i64::from(ALERT_EVENTS_KEEP))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        for queue in inserted.queues {
            self.notify(StoreEvent::JobsAvailable { queue });
        }
        Ok(Some(row))
    }

    pub(super) async fn alert_events_impl(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<AlertEvent>> {
        let rows = sqlx::query(
            "SELECT id, name, kind, value, threshold, at, job_id FROM stoker_alert_events \
             WHERE name = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let kind: &str = column(row, 2, "kind")?;
                Ok(AlertEvent {
                    id: column(row, 0, "id")?,
                    name: column(row, 1, "name")?,
                    kind: AlertEventKind::parse(kind)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    value: column(row, 3, "value")?,
                    threshold: column(row, 4, "threshold")?,
                    at: time_column(row, 5, "at")?,
                    job_id: column::<Option<i64>>(row, 6, "job_id")?.map(JobId),
                })
            })
            .collect()
    }
}
