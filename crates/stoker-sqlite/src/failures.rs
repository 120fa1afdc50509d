//! Failure groups, bulk operations by filter and job logs (issue 13) on SQLite.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Connection, QueryBuilder, SqliteConnection};
use stoker_core::{
    error_class, BulkAction, BulkFilter, BulkOpCreateParams, BulkOpListParams, BulkOpRow,
    BulkOpState, BulkOpStepParams, ChangedJob, ErrorKind, FailureGroup, FailureGroupListParams,
    FailureRecord, InvalidInput, JobId, JobLogAppended, JobLogLine, JobLogParams, JobState,
    Priority, StoreError, StoreResult,
};

use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::row::{column, from_micros, micros, parse_state, time_column, to_json};

/// Adds each `[fingerprint, kind, error_kind, message, n, job_id, sample, tenant]` of the JSON
/// array `?2` to its group, seen at `?1`. `WHERE true` tells SQLite's parser that `ON CONFLICT`
/// belongs to the insert. A group's tenant is part of its fingerprint, so it never changes.
pub(crate) const GROUP_UPSERT_SQL: &str = "
INSERT INTO stoker_failure_groups (fingerprint, kind, error_kind, message, count, first_seen,
                                   last_seen, sample_job_id, sample_message, tenant)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?1, ?1, value ->> 5,
       value ->> 6, value ->> 7
FROM json_each(?2) WHERE true
ON CONFLICT (fingerprint) DO UPDATE SET
    count = count + excluded.count,
    last_seen = MAX(last_seen, excluded.last_seen),
    sample_job_id = excluded.sample_job_id,
    sample_message = excluded.sample_message";

/// Marks each job `[id, fingerprint]` of the JSON array `?1` with its latest failure group.
pub(crate) const GROUP_MARK_SQL: &str = "
UPDATE stoker_jobs SET failure_group = f.fingerprint
FROM (SELECT value ->> 0 AS id, value ->> 1 AS fingerprint FROM json_each(?1)) AS f
WHERE stoker_jobs.id = f.id";

const GROUP_COLUMNS: &str = "fingerprint, kind, error_kind, message, count, first_seen, \
                             last_seen, sample_job_id, sample_message, tenant";

const OP_COLUMNS: &str = "id, action, filter, priority, run_at, state, matched, done, skipped, \
                          cursor, max_id, created_by, created_at, updated_at, finished_at";

