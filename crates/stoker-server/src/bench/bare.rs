//! The bare-SQL ceiling: the job lifecycle (bulk insert; claim a batch; bulk complete) in the
//! fewest statements each database allows, measured in the same run as Stoker, so every Stoker
//! figure reads as a fraction of what the database itself can do.

use std::time::Instant;

use super::report::{Figure, Report};
use super::store::{FreshKind, Target};
use super::{BenchArgs, BenchError};

const BATCH: usize = 10_000;

pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let one_at_a_time = jobs.min(5_000);
    let mut bulk = Vec::new();
    let mut single = Vec::new();
    let mut drain50 = Vec::new();
    let mut drain100 = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        match &fresh.kind {
            FreshKind::Postgres(store) => {
                let pg = Postgres {
                    pool: store.pool().clone(),
                    table: format!(
                        "\"{}\".bare_jobs",
                        fresh.schema.as_deref().unwrap_or("public")
                    ),
                };
                pg.create().await?;
                single.push(pg.insert_one_at_a_time(one_at_a_time).await?);
                pg.reset().await?;
                bulk.push(pg.insert_bulk(jobs).await?);
                drain50.push(pg.drain(jobs, 50, 1).await?);
                pg.insert_bulk(jobs).await?;
                drain100.push(pg.drain(jobs, 100, 4).await?);
            }
            FreshKind::Sqlite(store, _) => {
                let mut lite = Sqlite {
                    conn: store.write_connection().await?,
                };
                lite.create().await?;
                single.push(lite.insert_one_at_a_time(one_at_a_time).await?);
                lite.reset().await?;
                bulk.push(lite.insert_bulk(jobs).await?);
                drain50.push(lite.drain(jobs, 50).await?);
                lite.insert_bulk(jobs).await?;
                drain100.push(lite.drain(jobs, 100).await?);
            }
        }
        fresh.remove().await?;
    }
    report.add(Figure::new(
        "bare",
        format!("insert {one_at_a_time} one at a time"),
        "rows/s",
        single,
    ));
    report.add(Figure::new(
        "bare",
        format!("insert {jobs} in bulk ({BATCH} per statement)"),
        "rows/s",
        bulk,
    ));
    let drain100_name = match target {
        Target::Postgres { .. } => format!("drain {jobs}, 4 connections claiming 100 each"),
        Target::Sqlite { .. } => format!("drain {jobs}, claiming 100 at a time"),
    };
    report.add(Figure::new(
        "bare",
        format!("drain {jobs}, one connection claiming 50"),
        "jobs/s",
        drain50,
    ));
    report.add(Figure::new("bare", drain100_name, "jobs/s", drain100));
    Ok(())
}

fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

struct Postgres {
    pool: sqlx::PgPool,
    table: String,
}

