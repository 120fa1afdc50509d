//! Flow control (issue 16) on SQLite: limits, and the claim that enforces them.
//!
//! The same claim as on PostgreSQL, in one `BEGIN IMMEDIATE` transaction on the single writer
//! (which serializes it, so no row locks are needed): read the limiters that are full now,
//! select candidates in fetch order leaving out the full limiters' jobs (so a throttled key
//! never blocks the others), admit them with [`FlowGate`] on the limiters' stored state, mark
//! the admitted ones running with the slots they hold, and write the limiters back.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};
use stoker_core::{
    gcra_push_back, limits_for_queue, validate_limit_name, FlowGate, JobClaimParams, JobRow,
    LimitKey, LimitPushBackParams, LimitRow, LimitSetParams, LimitSpec, LimitUsage, LimiterState,
    Metadata, StoreError, StoreResult,
};

use super::{begin_write, SqliteStore};
use crate::error::db_error;
use crate::row::{
    column, from_json, from_micros, job_columns, job_from_row, micros, time_column, to_json,
};

/// How many candidates a limited claim reads for a batch of `limit`: some will be refused.
fn candidates(limit: u32) -> i64 {
    i64::from(limit).saturating_mul(2) + 8
}

/// The SQL value of a limit's key for a job row, as text, or `None` for a global limit.
fn key_sql(key: &LimitKey) -> Option<String> {
    // Path segments are validated ASCII names, so quoting them is safe.
    let path = |path: &[String]| format!("'$.{}'", path.join("."));
    match key {
        LimitKey::Global => None,
        LimitKey::Tenant => Some("tenant".to_owned()),
        LimitKey::Args(p) => Some(format!("CAST(json_extract(args, {}) AS TEXT)", path(p))),
        LimitKey::Metadata(p) => Some(format!("CAST(json_extract(metadata, {}) AS TEXT)", path(p))),
    }
}

fn limit_row(row: &SqliteRow) -> StoreResult<LimitRow> {
    Ok(LimitRow {
        spec: from_json("spec", &column::<String>(row, 0, "spec")?)?,
        updated_at: time_column(row, 1, "updated_at")?,
    })
}

fn opt_micros(name: &str, value: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    value.map(|value| from_micros(name, value)).transpose()
}

impl SqliteStore {
    /// The limits that apply to `queue`, or `None` (the usual claim), from the cache.
    pub(super) async fn flow_limits_for(&self, queue: &str) -> StoreResult<Option<Vec<LimitSpec>>> {
        let limits = match self.inner.limits.fresh() {
            Some(limits) => limits,
            None => {
                let rows = self.limit_list_impl().await?;
                self.inner
                    .limits
                    .put(rows.into_iter().map(|row| row.spec).collect())
            }
        };
        if limits.is_empty() {
            return Ok(None);
        }
        Ok(limits_for_queue(&limits, queue))
    }

