//! Flow control (issue 16) on PostgreSQL: limits, and the claim that enforces them.
//!
//! A claim in a queue with limits is one transaction: read the limiters that are full now
//! (throttled or at their concurrency cap), select candidates `FOR UPDATE SKIP LOCKED` in
//! fetch order leaving out the full limiters' jobs (so a throttled key never blocks the
//! others), create and lock the candidates' limiter rows in (name, key) order, admit
//! candidates with [`FlowGate`], mark the admitted ones running with the slots they hold, and
//! write the limiters back. Candidates not admitted are left as they were. The row locks make
//! admission serial per limiter across every process, so N processes never exceed a limit; the
//! lock order rules out deadlocks between claims (and with the release trigger, which locks in
//! the same order).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use stoker_core::fair_walk_complete;
use stoker_core::{
    fair_of, gcra_push_back, limits_for_queue, quota_demand, quota_take, validate_limit_name, Fair,
    FairScheduler, FlowGate, JobClaimParams, JobRow, LimitKey, LimitPushBackParams, LimitRow,
    LimitSetParams, LimitSpec, LimitUsage, LimiterState, Metadata, QuotaDemand, StoreError,
    StoreResult, FAIR_DISCOVER_PER_CLAIM, FAIR_NO_TENANT, FAIR_PAGE_EXTRA, HELD_BACK_LIMITERS_MAX,
    HELD_BACK_READ_MAX,
};

use super::PgStore;
use crate::error::store_error;
use crate::row::{job_columns, job_row};

/// How many candidates a limited claim locks for a batch of `limit`: some will be refused.
fn candidates(limit: u32) -> i64 {
    i64::from(limit).saturating_mul(2) + 8
}

/// The SQL value of a limit's key for a job row, or `None` for a global limit.
fn key_sql(key: &LimitKey) -> Option<String> {
    // Path segments are validated ASCII names, so quoting them is safe.
    let path = |path: &[String]| format!("'{{{}}}'", path.join(","));
    match key {
        LimitKey::Global => None,
        LimitKey::Tenant => Some("tenant".to_owned()),
        LimitKey::Args(p) => Some(format!("(args #>> {})", path(p))),
        LimitKey::Metadata(p) => Some(format!("(metadata #>> {})", path(p))),
    }
}

/// A fair claim's candidate with what orders it within its tenant: priority, `run_at`, id.
type Candidate = (i16, DateTime<Utc>, i64, PgRow);

/// The conditions a job meets to be a candidate of a limited claim: due in the queue, of the
/// claim's kinds (and tenant), the queue not paused, and not under a limiter full now.
struct Filters<'a> {
    params: &'a JobClaimParams,
    tenant: Option<&'a str>,
    queues_table: &'a str,
    /// Per full limit: its key's SQL (`None`: global), its kind, and its full keys.
    exclusions: Vec<(Option<String>, Option<String>, Vec<String>)>,
}

impl Filters<'_> {
    /// Pushes the conditions, on unqualified columns of the jobs table, joined by AND. They
    /// match the predicate of the fetch and fair indexes.
    fn push(&self, query: &mut QueryBuilder<'_, Postgres>) {
        query
            .push("state IN ('available', 'retryable') AND NOT scheduled AND queue = ")
            .push_bind(self.params.queue.clone())
            .push(" AND run_at <= ")
            .push_bind(self.params.now);
        if !self.params.kinds.is_empty() {
            query
                .push(" AND kind = ANY(")
                .push_bind(self.params.kinds.clone())
                .push(")");
        }
        // A tenant-bound pull worker's claim (issue 17) takes only its tenant's jobs.
        if let Some(tenant) = self.tenant {
            query.push(" AND tenant = ").push_bind(tenant.to_owned());
        }
        query
            .push(" AND NOT EXISTS (SELECT 1 FROM ")
            .push(self.queues_table)
            .push(" q WHERE q.name = ")
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
                        .push(" = ANY(")
                        .push_bind(keys.clone())
                        .push("), false)");
                }
            }
        }
    }
}

