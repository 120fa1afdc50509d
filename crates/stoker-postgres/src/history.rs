//! Durable history (issue 13): the `stoker_history` table of migration 7, and queue depths.
//!
//! Buckets are seconds since the Unix epoch; every statement reads or writes a range of the
//! table's primary key `(grain, bucket, ...)`.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgPool, Row};
use stoker_core::{
    HistoryDelta, HistoryGrain, HistoryMetric, HistoryQueryParams, HistoryRollupParams,
    HistoryRollupReport, HistoryValue, QueueDepth, StoreResult, GAUGE_NAMES_SQL,
};

use crate::error::store_error;

// --- stream dash ---
/// The counter keys of waiting jobs (migrations 10 and 21) that make up a queue's depth.
const WAITING_KEYS: &str = "('active', 'scheduled', 'retryable', 'retryable_scheduled')";

/// The history statements of one store, qualified with its schema.
#[derive(Debug)]
pub(crate) struct HistorySql {
    record: String,
    /// Read by the plan test of the operator's queries (stream counts).
    pub(crate) query: String,
    rollup_start: String,
    rollup: String,
    prune: String,
    depths: String,
    // --- stream ops ---
    /// Deletes failure-group hours that started before `$1` (schema version 16).
    prune_failure_hours: String,
}

impl HistorySql {
    pub(crate) fn new(schema: &str) -> HistorySql {
        let history = format!("\"{schema}\".stoker_history");
        let jobs = format!("\"{schema}\".stoker_jobs");
        // --- stream dash ---
        let counts = format!("\"{schema}\".stoker_job_counts");
        let deltas = format!("\"{schema}\".stoker_job_count_deltas");
        HistorySql {
            // Repeated keys within one flush are merged first: one upsert may not touch a row
            // twice.
            record: format!(
                "INSERT INTO {history} AS h (grain, bucket, queue, kind, tenant, metric, value) \
                 SELECT 'minute', b, q, k, t, m, \
                        CASE WHEN m IN {GAUGE_NAMES_SQL} THEN MAX(v) ELSE SUM(v) END \
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                             $6::bigint[]) AS d(b, q, k, t, m, v) \
                 GROUP BY b, q, k, t, m \
                 ON CONFLICT (grain, bucket, queue, kind, tenant, metric) DO UPDATE SET value = \
                   CASE WHEN excluded.metric IN {GAUGE_NAMES_SQL} \
                        THEN GREATEST(h.value, excluded.value) \
                        ELSE h.value + excluded.value END"
            ),
            query: format!(
                "SELECT bucket, metric, \
                        (CASE WHEN metric = 'oldest_age_ms' THEN MAX(value) \
                              ELSE SUM(value) END)::bigint \
                 FROM {history} \
                 WHERE grain = $1 AND bucket >= $2 AND bucket < $3 \
                   AND ($4::text IS NULL OR queue = $4) AND ($5::text IS NULL OR kind = $5) \
                   AND ($6::text IS NULL OR tenant = $6) \
                 GROUP BY bucket, metric ORDER BY bucket, metric"
            ),
            rollup_start: format!(
                "SELECT COALESCE( \
                    (SELECT MAX(bucket) FROM {history} WHERE grain = $1), \
                    (SELECT MIN(bucket) FROM {history} WHERE grain = $2))"
            ),
            rollup: format!(
                "INSERT INTO {history} (grain, bucket, queue, kind, tenant, metric, value) \
                 SELECT $1, bucket / $2 * $2, queue, kind, tenant, metric, \
                        (CASE WHEN metric IN {GAUGE_NAMES_SQL} THEN MAX(value) \
                              ELSE SUM(value) END)::bigint \
                 FROM {history} WHERE grain = $3 AND bucket >= $4 AND bucket < $5 \
                 GROUP BY 2, 3, 4, 5, 6 \
                 ON CONFLICT (grain, bucket, queue, kind, tenant, metric) \
                 DO UPDATE SET value = excluded.value"
            ),
            prune: format!("DELETE FROM {history} WHERE grain = $1 AND bucket < $2"),
            // --- stream ops ---
            prune_failure_hours: format!(
                "DELETE FROM \"{schema}\".stoker_failure_hours WHERE hour < $1"
            ),
            // --- stream dash ---
            // Every number from the counters and their unfolded deltas, in one snapshot
            // (migration 21): due = `active` (due available and running) less the running
            // rows, plus `retryable` (out of the schedule); scheduled = `scheduled` plus
            // `retryable_scheduled`. The oldest due job is the first entry of the due index,
            // one probe per queue with due jobs.
            depths: format!(
                "WITH c AS ( \
                     SELECT queue, \
                            sum(n) FILTER (WHERE state IN ('active', 'retryable'))::int8 AS due, \
                            sum(n) FILTER (WHERE state IN ('scheduled', 'retryable_scheduled'))::int8 \
                                AS scheduled \
                     FROM ( \
                         SELECT queue, state, count AS n FROM {counts} \
                         WHERE state IN {WAITING_KEYS} \
                         UNION ALL \
                         SELECT queue, state, delta FROM {deltas} \
                         WHERE state IN {WAITING_KEYS} \
                         UNION ALL \
                         SELECT queue, 'active', -count(*) FROM {jobs} \
                         WHERE state = 'running' GROUP BY queue \
                     ) x \
                     GROUP BY queue \
                 ) \
                 SELECT queue, COALESCE(due, 0), COALESCE(scheduled, 0), \
                        CASE WHEN due > 0 THEN ( \
                            SELECT run_at FROM {jobs} j \
                            WHERE j.queue = c.queue AND j.state IN ('available', 'retryable') \
                              AND NOT j.scheduled AND j.priority IS NOT NULL \
                            ORDER BY run_at LIMIT 1) END \
                 FROM c WHERE due > 0 OR scheduled > 0 ORDER BY queue"
            ),
        }
    }