/// Writes the failed attempts of one acknowledged batch to their groups and marks their jobs,
/// on `conn`, inside the acknowledgement's transaction.
pub(crate) async fn record_failures(
    conn: &mut SqliteConnection,
    records: &[FailureRecord],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    // One row per group: the count of this batch's attempts, the latest as the sample.
    let mut groups: BTreeMap<&str, (&FailureRecord, i64)> = BTreeMap::new();
    for record in records {
        let entry = groups.entry(&record.fingerprint).or_insert((record, 0));
        entry.0 = record;
        entry.1 += 1;
    }
    let rows: Vec<_> = groups
        .values()
        .map(|(r, n)| {
            (
                &r.fingerprint,
                &r.kind,
                error_class(r.error_kind),
                &r.message,
                n,
                r.job_id.0,
                &r.sample,
                &r.tenant,
            )
        })
        .collect();
    sqlx::query(GROUP_UPSERT_SQL)
        .bind(micros(now))
        .bind(to_json(&rows)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    // --- stream ops ---
    let hours: Vec<_> = groups.values().map(|(r, n)| (&r.fingerprint, n)).collect();
    sqlx::query(HOUR_UPSERT_SQL)
        .bind(now.timestamp().div_euclid(3600) * 3600)
        .bind(to_json(&hours)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let marks: Vec<_> = records
        .iter()
        .map(|r| (r.job_id.0, &r.fingerprint))
        .collect();
    sqlx::query(GROUP_MARK_SQL)
        .bind(to_json(&marks)?)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

fn parse_error_kind(text: &str) -> StoreResult<ErrorKind> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|err| StoreError::Corrupt(format!("error_kind {text:?}: {err}")))
}

fn group_from_row(row: &SqliteRow) -> StoreResult<FailureGroup> {
    Ok(FailureGroup {
        fingerprint: column(row, 0, "fingerprint")?,
        kind: column(row, 1, "kind")?,
        error_kind: parse_error_kind(column(row, 2, "error_kind")?)?,
        message: column(row, 3, "message")?,
        count: column(row, 4, "count")?,
        first_seen: time_column(row, 5, "first_seen")?,
        last_seen: time_column(row, 6, "last_seen")?,
        sample_job_id: JobId(column(row, 7, "sample_job_id")?),
        sample_message: column(row, 8, "sample_message")?,
        tenant: column(row, 9, "tenant")?,
    })
}

/// Lists failure groups, most recently seen first.
pub(crate) async fn group_list(
    conn: &mut SqliteConnection,
    params: &FailureGroupListParams,
) -> StoreResult<Vec<FailureGroup>> {
    params.validate()?;
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM stoker_failure_groups \
         WHERE (?1 IS NULL OR last_seen >= ?1) AND (?2 IS NULL OR first_seen < ?2) \
           AND (?3 IS NULL OR kind = ?3) AND (?5 IS NULL OR tenant = ?5) \
         ORDER BY last_seen DESC, fingerprint LIMIT ?4"
    );
    let rows = sqlx::query(&sql)
        .bind(params.since.map(micros))
        .bind(params.until.map(micros))
        .bind(&params.kind)
        .bind(i64::from(params.limit))
        .bind(&params.tenant)
        .fetch_all(conn)
        .await
        .map_err(db_error)?;
    rows.iter().map(group_from_row).collect()
}

/// One failure group.
pub(crate) async fn group_get(
    conn: &mut SqliteConnection,
    fingerprint: &str,
) -> StoreResult<Option<FailureGroup>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM stoker_failure_groups WHERE fingerprint = ?1");
    sqlx::query(&sql)
        .bind(fingerprint)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(group_from_row)
        .transpose()
}

/// Adds the filter's criteria (`AND ...`) to a query over `stoker_jobs`: the search's own
/// translation, so a bulk operation acts on exactly what a search shows.
fn push_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &BulkFilter) {
    crate::search::push_criteria(query, filter);
}

fn op_from_row(row: &SqliteRow) -> StoreResult<BulkOpRow> {
    let action: String = column(row, 1, "action")?;
    let filter: String = column(row, 2, "filter")?;
    let state: String = column(row, 5, "state")?;
    let corrupt = |err: InvalidInput| StoreError::Corrupt(err.to_string());
    Ok(BulkOpRow {
        id: column(row, 0, "id")?,
        action: action.parse().map_err(corrupt)?,
        filter: serde_json::from_str(&filter)
            .map_err(|err| StoreError::Corrupt(format!("bulk operation filter: {err}")))?,
        priority: column::<Option<i16>>(row, 3, "priority")?.map(Priority),
        run_at: column::<Option<i64>>(row, 4, "run_at")?
            .map(|at| from_micros("run_at", at))
            .transpose()?,
        state: state.parse().map_err(corrupt)?,
        matched: column(row, 6, "matched")?,
        done: column(row, 7, "done")?,
        skipped: column(row, 8, "skipped")?,
        cursor: column(row, 9, "cursor")?,
        max_id: column(row, 10, "max_id")?,
        created_by: column(row, 11, "created_by")?,
        created_at: time_column(row, 12, "created_at")?,
        updated_at: time_column(row, 13, "updated_at")?,
        finished_at: column::<Option<i64>>(row, 14, "finished_at")?
            .map(|at| from_micros("finished_at", at))
            .transpose()?,
    })
}