fn limit_row(row: &PgRow) -> StoreResult<LimitRow> {
    let spec: Value = row.try_get("spec").map_err(store_error)?;
    Ok(LimitRow {
        spec: serde_json::from_value(spec)
            .map_err(|err| StoreError::Corrupt(format!("limit spec: {err}")))?,
        updated_at: row.try_get("updated_at").map_err(store_error)?,
    })
}

impl PgStore {
    fn flow_table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.inner.schema)
    }

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

    /// The tenants among `jobs` whose queue is fair (issue 16, item 3), by queue, from the
    /// cache: an insert marks them ready in its transaction ([`Self::flow_fair_mark`]), so the
    /// next claim serves them. Empty for queues that are not fair: the usual insert.
    pub(super) async fn flow_fair_marks(
        &self,
        jobs: &[stoker_core::JobInsert],
    ) -> StoreResult<BTreeMap<String, Vec<String>>> {
        let limits = self.flow_limits().await?;
        let mut marks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if limits.iter().any(|limit| limit.fair.is_some()) {
            for job in jobs {
                let Some(tenant) = &job.tenant else {
                    continue;
                };
                if limits
                    .iter()
                    .any(|limit| limit.fair.is_some() && limit.applies_to_queue(&job.queue))
                {
                    marks
                        .entry(job.queue.clone())
                        .or_default()
                        .insert(tenant.clone());
                }
            }
        }
        Ok(marks
            .into_iter()
            .map(|(queue, tenants)| (queue, tenants.into_iter().collect()))
            .collect())
    }

    /// Marks the tenants `marks` ready in their fair queues, in the insert's transaction.
    pub(super) async fn flow_fair_mark(
        &self,
        conn: &mut PgConnection,
        marks: &BTreeMap<String, Vec<String>>,
    ) -> StoreResult<()> {
        let table = self.flow_table("stoker_fair_tenants");
        for (queue, tenants) in marks {
            fair_mark_in(conn, &table, queue, tenants).await?;
        }
        Ok(())
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
        let jobs_table = self.flow_table("stoker_jobs");
        let state_table = self.flow_table("stoker_limit_state");
        let queues_table = self.flow_table("stoker_queues");
        let now = params.now;
        let names: Vec<String> = limits.iter().map(|limit| limit.name.clone()).collect();
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;

        // The limiters full now: their jobs are not candidates.
        let full: Vec<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
            "SELECT name, key, throttled_until FROM {state_table} \
             WHERE name = ANY($1) AND (throttled_until > $2 OR running >= cap)"
        ))
        .bind(&names)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        let mut wake = full.iter().filter_map(|(_, _, until)| *until).min();

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
                tx.rollback().await.map_err(store_error)?;
                self.inner.limits.set_wake(&params.queue, wake);
                return Ok(Vec::new());
            }
            exclusions.push((expr, limit.kind.clone(), keys));
        }
        let filters = Filters {
            params,
            tenant,
            queues_table: &queues_table,
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
                let mut query =
                    QueryBuilder::<Postgres>::new("SELECT id, kind, tenant, args, metadata FROM ");
                query.push(&jobs_table).push(" WHERE ");
                filters.push(&mut query);
                query
                    .push(" ORDER BY priority DESC, run_at, id LIMIT ")
                    .push_bind(candidates(params.limit))
                    .push(" FOR UPDATE SKIP LOCKED");
                let rows = query
                    .build()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?;
                (rows, None)
            }
            Some(fair) => {
                let (rows, plan) = self
                    .fair_candidates(&mut tx, &filters, fair, candidates(params.limit))
                    .await?;
                (rows, Some(plan))
            }
        };

        let mut gate = FlowGate::new(limits, now);
        let mut wanted = Vec::with_capacity(rows.len());
        let mut limiters = BTreeSet::new();
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(store_error)?;
            let kind: String = row.try_get("kind").map_err(store_error)?;
            let tenant: Option<String> = row.try_get("tenant").map_err(store_error)?;
            let args: Value = row.try_get("args").map_err(store_error)?;
            let metadata: Value = row.try_get("metadata").map_err(store_error)?;
            let metadata: Metadata = serde_json::from_value(metadata).unwrap_or_default();
            let needs = gate.limiters_of(&kind, tenant.as_deref(), &args, &metadata);
            for (index, key) in &needs {
                limiters.insert((gate.limits()[*index].name.clone(), key.clone()));
            }
            wanted.push((id, tenant, needs));
        }
        if !limiters.is_empty() {
            let (names, keys): (Vec<String>, Vec<String>) = limiters.into_iter().unzip();
            // Sorted input, so concurrent claims create shared rows in the same order.
            sqlx::query(&format!(
                "INSERT INTO {state_table} (name, key) \
                 SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(&names)
            .bind(&keys)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            let states: Vec<(String, String, Option<DateTime<Utc>>, i64)> =
                sqlx::query_as(&format!(
                    "SELECT name, key, tat, running FROM {state_table} \
                     WHERE (name, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                     ORDER BY name, key FOR UPDATE"
                ))
                .bind(&names)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?;
            for (name, key, tat, running) in states {
                gate.load(&name, &key, LimiterState { tat, running });
            }
        }

        let mut ids = Vec::new();
        let mut slots = Vec::new();
        let mut admitted: BTreeMap<Option<String>, u32> = BTreeMap::new();
        for (id, tenant, needs) in &wanted {
            if ids.len() >= params.limit as usize {
                break;
            }
            if let Some(held) = gate.admit(needs) {
                ids.push(*id);
                *admitted.entry(tenant.clone()).or_default() += 1;
                slots.push(if held.is_empty() {
                    None
                } else {
                    Some(serde_json::json!(held))
                });
            }
        }
        let mut jobs = Vec::new();
        if !ids.is_empty() {
            let claimed = sqlx::query(&format!(
                "UPDATE {jobs_table} j \
                 SET state = 'running', attempt = j.attempt + 1, fence = j.fence + 1, \
                     attempted_at = $1, worker_id = $2, lease_expires_at = $3, \
                     flow_slots = ($5::jsonb[])[array_position($4::int8[], j.id)] \
                 WHERE j.id = ANY($4) \
                 RETURNING {}",
                job_columns(Some("j"))
            ))
            .bind(now)
            .bind(&params.worker_id)
            .bind(lease_end)
            .bind(&ids)
            .bind(&slots)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
            jobs = claimed
                .iter()
                .map(job_row)
                .collect::<StoreResult<Vec<_>>>()?;
        }
        let changes = gate.changes();
        if !changes.is_empty() {
            let mut names = Vec::new();
            let mut keys = Vec::new();
            let mut tats = Vec::new();
            let mut running = Vec::new();
            let mut throttled = Vec::new();
            let mut caps = Vec::new();
            for change in changes {
                names.push(change.name);
                keys.push(change.key);
                tats.push(change.state.tat);
                running.push(change.state.running);
                throttled.push(change.throttled_until);
                caps.push(change.cap);
            }
            sqlx::query(&format!(
                "UPDATE {state_table} s \
                 SET tat = u.tat, running = u.running, throttled_until = u.throttled, cap = u.cap \
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[], \
                             $5::timestamptz[], $6::int8[]) \
                      AS u(name, key, tat, running, throttled, cap) \
                 WHERE s.name = u.name AND s.key = u.key"
            ))
            .bind(&names)
            .bind(&keys)
            .bind(&tats)
            .bind(&running)
            .bind(&throttled)
            .bind(&caps)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        if let Some(plan) = &plan {
            self.fair_advance(&mut tx, &params.queue, plan, &admitted)
                .await?;
        }
        tx.commit().await.map_err(store_error)?;
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

    /// A fair claim's candidates (item 3), in the order the limits are to see them, and the
    /// plan that ordered them.
    ///
    /// The claim's cost does not grow with the number of tenants: it reads the tenants marked
    /// ready in `stoker_fair_tenants` in virtual-time order through their partial index, only
    /// as many as can get one of `slots` places ([`fair_walk_complete`]); looks for up to
    /// [`FAIR_DISCOVER_PER_CLAIM`] more tenants with jobs in `stoker_jobs_fair_idx` from where
    /// this process's last walk stopped (those made ready other than by an insert);
    /// [`FairScheduler`] shares the places; each chosen tenant's first jobs are then locked
    /// with one lateral index lookup per tenant; a chosen tenant found with no job left in the
    /// fair index is unmarked.
    async fn fair_candidates(
        &self,
        tx: &mut PgConnection,
        filters: &Filters<'_>,
        fair: &Fair,
        slots: i64,
    ) -> StoreResult<(Vec<PgRow>, FairScheduler)> {
        let jobs_table = self.flow_table("stoker_jobs");
        let tenants_table = self.flow_table("stoker_fair_tenants");
        let queue = &filters.params.queue;
        let clock: Option<f64> = sqlx::query_scalar(&format!(
            "SELECT clock FROM {} WHERE queue = $1",
            self.flow_table("stoker_fair_clocks")
        ))
        .bind(queue)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let base_clock = clock.unwrap_or(0.0);

        // Discovery: the next tenants with jobs in the fair index after this process's cursor,
        // one index probe each; those not marked yet are marked (a new one at virtual time 0,
        // which the clock lifts). Rows already marked are not written, so they are not locked.
        let cursor = self.inner.limits.fair_cursor(queue);
        let found: Vec<(String, bool)> = sqlx::query_as(&format!(
            "WITH RECURSIVE t(tenant, n) AS ( \
                 SELECT (SELECT tenant FROM {jobs_table} \
                         WHERE state IN ('available', 'retryable') AND NOT scheduled \
                           AND queue = $1 AND tenant IS NOT NULL AND tenant > COALESCE($2, '') \
                         ORDER BY tenant LIMIT 1), 1 \
                 UNION ALL \
                 SELECT (SELECT tenant FROM {jobs_table} \
                         WHERE state IN ('available', 'retryable') AND NOT scheduled \
                           AND queue = $1 AND tenant IS NOT NULL AND tenant > t.tenant \
                         ORDER BY tenant LIMIT 1), n + 1 \
                 FROM t WHERE t.tenant IS NOT NULL AND n < $3) \
             SELECT t.tenant, COALESCE((SELECT f.ready FROM {tenants_table} f \
                                        WHERE f.queue = $1 AND f.tenant = t.tenant), false) \
             FROM t WHERE t.tenant IS NOT NULL ORDER BY t.tenant"
        ))
        .bind(queue)
        .bind(&cursor)
        .bind(i32::try_from(FAIR_DISCOVER_PER_CLAIM).unwrap_or(i32::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        let next_cursor = if found.len() < FAIR_DISCOVER_PER_CLAIM as usize {
            None
        } else {
            found.last().map(|(tenant, _)| tenant.clone())
        };
        self.inner.limits.set_fair_cursor(queue, next_cursor);
        let unmarked: Vec<String> = found
            .into_iter()
            .filter(|(_, ready)| !ready)
            .map(|(tenant, _)| tenant)
            .collect();
        if !unmarked.is_empty() {
            fair_mark_in(&mut *tx, &tenants_table, queue, &unmarked).await?;
        }

        // The ready tenants in (virtual time, tenant) order, a page at a time, as far as
        // places can reach.
        let places = usize::try_from(slots).unwrap_or(usize::MAX);
        let page = slots.saturating_add(i64::from(FAIR_PAGE_EXTRA));
        let mut walked: Vec<(String, f64)> = Vec::new();
        // Two texts, so each page is one range of the index in order (an `OR` for the first
        // page would make the planner sort every ready tenant).
        let first_page = format!(
            "SELECT tenant, vtime FROM {tenants_table} \
             WHERE queue = $1 AND ready AND tenant <> '' \
             ORDER BY vtime, tenant LIMIT $2"
        );
        let next_page = format!(
            "SELECT tenant, vtime FROM {tenants_table} \
             WHERE queue = $1 AND ready AND tenant <> '' \
               AND (vtime, tenant) > ($3::float8, $4::text) \
             ORDER BY vtime, tenant LIMIT $2"
        );
        loop {
            let rows: Vec<(String, f64)> = match walked.last() {
                None => sqlx::query_as(&first_page).bind(queue).bind(page),
                Some((tenant, vtime)) => sqlx::query_as(&next_page)
                    .bind(queue)
                    .bind(page)
                    .bind(*vtime)
                    .bind(tenant.clone()),
            }
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
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
        let mut query = QueryBuilder::<Postgres>::new("SELECT EXISTS (SELECT 1 FROM ");
        query.push(&jobs_table).push(" WHERE ");
        filters.push(&mut query);
        query.push(" AND tenant IS NULL)");
        let untenanted: bool = query
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        if untenanted {
            let vtime: Option<f64> = sqlx::query_scalar(&format!(
                "SELECT vtime FROM {tenants_table} WHERE queue = $1 AND tenant = $2"
            ))
            .bind(queue)
            .bind(FAIR_NO_TENANT)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
            tenants.push((None, vtime));
        }
        let plan = FairScheduler::new(fair, base_clock, tenants);
        let quotas = plan.quotas(usize::try_from(slots).unwrap_or(usize::MAX));
        let (named, counts): (Vec<String>, Vec<i64>) = quotas
            .iter()
            .filter_map(|(tenant, n)| Some((tenant.clone()?, i64::from(*n))))
            .unzip();
        let mut rows = Vec::new();
        if !named.is_empty() {
            let mut query = QueryBuilder::<Postgres>::new(
                "SELECT j.id, j.kind, j.tenant, j.args, j.metadata, j.priority, j.run_at \
                 FROM unnest(",
            );
            query
                .push_bind(named)
                .push("::text[], ")
                .push_bind(counts)
                .push("::int8[]) AS fq(fq_tenant, fq_n) CROSS JOIN LATERAL (SELECT id, kind, tenant, args, metadata, priority, run_at FROM ")
                .push(&jobs_table)
                .push(" WHERE ");
            filters.push(&mut query);
            query.push(
                " AND tenant = fq.fq_tenant ORDER BY priority DESC, run_at, id \
                 LIMIT fq.fq_n FOR UPDATE SKIP LOCKED) j",
            );
            rows = query
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        if let Some(n) = quotas.iter().find_map(|(t, n)| t.is_none().then_some(*n)) {
            let mut query = QueryBuilder::<Postgres>::new(
                "SELECT id, kind, tenant, args, metadata, priority, run_at FROM ",
            );
            query.push(&jobs_table).push(" WHERE ");
            filters.push(&mut query);
            query
                .push(" AND tenant IS NULL ORDER BY priority DESC, run_at, id LIMIT ")
                .push_bind(i64::from(n))
                .push(" FOR UPDATE SKIP LOCKED");
            rows.extend(
                query
                    .build()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?,
            );
        }
        // A tenant that came back short may have run out: if it has no job left in the fair
        // index at all (locked by another claim counts as left), it is no longer ready.
        let mut got: BTreeMap<String, u32> = BTreeMap::new();
        for row in &rows {
            if let Some(tenant) = row
                .try_get::<Option<String>, _>("tenant")
                .map_err(store_error)?
            {
                *got.entry(tenant).or_default() += 1;
            }
        }
        let short: Vec<String> = quotas
            .iter()
            .filter_map(|(tenant, n)| {
                let tenant = tenant.as_ref()?;
                (got.get(tenant).copied().unwrap_or(0) < *n).then(|| tenant.clone())
            })
            .collect();
        if !short.is_empty() {
            sqlx::query(&format!(
                "UPDATE {tenants_table} f SET ready = false \
                 WHERE f.queue = $1 AND f.tenant = ANY($2) AND f.ready \
                   AND NOT EXISTS (SELECT 1 FROM {jobs_table} j \
                                   WHERE j.state IN ('available', 'retryable') AND NOT j.scheduled \
                                     AND j.queue = $1 AND j.tenant = f.tenant)"
            ))
            .bind(queue)
            .bind(&short)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        // Each tenant's candidates in its own order, then interleaved by virtual time.
        let mut per_tenant: BTreeMap<Option<String>, Vec<Candidate>> = BTreeMap::new();
        for row in rows {
            let tenant: Option<String> = row.try_get("tenant").map_err(store_error)?;
            let priority: i16 = row.try_get("priority").map_err(store_error)?;
            let run_at: DateTime<Utc> = row.try_get("run_at").map_err(store_error)?;
            let id: i64 = row.try_get("id").map_err(store_error)?;
            per_tenant
                .entry(tenant)
                .or_default()
                .push((priority, run_at, id, row));
        }
        let candidates = per_tenant
            .into_iter()
            .map(|(tenant, mut jobs)| {
                jobs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                (tenant, jobs.into_iter().map(|job| job.3).collect())
            })
            .collect();
        let rows = plan
            .order(candidates)
            .into_iter()
            .map(|(_, row)| row)
            .collect();
        Ok((rows, plan))
    }

    /// Advances the virtual times of the tenants a fair claim started jobs of, and the queue's
    /// clock. Rows are written in tenant order, so concurrent claims lock them in one order.
    async fn fair_advance(
        &self,
        tx: &mut PgConnection,
        queue: &str,
        plan: &FairScheduler,
        admitted: &BTreeMap<Option<String>, u32>,
    ) -> StoreResult<()> {
        let advances = plan.advances(admitted);
        if !advances.is_empty() {
            let mut tenants = Vec::new();
            let mut ends = Vec::new();
            let mut steps = Vec::new();
            for (tenant, base, step) in advances {
                tenants.push(tenant);
                ends.push(base + step);
                steps.push(step);
            }
            let table = self.flow_table("stoker_fair_tenants");
            // The stored time becomes max(stored, base) + step: max(stored + step, base + step).
            sqlx::query(&format!(
                "INSERT INTO {table} AS f (queue, tenant, vtime) \
                 SELECT $1, u.tenant, u.vtime \
                 FROM unnest($2::text[], $3::float8[]) AS u(tenant, vtime) ORDER BY u.tenant \
                 ON CONFLICT (queue, tenant) DO UPDATE SET vtime = GREATEST( \
                     f.vtime + (SELECT s.step FROM unnest($2::text[], $4::float8[]) AS s(tenant, step) \
                                WHERE s.tenant = excluded.tenant), \
                     excluded.vtime)"
            ))
            .bind(queue)
            .bind(&tenants)
            .bind(&ends)
            .bind(&steps)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        if let Some(clock) = plan.clock(admitted) {
            let table = self.flow_table("stoker_fair_clocks");
            // Only a clock that moves is written: most claims take no lock on the row.
            let moved = sqlx::query(&format!(
                "UPDATE {table} SET clock = $2 WHERE queue = $1 AND clock < $2"
            ))
            .bind(queue)
            .bind(clock)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected();
            if moved == 0 {
                sqlx::query(&format!(
                    "INSERT INTO {table} (queue, clock) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                ))
                .bind(queue)
                .bind(clock)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            }
        }
        Ok(())
    }

    pub(super) async fn limit_set_impl(
        &self,
        params: LimitSetParams,
        audit: Option<stoker_core::AuditEntry>,
    ) -> StoreResult<LimitRow> {
        params.spec.validate()?;
        let spec = serde_json::to_value(&params.spec)
            .map_err(|err| StoreError::Corrupt(format!("limit spec: {err}")))?;
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "INSERT INTO {} (name, spec, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at \
             RETURNING spec, updated_at",
            self.flow_table("stoker_limits")
        ))
        .bind(&params.spec.name)
        .bind(&spec)
        .bind(params.now)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        // A changed limit recomputes when its limiters are next free, and their caps.
        sqlx::query(&format!(
            "UPDATE {} SET throttled_until = NULL, cap = $2 WHERE name = $1",
            self.flow_table("stoker_limit_state")
        ))
        .bind(&params.spec.name)
        .bind(params.spec.concurrency.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        self.inner.limits.invalidate();
        limit_row(&row)
    }

    pub(super) async fn limit_list_impl(&self) -> StoreResult<Vec<LimitRow>> {
        sqlx::query(&format!(
            "SELECT spec, updated_at FROM {} ORDER BY name",
            self.flow_table("stoker_limits")
        ))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?
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
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1 RETURNING spec, updated_at",
            self.flow_table("stoker_limits")
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::NotFound(format!("limit {name:?}")))?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1",
            self.flow_table("stoker_limit_state")
        ))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        self.audit_on(&mut tx, audit.as_ref()).await?;
        tx.commit().await.map_err(store_error)?;
        self.inner.limits.invalidate();
        limit_row(&row)
    }

    pub(super) async fn limit_usage_impl(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<LimitUsage>> {
        // The limiters in use: running jobs, throttled, or with starts or submissions counted
        // in their window (an arrival time ahead of now). One row per active limiter.
        type Row = (
            String,
            String,
            i64,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT name, key, running, tat, throttled_until, quota_tat \
             FROM {} WHERE running > 0 OR throttled_until > $1 OR tat > $1 OR quota_tat > $1 \
             ORDER BY name, key",
            self.flow_table("stoker_limit_state")
        ))
        .bind(now)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
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
                tat,
                throttled_until,
                quota_tat,
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
    /// tenant index for a limit keyed by tenant), so a request never walks a whole backlog;
    /// and whether it stopped at that bound.
    async fn held_back(
        &self,
        spec: &LimitSpec,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, bool)> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT count(*) FILTER (WHERE ");
        match key_sql(&spec.key) {
            Some(_) if spec.key == LimitKey::Tenant => query.push("true"),
            Some(_) => query.push("k = ").push_bind(key.to_owned()),
            None => query.push("true"),
        };
        query.push("), count(*) FROM (SELECT ");
        match key_sql(&spec.key) {
            Some(expr) if spec.key != LimitKey::Tenant => query.push(expr),
            _ => query.push("NULL"),
        };
        query
            .push(" AS k FROM ")
            .push(self.flow_table("stoker_jobs"))
            .push(" WHERE state IN ('available', 'retryable') AND NOT scheduled AND run_at <= ")
            .push_bind(now);
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
            .push(") AS due");
        let (held, read): (i64, i64) = query
            .build_query_as()
            .fetch_one(&self.inner.pool)
            .await
            .map_err(store_error)?;
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
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        let spec: Option<Value> = sqlx::query_scalar(&format!(
            "SELECT spec FROM {} WHERE name = $1",
            self.flow_table("stoker_limits")
        ))
        .bind(&params.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let spec: LimitSpec = serde_json::from_value(
            spec.ok_or_else(|| StoreError::NotFound(format!("limit {:?}", params.name)))?,
        )
        .map_err(|err| StoreError::Corrupt(format!("limit spec: {err}")))?;
        let state_table = self.flow_table("stoker_limit_state");
        sqlx::query(&format!(
            "INSERT INTO {state_table} (name, key) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        ))
        .bind(&params.name)
        .bind(&params.key)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let tat: Option<DateTime<Utc>> = sqlx::query_scalar(&format!(
            "SELECT tat FROM {state_table} WHERE name = $1 AND key = $2 FOR UPDATE"
        ))
        .bind(&params.name)
        .bind(&params.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        let tat = gcra_push_back(spec.rate.as_ref(), tat, params.until);
        sqlx::query(&format!(
            "UPDATE {state_table} SET tat = $3, \
                 throttled_until = GREATEST(COALESCE(throttled_until, $4), $4) \
             WHERE name = $1 AND key = $2"
        ))
        .bind(&params.name)
        .bind(&params.key)
        .bind(tat)
        .bind(params.until)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(())
    }

    pub(super) async fn limit_reconcile_impl(&self) -> StoreResult<u64> {
        let state_table = self.flow_table("stoker_limit_state");
        let mut tx = self.inner.pool.begin().await.map_err(store_error)?;
        // Every limiter locked first (in the claims' order): no claim or release commits
        // between the count and the write, so the count is exact.
        sqlx::query(&format!(
            "SELECT 1 FROM {state_table} ORDER BY name, key FOR UPDATE"
        ))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let fixed = sqlx::query(&format!(
            "UPDATE {state_table} s SET running = COALESCE(a.n, 0) \
             FROM {state_table} s2 LEFT JOIN ( \
                 SELECT slot ->> 0 AS name, slot ->> 1 AS key, count(*) AS n \
                 FROM {} j CROSS JOIN LATERAL jsonb_array_elements(j.flow_slots) AS slot \
                 WHERE j.state = 'running' AND j.flow_slots IS NOT NULL \
                 GROUP BY 1, 2 \
             ) a ON a.name = s2.name AND a.key = s2.key \
             WHERE s.name = s2.name AND s.key = s2.key \
               AND s.running IS DISTINCT FROM COALESCE(a.n, 0)",
            self.flow_table("stoker_jobs")
        ))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        tx.commit().await.map_err(store_error)?;
        Ok(fixed)
    }
}

/// Takes the tokens an insert needs from each enqueue quota it draws on (item 4), on `conn`
/// inside the insert's transaction, or refuses the whole insert: the limiter rows are locked
/// in (name, key) order, so N processes together never exceed a quota, and a refusal returns
/// before anything is written (the caller's transaction rolls back).
///
/// # Errors
///
/// [`StoreError::QuotaExceeded`] naming the first quota that has too few tokens.
pub(super) async fn flow_quota_take(
    conn: &mut PgConnection,
    schema: &str,
    demand: &[QuotaDemand],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let table = format!("\"{schema}\".stoker_limit_state");
    let names: Vec<&str> = demand.iter().map(|d| d.name.as_str()).collect();
    let keys: Vec<&str> = demand.iter().map(|d| d.key.as_str()).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} (name, key) \
         SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING"
    ))
    .bind(&names)
    .bind(&keys)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    let rows: Vec<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
        "SELECT name, key, quota_tat FROM {table} \
         WHERE (name, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
         ORDER BY name, key FOR UPDATE"
    ))
    .bind(&names)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(store_error)?;
    let tats: BTreeMap<(String, String), Option<DateTime<Utc>>> = rows
        .into_iter()
        .map(|(name, key, tat)| ((name, key), tat))
        .collect();
    let mut next = Vec::with_capacity(demand.len());
    for d in demand {
        let tat = tats
            .get(&(d.name.clone(), d.key.clone()))
            .copied()
            .flatten();
        next.push(quota_take(d, tat, now)?);
    }
    sqlx::query(&format!(
        "UPDATE {table} s SET quota_tat = u.tat \
         FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(name, key, tat) \
         WHERE s.name = u.name AND s.key = u.key"
    ))
    .bind(&names)
    .bind(&keys)
    .bind(&next)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Marks `tenants` (in tenant order, the order claims lock these rows in) ready in fair queue
/// `queue` of table `table` (issue 16, item 3); a tenant new to the queue gets virtual time 0,
/// which the queue's clock lifts: it starts level with the others. A row already marked is
/// not written.
async fn fair_mark_in(
    conn: &mut PgConnection,
    table: &str,
    queue: &str,
    tenants: &[String],
) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO {table} AS f (queue, tenant, vtime, ready) \
         SELECT $1, t, 0, true FROM unnest($2::text[]) AS t ORDER BY t \
         ON CONFLICT (queue, tenant) DO UPDATE SET ready = true WHERE NOT f.ready"
    ))
    .bind(queue)
    .bind(tenants)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    Ok(())
}
