//! Inserting jobs in bulk: multi-row statements of up to [`CHUNK_ROWS`] jobs each, so a call
//! runs a handful of statements however many jobs it carries.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use stoker_core::{InsertedJob, JobId, JobInsertParams, StoreError, StoreResult};

use crate::error::{db_error, invariant};
use crate::row::{micros, to_json};

/// The most jobs one insert statement carries (14 bound values each, well under SQLite's limit
/// of 32,766 variables per statement). Full chunks reuse one cached prepared statement.
const CHUNK_ROWS: usize = 1024;

/// Chunks of at most this many jobs also keep their prepared statement cached (single-job
/// inserts are the most common); other sizes are prepared once and dropped.
const CACHED_SMALL_ROWS: usize = 8;

/// The most idempotency keys one duplicate lookup carries.
const LOOKUP_CHUNK: usize = 10_000;

/// The highest id ever handed out. Ids are assigned from it explicitly, so each input job's id
/// is known before the insert and duplicates can be told apart without relying on the order
/// in which SQLite inserts rows. `sqlite_sequence` remembers ids of deleted rows, so an id is
/// never reused.
const LAST_ID_SQL: &str = "SELECT MAX(
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'stoker_jobs'), 0),
    COALESCE((SELECT MAX(id) FROM stoker_jobs), 0))";

/// The insert of `rows` jobs: one multi-row `VALUES` statement whose rows each bind `id, kind,
/// queue, args, priority, max_attempts, run_at, unique_key, tenant, metadata, timeout_ms,
/// backoff, created_at, scheduled`. A job whose tenant and key match an existing job is skipped.
fn insert_sql(rows: usize) -> String {
    const HEAD: &str = "INSERT INTO stoker_jobs (id, kind, queue, args, state, priority, \
        attempt, max_attempts, run_at, unique_key, tenant, metadata, errors, timeout_ms, \
        backoff, created_at, scheduled) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, 'available', ?, 0, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?)";
    const TAIL: &str =
        " ON CONFLICT (COALESCE(tenant, ''), unique_key) WHERE unique_key IS NOT NULL DO NOTHING";
    let mut sql = String::with_capacity(HEAD.len() + rows * (ROW.len() + 2) + TAIL.len());
    sql.push_str(HEAD);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(ROW);
    }
    sql.push_str(TAIL);
    sql
}

/// The ids of a chunk that were inserted: those in its id range that exist now.
const INSERTED_IDS_SQL: &str = "SELECT id FROM stoker_jobs WHERE id BETWEEN ?1 AND ?2";

/// The existing jobs for `?1`, a JSON array of `[tenant or '', unique_key]` pairs; returns the
/// pair's index and the job's id.
pub(crate) const EXISTING_SQL: &str = "
SELECT e.key, j.id
FROM json_each(?1) AS e
JOIN stoker_jobs AS j
  ON COALESCE(j.tenant, '') = e.value ->> 0 AND j.unique_key = e.value ->> 1
WHERE j.unique_key IS NOT NULL";

/// What [`insert_jobs`] did.
#[derive(Debug)]
pub(crate) struct Inserted {
    /// One per input job, in order.
    pub(crate) jobs: Vec<InsertedJob>,
    /// The queues that got at least one new job due now, each once.
    pub(crate) queues: Vec<String>,
}

/// Whether a job to run at `run_at` (now when `None`) goes into the schedule rather than
/// straight into the fetch index.
fn is_scheduled(run_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    run_at.is_some_and(|run_at| run_at > now)
}

/// Checks every job, so a bad one rejects the whole batch before anything is written.
pub(crate) fn validate(params: &JobInsertParams) -> StoreResult<()> {
    for job in &params.jobs {
        job.validate(params.max_args_bytes)?;
    }
    Ok(())
}

