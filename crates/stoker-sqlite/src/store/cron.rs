//! Recurring schedules (issue 15) on SQLite: the rows, the compare-and-set fire, the history.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use stoker_core::cron::{
    CronDue, CronFireOutcome, CronFireParams, CronRow, CronRun, CronSchedule, CronWriteMode,
    CronWriteParams, Overlap, CRON_HISTORY_KEEP,
};
use stoker_core::{JobId, JobInsertParams, StoreError, StoreEvent, StoreResult};

use super::{audit_insert_on, begin_write, SqliteStore};
use crate::error::db_error;
use crate::insert;
use crate::row::{column, from_json, micros, parse_state, time_column, time_column_opt, to_json};
use stoker_core::AuditEntry;

const COLUMNS: &str = "definition, next_slot, last_slot, revision, created_at, updated_at";

/// Creates a schedule unless its name is taken: `?1` name, `?2` expr, `?3` tz, `?4` enabled,
/// `?5` definition, `?6` next slot, `?7` now.
const CREATE_SQL: &str = "
INSERT INTO stoker_cron (name, expr, tz, enabled, definition, next_slot, revision, created_at,
                         updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)
ON CONFLICT (name) DO NOTHING
RETURNING definition, next_slot, last_slot, revision, created_at, updated_at";

/// Updates a schedule; `next_slot` restarts from now when the slots changed or it resumes.
const UPDATE_SQL: &str = "
UPDATE stoker_cron
SET next_slot = CASE WHEN expr <> ?2 OR tz <> ?3 OR (NOT enabled AND ?4) THEN ?6
                     ELSE next_slot END,
    expr = ?2, tz = ?3, enabled = ?4, definition = ?5, revision = revision + 1, updated_at = ?7
WHERE name = ?1
RETURNING definition, next_slot, last_slot, revision, created_at, updated_at";

/// Creates or updates a schedule; an unchanged definition is left as it is (no new revision,
/// so restarting a server with the same config disturbs no firer).
const UPSERT_SQL: &str = "
INSERT INTO stoker_cron (name, expr, tz, enabled, definition, next_slot, revision, created_at,
                         updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)
ON CONFLICT (name) DO UPDATE SET
    next_slot = CASE WHEN stoker_cron.expr <> excluded.expr OR stoker_cron.tz <> excluded.tz
                       OR (NOT stoker_cron.enabled AND excluded.enabled)
                     THEN excluded.next_slot ELSE stoker_cron.next_slot END,
    expr = excluded.expr, tz = excluded.tz, enabled = excluded.enabled,
    definition = excluded.definition, revision = stoker_cron.revision + 1,
    updated_at = excluded.updated_at
WHERE stoker_cron.definition <> excluded.definition
RETURNING definition, next_slot, last_slot, revision, created_at, updated_at";

/// The earliest `next_slot` of the enabled schedules: the idle firer's one read.
const EARLIEST_SQL: &str = "SELECT MIN(next_slot) FROM stoker_cron WHERE enabled";

/// The compare-and-set: moves `next_slot` from `?3` to `?4` if the revision is `?2`.
const ADVANCE_SQL: &str = "
UPDATE stoker_cron SET next_slot = ?4
WHERE name = ?1 AND revision = ?2 AND next_slot = ?3 AND enabled";

/// The state of the job of the schedule's latest run that had one.
const LATEST_RUN_STATE_SQL: &str = "
SELECT j.state FROM stoker_cron_runs r JOIN stoker_jobs j ON j.id = r.job_id
WHERE r.name = ?1 AND r.id = (SELECT MAX(id) FROM stoker_cron_runs
                              WHERE name = ?1 AND job_id IS NOT NULL)";

const RUN_INSERT_SQL: &str = "
INSERT INTO stoker_cron_runs (name, slot, fired_at, job_id, catch_up, run_now, skipped)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Keeps the newest `?2` runs of schedule `?1`.
const RUN_PRUNE_SQL: &str = "
DELETE FROM stoker_cron_runs
WHERE name = ?1 AND id <= (SELECT id FROM stoker_cron_runs WHERE name = ?1
                           ORDER BY id DESC LIMIT 1 OFFSET ?2)";

