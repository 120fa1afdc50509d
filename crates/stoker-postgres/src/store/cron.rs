//! Recurring schedules (issue 15) on PostgreSQL: the rows, the compare-and-set fire, the
//! history. Statements are built from the schema name per call; sqlx caches each prepared
//! statement by its text, so every connection still prepares each once.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};
use stoker_core::cron::{
    CronDue, CronFireOutcome, CronFireParams, CronRow, CronRun, CronSchedule, CronWriteMode,
    CronWriteParams, Overlap, CRON_HISTORY_KEEP,
};
use stoker_core::{InvalidInput, JobId, JobInsertParams, JobState, StoreError, StoreResult};

use super::{InsertBatch, PgStore};
use crate::error::store_error;

const COLUMNS: &str = "definition, next_slot, last_slot, revision, created_at, updated_at";

fn cron_row(row: &PgRow) -> StoreResult<CronRow> {
    let get_err = |err: sqlx::Error| StoreError::Corrupt(format!("cannot read a schedule: {err}"));
    let definition: Value = row.try_get("definition").map_err(get_err)?;
    let schedule: CronSchedule = serde_json::from_value(definition)
        .map_err(|err| StoreError::Corrupt(format!("schedule definition is not valid: {err}")))?;
    Ok(CronRow {
        schedule,
        next_slot: row.try_get("next_slot").map_err(get_err)?,
        last_slot: row.try_get("last_slot").map_err(get_err)?,
        revision: row.try_get("revision").map_err(get_err)?,
        created_at: row.try_get("created_at").map_err(get_err)?,
        updated_at: row.try_get("updated_at").map_err(get_err)?,
    })
}

impl PgStore {
    fn cron_table(&self) -> String {
        format!("\"{}\".stoker_cron", self.inner.schema)
    }

    fn cron_runs_table(&self) -> String {
        format!("\"{}\".stoker_cron_runs", self.inner.schema)
    }

