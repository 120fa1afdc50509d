//! Durable history (issue 13): the `stoker_history` table of migration 9, and queue depths.
//!
//! Buckets are seconds since the Unix epoch; every statement reads or writes a range of the
//! table's primary key `(grain, bucket, ...)`.

use sqlx::{Connection, SqliteConnection};
use stoker_core::{
    HistoryDelta, HistoryGrain, HistoryMetric, HistoryQueryParams, HistoryRollupParams,
    HistoryRollupReport, HistoryValue, QueueDepth, StoreError, StoreResult, GAUGE_NAMES_SQL,
};

use crate::error::db_error;
use crate::row::{column, from_micros, to_json};

/// Adds each `[bucket, queue, kind, tenant, metric, value]` of the JSON array `?1` to its
/// minute row: counters add, gauges keep the highest sample. `WHERE true` tells SQLite's
/// parser that `ON CONFLICT` belongs to the insert.
fn record_sql() -> String {
    format!(
        "INSERT INTO stoker_history (grain, bucket, queue, kind, tenant, metric, value) \
         SELECT 'minute', value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                value ->> 5 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (grain, bucket, queue, kind, tenant, metric) DO UPDATE SET value = \
           CASE WHEN excluded.metric IN {GAUGE_NAMES_SQL} THEN MAX(value, excluded.value) \
                ELSE value + excluded.value END"
    )
}

/// One grain's buckets in `[?2, ?3)`, merged over the labels in scope (`?4` queue, `?5`
/// kind, `?6` tenant; null for any). Depth sums over queues; the oldest age is the highest.
const QUERY_SQL: &str = "
SELECT bucket, metric,
       CASE WHEN metric = 'oldest_age_ms' THEN MAX(value) ELSE SUM(value) END
FROM stoker_history
WHERE grain = ?1 AND bucket >= ?2 AND bucket < ?3
  AND (?4 IS NULL OR queue = ?4) AND (?5 IS NULL OR kind = ?5) AND (?6 IS NULL OR tenant = ?6)
GROUP BY bucket, metric
ORDER BY bucket, metric";

/// Where a roll-up into grain `?1` starts: its latest bucket (which may have been partial),
/// or the earliest row of the finer grain `?2`.
const ROLLUP_START_SQL: &str = "
SELECT COALESCE(
    (SELECT MAX(bucket) FROM stoker_history WHERE grain = ?1),
    (SELECT MIN(bucket) FROM stoker_history WHERE grain = ?2))";

/// Recomputes grain `?1` (width `?2` seconds) from the finer grain `?3` for buckets in
/// `[?4, ?5)`: counters sum, gauges keep the highest.
fn rollup_sql() -> String {
    format!(
        "INSERT INTO stoker_history (grain, bucket, queue, kind, tenant, metric, value) \
         SELECT ?1, bucket / ?2 * ?2, queue, kind, tenant, metric, \
                CASE WHEN metric IN {GAUGE_NAMES_SQL} THEN MAX(value) ELSE SUM(value) END \
         FROM stoker_history WHERE grain = ?3 AND bucket >= ?4 AND bucket < ?5 \
         GROUP BY 2, 3, 4, 5, 6 \
         ON CONFLICT (grain, bucket, queue, kind, tenant, metric) \
         DO UPDATE SET value = excluded.value"
    )
}

const PRUNE_SQL: &str = "DELETE FROM stoker_history WHERE grain = ?1 AND bucket < ?2";

/// Waiting jobs per queue: due ones from outside the schedule, scheduled ones inside it. A
/// walk of the covering `stoker_jobs_waiting_idx` (migration 23) that reads no table row: the
/// state list is the index's own condition (so SQLite may use it), and blocked jobs are then
/// left out.
pub(crate) const DEPTHS_SQL: &str = "
SELECT queue, SUM(scheduled = 0), SUM(scheduled = 1),
       MIN(CASE WHEN scheduled = 0 THEN run_at END)
FROM stoker_jobs INDEXED BY stoker_jobs_waiting_idx
WHERE (state = 'blocked' OR state = 'available' OR state = 'retryable') AND state <> 'blocked'
GROUP BY queue
ORDER BY queue";

pub(crate) async fn record(
    conn: &mut SqliteConnection,
    deltas: &[HistoryDelta],
) -> StoreResult<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, &str, &str, &str, String, i64)> = deltas
        .iter()
        .map(|d| {
            (
                HistoryGrain::Minute.truncate(d.minute).timestamp(),
                d.queue.as_str(),
                d.kind.as_str(),
                d.tenant.as_deref().unwrap_or(""),
                d.metric.name(),
                d.value,
            )
        })
        .collect();
    sqlx::query(&record_sql())
        .bind(to_json(&rows)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn query(
    conn: &mut SqliteConnection,
    params: &HistoryQueryParams,
) -> StoreResult<Vec<HistoryValue>> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(QUERY_SQL)
        .bind(params.grain.as_str())
        .bind(params.from.timestamp())
        .bind(params.to.timestamp())
        .bind(params.scope.queue.as_deref())
        .bind(params.scope.kind.as_deref())
        .bind(params.scope.tenant.as_deref())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|(bucket, metric, value)| {
            // A metric a newer build wrote is skipped, not an error.
            let metric = HistoryMetric::parse(&metric)?;
            let bucket = from_micros("bucket", bucket.saturating_mul(1_000_000)).ok()?;
            Some(HistoryValue {
                bucket,
                metric,
                value,
            })
        })
        .collect())
}