/// The insert of one job as a statement of its own: the id comes from SQLite, and no row
/// comes back when the job's tenant and key match an existing job.
const INSERT_ONE_SQL: &str = "INSERT INTO stoker_jobs (kind, queue, args, state, priority, \
    attempt, max_attempts, run_at, unique_key, tenant, metadata, errors, timeout_ms, backoff, \
    created_at, scheduled) \
    VALUES (?1, ?2, ?3, 'available', ?4, 0, ?5, ?6, ?7, ?8, ?9, '[]', ?10, ?11, ?12, ?13) \
    ON CONFLICT (COALESCE(tenant, ''), unique_key) WHERE unique_key IS NOT NULL DO NOTHING \
    RETURNING id";

/// Inserts the one job of `params` with a single autocommit statement (plus a read when it
/// turns out to be a duplicate): the common enqueue of one job costs one write, where a batch
/// needs a transaction around its id lookup and chunks.
pub(crate) async fn insert_one(
    conn: &mut SqliteConnection,
    params: &JobInsertParams,
) -> StoreResult<Inserted> {
    let [job] = &params.jobs[..] else {
        return Err(invariant("insert_one takes exactly one job"));
    };
    let scheduled = is_scheduled(job.run_at, params.now);
    let id: Option<i64> = sqlx::query_scalar(INSERT_ONE_SQL)
        .bind(job.kind.as_str())
        .bind(job.queue.as_str())
        .bind(to_json(&job.args)?)
        .bind(job.priority.0)
        .bind(job.max_attempts)
        .bind(job.run_at.map_or(micros(params.now), micros))
        .bind(job.unique_key.as_deref())
        .bind(job.tenant.as_deref())
        .bind(to_json(&job.metadata)?)
        .bind(job.timeout_ms)
        .bind(job.backoff.as_ref().map(to_json).transpose()?)
        .bind(micros(params.now))
        .bind(scheduled)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    if let Some(id) = id {
        let queues = if scheduled {
            Vec::new()
        } else {
            vec![job.queue.clone()]
        };
        return Ok(Inserted {
            jobs: vec![InsertedJob {
                id: JobId(id),
                duplicate: false,
            }],
            queues,
        });
    }
    let key = [(
        job.tenant.as_deref().unwrap_or(""),
        job.unique_key
            .as_deref()
            .ok_or_else(|| invariant("a job without a unique key was not inserted"))?,
    )];
    let found: Vec<(i64, i64)> = sqlx::query_as(EXISTING_SQL)
        .bind(to_json(&key)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let (_, id) = found.first().ok_or_else(|| StoreError::Busy {
        message: format!(
            "the job holding unique key {:?} was deleted while this insert ran; retry",
            key[0].1
        ),
        source: None,
    })?;
    Ok(Inserted {
        jobs: vec![InsertedJob {
            id: JobId(*id),
            duplicate: true,
        }],
        queues: Vec::new(),
    })
}

/// Inserts `params.jobs` on `conn`, which must be inside a transaction that holds (or can
/// take) the write lock; the caller validates first and commits after.
pub(crate) async fn insert_jobs(
    conn: &mut SqliteConnection,
    params: &JobInsertParams,
) -> StoreResult<Inserted> {
    let jobs = &params.jobs;
    if jobs.is_empty() {
        return Ok(Inserted {
            jobs: Vec::new(),
            queues: Vec::new(),
        });
    }

    // A job with the same tenant and key as an earlier one in the batch is a duplicate of it:
    // only the first goes to the database.
    let mut first_with_key: HashMap<(Option<&str>, &str), usize> = HashMap::new();
    let mut same_as: Vec<Option<usize>> = vec![None; jobs.len()];
    let mut batch: Vec<usize> = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        if let Some(key) = job.unique_key.as_deref() {
            match first_with_key.entry((job.tenant.as_deref(), key)) {
                Entry::Occupied(first) => {
                    same_as[index] = Some(*first.get());
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        batch.push(index);
    }

    let last_id: i64 = sqlx::query_scalar(LAST_ID_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    // The job at `position` in `batch` gets id `last_id + 1 + position`.
    let id_of = |position: usize| -> StoreResult<i64> {
        i64::try_from(position)
            .ok()
            .and_then(|position| last_id.checked_add(1)?.checked_add(position))
            .ok_or_else(|| invariant("job ids exhausted"))
    };

    let now = micros(params.now);
    let mut results: Vec<Option<InsertedJob>> = vec![None; jobs.len()];
    for (chunk_index, chunk) in batch.chunks(CHUNK_ROWS).enumerate() {
        let chunk_start = chunk_index * CHUNK_ROWS;
        let sql = insert_sql(chunk.len());
        let mut query = sqlx::query(&sql)
            .persistent(chunk.len() == CHUNK_ROWS || chunk.len() <= CACHED_SMALL_ROWS);
        for (offset, &index) in chunk.iter().enumerate() {
            let job = &jobs[index];
            query = query
                .bind(id_of(chunk_start + offset)?)
                .bind(job.kind.as_str())
                .bind(job.queue.as_str())
                .bind(to_json(&job.args)?)
                .bind(job.priority.0)
                .bind(job.max_attempts)
                .bind(job.run_at.map_or(now, micros))
                .bind(job.unique_key.as_deref())
                .bind(job.tenant.as_deref())
                .bind(to_json(&job.metadata)?)
                .bind(job.timeout_ms)
                .bind(job.backoff.as_ref().map(to_json).transpose()?)
                .bind(now)
                .bind(is_scheduled(job.run_at, params.now));
        }
        let done = query.execute(&mut *conn).await.map_err(db_error)?;
        let first_id = id_of(chunk_start)?;
        if done.rows_affected() == chunk.len() as u64 {
            for (offset, &index) in chunk.iter().enumerate() {
                results[index] = Some(InsertedJob {
                    id: JobId(id_of(chunk_start + offset)?),
                    duplicate: false,
                });
            }
        } else {
            // Some were duplicates of existing jobs: find which of the chunk's ids exist.
            let ids: Vec<i64> = sqlx::query_scalar(INSERTED_IDS_SQL)
                .bind(first_id)
                .bind(id_of(chunk_start + chunk.len() - 1)?)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
            for id in ids {
                let index = usize::try_from(id - first_id)
                    .ok()
                    .and_then(|offset| chunk.get(offset))
                    .ok_or_else(|| invariant("inserted id out of its chunk"))?;
                results[*index] = Some(InsertedJob {
                    id: JobId(id),
                    duplicate: false,
                });
            }
        }
    }

    // The batch jobs left over matched an existing job's tenant and key.
    let conflicts: Vec<usize> = batch
        .iter()
        .copied()
        .filter(|&index| results[index].is_none())
        .collect();
    for lookup in conflicts.chunks(LOOKUP_CHUNK) {
        let keys: Vec<(&str, &str)> = lookup
            .iter()
            .map(|&index| {
                let job = &jobs[index];
                (
                    job.tenant.as_deref().unwrap_or(""),
                    job.unique_key.as_deref().unwrap_or(""),
                )
            })
            .collect();
        let found: Vec<(i64, i64)> = sqlx::query_as(EXISTING_SQL)
            .bind(to_json(&keys)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        for (key, id) in found {
            let index = usize::try_from(key)
                .ok()
                .and_then(|key| lookup.get(key))
                .ok_or_else(|| invariant("duplicate lookup returned an unknown key"))?;
            results[*index] = Some(InsertedJob {
                id: JobId(id),
                duplicate: true,
            });
        }
    }

    for (index, first) in same_as.iter().enumerate() {
        if let Some(first) = *first {
            results[index] = results[first].map(|existing| InsertedJob {
                id: existing.id,
                duplicate: true,
            });
        }
    }

    let mut seen = HashSet::new();
    let mut queues = Vec::new();
    let mut inserted = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.iter().zip(results) {
        let result = result.ok_or_else(|| {
            invariant("a job was neither inserted nor matched to an existing job")
        })?;
        if !result.duplicate
            && !is_scheduled(job.run_at, params.now)
            && seen.insert(job.queue.as_str())
        {
            queues.push(job.queue.clone());
        }
        inserted.push(result);
    }
    Ok(Inserted {
        jobs: inserted,
        queues,
    })
}