const HISTORY_SQL: &str = "
SELECT r.name, r.slot, r.fired_at, r.job_id, r.catch_up, r.run_now, r.skipped,
       j.state, j.attempted_at, j.finished_at
FROM stoker_cron_runs r LEFT JOIN stoker_jobs j ON j.id = r.job_id
WHERE r.name = ?1
ORDER BY r.id DESC
LIMIT ?2";

fn cron_from_row(row: &SqliteRow) -> StoreResult<CronRow> {
    let schedule: CronSchedule = from_json("definition", column(row, 0, "definition")?)?;
    Ok(CronRow {
        schedule,
        next_slot: time_column(row, 1, "next_slot")?,
        last_slot: time_column_opt(row, 2, "last_slot")?,
        revision: column(row, 3, "revision")?,
        created_at: time_column(row, 4, "created_at")?,
        updated_at: time_column(row, 5, "updated_at")?,
    })
}

async fn get_on(conn: &mut SqliteConnection, name: &str) -> StoreResult<Option<CronRow>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stoker_cron WHERE name = ?1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(cron_from_row)
    .transpose()
}

impl SqliteStore {
    pub(super) async fn cron_write_impl(
        &self,
        params: CronWriteParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<CronRow> {
        let schedule = &params.schedule;
        let sql = match params.mode {
            CronWriteMode::Create => CREATE_SQL,
            CronWriteMode::Update => UPDATE_SQL,
            CronWriteMode::Upsert => UPSERT_SQL,
        };
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(sql)
            .bind(&schedule.name)
            .bind(&schedule.expr)
            .bind(&schedule.tz)
            .bind(schedule.enabled)
            .bind(to_json(schedule)?)
            .bind(micros(params.next_slot))
            .bind(micros(params.now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        match (row, params.mode) {
            (Some(row), _) => {
                let row = cron_from_row(&row)?;
                audit_insert_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(row)
            }
            (None, CronWriteMode::Create) => Err(StoreError::Conflict(format!(
                "a schedule named {:?} already exists",
                schedule.name
            ))),
            (None, CronWriteMode::Update) => Err(StoreError::NotFound(format!(
                "schedule {:?}",
                schedule.name
            ))),
            // An upsert of an unchanged definition writes nothing.
            (None, CronWriteMode::Upsert) => get_on(&mut tx, &schedule.name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("schedule {:?}", schedule.name))),
        }
    }

    pub(super) async fn cron_get_impl(&self, name: &str) -> StoreResult<Option<CronRow>> {
        get_on(&mut *self.read().await?, name).await
    }

    pub(super) async fn cron_list_impl(&self) -> StoreResult<Vec<CronRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM stoker_cron ORDER BY name"))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter().map(cron_from_row).collect()
    }

    pub(super) async fn cron_delete_impl(
        &self,
        name: &str,
        audit: Option<AuditEntry>,
    ) -> StoreResult<CronRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(&format!(
            "DELETE FROM stoker_cron WHERE name = ?1 RETURNING {COLUMNS}"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {name:?}")))?;
        sqlx::query("DELETE FROM stoker_cron_runs WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        cron_from_row(&row)
    }

    pub(super) async fn cron_due_impl(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<CronDue> {
        let mut conn = self.read().await?;
        let earliest: Option<i64> = sqlx::query_scalar(EARLIEST_SQL)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        let Some(earliest) = earliest else {
            return Ok(CronDue::default());
        };
        if earliest > micros(now) {
            return Ok(CronDue {
                due: Vec::new(),
                next_slot: Some(crate::row::from_micros("next_slot", earliest)?),
            });
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM stoker_cron WHERE enabled AND next_slot <= ?1 \
             ORDER BY next_slot LIMIT ?2"
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_slot) FROM stoker_cron WHERE enabled AND next_slot > ?1",
        )
        .bind(micros(now))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(CronDue {
            due: rows.iter().map(cron_from_row).collect::<StoreResult<_>>()?,
            next_slot: next
                .map(|at| crate::row::from_micros("next_slot", at))
                .transpose()?,
        })
    }

    pub(super) async fn cron_fire_impl(
        &self,
        params: CronFireParams,
        audit: Option<AuditEntry>,
    ) -> StoreResult<CronFireOutcome> {
        let insert_params = JobInsertParams {
            jobs: params.slots.iter().map(|slot| slot.job.clone()).collect(),
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        };
        insert::validate(&insert_params)?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        if let Some(advance) = &params.advance {
            let moved = sqlx::query(ADVANCE_SQL)
                .bind(&params.name)
                .bind(advance.revision)
                .bind(micros(advance.from))
                .bind(micros(advance.to))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
            if moved == 0 {
                return Ok(CronFireOutcome::Lost);
            }
        } else if get_on(&mut tx, &params.name).await?.is_none() {
            return Err(StoreError::NotFound(format!("schedule {:?}", params.name)));
        }
        let now = micros(params.now);
        let newest = params.slots.last().map(|slot| slot.slot);
        if params.overlap == Overlap::Skip && params.advance.is_some() {
            if let Some(newest) = newest {
                let state: Option<String> = sqlx::query_scalar(LATEST_RUN_STATE_SQL)
                    .bind(&params.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
                let unfinished = state
                    .map(|state| parse_state(&state))
                    .transpose()?
                    .is_some_and(|state| !state.is_finished());
                if unfinished {
                    sqlx::query(RUN_INSERT_SQL)
                        .bind(&params.name)
                        .bind(micros(newest))
                        .bind(now)
                        .bind(None::<i64>)
                        .bind(false)
                        .bind(false)
                        .bind(true)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok(CronFireOutcome::SkippedOverlap);
                }
            }
        }
        let inserted = insert::insert_jobs(&mut tx, &insert_params).await?;
        for (slot, job) in params.slots.iter().zip(&inserted.jobs) {
            sqlx::query(RUN_INSERT_SQL)
                .bind(&params.name)
                .bind(micros(slot.slot))
                .bind(now)
                .bind(job.id.0)
                .bind(slot.catch_up)
                .bind(slot.run_now)
                .bind(false)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        if let (Some(newest), Some(_)) = (newest, &params.advance) {
            sqlx::query("UPDATE stoker_cron SET last_slot = ?2 WHERE name = ?1")
                .bind(&params.name)
                .bind(micros(newest))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        if newest.is_some() {
            sqlx::query(RUN_PRUNE_SQL)
                .bind(&params.name)
                .bind(i64::from(CRON_HISTORY_KEEP))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        for queue in inserted.queues {
            self.notify(StoreEvent::JobsAvailable { queue });
        }
        Ok(CronFireOutcome::Fired(inserted.jobs))
    }

    pub(super) async fn cron_history_impl(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<CronRun>> {
        let rows = sqlx::query(HISTORY_SQL)
            .bind(name)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(CronRun {
                    name: column(row, 0, "name")?,
                    slot: time_column(row, 1, "slot")?,
                    fired_at: time_column(row, 2, "fired_at")?,
                    job_id: column::<Option<i64>>(row, 3, "job_id")?.map(JobId),
                    catch_up: column(row, 4, "catch_up")?,
                    run_now: column(row, 5, "run_now")?,
                    skipped: column(row, 6, "skipped")?,
                    state: column::<Option<String>>(row, 7, "state")?
                        .map(|state| parse_state(&state))
                        .transpose()?,
                    attempted_at: time_column_opt(row, 8, "attempted_at")?,
                    finished_at: time_column_opt(row, 9, "finished_at")?,
                })
            })
            .collect()
    }
}