pub(crate) async fn rollup(
    conn: &mut SqliteConnection,
    params: &HistoryRollupParams,
) -> StoreResult<HistoryRollupReport> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let mut report = HistoryRollupReport::default();
    for (fine, coarse) in [
        (HistoryGrain::Minute, HistoryGrain::Hour),
        (HistoryGrain::Hour, HistoryGrain::Day),
    ] {
        let width = coarse.seconds();
        let start: Option<i64> = sqlx::query_scalar(ROLLUP_START_SQL)
            .bind(coarse.as_str())
            .bind(fine.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some(start) = start else { continue };
        let start = start.div_euclid(width) * width;
        let end = coarse.truncate(params.now).timestamp() + width;
        let written = sqlx::query(&rollup_sql())
            .bind(coarse.as_str())
            .bind(width)
            .bind(fine.as_str())
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
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
        report.pruned += sqlx::query(PRUNE_SQL)
            .bind(grain.as_str())
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
    }
    // --- stream ops ---
    // Failure-group hours live as long as the history's hours.
    let keep = i64::try_from(params.retention.hour.as_secs()).unwrap_or(i64::MAX);
    report.pruned += sqlx::query(crate::failures::HOUR_PRUNE_SQL)
        .bind(params.now.timestamp().saturating_sub(keep))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
    tx.commit().await.map_err(db_error)?;
    Ok(report)
}

pub(crate) async fn depths(conn: &mut SqliteConnection) -> StoreResult<Vec<QueueDepth>> {
    let rows = sqlx::query(DEPTHS_SQL)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let oldest: Option<i64> = column(row, 3, "run_at")?;
            Ok(QueueDepth {
                queue: column(row, 0, "queue")?,
                due: column(row, 1, "due")?,
                scheduled: column(row, 2, "scheduled")?,
                oldest_due_at: oldest
                    .map(|micros| from_micros("run_at", micros))
                    .transpose()?,
            })
        })
        .collect::<Result<_, StoreError>>()
}

// --- stream tenant ---

/// [`DEPTHS_SQL`] counting only the jobs of tenant `?1` (issue 17).
const DEPTHS_TENANT_SQL: &str = "
SELECT queue, SUM(scheduled = 0), SUM(scheduled = 1),
       MIN(CASE WHEN scheduled = 0 THEN run_at END)
FROM stoker_jobs
WHERE state IN ('available', 'retryable') AND tenant = ?1
GROUP BY queue
ORDER BY queue";

/// Each queue's waiting jobs of `tenant`; see
/// [`Store::queue_depths_tenant`](stoker_core::Store::queue_depths_tenant).
pub(crate) async fn depths_tenant(
    conn: &mut SqliteConnection,
    tenant: &str,
) -> StoreResult<Vec<QueueDepth>> {
    let rows = sqlx::query(DEPTHS_TENANT_SQL)
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let oldest: Option<i64> = column(row, 3, "run_at")?;
            Ok(QueueDepth {
                queue: column(row, 0, "queue")?,
                due: column(row, 1, "due")?,
                scheduled: column(row, 2, "scheduled")?,
                oldest_due_at: oldest
                    .map(|micros| from_micros("run_at", micros))
                    .transpose()?,
            })
        })
        .collect::<Result<_, StoreError>>()
}

#[cfg(test)]
mod tests {
    use sqlx::Row;
    use stoker_core::Store;
    use tempfile::TempDir;

    use crate::SqliteStore;

    /// The history's reads are ranges of its primary key, even over a large, analyzed table:
    /// 300,000 rows (two weeks of minutes for 10 queues, 2 metrics each, and their hours).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_reads_use_the_primary_key() {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(dir.path().join("h.db")).await.unwrap();
        store.migrate().await.unwrap();
        let mut conn = store.write_connection().await.unwrap();
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < 14999)
             INSERT INTO stoker_history (grain, bucket, queue, kind, tenant, metric, value)
             SELECT 'minute', 1893456000 + n * 60, 'q' || q.value, 'k', '', m.value, 1
             FROM g, json_each('[0,1,2,3,4,5,6,7,8,9]') AS q,
                  json_each('[\"completed\",\"run_03\"]') AS m",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
        for (sql, binds) in [
            (super::QUERY_SQL.to_owned(), 6),
            (super::ROLLUP_START_SQL.to_owned(), 2),
            (super::rollup_sql(), 5),
            (super::PRUNE_SQL.to_owned(), 2),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut query = sqlx::query(&explain);
            let values: [Option<String>; 6] = [
                Some("minute".into()),
                Some("1893456000".into()),
                Some("1893459600".into()),
                Some("q1".into()),
                None,
                None,
            ];
            for value in values.into_iter().take(binds) {
                query = query.bind(value);
            }
            let plan = query
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(plan.contains("USING PRIMARY KEY (grain=?"), "{sql}\n{plan}");
            assert!(!plan.contains("SCAN stoker_history"), "{sql}\n{plan}");
        }
    }
}