    pub(crate) async fn record(&self, pool: &PgPool, deltas: &[HistoryDelta]) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut buckets = Vec::with_capacity(deltas.len());
        let mut queues = Vec::with_capacity(deltas.len());
        let mut kinds = Vec::with_capacity(deltas.len());
        let mut tenants = Vec::with_capacity(deltas.len());
        let mut metrics = Vec::with_capacity(deltas.len());
        let mut values = Vec::with_capacity(deltas.len());
        for d in deltas {
            buckets.push(HistoryGrain::Minute.truncate(d.minute).timestamp());
            queues.push(d.queue.as_str());
            kinds.push(d.kind.as_str());
            tenants.push(d.tenant.as_deref().unwrap_or(""));
            metrics.push(d.metric.name());
            values.push(d.value);
        }
        sqlx::query(&self.record)
            .bind(buckets)
            .bind(queues)
            .bind(kinds)
            .bind(tenants)
            .bind(metrics)
            .bind(values)
            .execute(pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    pub(crate) async fn query(
        &self,
        pool: &PgPool,
        params: &HistoryQueryParams,
    ) -> StoreResult<Vec<HistoryValue>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(&self.query)
            .bind(params.grain.as_str())
            .bind(params.from.timestamp())
            .bind(params.to.timestamp())
            .bind(params.scope.queue.as_deref())
            .bind(params.scope.kind.as_deref())
            .bind(params.scope.tenant.as_deref())
            .fetch_all(pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(bucket, metric, value)| {
                // A metric a newer build wrote is skipped, not an error.
                Some(HistoryValue {
                    bucket: DateTime::<Utc>::from_timestamp(bucket, 0)?,
                    metric: HistoryMetric::parse(&metric)?,
                    value,
                })
            })
            .collect())
    }

    pub(crate) async fn rollup(
        &self,
        pool: &PgPool,
        params: &HistoryRollupParams,
    ) -> StoreResult<HistoryRollupReport> {
        let mut conn = pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        let mut report = HistoryRollupReport::default();
        for (fine, coarse) in [
            (HistoryGrain::Minute, HistoryGrain::Hour),
            (HistoryGrain::Hour, HistoryGrain::Day),
        ] {
            let width = coarse.seconds();
            let start: Option<i64> = sqlx::query_scalar(&self.rollup_start)
                .bind(coarse.as_str())
                .bind(fine.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
            let Some(start) = start else { continue };
            let start = start.div_euclid(width) * width;
            let end = coarse.truncate(params.now).timestamp() + width;
            let written = sqlx::query(&self.rollup)
                .bind(coarse.as_str())
                .bind(width)
                .bind(fine.as_str())
                .bind(start)
                .bind(end)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?
                .rows_affected();
            match coarse {
                HistoryGrain::Hour => report.hours = written,
                _ => report.days = written,
            }
        }
        for (grain, keep) in [
            (HistoryGrain::Minute, params.retention.minute),
            (HistoryGrain::Hour, params.retention.hour),
            (HistoryGrain::Day, params.retention.day),
        ] {
            let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
            let before = params.now.timestamp().saturating_sub(keep);
            report.pruned += sqlx::query(&self.prune)
                .bind(grain.as_str())
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?
                .rows_affected();
        }
        // --- stream ops ---
        // Failure-group hours live as long as the history's hours.
        let keep = i64::try_from(params.retention.hour.as_secs()).unwrap_or(i64::MAX);
        report.pruned += sqlx::query(&self.prune_failure_hours)
            .bind(params.now.timestamp().saturating_sub(keep))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?
            .rows_affected();
        tx.commit().await.map_err(store_error)?;
        Ok(report)
    }

    pub(crate) async fn depths(&self, pool: &PgPool) -> StoreResult<Vec<QueueDepth>> {
        let rows = sqlx::query(&self.depths)
            .fetch_all(pool)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok(QueueDepth {
                    queue: row.try_get(0).map_err(store_error)?,
                    due: row.try_get(1).map_err(store_error)?,
                    scheduled: row.try_get(2).map_err(store_error)?,
                    oldest_due_at: row.try_get(3).map_err(store_error)?,
                })
            })
            .collect()
    }
}
