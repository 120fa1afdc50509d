//! Flow control (issue 16) on SQLite: limits, and the claim that enforces them.
//!
//! The same claim as on PostgreSQL, in one `BEGIN IMMEDIATE` transaction on the single writer
//! (which serializes it, so no row locks are needed): read the limiters that are full now,
//! select candidates in fetch order leaving out the full limiters' jobs (so a throttled key
//! never blocks the others), admit them with [`FlowGate`] on the limiters' stored state, mark
//! the admitted ones running with the slots they hold, and write the limiters back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use stoker_core::{
    fair_of, gcra_push_back, limits_for_queue, quota_demand, quota_take, validate_limit_name, Fair,
    FairScheduler, FlowGate, JobClaimParams, JobRow, LimitKey, LimitPushBackParams, LimitRow,
    LimitSetParams, LimitSpec, LimitUsage, LimiterState, Metadata, QuotaDemand, StoreError,
    StoreResult, FAIR_DISCOVER_PER_CLAIM, FAIR_NO_TENANT, FAIR_PAGE_EXTRA, HELD_BACK_LIMITERS_MAX,
    HELD_BACK_READ_MAX,
};
use stoker_core::{fair_walk_complete, LimitCache};

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

/// The conditions a job meets to be a candidate of a limited claim: due in the queue, of the
/// claim's kinds (and tenant), the queue not paused, and not under a limiter full now.
struct Filters<'a> {
    params: &'a JobClaimParams,
    tenant: Option<&'a str>,
    /// The claim's kinds, as a JSON array.
    kinds: String,
    /// Per full limit: its key's SQL (`None`: global), its kind, and its full keys as JSON.
    exclusions: Vec<(Option<String>, Option<String>, String)>,
}

impl Filters<'_> {
    /// Pushes the conditions, on unqualified columns of `stoker_jobs`, joined by AND. They
    /// match the predicate of the fetch and fair indexes.
    fn push(&self, query: &mut QueryBuilder<'_, Sqlite>) {
        query
            .push("state IN ('available', 'retryable') AND scheduled = 0 AND queue = ")
            .push_bind(self.params.queue.clone())
            .push(" AND +run_at <= ")
            .push_bind(micros(self.params.now));
        if !self.params.kinds.is_empty() {
            query
                .push(" AND kind IN (SELECT value FROM json_each(")
                .push_bind(self.kinds.clone())
                .push("))");
        }
        // A tenant-bound pull worker's claim (issue 17) takes only its tenant's jobs.
        if let Some(tenant) = self.tenant {
            query.push(" AND tenant = ").push_bind(tenant.to_owned());
        }
        query
            .push(" AND NOT EXISTS (SELECT 1 FROM stoker_queues q WHERE q.name = ")
            .push_bind(self.params.queue.clone())
            .push(" AND q.paused)");
        for (expr, kind, keys) in &self.exclusions {
            match (expr, kind) {
                (None, None) => {}
                (None, Some(kind)) => {
                    query.push(" AND kind <> ").push_bind(kind.clone());
                }
                (Some(expr), kind) => {
                    query.push(" AND NOT COALESCE(");
                    if let Some(kind) = kind {
                        query.push("kind = ").push_bind(kind.clone()).push(" AND ");
                    }
                    query
                        .push(expr.as_str())
                        .push(" IN (SELECT value FROM json_each(")
                        .push_bind(keys.clone())
                        .push(")), 0)");
                }
            }
        }
    }
}