/// Creates a bulk operation after checking that its filter matches a job.
pub(crate) async fn op_create(
    conn: &mut SqliteConnection,
    params: &BulkOpCreateParams,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<BulkOpRow> {
    params.validate()?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let mut first = QueryBuilder::<Sqlite>::new("SELECT id FROM stoker_jobs WHERE true");
    push_filter(&mut first, &params.filter);
    first.push(" ORDER BY id LIMIT 1");
    let first: Option<i64> = first
        .build_query_scalar()
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    let Some(first) = first else {
        return Err(StoreError::NotFound("job matching the filter".to_owned()));
    };
    let max_id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM stoker_jobs")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let sql = format!(
        "INSERT INTO stoker_bulk_ops (action, filter, priority, run_at, state, cursor, max_id, \
                                      created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?8) RETURNING {OP_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(params.action.as_str())
        .bind(to_json(&params.filter)?)
        .bind(params.priority.map(|p| p.0))
        .bind(params.run_at.map(micros))
        .bind(first - 1)
        .bind(max_id)
        .bind(&params.created_by)
        .bind(micros(params.now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let op = op_from_row(&row)?;
    // The row names the operation and the jobs it matched (issue 17).
    let audit = audit.map(|entry| stoker_core::AuditEntry {
        target: Some(format!("op {}", op.id)),
        affected: Some(op.matched),
        ..entry
    });
    crate::store::audit_insert_on(&mut tx, audit.as_ref()).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(op)
}

/// One bulk operation.
pub(crate) async fn op_get(conn: &mut SqliteConnection, id: i64) -> StoreResult<Option<BulkOpRow>> {
    let sql = format!("SELECT {OP_COLUMNS} FROM stoker_bulk_ops WHERE id = ?1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(op_from_row)
        .transpose()
}

/// Bulk operations, newest first.
pub(crate) async fn op_list(
    conn: &mut SqliteConnection,
    params: &BulkOpListParams,
) -> StoreResult<Vec<BulkOpRow>> {
    params.validate()?;
    let mut query = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {OP_COLUMNS} FROM stoker_bulk_ops WHERE true"
    ));
    if !params.states.is_empty() {
        query.push(" AND state IN (");
        let mut list = query.separated(", ");
        for state in &params.states {
            list.push_bind(state.as_str());
        }
        query.push(")");
    }
    if let Some(before) = params.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(params.limit));
    let rows = query.build().fetch_all(conn).await.map_err(db_error)?;
    rows.iter().map(op_from_row).collect()
}

/// Aborts a running operation.
pub(crate) async fn op_abort(
    conn: &mut SqliteConnection,
    id: i64,
    now: DateTime<Utc>,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<BulkOpRow> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let sql = format!(
        "UPDATE stoker_bulk_ops SET state = 'aborted', updated_at = ?2, finished_at = ?2 \
         WHERE id = ?1 AND state = 'running' RETURNING {OP_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
    match row {
        Some(row) => {
            let op = op_from_row(&row)?;
            // The row counts the jobs done before the abort (issue 17).
            let audit = audit.map(|entry| stoker_core::AuditEntry {
                affected: Some(op.done),
                ..entry
            });
            crate::store::audit_insert_on(&mut tx, audit.as_ref()).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(op)
        }
        None => match op_get(&mut tx, id).await? {
            None => Err(StoreError::NotFound(format!("bulk operation {id}"))),
            Some(op) => Err(StoreError::Conflict(format!(
                "bulk operation {id} is already {}: only a running operation can be aborted",
                op.state.as_str()
            ))),
        },
    }
}

/// What one batch did besides its row: the events the store sends after the commit.
#[derive(Debug, Default)]
pub(crate) struct StepEvents {
    /// Queues that got due jobs (retry, or a `run_at` moved to now or earlier).
    pub(crate) available: Vec<String>,
    /// Running jobs that got a cancel request.
    pub(crate) cancel_requested: Vec<JobId>,
    // --- stream wake ---
    /// Jobs with dependents that the batch finished (cancel, discard): the trigger resolved
    /// their edges, which may have released blocked jobs (issue 18).
    pub(crate) finished_parents: Vec<i64>,
    // --- stream history ---
    /// The jobs the batch changed, for live events.
    pub(crate) changed: Vec<ChangedJob>,
}

/// The statement applying `action` to the jobs whose ids are in the JSON array `?1` (and
/// that it applies to), at `?2`, with the action's value in `?3`; returns each changed job's
/// id, queue, new state (a delete: its state when deleted), whether jobs depend on it, its
/// attempt and correlation id (for live events), and the queue of the completion callback the
/// `on_finish` trigger inserted for it, if any (to wake the workers waiting there).
fn action_sql(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Retry => {
            "UPDATE stoker_jobs
SET state = 'available', run_at = ?2, finished_at = NULL, cancel_requested_at = NULL,
    lease_expires_at = NULL, scheduled = 0,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END
WHERE id IN (SELECT value FROM json_each(?1)) AND state NOT IN ('running', 'blocked')
  AND ?3 IS NULL
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
        BulkAction::Cancel => {
            "UPDATE stoker_jobs
SET state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?2 END,
    scheduled = 0,
    cancel_requested_at = CASE WHEN state = 'running' THEN COALESCE(cancel_requested_at, ?2)
                               ELSE cancel_requested_at END
WHERE id IN (SELECT value FROM json_each(?1))
  AND state IN ('available', 'retryable', 'running') AND ?3 IS NULL
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
        BulkAction::Delete => {
            // Kept as `job_delete` keeps them (issue 18): a job others wait for, an
            // unfinished batch member, an unfired batch callback; they count as skipped.
            "DELETE FROM stoker_jobs
WHERE id IN (SELECT value FROM json_each(?1)) AND state <> 'running' AND ?2 IS NOT NULL
  AND ?3 IS NULL
  AND NOT (batch_id IS NOT NULL AND state IN ('blocked', 'available', 'retryable'))
  AND NOT (has_dependents AND EXISTS (
      SELECT 1 FROM stoker_deps AS d JOIN stoker_jobs AS c ON c.id = d.child_id
      WHERE d.parent_id = stoker_jobs.id AND NOT d.resolved AND c.state = 'blocked'))
  AND NOT (state = 'blocked' AND EXISTS (
      SELECT 1 FROM stoker_batches AS b WHERE b.callback_id = stoker_jobs.id))
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
        BulkAction::Discard => {
            "UPDATE stoker_jobs SET state = 'discarded', finished_at = ?2, scheduled = 0
WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('available', 'retryable')
  AND ?3 IS NULL
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
        BulkAction::SetPriority => {
            "UPDATE stoker_jobs SET priority = ?3
WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('available', 'retryable')
  AND ?2 IS NOT NULL
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
        BulkAction::SetRunAt => {
            "UPDATE stoker_jobs SET run_at = ?3, scheduled = ?3 > ?2
WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('available', 'retryable')
RETURNING id, queue, state, has_dependents, attempt,
          json_extract(metadata, '$.correlation_id'),
          CASE WHEN instr(metadata, '\"on_finish\"') > 0
                AND state IN ('completed', 'discarded', 'cancelled')
               THEN COALESCE(json_extract(metadata, '$.on_finish.queue'), 'default') END"
        }
    }
}

/// Runs one batch of the oldest running operation, with its progress, in one transaction.
pub(crate) async fn op_step(
    conn: &mut SqliteConnection,
    params: &BulkOpStepParams,
) -> StoreResult<Option<(BulkOpRow, StepEvents)>> {
    let limit = i64::from(params.limit.max(1));
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let sql = format!(
        "SELECT {OP_COLUMNS} FROM stoker_bulk_ops WHERE state = 'running' ORDER BY id LIMIT 1"
    );
    let Some(row) = sqlx::query(&sql)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let op = op_from_row(&row)?;
    // Bounded work per batch: at most `limit` matches among at most ten times as many ids.
    let window_end = op
        .cursor
        .saturating_add(limit.saturating_mul(10))
        .min(op.max_id);
    let mut candidates = QueryBuilder::<Sqlite>::new(
        "SELECT id, queue, kind, state, tenant FROM stoker_jobs WHERE id > ",
    );
    candidates
        .push_bind(op.cursor)
        .push(" AND id <= ")
        .push_bind(window_end);
    push_filter(&mut candidates, &op.filter);
    candidates.push(" ORDER BY id LIMIT ").push_bind(limit);
    let matched: Vec<(i64, String, String, String, Option<String>)> = candidates
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    let cursor = if matched.len() as i64 == limit {
        matched.last().map_or(window_end, |m| m.0)
    } else {
        window_end
    };
    let mut events = StepEvents::default();
    let mut applied = 0i64;
    if !matched.is_empty() {
        let ids: Vec<i64> = matched.iter().map(|m| m.0).collect();
        let before: HashMap<i64, (&str, &str, Option<&str>)> = matched
            .iter()
            .map(|(id, _, kind, state, tenant)| {
                (*id, (kind.as_str(), state.as_str(), tenant.as_deref()))
            })
            .collect();
        let value: Option<i64> = match op.action {
            BulkAction::SetPriority => op.priority.map(|p| i64::from(p.0)),
            BulkAction::SetRunAt => op.run_at.map(micros),
            _ => None,
        };
        #[allow(clippy::type_complexity)]
        let changed: Vec<(
            i64,
            String,
            String,
            bool,
            i32,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(action_sql(op.action))
            .bind(to_json(&ids)?)
            .bind(micros(params.now))
            .bind(value)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        applied = changed.len() as i64;
        let mut counts = CountDeltas::default();
        for (id, queue, state, has_dependents, attempt, correlation_id, callback) in changed {
            let Some(&(kind, old, tenant)) = before.get(&id) else {
                continue;
            };
            let old = parse_state(old)?;
            let new = parse_state(&state)?;
            // --- stream history ---
            events.changed.push(ChangedJob {
                id: JobId(id),
                state: new,
                queue: queue.clone(),
                kind: kind.to_owned(),
                tenant: tenant.map(str::to_owned),
                attempt,
                correlation_id,
            });
            if op.action == BulkAction::Delete {
                counts.left(&queue, kind, tenant, old);
                continue;
            }
            // The completion callback the `on_finish` trigger inserted (a cancel or discard
            // finished the job) starts now, not at the next poll.
            events.available.extend(callback);
            if old != new {
                counts.left(&queue, kind, tenant, old);
                counts.entered(&queue, kind, tenant, new);
                if has_dependents && new.is_finished() {
                    events.finished_parents.push(id);
                }
            }
            match op.action {
                BulkAction::Retry => events.available.push(queue),
                BulkAction::SetRunAt if op.run_at.is_some_and(|at| at <= params.now) => {
                    events.available.push(queue)
                }
                BulkAction::Cancel if new == JobState::Running => {
                    events.cancel_requested.push(JobId(id))
                }
                _ => {}
            }
        }
        counts.apply(&mut tx).await?;
    }
    let finished = cursor >= op.max_id;
    let sql = format!(
        "UPDATE stoker_bulk_ops SET matched = matched + ?2, done = done + ?3, \
             skipped = skipped + ?4, cursor = ?5, updated_at = ?6, \
             state = CASE WHEN ?7 THEN 'done' ELSE state END, \
             finished_at = CASE WHEN ?7 THEN ?6 ELSE finished_at END \
         WHERE id = ?1 RETURNING {OP_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(op.id)
        .bind(matched.len() as i64)
        .bind(applied)
        .bind(matched.len() as i64 - applied)
        .bind(cursor)
        .bind(micros(params.now))
        .bind(finished)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let op = op_from_row(&row)?;
    tx.commit().await.map_err(db_error)?;
    debug_assert!(op.state != BulkOpState::Running || !finished);
    Ok(Some((op, events)))
}

/// Appends log lines to a running job, within its limits.
pub(crate) async fn log_append(
    conn: &mut SqliteConnection,
    params: &JobLogParams,
) -> StoreResult<Option<JobLogAppended>> {
    params.validate()?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let attempt: Option<i32> = sqlx::query_scalar(
        "SELECT attempt FROM stoker_jobs
         WHERE id = ?1 AND state = 'running' AND fence = ?2
           AND (lease_expires_at IS NULL OR lease_expires_at > ?3)",
    )
    .bind(params.id.0)
    .bind(params.fence)
    .bind(micros(params.now))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some(attempt) = attempt else {
        return Ok(None);
    };
    let (held, bytes, last): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(line AS BLOB))), 0), COALESCE(MAX(seq), 0)
         FROM stoker_job_logs WHERE job_id = ?1",
    )
    .bind(params.id.0)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let fit = stoker_core::log_lines_that_fit(&params.lines, held, bytes);
    if fit > 0 {
        sqlx::query(
            "INSERT INTO stoker_job_logs (job_id, seq, attempt, at, line)
             SELECT ?1, ?2 + key + 1, ?3, ?4, value FROM json_each(?5)",
        )
        .bind(params.id.0)
        .bind(last)
        .bind(attempt)
        .bind(micros(params.now))
        .bind(to_json(&params.lines[..fit])?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(Some(JobLogAppended {
        accepted: fit as u32,
        dropped: (params.lines.len() - fit) as u32,
    }))
}

/// A job's log lines, oldest first.
pub(crate) async fn logs(conn: &mut SqliteConnection, id: JobId) -> StoreResult<Vec<JobLogLine>> {
    let rows: Vec<(i64, i32, i64, String)> = sqlx::query_as(
        "SELECT seq, attempt, at, line FROM stoker_job_logs WHERE job_id = ?1 ORDER BY seq",
    )
    .bind(id.0)
    .fetch_all(conn)
    .await
    .map_err(db_error)?;
    rows.into_iter()
        .map(|(seq, attempt, at, line)| {
            Ok(JobLogLine {
                seq,
                attempt,
                at: from_micros("at", at)?,
                line,
            })
        })
        .collect()
}

// --- stream ops ---
// Failure-group counts by the hour (issue 13, item 3): schema version 18.

/// Adds each `[fingerprint, n]` of the JSON array `?2` to its group's row for the hour `?1`
/// (Unix seconds).
const HOUR_UPSERT_SQL: &str = "
INSERT INTO stoker_failure_hours (fingerprint, hour, count)
SELECT value ->> 0, ?1, value ->> 1 FROM json_each(?2) WHERE true
ON CONFLICT (fingerprint, hour) DO UPDATE SET count = count + excluded.count";

/// The hours `[?2, ?3)` of the groups in the JSON array `?1`: one primary-key range each.
const HOUR_SELECT_SQL: &str = "
SELECT fingerprint, hour, count FROM stoker_failure_hours
WHERE fingerprint IN (SELECT value FROM json_each(?1)) AND hour >= ?2 AND hour < ?3
ORDER BY fingerprint, hour";

/// Deletes the hours that started before `?1` (Unix seconds), with the history's hours.
pub(crate) const HOUR_PRUNE_SQL: &str = "DELETE FROM stoker_failure_hours WHERE hour < ?1";

/// The failed attempts of some groups per hour over a range.
pub(crate) async fn group_counts(
    conn: &mut SqliteConnection,
    params: &stoker_core::FailureCountParams,
) -> StoreResult<Vec<stoker_core::FailureHour>> {
    params.validate()?;
    let rows = sqlx::query(HOUR_SELECT_SQL)
        .bind(to_json(&params.fingerprints)?)
        .bind(params.first_hour())
        .bind(params.end())
        .fetch_all(conn)
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let hour: i64 = column(row, 1, "hour")?;
            Ok(stoker_core::FailureHour {
                fingerprint: column(row, 0, "fingerprint")?,
                hour: DateTime::from_timestamp(hour, 0).ok_or_else(|| {
                    StoreError::Corrupt(format!("failure hour {hour} is out of range"))
                })?,
                count: column(row, 2, "count")?,
            })
        })
        .collect()
}
