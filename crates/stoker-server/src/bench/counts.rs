//! The counts workload (issue 13, items 1, 2 and 5).
//!
//! - On PostgreSQL, the W2 drain at concurrency 50 in A/B pairs in one run (the order
//!   alternates between runs so drift hits both sides): A counts as schema version 8 did
//!   (finished states only, each statement upserting the counter rows in place), B as version
//!   10 does (every state per tenant, as delta rows folded later). The only difference between
//!   the sides is the trigger function, replaced in A's fresh schema before it drains.
//! - On either store, `--scale-rows` jobs (90 % completed, the rest discarded, cancelled, due,
//!   scheduled and retryable, over 5 queues, 20 kinds and 10 tenants) written straight into a
//!   fresh table, then the stats (counts by state), series and failure-group queries timed
//!   through the client: none of them may read the jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use stoker::core::FailureGroupListParams;
use stoker::{Client, HistoryScope, JobContext, JobError, SeriesRequest, Worker};

use super::report::{Figure, Report};
use super::store::{Fresh, FreshKind, Target};
use super::workloads::{enqueue_bulk, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;
/// Rows written per fill statement.
const FILL_CHUNK: usize = 500_000;
/// Timed calls per query per run: the median is kept.
const QUERY_CALLS: usize = 5;

/// Schema version 8's counting, for side A: finished states only, upserted in place. Its
/// conflict target names the tenant column version 10 added to the key (always '' here).
const V8_COUNTING: &str = "
CREATE OR REPLACE FUNCTION {schema}.stoker_job_counts_apply() RETURNS trigger
LANGUAGE plpgsql
SET search_path = {schema}
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM new_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, count(*) FROM new_rows
        WHERE state IN ('completed', 'discarded', 'cancelled')
        GROUP BY queue, kind, state ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSIF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM old_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, -count(*) FROM old_rows
        WHERE state IN ('completed', 'discarded', 'cancelled')
        GROUP BY queue, kind, state ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSE
        IF NOT EXISTS (SELECT 1 FROM new_rows
                       WHERE state IN ('completed', 'discarded', 'cancelled'))
           AND NOT EXISTS (SELECT 1 FROM old_rows
                           WHERE state IN ('completed', 'discarded', 'cancelled')) THEN
            RETURN NULL;
        END IF;
        INSERT INTO stoker_job_counts AS c (queue, kind, state, count)
        SELECT queue, kind, state, sum(delta) FROM (
            SELECT queue, kind, state, 1 AS delta FROM new_rows
            WHERE state IN ('completed', 'discarded', 'cancelled')
            UNION ALL
            SELECT queue, kind, state, -1 AS delta FROM old_rows
            WHERE state IN ('completed', 'discarded', 'cancelled')
        ) d
        GROUP BY queue, kind, state HAVING sum(delta) <> 0 ORDER BY queue, kind, state
        ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = c.count + EXCLUDED.count;
    END IF;
    RETURN NULL;
END
$$";

/// Drains `jobs` no-op jobs with one worker at concurrency 50; returns jobs/s.
async fn drain(fresh: &Fresh, jobs: usize) -> Result<f64, BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    enqueue_bulk(&client, jobs).await?;
    let worker = Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, CONCURRENCY)
        .handler_fn("noop", |_args: Value, _ctx: JobContext| async {
            Ok::<_, JobError>(Value::Null)
        })
        .maintenance(false)
        .build()?;
    let mut events = worker.events();
    let started = Instant::now();
    let handle = worker.start().await?;
    wait_completed(&mut events, jobs, "counts drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// The A/B pairs (PostgreSQL only).
async fn pairs(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let (mut old, mut new, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for current in order {
            let fresh = target.fresh().await?;
            let measured = async {
                if !current {
                    let (Some(store), Some(schema)) = (fresh.postgres(), &fresh.schema) else {
                        return Err(BenchError::Usage("A/B pairs need PostgreSQL".into()));
                    };
                    let sql = V8_COUNTING.replace("{schema}", &format!("\"{schema}\""));
                    sqlx::raw_sql(&sql).execute(store.pool()).await?;
                }
                drain(&fresh, jobs).await
            }
            .await;
            fresh.remove().await?;
            pair[usize::from(current)] = measured?;
        }
        old.push(pair[0]);
        new.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    let name = |what: &str| format!("drain {jobs}, concurrency {CONCURRENCY}, {what}");
    report.add(Figure::new(
        "C",
        name("v8 counting (finished, upserts)"),
        "jobs/s",
        old,
    ));
    report.add(Figure::new(
        "C",
        name("v10 counting (every state, deltas)"),
        "jobs/s",
        new,
    ));
    report.add(Figure::new("C", name("v10 ÷ v8, per pair"), "ratio", ratio));
    Ok(())
}

/// Writes `rows` jobs straight into the fresh store's table, a chunk per statement.
pub(crate) async fn fill(fresh: &Fresh, rows: usize) -> Result<(), BenchError> {
    let mut start = 0;
    match &fresh.kind {
        FreshKind::Postgres(store) => {
            let schema = fresh.schema.as_deref().unwrap_or_default();
            let sql = format!(
                "INSERT INTO \"{schema}\".stoker_jobs (kind, queue, args, state, max_attempts, \
                     run_at, created_at, attempted_at, finished_at, attempt, tenant, scheduled) \
                 SELECT 'kind' || (g % 20), 'queue' || (g % 5), '{{}}', st, 5, \
                        CASE WHEN st = 'available' AND g % 3 = 0 \
                             THEN now() + interval '1 day' ELSE now() - interval '1 hour' END, \
                        now() - interval '2 hours', \
                        CASE WHEN st IN ('available') THEN NULL \
                             ELSE now() - interval '90 minutes' END, \
                        CASE WHEN st IN ('completed', 'discarded', 'cancelled') \
                             THEN now() - interval '1 hour' END, \
                        CASE WHEN st = 'available' THEN 0 ELSE 1 END, \
                        CASE WHEN g % 10 = 0 THEN NULL ELSE 'tenant' || (g % 10) END, \
                        st = 'available' AND g % 3 = 0 \
                 FROM (SELECT g, CASE WHEN g % 100 < 90 THEN 'completed' \
                                      WHEN g % 100 < 95 THEN 'discarded' \
                                      WHEN g % 100 < 96 THEN 'cancelled' \
                                      WHEN g % 100 < 99 THEN 'available' \
                                      ELSE 'retryable' END AS st \
                       FROM generate_series($1::int8, $2::int8) g) x"
            );
            while start < rows {
                let end = (start + FILL_CHUNK).min(rows);
                sqlx::query(&sql)
                    .bind(start as i64)
                    .bind(end as i64 - 1)
                    .execute(store.pool())
                    .await?;
                start = end;
            }
            sqlx::query(&format!("ANALYZE \"{schema}\".stoker_jobs"))
                .execute(store.pool())
                .await?;
        }
        FreshKind::Sqlite(_, path) => {
            let url = format!("sqlite://{}", path.display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let now = chrono::Utc::now().timestamp_micros();
            let (hour, day) = (3_600_000_000_i64, 86_400_000_000_i64);
            let sql = "
                INSERT INTO stoker_jobs (kind, queue, args, state, priority, max_attempts,
                    run_at, created_at, attempted_at, finished_at, attempt, tenant, scheduled)
                SELECT 'kind' || (g % 20), 'queue' || (g % 5), '{}', st, 0, 5,
                       CASE WHEN st = 'available' AND g % 3 = 0 THEN ?3 + ?5 ELSE ?3 - ?4 END,
                       ?3 - 2 * ?4,
                       CASE WHEN st = 'available' THEN NULL ELSE ?3 - ?4 - ?4 / 2 END,
                       CASE WHEN st IN ('completed', 'discarded', 'cancelled')
                            THEN ?3 - ?4 END,
                       CASE WHEN st = 'available' THEN 0 ELSE 1 END,
                       CASE WHEN g % 10 = 0 THEN NULL ELSE 'tenant' || (g % 10) END,
                       st = 'available' AND g % 3 = 0
                FROM (WITH RECURSIVE s(g) AS (SELECT ?1 UNION ALL SELECT g + 1 FROM s WHERE g < ?2)
                      SELECT g, CASE WHEN g % 100 < 90 THEN 'completed'
                                     WHEN g % 100 < 95 THEN 'discarded'
                                     WHEN g % 100 < 96 THEN 'cancelled'
                                     WHEN g % 100 < 99 THEN 'available'
                                     ELSE 'retryable' END AS st
                      FROM s)";
            while start < rows {
                let end = (start + FILL_CHUNK).min(rows);
                sqlx::query(sql)
                    .bind(start as i64)
                    .bind(end as i64 - 1)
                    .bind(now)
                    .bind(hour)
                    .bind(day)
                    .execute(&mut conn)
                    .await?;
                start = end;
            }
            // The store keeps SQLite's finished counts itself: rows written by hand are counted
            // the way migration 12 counts them.
            sqlx::raw_sql(
                "DELETE FROM stoker_job_counts;
                 INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
                 SELECT queue, kind, COALESCE(tenant, ''), state, COUNT(*) FROM stoker_jobs
                 WHERE state IN ('completed', 'discarded', 'cancelled')
                 GROUP BY queue, kind, COALESCE(tenant, ''), state;
                 ANALYZE;",
            )
            .execute(&mut conn)
            .await?;
            conn.close().await?;
        }
    }
    Ok(())
}

/// The median of `QUERY_CALLS` timings of `query`, in milliseconds.
async fn time_ms<F, Fut, T>(mut query: F) -> Result<f64, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BenchError>>,
{
    let mut times = Vec::with_capacity(QUERY_CALLS);
    for _ in 0..QUERY_CALLS {
        let started = Instant::now();
        query().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The queries at scale, on either store.
async fn at_scale(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let rows = args.scale_rows;
    let (mut stats_ms, mut series_ms, mut groups_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let measured = async {
            fill(&fresh, rows).await?;
            let client = Client::new(Arc::clone(&fresh.store));
            // The first read folds the fill's deltas (PostgreSQL); the figures are of reads
            // after it, as a dashboard polling every few seconds sees them.
            let stats = client.stats().await?;
            let counted = stats.totals.total();
            if counted != rows as i64 {
                return Err(BenchError::Usage(format!(
                    "the counts say {counted} jobs after writing {rows}"
                )));
            }
            let stats = time_ms(|| async { Ok::<_, BenchError>(client.stats().await?) }).await?;
            let series = time_ms(|| async {
                Ok::<_, BenchError>(
                    client
                        .series(&SeriesRequest {
                            range: Duration::from_secs(86_400),
                            step: Duration::from_secs(3600),
                            end: None,
                            scope: HistoryScope::default(),
                            compare: true,
                        })
                        .await?,
                )
            })
            .await?;
            let groups = time_ms(|| async {
                Ok::<_, BenchError>(
                    client
                        .failure_groups(FailureGroupListParams {
                            since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
                            limit: 20,
                            ..FailureGroupListParams::default()
                        })
                        .await?,
                )
            })
            .await?;
            Ok::<_, BenchError>((stats, series, groups))
        }
        .await;
        fresh.remove().await?;
        let (stats, series, groups) = measured?;
        stats_ms.push(stats);
        series_ms.push(series);
        groups_ms.push(groups);
    }
    report.add(Figure::new(
        "C",
        format!("stats (counts by queue, kind, tenant, state) with {rows} jobs"),
        "ms",
        stats_ms,
    ));
    report.add(Figure::new(
        "C",
        format!("series, 24 h at 1 h steps with the previous period, with {rows} jobs"),
        "ms",
        series_ms,
    ));
    report.add(Figure::new(
        "C",
        format!("failure groups of the last hour, with {rows} jobs"),
        "ms",
        groups_ms,
    ));
    Ok(())
}

/// Runs the A/B pairs (PostgreSQL) and the queries at scale.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    if matches!(target, Target::Postgres { .. }) {
        pairs(target, args, report).await?;
    }
    at_scale(target, args, report).await
}