    /// A claim in a queue with limits; see the module docs.
    pub(super) async fn flow_claim(
        &self,
        params: &JobClaimParams,
        lease_end: Option<DateTime<Utc>>,
        limits: Vec<LimitSpec>,
        tenant: Option<&str>,
    ) -> StoreResult<Vec<JobRow>> {
        let now = params.now;
        let names = to_json(&limits.iter().map(|limit| &limit.name).collect::<Vec<_>>())?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;

        let full: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT name, key, throttled_until FROM stoker_limit_state \
             WHERE name IN (SELECT value FROM json_each(?1)) \
               AND (throttled_until > ?2 OR running >= cap)",
        )
        .bind(&names)
        .bind(micros(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut wake = None;
        for (_, _, until) in &full {
            if let Some(until) = opt_micros("throttled_until", *until)? {
                wake = Some(wake.map_or(until, |w: DateTime<Utc>| w.min(until)));
            }
        }

        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, kind, tenant, args, metadata FROM stoker_jobs \
             WHERE state IN ('available', 'retryable') AND scheduled = 0 AND queue = ",
        );
        query
            .push_bind(&params.queue)
            .push(" AND +run_at <= ")
            .push_bind(micros(now));
        if !params.kinds.is_empty() {
            query
                .push(" AND kind IN (SELECT value FROM json_each(")
                .push_bind(to_json(&params.kinds)?)
                .push("))");
        }
        // A tenant-bound pull worker's claim (issue 17) takes only its tenant's jobs.
        if let Some(tenant) = tenant {
            query.push(" AND tenant = ").push_bind(tenant.to_owned());
        }
        query
            .push(" AND NOT EXISTS (SELECT 1 FROM stoker_queues WHERE name = ")
            .push_bind(&params.queue)
            .push(" AND paused)");
        for limit in &limits {
            let keys: Vec<&str> = full
                .iter()
                .filter(|(name, _, _)| *name == limit.name)
                .map(|(_, key, _)| key.as_str())
                .collect();
            if keys.is_empty() {
                continue;
            }
            match (key_sql(&limit.key), &limit.kind) {
                // The whole queue is held back.
                (None, None) => {
                    drop(tx);
                    self.inner.limits.set_wake(&params.queue, wake);
                    return Ok(Vec::new());
                }
                (None, Some(kind)) => {
                    query.push(" AND kind <> ").push_bind(kind.clone());
                }
                (Some(expr), kind) => {
                    query.push(" AND NOT COALESCE(");
                    if let Some(kind) = kind {
                        query.push("kind = ").push_bind(kind.clone()).push(" AND ");
                    }
                    query
                        .push(expr)
                        .push(" IN (SELECT value FROM json_each(")
                        .push_bind(to_json(&keys)?)
                        .push(")), 0)");
                }
            }
        }
        query
            .push(" ORDER BY priority DESC, run_at, id LIMIT ")
            .push_bind(candidates(params.limit));
        let rows = query.build().fetch_all(&mut *tx).await.map_err(db_error)?;

        let mut gate = FlowGate::new(limits, now);
        let mut wanted = Vec::with_capacity(rows.len());
        let mut limiters = BTreeSet::new();
        for row in &rows {
            let id: i64 = column(row, 0, "id")?;
            let kind: String = column(row, 1, "kind")?;
            let tenant: Option<String> = column(row, 2, "tenant")?;
            let args: Value = from_json("args", &column::<String>(row, 3, "args")?)?;
            let metadata: Metadata =
                from_json("metadata", &column::<String>(row, 4, "metadata")?).unwrap_or_default();
            let needs = gate.limiters_of(&kind, tenant.as_deref(), &args, &metadata);
            for (index, key) in &needs {
                limiters.insert((gate.limits()[*index].name.clone(), key.clone()));
            }
            wanted.push((id, needs));
        }
        if !limiters.is_empty() {
            let pairs = to_json(&limiters.iter().collect::<Vec<_>>())?;
            let states: Vec<(String, String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT name, key, tat, running FROM stoker_limit_state \
                 WHERE (name, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
            )
            .bind(&pairs)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            for (name, key, tat, running) in states {
                gate.load(
                    &name,
                    &key,
                    LimiterState {
                        tat: opt_micros("tat", tat)?,
                        running,
                    },
                );
            }
        }

        let mut claimed_slots = Vec::new();
        for (id, needs) in &wanted {
            if claimed_slots.len() >= params.limit as usize {
                break;
            }
            if let Some(held) = gate.admit(needs) {
                claimed_slots.push((*id, (!held.is_empty()).then_some(held)));
            }
        }
        let mut jobs = Vec::with_capacity(claimed_slots.len());
        if !claimed_slots.is_empty() {
            let batch = to_json(
                &claimed_slots
                    .iter()
                    .map(|(id, slots)| {
                        serde_json::json!([
                            id,
                            slots.as_ref().map(|s| serde_json::json!(s).to_string())
                        ])
                    })
                    .collect::<Vec<_>>(),
            )?;
            let rows = sqlx::query(concat!(
                "UPDATE stoker_jobs \
                 SET state = 'running', attempt = attempt + 1, fence = fence + 1, \
                     attempted_at = ?1, worker_id = ?2, lease_expires_at = ?3, \
                     flow_slots = c.slots \
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS slots FROM json_each(?4)) AS c \
                 WHERE stoker_jobs.id = c.id \
                 RETURNING ",
                job_columns!()
            ))
            .bind(micros(now))
            .bind(&params.worker_id)
            .bind(lease_end.map(micros))
            .bind(&batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            for row in &rows {
                jobs.push(job_from_row(row)?);
            }
        }
        let changes = gate.changes();
        if !changes.is_empty() {
            let rows = changes
                .iter()
                .map(|change| {
                    serde_json::json!([
                        change.name,
                        change.key,
                        change.state.tat.map(micros),
                        change.state.running,
                        change.throttled_until.map(micros),
                        change.cap,
                    ])
                })
                .collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO stoker_limit_state (name, key, tat, running, throttled_until, cap) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                        value ->> 5 \
                 FROM json_each(?1) WHERE true \
                 ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat, \
                     running = excluded.running, throttled_until = excluded.throttled_until, \
                     cap = excluded.cap",
            )
            .bind(to_json(&rows)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        // The counts of unfinished states are live on SQLite (see `counts`): a claim writes
        // none.
        tx.commit().await.map_err(db_error)?;
        if let Some(at) = gate.wake_at() {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        self.inner.limits.set_wake(&params.queue, wake);
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    pub(super) async fn limit_set_impl(&self, params: LimitSetParams) -> StoreResult<LimitRow> {
        params.spec.validate()?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row = sqlx::query(
            "INSERT INTO stoker_limits (name, spec, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                 updated_at = excluded.updated_at \
             RETURNING spec, updated_at",
        )
        .bind(&params.spec.name)
        .bind(to_json(&params.spec)?)
        .bind(micros(params.now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        // A changed limit recomputes when its limiters are next free, and their caps.
        sqlx::query(
            "UPDATE stoker_limit_state SET throttled_until = NULL, cap = ?2 WHERE name = ?1",
        )
        .bind(&params.spec.name)
        .bind(params.spec.concurrency.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.inner.limits.invalidate();
        limit_row(&row)
    }

    pub(super) async fn limit_list_impl(&self) -> StoreResult<Vec<LimitRow>> {
        sqlx::query("SELECT spec, updated_at FROM stoker_limits ORDER BY name")
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_error)?
            .iter()
            .map(limit_row)
            .collect()
    }

    pub(super) async fn limit_delete_impl(&self, name: &str) -> StoreResult<LimitRow> {
        validate_limit_name(name)?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let row =
            sqlx::query("DELETE FROM stoker_limits WHERE name = ?1 RETURNING spec, updated_at")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
                .ok_or_else(|| StoreError::NotFound(format!("limit {name:?}")))?;
        sqlx::query("DELETE FROM stoker_limit_state WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.inner.limits.invalidate();
        limit_row(&row)
    }

    pub(super) async fn limit_usage_impl(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<LimitUsage>> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT name, key, running, \
                    CASE WHEN throttled_until > ?1 THEN throttled_until END \
             FROM stoker_limit_state WHERE running > 0 OR throttled_until > ?1 \
             ORDER BY name, key",
        )
        .bind(micros(now))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(name, key, running, until)| {
                Ok(LimitUsage {
                    name,
                    key,
                    running,
                    throttled_until: opt_micros("throttled_until", until)?,
                })
            })
            .collect()
    }

    pub(super) async fn limit_push_back_impl(
        &self,
        params: LimitPushBackParams,
    ) -> StoreResult<()> {
        validate_limit_name(&params.name)?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let spec: Option<String> =
            sqlx::query_scalar("SELECT spec FROM stoker_limits WHERE name = ?1")
                .bind(&params.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let spec: LimitSpec = from_json(
            "spec",
            &spec.ok_or_else(|| StoreError::NotFound(format!("limit {:?}", params.name)))?,
        )?;
        let tat: Option<Option<i64>> =
            sqlx::query_scalar("SELECT tat FROM stoker_limit_state WHERE name = ?1 AND key = ?2")
                .bind(&params.name)
                .bind(&params.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let tat = opt_micros("tat", tat.flatten())?;
        let tat = gcra_push_back(spec.rate.as_ref(), tat, params.until);
        sqlx::query(
            "INSERT INTO stoker_limit_state (name, key, tat, throttled_until, cap) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat, \
                 throttled_until = MAX(COALESCE(throttled_until, excluded.throttled_until), \
                                       excluded.throttled_until)",
        )
        .bind(&params.name)
        .bind(&params.key)
        .bind(micros(tat))
        .bind(micros(params.until))
        .bind(spec.concurrency.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    pub(super) async fn limit_reconcile_impl(&self) -> StoreResult<u64> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let fixed = sqlx::query(
            "WITH actual AS ( \
                 SELECT e.value ->> 0 AS name, e.value ->> 1 AS key, COUNT(*) AS n \
                 FROM stoker_jobs j, json_each(j.flow_slots) e \
                 WHERE j.state = 'running' AND j.flow_slots IS NOT NULL \
                 GROUP BY 1, 2 \
             ) \
             UPDATE stoker_limit_state SET running = COALESCE( \
                 (SELECT n FROM actual a WHERE a.name = stoker_limit_state.name \
                                            AND a.key = stoker_limit_state.key), 0) \
             WHERE running IS NOT COALESCE( \
                 (SELECT n FROM actual a WHERE a.name = stoker_limit_state.name \
                                            AND a.key = stoker_limit_state.key), 0)",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        tx.commit().await.map_err(db_error)?;
        Ok(fixed)
    }
}