    async fn cron_get_on(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> StoreResult<Option<CronRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} WHERE name = $1",
            self.cron_table()
        ))
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(cron_row)
        .transpose()
    }

    pub(super) async fn cron_write_impl(
        &self,
        params: CronWriteParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<CronRow> {
        let cron = self.cron_table();
        let insert = format!(
            "INSERT INTO {cron} (name, expr, tz, enabled, definition, next_slot, revision, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)"
        );
        // A new expression or zone, or a resume, restarts the slots from now.
        let restart = "expr <> $2 OR tz <> $3 OR (NOT enabled AND $4)";
        let sql = match params.mode {
            CronWriteMode::Create => {
                format!("{insert} ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}")
            }
            CronWriteMode::Update => format!(
                "UPDATE {cron} SET next_slot = CASE WHEN {restart} THEN $6 ELSE next_slot END, \
                 expr = $2, tz = $3, enabled = $4, definition = $5, revision = revision + 1, \
                 updated_at = $7 WHERE name = $1 RETURNING {COLUMNS}"
            ),
            // An unchanged definition is left as it is: no new revision, so restarting a
            // server with the same config disturbs no firer.
            CronWriteMode::Upsert => format!(
                "{insert} ON CONFLICT (name) DO UPDATE SET \
                 next_slot = CASE WHEN stoker_cron.expr <> excluded.expr \
                 OR stoker_cron.tz <> excluded.tz \
                 OR (NOT stoker_cron.enabled AND excluded.enabled) \
                 THEN excluded.next_slot ELSE stoker_cron.next_slot END, \
                 expr = excluded.expr, tz = excluded.tz, enabled = excluded.enabled, \
                 definition = excluded.definition, revision = stoker_cron.revision + 1, \
                 updated_at = excluded.updated_at \
                 WHERE stoker_cron.definition <> excluded.definition RETURNING {COLUMNS}"
            ),
        };
        let schedule = &params.schedule;
        let definition = serde_json::to_value(schedule)
            .map_err(|err| InvalidInput::new("schedule", err.to_string()))?;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        let row = sqlx::query(&sql)
            .bind(&schedule.name)
            .bind(&schedule.expr)
            .bind(&schedule.tz)
            .bind(schedule.enabled)
            .bind(definition)
            .bind(params.next_slot)
            .bind(params.now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        match (row, params.mode) {
            (Some(row), _) => {
                let row = cron_row(&row)?;
                self.audit_on(&mut tx, audit.as_ref()).await?;
                tx.commit().await.map_err(store_error)?;
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
            (None, CronWriteMode::Upsert) => self
                .cron_get_on(&mut tx, &schedule.name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("schedule {:?}", schedule.name))),
        }
    }

    pub(super) async fn cron_get_impl(&self, name: &str) -> StoreResult<Option<CronRow>> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        self.cron_get_on(&mut conn, name).await
    }

    pub(super) async fn cron_list_impl(&self) -> StoreResult<Vec<CronRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} ORDER BY name",
            self.cron_table()
        ))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(cron_row).collect()
    }

    pub(super) async fn cron_delete_impl(
        &self,
        name: &str,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<CronRow> {
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1 RETURNING {COLUMNS}",
            self.cron_table()
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {name:?}")))?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1",
            self.cron_runs_table()
        ))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        cron_row(&row)
    }

    pub(super) async fn cron_due_impl(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<CronDue> {
        let cron = self.cron_table();
        // The idle firer's one read: the earliest slot of any enabled schedule.
        let earliest: Option<DateTime<Utc>> =
            sqlx::query_scalar(&format!("SELECT MIN(next_slot) FROM {cron} WHERE enabled"))
                .fetch_one(&self.inner.pool)
                .await
                .map_err(store_error)?;
        match earliest {
            None => return Ok(CronDue::default()),
            Some(earliest) if earliest > now => {
                return Ok(CronDue {
                    due: Vec::new(),
                    next_slot: Some(earliest),
                })
            }
            Some(_) => {}
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, (SELECT MIN(next_slot) FROM {cron} WHERE enabled \
             AND next_slot > $1) AS later FROM {cron} WHERE enabled AND next_slot <= $1 \
             ORDER BY next_slot LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        let next_slot = match rows.first() {
            Some(row) => row.try_get("later").map_err(store_error)?,
            None => None,
        };
        Ok(CronDue {
            due: rows.iter().map(cron_row).collect::<StoreResult<_>>()?,
            next_slot,
        })
    }

    pub(super) async fn cron_fire_impl(
        &self,
        params: CronFireParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<CronFireOutcome> {
        let (cron, runs) = (self.cron_table(), self.cron_runs_table());
        let batch = InsertBatch::new(JobInsertParams {
            jobs: params.slots.iter().map(|slot| slot.job.clone()).collect(),
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        })?;
        self.listener_ready().await;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        if let Some(advance) = &params.advance {
            // The compare-and-set. A concurrent firer of the same slot waits here for the row
            // lock, then finds `next_slot` moved and updates nothing.
            let moved = sqlx::query(&format!(
                "UPDATE {cron} SET next_slot = $4 WHERE name = $1 AND revision = $2 \
                 AND next_slot = $3 AND enabled"
            ))
            .bind(&params.name)
            .bind(advance.revision)
            .bind(advance.from)
            .bind(advance.to)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected();
            if moved == 0 {
                return Ok(CronFireOutcome::Lost);
            }
        } else if self.cron_get_on(&mut tx, &params.name).await?.is_none() {
            return Err(StoreError::NotFound(format!("schedule {:?}", params.name)));
        }
        let newest = params.slots.last().map(|slot| slot.slot);
        if let (Overlap::Skip, Some(_), Some(newest)) = (params.overlap, &params.advance, newest) {
            let state: Option<String> = sqlx::query_scalar(&format!(
                "SELECT j.state FROM {runs} r JOIN \"{}\".stoker_jobs j ON j.id = r.job_id \
                 WHERE r.name = $1 AND r.job_id IS NOT NULL ORDER BY r.id DESC LIMIT 1",
                self.inner.schema
            ))
            .bind(&params.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
            let unfinished = state
                .map(|state| state.parse::<JobState>())
                .transpose()
                .map_err(|err| StoreError::Corrupt(err.to_string()))?
                .is_some_and(|state| !state.is_finished());
            if unfinished {
                sqlx::query(&format!(
                    "INSERT INTO {runs} (name, slot, fired_at, job_id, catch_up, run_now, \
                     skipped) VALUES ($1, $2, $3, NULL, false, false, true)"
                ))
                .bind(&params.name)
                .bind(newest)
                .bind(params.now)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
                tx.commit().await.map_err(store_error)?;
                return Ok(CronFireOutcome::SkippedOverlap);
            }
        }
        let jobs = if batch.len() == 0 {
            Vec::new()
        } else {
            // Every queue is notified inside the transaction: delivered at commit.
            let queues = batch.distinct_queues();
            batch.insert(&mut tx, &self.inner.sql, &queues).await?.0
        };
        if let Some(newest) = newest {
            let slots: Vec<DateTime<Utc>> = params.slots.iter().map(|slot| slot.slot).collect();
            let ids: Vec<i64> = jobs.iter().map(|job| job.id.0).collect();
            let catch_ups: Vec<bool> = params.slots.iter().map(|slot| slot.catch_up).collect();
            let run_nows: Vec<bool> = params.slots.iter().map(|slot| slot.run_now).collect();
            sqlx::query(&format!(
                "INSERT INTO {runs} (name, slot, fired_at, job_id, catch_up, run_now, skipped) \
                 SELECT $1, s, $3, j, c, n, false FROM unnest($2::timestamptz[], $4::bigint[], \
                 $5::boolean[], $6::boolean[]) AS t(s, j, c, n)"
            ))
            .bind(&params.name)
            .bind(&slots)
            .bind(params.now)
            .bind(&ids)
            .bind(&catch_ups)
            .bind(&run_nows)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            if params.advance.is_some() {
                sqlx::query(&format!("UPDATE {cron} SET last_slot = $2 WHERE name = $1"))
                    .bind(&params.name)
                    .bind(newest)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            sqlx::query(&format!(
                "DELETE FROM {runs} WHERE name = $1 AND id <= (SELECT id FROM {runs} \
                 WHERE name = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)"
            ))
            .bind(&params.name)
            .bind(i64::from(CRON_HISTORY_KEEP))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(CronFireOutcome::Fired(jobs))
    }

    pub(super) async fn cron_history_impl(
        &self,
        name: &str,
        limit: u32,
    ) -> StoreResult<Vec<CronRun>> {
        let rows = sqlx::query(&format!(
            "SELECT r.name, r.slot, r.fired_at, r.job_id, r.catch_up, r.run_now, r.skipped, \
             j.state, j.attempted_at, j.finished_at FROM {} r \
             LEFT JOIN \"{}\".stoker_jobs j ON j.id = r.job_id \
             WHERE r.name = $1 ORDER BY r.id DESC LIMIT $2",
            self.cron_runs_table(),
            self.inner.schema
        ))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let get_err =
                    |err: sqlx::Error| StoreError::Corrupt(format!("cannot read a run: {err}"));
                Ok(CronRun {
                    name: row.try_get("name").map_err(get_err)?,
                    slot: row.try_get("slot").map_err(get_err)?,
                    fired_at: row.try_get("fired_at").map_err(get_err)?,
                    job_id: row
                        .try_get::<Option<i64>, _>("job_id")
                        .map_err(get_err)?
                        .map(JobId),
                    catch_up: row.try_get("catch_up").map_err(get_err)?,
                    run_now: row.try_get("run_now").map_err(get_err)?,
                    skipped: row.try_get("skipped").map_err(get_err)?,
                    state: row
                        .try_get::<Option<String>, _>("state")
                        .map_err(get_err)?
                        .map(|state| state.parse::<JobState>())
                        .transpose()
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?,
                    attempted_at: row.try_get("attempted_at").map_err(get_err)?,
                    finished_at: row.try_get("finished_at").map_err(get_err)?,
                })
            })
            .collect()
    }
}