impl Postgres {
    async fn create(&self) -> Result<(), BenchError> {
        let table = &self.table;
        sqlx::query(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, queue text NOT NULL, \
             args jsonb NOT NULL, state smallint NOT NULL DEFAULT 0, \
             priority smallint NOT NULL DEFAULT 0, run_at timestamptz NOT NULL DEFAULT now())"
        ))
        .execute(&self.pool)
        .await?;
        sqlx::query(&format!(
            "CREATE INDEX ON {table} (queue, priority DESC, run_at, id) WHERE state = 0"
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reset(&self) -> Result<(), BenchError> {
        sqlx::query(&format!("TRUNCATE {}", self.table))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_one_at_a_time(&self, count: usize) -> Result<f64, BenchError> {
        let sql = format!(
            "INSERT INTO {} (queue, args) VALUES ('bench', $1)",
            self.table
        );
        let started = Instant::now();
        for n in 0..count {
            sqlx::query(&sql)
                .bind(serde_json::json!({ "n": n }))
                .execute(&self.pool)
                .await?;
        }
        Ok(rate(count, started))
    }

    async fn insert_bulk(&self, count: usize) -> Result<f64, BenchError> {
        let sql = format!(
            "INSERT INTO {} (queue, args) SELECT 'bench', a FROM unnest($1::jsonb[]) AS a",
            self.table
        );
        let started = Instant::now();
        let mut start = 0;
        while start < count {
            let end = (start + BATCH).min(count);
            let args: Vec<serde_json::Value> = (start..end)
                .map(|n| serde_json::json!({ "n": n }))
                .collect();
            sqlx::query(&sql).bind(args).execute(&self.pool).await?;
            start = end;
        }
        Ok(rate(count, started))
    }

    /// Claims batches of `batch` on each of `connections` connections until the table is
    /// drained, completing each batch in one statement.
    async fn drain(&self, count: usize, batch: i64, connections: usize) -> Result<f64, BenchError> {
        let claim = format!(
            "UPDATE {t} SET state = 1 WHERE id IN (SELECT id FROM {t} WHERE state = 0 \
             AND queue = 'bench' AND run_at <= now() ORDER BY priority DESC, run_at, id \
             LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id",
            t = self.table
        );
        let complete = format!("UPDATE {} SET state = 2 WHERE id = ANY($1)", self.table);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (pool, claim, complete) = (self.pool.clone(), claim.clone(), complete.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0usize;
                loop {
                    let ids: Vec<i64> = sqlx::query_scalar(&claim)
                        .bind(batch)
                        .fetch_all(&pool)
                        .await?;
                    if ids.is_empty() {
                        return Ok::<_, sqlx::Error>(done);
                    }
                    done += ids.len();
                    sqlx::query(&complete).bind(&ids).execute(&pool).await?;
                }
            }));
        }
        let mut done = 0;
        for task in tasks {
            done += task.await.map_err(std::io::Error::other)??;
        }
        debug_assert_eq!(done, count);
        Ok(rate(done, started))
    }
}

/// The bare lifecycle on the store's writer connection, held for the whole run: one
/// connection, as the store writes, without a pool's hand-offs around each statement.
struct Sqlite {
    conn: stoker::sqlite::WriteConnection,
}

impl Sqlite {
    async fn create(&mut self) -> Result<(), BenchError> {
        sqlx::query(
            "CREATE TABLE bare_jobs (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, \
             args TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0, \
             priority INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL DEFAULT 0)",
        )
        .execute(&mut *self.conn)
        .await?;
        sqlx::query(
            "CREATE INDEX bare_jobs_fetch ON bare_jobs (queue, priority DESC, run_at, id) \
             WHERE state = 0",
        )
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BenchError> {
        sqlx::query("DELETE FROM bare_jobs")
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn insert_one_at_a_time(&mut self, count: usize) -> Result<f64, BenchError> {
        let started = Instant::now();
        for n in 0..count {
            sqlx::query("INSERT INTO bare_jobs (queue, args) VALUES ('bench', ?1)")
                .bind(serde_json::json!({ "n": n }).to_string())
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(rate(count, started))
    }

    async fn insert_bulk(&mut self, count: usize) -> Result<f64, BenchError> {
        let started = Instant::now();
        let mut start = 0;
        while start < count {
            let end = (start + BATCH).min(count);
            let args: Vec<serde_json::Value> = (start..end)
                .map(|n| serde_json::json!({ "n": n }))
                .collect();
            sqlx::query(
                "INSERT INTO bare_jobs (queue, args) \
                 SELECT 'bench', value FROM json_each(?1)",
            )
            .bind(serde_json::Value::Array(args).to_string())
            .execute(&mut *self.conn)
            .await?;
            start = end;
        }
        Ok(rate(count, started))
    }

    async fn drain(&mut self, count: usize, batch: i64) -> Result<f64, BenchError> {
        let started = Instant::now();
        let mut done = 0;
        loop {
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE bare_jobs SET state = 1 WHERE id IN (SELECT id FROM bare_jobs \
                 WHERE state = 0 AND queue = 'bench' AND run_at <= ?1 \
                 ORDER BY priority DESC, run_at, id LIMIT ?2) RETURNING id",
            )
            .bind(chrono::Utc::now().timestamp_micros())
            .bind(batch)
            .fetch_all(&mut *self.conn)
            .await?;
            if ids.is_empty() {
                break;
            }
            done += ids.len();
            sqlx::query(
                "UPDATE bare_jobs SET state = 2 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(serde_json::to_string(&ids).expect("ids serialize"))
            .execute(&mut *self.conn)
            .await?;
        }
        debug_assert_eq!(done, count);
        Ok(rate(done, started))
    }
}