/// A fair claim's candidates (item 3), in the order the limits are to see them, with the
/// plan that ordered them and the queue's clock as read.
///
/// The claim's cost does not grow with the number of tenants: it reads the tenants marked
/// ready in `stoker_fair_tenants` in virtual-time order through their partial index, only as
/// many as can get one of `slots` places ([`fair_walk_complete`]); looks for up to
/// [`FAIR_DISCOVER_PER_CLAIM`] more tenants with jobs in the fair index from where the last
/// claim's walk stopped (those made ready other than by an insert); shares the places with
/// [`FairScheduler`]; takes each chosen tenant's first jobs with one index lookup each; and
/// unmarks a chosen tenant that turns out to have no job in the fair index any more.
async fn fair_candidates(
    tx: &mut SqliteConnection,
    cache: &LimitCache,
    filters: &Filters<'_>,
    fair: &Fair,
    slots: i64,
) -> StoreResult<(Vec<SqliteRow>, (FairScheduler, Option<f64>))> {
    let queue = &filters.params.queue;
    let clock: Option<f64> =
        sqlx::query_scalar("SELECT clock FROM stoker_fair_clocks WHERE queue = ?1")
            .bind(queue)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
    let base_clock = clock.unwrap_or(0.0);
    let cursor = cache.fair_cursor(queue);

    // Discovery: the next tenants with jobs in the fair index after the cursor, one index
    // probe each, marked ready (a new one at virtual time 0, which the clock lifts).
    let found: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE t(tenant, n) AS ( \
             SELECT (SELECT tenant FROM stoker_jobs \
                     WHERE state IN ('available', 'retryable') AND scheduled = 0 \
                       AND queue = ?1 AND tenant IS NOT NULL AND tenant > COALESCE(?2, '') \
                     ORDER BY tenant LIMIT 1), 1 \
             UNION ALL \
             SELECT (SELECT tenant FROM stoker_jobs \
                     WHERE state IN ('available', 'retryable') AND scheduled = 0 \
                       AND queue = ?1 AND tenant IS NOT NULL AND tenant > t.tenant \
                     ORDER BY tenant LIMIT 1), n + 1 \
             FROM t WHERE t.tenant IS NOT NULL AND n < ?3) \
         SELECT tenant FROM t WHERE tenant IS NOT NULL",
    )
    .bind(queue)
    .bind(&cursor)
    .bind(i64::from(FAIR_DISCOVER_PER_CLAIM))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    let next_cursor = if found.len() < FAIR_DISCOVER_PER_CLAIM as usize {
        None
    } else {
        found.last().cloned()
    };
    if !found.is_empty() {
        sqlx::query(
            "INSERT INTO stoker_fair_tenants (queue, tenant, vtime, ready) \
             SELECT ?1, value, 0, 1 FROM json_each(?2) WHERE true \
             ON CONFLICT (queue, tenant) DO UPDATE SET ready = 1 WHERE NOT ready",
        )
        .bind(queue)
        .bind(to_json(&found)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    // Set before the commit: a claim that rolls back only moves the walk on early.
    cache.set_fair_cursor(queue, next_cursor);

    // The ready tenants in (virtual time, tenant) order, a page at a time, as far as places
    // can reach.
    let places = usize::try_from(slots).unwrap_or(usize::MAX);
    let page = i64::try_from(places)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(FAIR_PAGE_EXTRA));
    let mut walked: Vec<(String, f64)> = Vec::new();
    loop {
        // Two texts, so each page is one range of the index in order.
        let rows: Vec<(String, f64)> = match walked.last() {
            None => sqlx::query_as(
                "SELECT tenant, vtime FROM stoker_fair_tenants \
                 INDEXED BY stoker_fair_tenants_ready_idx \
                 WHERE queue = ?1 AND ready = 1 AND tenant <> '' \
                 ORDER BY vtime, tenant LIMIT ?2",
            )
            .bind(queue)
            .bind(page),
            Some((tenant, vtime)) => sqlx::query_as(
                "SELECT tenant, vtime FROM stoker_fair_tenants \
                 INDEXED BY stoker_fair_tenants_ready_idx \
                 WHERE queue = ?1 AND ready = 1 AND tenant <> '' \
                   AND (vtime, tenant) > (?3, ?4) \
                 ORDER BY vtime, tenant LIMIT ?2",
            )
            .bind(queue)
            .bind(page)
            .bind(*vtime)
            .bind(tenant.clone()),
        }
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let more = rows.len() as i64 == page;
        walked.extend(rows);
        if !more || fair_walk_complete(fair, base_clock, places, &walked) {
            break;
        }
    }
    let mut tenants: Vec<(Option<String>, Option<f64>)> = walked
        .into_iter()
        .map(|(tenant, vtime)| (Some(tenant), Some(vtime)))
        .collect();
    // Jobs without a tenant are one more share, found through the fetch index.
    let mut query = QueryBuilder::<Sqlite>::new("SELECT EXISTS (SELECT 1 FROM stoker_jobs WHERE ");
    filters.push(&mut query);
    query.push(" AND tenant IS NULL)");
    let untenanted: bool = query
        .build_query_scalar()
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if untenanted {
        let vtime: Option<f64> = sqlx::query_scalar(
            "SELECT vtime FROM stoker_fair_tenants WHERE queue = ?1 AND tenant = ?2",
        )
        .bind(queue)
        .bind(FAIR_NO_TENANT)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        tenants.push((None, vtime));
    }
    let plan = FairScheduler::new(fair, base_clock, tenants);
    let mut candidates = Vec::new();
    let mut emptied = Vec::new();
    for (tenant, n) in plan.quotas(places) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, kind, tenant, args, metadata FROM stoker_jobs WHERE ",
        );
        filters.push(&mut query);
        match &tenant {
            Some(tenant) => query.push(" AND tenant = ").push_bind(tenant.clone()),
            None => query.push(" AND tenant IS NULL"),
        };
        query
            .push(" ORDER BY priority DESC, run_at, id LIMIT ")
            .push_bind(i64::from(n));
        let rows = query.build().fetch_all(&mut *tx).await.map_err(db_error)?;
        if let (Some(name), true) = (&tenant, rows.len() < n as usize) {
            // Short: has it any job left in the fair index at all (due later, of another
            // kind, held by a limit)? If not, it is no longer ready.
            let left: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM stoker_jobs \
                 WHERE state IN ('available', 'retryable') AND scheduled = 0 \
                   AND queue = ?1 AND tenant = ?2)",
            )
            .bind(queue)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if !left {
                emptied.push(name.clone());
            }
        }
        candidates.push((tenant, rows));
    }
    if !emptied.is_empty() {
        sqlx::query(
            "UPDATE stoker_fair_tenants SET ready = 0 \
             WHERE queue = ?1 AND tenant IN (SELECT value FROM json_each(?2))",
        )
        .bind(queue)
        .bind(to_json(&emptied)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    let rows = plan
        .order(candidates)
        .into_iter()
        .map(|(_, row)| row)
        .collect();
    Ok((rows, (plan, clock)))
}

/// Advances the virtual times of the tenants a fair claim started jobs of, and the queue's
/// clock if it moved. The single writer makes the read-then-write exact.
async fn fair_advance(
    tx: &mut SqliteConnection,
    queue: &str,
    plan: &FairScheduler,
    clock: Option<f64>,
    admitted: &BTreeMap<Option<String>, u32>,
) -> StoreResult<()> {
    let advances = plan.advances(admitted);
    if !advances.is_empty() {
        let rows: Vec<Value> = advances
            .into_iter()
            .map(|(tenant, base, step)| serde_json::json!([tenant, base + step]))
            .collect();
        sqlx::query(
            "INSERT INTO stoker_fair_tenants (queue, tenant, vtime) \
             SELECT ?1, value ->> 0, value ->> 1 FROM json_each(?2) WHERE true \
             ON CONFLICT (queue, tenant) DO UPDATE SET vtime = excluded.vtime",
        )
        .bind(queue)
        .bind(to_json(&rows)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    if let Some(next) = plan.clock(admitted) {
        if clock.is_none_or(|clock| next > clock) {
            sqlx::query(
                "INSERT INTO stoker_fair_clocks (queue, clock) VALUES (?1, ?2) \
                 ON CONFLICT (queue) DO UPDATE SET clock = MAX(clock, excluded.clock)",
            )
            .bind(queue)
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
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
    /// Every limit, from the cache.
    async fn flow_limits(&self) -> StoreResult<std::sync::Arc<Vec<LimitSpec>>> {
        Ok(match self.inner.limits.fresh() {
            Some(limits) => limits,
            None => {
                let rows = self.limit_list_impl().await?;
                self.inner
                    .limits
                    .put(rows.into_iter().map(|row| row.spec).collect())
            }
        })
    }

    /// The enqueue quotas an insert of `jobs` draws on (item 4), or none: the usual insert.
    pub(super) async fn flow_quota_demand<'a>(
        &self,
        jobs: impl IntoIterator<Item = &'a stoker_core::JobInsert> + Clone + Send,
    ) -> StoreResult<Vec<QuotaDemand>> {
        let limits = self.flow_limits().await?;
        if !limits.iter().any(|limit| limit.quota.is_some()) {
            return Ok(Vec::new());
        }
        Ok(quota_demand(&limits, jobs))
    }

    /// [`Self::flow_quota_demand`] reading the limits (when the cache is stale) on `conn`, the
    /// caller's connection: an in-memory store has no other to read through while the caller
    /// holds it.
    pub(super) async fn flow_quota_demand_on(
        &self,
        conn: &mut SqliteConnection,
        jobs: &[stoker_core::JobInsert],
    ) -> StoreResult<Vec<QuotaDemand>> {
        let limits = match self.inner.limits.fresh() {
            Some(limits) => limits,
            None => {
                let rows = sqlx::query("SELECT spec, updated_at FROM stoker_limits ORDER BY name")
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_error)?
                    .iter()
                    .map(limit_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                self.inner
                    .limits
                    .put(rows.into_iter().map(|row| row.spec).collect())
            }
        };
        if !limits.iter().any(|limit| limit.quota.is_some()) {
            return Ok(Vec::new());
        }
        Ok(quota_demand(&limits, jobs))
    }

    /// The (queue, tenant) pairs among `jobs` whose queue is fair (issue 16, item 3), from the
    /// cache: an insert marks them ready in its transaction (see [`flow_fair_mark`]), so the
    /// next claim serves them. Empty for a queue that is not fair: the usual insert.
    pub(super) async fn flow_fair_marks(
        &self,
        jobs: &[stoker_core::JobInsert],
    ) -> StoreResult<Vec<(String, String)>> {
        let limits = self.flow_limits().await?;
        Ok(fair_marks_of(&limits, jobs))
    }

    /// The limits that apply to `queue`, or `None` (the usual claim), from the cache.
    pub(super) async fn flow_limits_for(&self, queue: &str) -> StoreResult<Option<Vec<LimitSpec>>> {
        let limits = self.flow_limits().await?;
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

        let mut exclusions = Vec::new();
        for limit in &limits {
            let keys: Vec<String> = full
                .iter()
                .filter(|(name, _, _)| *name == limit.name)
                .map(|(_, key, _)| key.clone())
                .collect();
            if keys.is_empty() {
                continue;
            }
            let expr = key_sql(&limit.key);
            if expr.is_none() && limit.kind.is_none() {
                // The whole queue is held back.
                drop(tx);
                self.inner.limits.set_wake(&params.queue, wake);
                self.inner.limits.hold(&params.queue);
                return Ok(Vec::new());
            }
            exclusions.push((expr, limit.kind.clone(), to_json(&keys)?));
        }
        let filters = Filters {
            params,
            tenant,
            kinds: to_json(&params.kinds)?,
            exclusions,
        };
        // A fair queue (item 3) serves its tenants in turn; a tenant-bound claim has one.
        let fair = if tenant.is_none() {
            fair_of(&limits).cloned()
        } else {
            None
        };
        let (rows, plan) = match &fair {
            None => {
                let mut query = QueryBuilder::<Sqlite>::new(
                    "SELECT id, kind, tenant, args, metadata FROM stoker_jobs WHERE ",
                );
                filters.push(&mut query);
                query
                    .push(" ORDER BY priority DESC, run_at, id LIMIT ")
                    .push_bind(candidates(params.limit));
                let rows = query.build().fetch_all(&mut *tx).await.map_err(db_error)?;
                (rows, None)
            }
            Some(fair) => {
                let (rows, plan) = fair_candidates(
                    &mut tx,
                    &self.inner.limits,
                    &filters,
                    fair,
                    candidates(params.limit),
                )
                .await?;
                (rows, Some(plan))
            }
        };

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
            wanted.push((id, tenant, needs));
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
        let mut admitted: BTreeMap<Option<String>, u32> = BTreeMap::new();
        for (id, tenant, needs) in &wanted {
            if claimed_slots.len() >= params.limit as usize {
                break;
            }
            if let Some(held) = gate.admit(needs) {
                *admitted.entry(tenant.clone()).or_default() += 1;
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
        if let Some((plan, clock)) = &plan {
            fair_advance(&mut tx, &params.queue, plan, *clock, &admitted).await?;
        }
        // The counts of unfinished states are live on SQLite (see `counts`): a claim writes
        // none.
        tx.commit().await.map_err(db_error)?;
        if let Some(at) = gate.wake_at() {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        self.inner.limits.set_wake(&params.queue, wake);
        if jobs.len() < params.limit as usize {
            self.inner.limits.hold(&params.queue);
        }
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    pub(super) async fn limit_set_impl(
        &self,
        params: LimitSetParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<LimitRow> {
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
        super::audit_insert_on(&mut tx, audit.as_ref()).await?;
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

    pub(super) async fn limit_delete_impl(
        &self,
        name: &str,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<LimitRow> {
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
        super::audit_insert_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        self.inner.limits.invalidate();
        limit_row(&row)
    }

    pub(super) async fn limit_usage_impl(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<LimitUsage>> {
        // The limiters in use: running jobs, throttled, or with starts or submissions counted
        // in their window (an arrival time ahead of now). One row per active limiter.
        type Row = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT name, key, running, tat, throttled_until, quota_tat \
             FROM stoker_limit_state \
             WHERE running > 0 OR throttled_until > ?1 OR tat > ?1 OR quota_tat > ?1 \
             ORDER BY name, key",
        )
        .bind(micros(now))
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        let limits = self.flow_limits().await?;
        let mut usage = Vec::with_capacity(rows.len());
        let mut counted = 0;
        for (name, key, running, tat, throttled_until, quota_tat) in rows {
            let spec = limits.iter().find(|spec| spec.name == name);
            let mut row = LimitUsage::from_state(
                spec,
                name,
                key,
                running,
                opt_micros("tat", tat)?,
                opt_micros("throttled_until", throttled_until)?,
                opt_micros("quota_tat", quota_tat)?,
                now,
            );
            if let (Some(spec), true) = (spec, row.is_full()) {
                if counted < HELD_BACK_LIMITERS_MAX {
                    counted += 1;
                    let (held, more) = self.held_back(spec, &row.key, now).await?;
                    row.held_back = held;
                    row.held_back_more = more;
                } else {
                    row.held_back_more = true;
                }
            }
            usage.push(row);
        }
        Ok(usage)
    }

    /// How many available, due jobs of `spec`'s scope fall in its limiter `key`: among at
    /// most [`HELD_BACK_READ_MAX`] of the scope's due jobs read through the fetch index (the
    /// waiting index for a limit keyed by tenant), so a request never walks a whole backlog;
    /// and whether it stopped at that bound.
    async fn held_back(
        &self,
        spec: &LimitSpec,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, bool)> {
        let by_expr = key_sql(&spec.key).filter(|_| spec.key != LimitKey::Tenant);
        let mut query = QueryBuilder::<Sqlite>::new("SELECT ");
        match &by_expr {
            Some(_) => query
                .push("COALESCE(SUM(k = ")
                .push_bind(key.to_owned())
                .push("), 0)"),
            None => query.push("COUNT(*)"),
        };
        query.push(", COUNT(*) FROM (SELECT ");
        match &by_expr {
            Some(expr) => query.push(expr.as_str()),
            None => query.push("NULL"),
        };
        query
            .push(
                " AS k FROM stoker_jobs \
                 WHERE state IN ('available', 'retryable') AND scheduled = 0 AND +run_at <= ",
            )
            .push_bind(micros(now));
        if let Some(queue) = &spec.queue {
            query.push(" AND queue = ").push_bind(queue.clone());
        }
        if let Some(kind) = &spec.kind {
            query.push(" AND kind = ").push_bind(kind.clone());
        }
        if spec.key == LimitKey::Tenant {
            query.push(" AND tenant = ").push_bind(key.to_owned());
        }
        query
            .push(" LIMIT ")
            .push_bind(i64::from(HELD_BACK_READ_MAX))
            .push(")");
        let (held, read): (i64, i64) = query
            .build_query_as()
            .fetch_one(&mut *self.read().await?)
            .await
            .map_err(db_error)?;
        Ok((
            u64::try_from(held).unwrap_or(0),
            read >= i64::from(HELD_BACK_READ_MAX),
        ))
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

/// Takes the tokens an insert needs from each enqueue quota it draws on (item 4), inside the
/// insert's write transaction, or refuses the whole insert before anything is written (the
/// caller's transaction rolls back). The single writer makes the read-then-write exact.
///
/// # Errors
///
/// [`StoreError::QuotaExceeded`] naming the first quota that has too few tokens.
pub(super) async fn flow_quota_take(
    conn: &mut SqliteConnection,
    demand: &[QuotaDemand],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let pairs = to_json(
        &demand
            .iter()
            .map(|d| (d.name.as_str(), d.key.as_str()))
            .collect::<Vec<_>>(),
    )?;
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT name, key, quota_tat FROM stoker_limit_state \
         WHERE (name, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )
    .bind(&pairs)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut tats = BTreeMap::new();
    for (name, key, tat) in rows {
        tats.insert((name, key), opt_micros("quota_tat", tat)?);
    }
    let mut next = Vec::with_capacity(demand.len());
    for d in demand {
        let tat = tats
            .get(&(d.name.clone(), d.key.clone()))
            .copied()
            .flatten();
        let tat = quota_take(d, tat, now)?;
        next.push(serde_json::json!([d.name, d.key, micros(tat)]));
    }
    sqlx::query(
        "INSERT INTO stoker_limit_state (name, key, quota_tat) \
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true \
         ON CONFLICT (name, key) DO UPDATE SET quota_tat = excluded.quota_tat",
    )
    .bind(to_json(&next)?)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The distinct (queue, tenant) pairs among `jobs` whose queue has fair queuing in `limits`.
pub(super) fn fair_marks_of(
    limits: &[LimitSpec],
    jobs: &[stoker_core::JobInsert],
) -> Vec<(String, String)> {
    if !limits.iter().any(|limit| limit.fair.is_some()) {
        return Vec::new();
    }
    let mut marks = BTreeSet::new();
    for job in jobs {
        let Some(tenant) = &job.tenant else {
            continue;
        };
        let fair = limits
            .iter()
            .any(|limit| limit.fair.is_some() && limit.applies_to_queue(&job.queue));
        if fair {
            marks.insert((job.queue.clone(), tenant.clone()));
        }
    }
    marks.into_iter().collect()
}

/// Marks the tenants `marks` (queue, tenant) ready in their fair queues (issue 16, item 3),
/// inside the insert's write transaction: the next claim reads them among the ready tenants
/// in virtual-time order. A tenant new to the queue gets virtual time 0, which the queue's
/// clock lifts: it starts level with the others.
pub(super) async fn flow_fair_mark(
    conn: &mut SqliteConnection,
    marks: &[(String, String)],
) -> StoreResult<()> {
    if marks.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO stoker_fair_tenants (queue, tenant, vtime, ready) \
         SELECT value ->> 0, value ->> 1, 0, 1 FROM json_each(?1) WHERE true \
         ON CONFLICT (queue, tenant) DO UPDATE SET ready = 1 WHERE NOT ready",
    )
    .bind(to_json(&marks)?)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}
