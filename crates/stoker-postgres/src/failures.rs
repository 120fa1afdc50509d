//! Failure groups, bulk operations by filter and job logs (issue 13) on PostgreSQL.
//!
//! Statements are built per call from the schema name (already validated, so quoting is
//! safe); sqlx still prepares each distinct text once per connection.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::{PgConnection, PgPool, QueryBuilder, Row};
use stoker_core::{
    error_class, BulkAction, BulkFilter, BulkOpCreateParams, BulkOpListParams, BulkOpRow,
    BulkOpStep, BulkOpStepParams, ChangedJob, ErrorKind, FailureGroup, FailureGroupListParams,
    FailureRecord, InvalidInput, JobId, JobLogAppended, JobLogLine, JobLogParams, JobState,
    Priority, StoreError, StoreResult,
};

use crate::error::store_error;

const GROUP_COLUMNS: &str = "fingerprint, kind, error_kind, message, count, first_seen, \
                             last_seen, sample_job_id, sample_message, tenant";

const OP_COLUMNS: &str = "id, action, filter, priority, run_at, state, matched, done, skipped, \
                          cursor, max_id, created_by, created_at, updated_at, finished_at";

fn table(schema: &str, name: &str) -> String {
    format!("\"{schema}\".{name}")
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// Writes the failed attempts of one acknowledged batch to their groups and marks their jobs,
/// on `conn`, inside the acknowledgement's transaction.
pub(crate) async fn record_failures(
    conn: &mut PgConnection,
    schema: &str,
    records: &[FailureRecord],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    // One row per group (an upsert may not touch a row twice): this batch's count, the latest
    // attempt as the sample.
    let mut groups: BTreeMap<&str, (&FailureRecord, i64)> = BTreeMap::new();
    for record in records {
        let entry = groups.entry(&record.fingerprint).or_insert((record, 0));
        entry.0 = record;
        entry.1 += 1;
    }
    let mut fingerprints = Vec::new();
    let mut kinds = Vec::new();
    let mut classes = Vec::new();
    let mut messages = Vec::new();
    let mut counts = Vec::new();
    let mut samples = Vec::new();
    let mut sample_ids = Vec::new();
    let mut tenants: Vec<Option<String>> = Vec::new();
    for (record, n) in groups.values() {
        tenants.push(record.tenant.clone());
        fingerprints.push(record.fingerprint.clone());
        kinds.push(record.kind.clone());
        classes.push(error_class(record.error_kind));
        messages.push(record.message.clone());
        counts.push(*n);
        sample_ids.push(record.job_id.0);
        samples.push(record.sample.clone());
    }
    let groups_table = table(schema, "stoker_failure_groups");
    sqlx::query(&format!(
        "INSERT INTO {groups_table} AS g (fingerprint, kind, error_kind, message, count, \
                                          first_seen, last_seen, sample_job_id, sample_message, \
                                          tenant) \
         SELECT f, k, c, m, n, $8, $8, j, s, t \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], \
                     $7::text[], $9::text[]) AS u(f, k, c, m, n, j, s, t) \
         ON CONFLICT (fingerprint) DO UPDATE SET \
             count = g.count + excluded.count, \
             last_seen = GREATEST(g.last_seen, excluded.last_seen), \
             sample_job_id = excluded.sample_job_id, \
             sample_message = excluded.sample_message"
    ))
    .bind(&fingerprints)
    .bind(&kinds)
    .bind(&classes)
    .bind(&messages)
    .bind(&counts)
    .bind(&sample_ids)
    .bind(&samples)
    .bind(now)
    .bind(&tenants)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    // --- stream ops ---
    let hours_table = table(schema, "stoker_failure_hours");
    sqlx::query(&format!(
        "INSERT INTO {hours_table} AS h (fingerprint, hour, count) \
         SELECT f, $3, n FROM unnest($1::text[], $2::int8[]) AS u(f, n) \
         ON CONFLICT (fingerprint, hour) DO UPDATE SET count = h.count + excluded.count"
    ))
    .bind(&fingerprints)
    .bind(&counts)
    .bind(now.timestamp().div_euclid(3600) * 3600)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    let ids: Vec<i64> = records.iter().map(|r| r.job_id.0).collect();
    let marks: Vec<String> = records.iter().map(|r| r.fingerprint.clone()).collect();
    let jobs = table(schema, "stoker_jobs");
    sqlx::query(&format!(
        "UPDATE {jobs} j SET failure_group = u.f \
         FROM unnest($1::int8[], $2::text[]) AS u(id, f) WHERE j.id = u.id"
    ))
    .bind(&ids)
    .bind(&marks)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

fn parse_error_kind(text: &str) -> StoreResult<ErrorKind> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|err| corrupt("error_kind", err))
}

fn group_from_row(row: &PgRow) -> StoreResult<FailureGroup> {
    let get = |err: sqlx::Error| corrupt("failure group", err);
    Ok(FailureGroup {
        fingerprint: row.try_get(0).map_err(get)?,
        kind: row.try_get(1).map_err(get)?,
        error_kind: parse_error_kind(row.try_get(2).map_err(get)?)?,
        message: row.try_get(3).map_err(get)?,
        count: row.try_get(4).map_err(get)?,
        first_seen: row.try_get(5).map_err(get)?,
        last_seen: row.try_get(6).map_err(get)?,
        sample_job_id: JobId(row.try_get(7).map_err(get)?),
        sample_message: row.try_get(8).map_err(get)?,
        tenant: row.try_get(9).map_err(get)?,
    })
}

/// Lists failure groups, most recently seen first.
pub(crate) async fn group_list(
    pool: &PgPool,
    schema: &str,
    params: &FailureGroupListParams,
) -> StoreResult<Vec<FailureGroup>> {
    params.validate()?;
    let groups = table(schema, "stoker_failure_groups");
    let rows = sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS} FROM {groups} \
         WHERE ($1::timestamptz IS NULL OR last_seen >= $1) \
           AND ($2::timestamptz IS NULL OR first_seen < $2) \
           AND ($3::text IS NULL OR kind = $3) AND ($5::text IS NULL OR tenant = $5) \
         ORDER BY last_seen DESC, fingerprint LIMIT $4"
    ))
    .bind(params.since)
    .bind(params.until)
    .bind(&params.kind)
    .bind(i64::from(params.limit))
    .bind(&params.tenant)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    rows.iter().map(group_from_row).collect()
}

/// One failure group.
pub(crate) async fn group_get(
    pool: &PgPool,
    schema: &str,
    fingerprint: &str,
) -> StoreResult<Option<FailureGroup>> {
    let groups = table(schema, "stoker_failure_groups");
    sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS} FROM {groups} WHERE fingerprint = $1"
    ))
    .bind(fingerprint)
    .fetch_optional(pool)
    .await
    .map_err(store_error)?
    .as_ref()
    .map(group_from_row)
    .transpose()
}

/// Adds the filter's criteria (`AND ...`) to a query over the jobs table: the search's own
/// translation, so a bulk operation acts on exactly what a search shows.
fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &BulkFilter) {
    crate::search::push_criteria(query, filter);
}

fn op_from_row(row: &PgRow) -> StoreResult<BulkOpRow> {
    let get = |err: sqlx::Error| corrupt("bulk operation", err);
    let action: String = row.try_get(1).map_err(get)?;
    let filter: serde_json::Value = row.try_get(2).map_err(get)?;
    let state: String = row.try_get(5).map_err(get)?;
    let invalid = |err: InvalidInput| corrupt("bulk operation", err);
    Ok(BulkOpRow {
        id: row.try_get(0).map_err(get)?,
        action: action.parse().map_err(invalid)?,
        filter: serde_json::from_value(filter).map_err(|err| corrupt("filter", err))?,
        priority: row.try_get::<Option<i16>, _>(3).map_err(get)?.map(Priority),
        run_at: row.try_get(4).map_err(get)?,
        state: state.parse().map_err(invalid)?,
        matched: row.try_get(6).map_err(get)?,
        done: row.try_get(7).map_err(get)?,
        skipped: row.try_get(8).map_err(get)?,
        cursor: row.try_get(9).map_err(get)?,
        max_id: row.try_get(10).map_err(get)?,
        created_by: row.try_get(11).map_err(get)?,
        created_at: row.try_get(12).map_err(get)?,
        updated_at: row.try_get(13).map_err(get)?,
        finished_at: row.try_get(14).map_err(get)?,
    })
}

/// Creates a bulk operation after checking that its filter matches a job.
pub(crate) async fn op_create(
    pool: &PgPool,
    schema: &str,
    params: &BulkOpCreateParams,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<BulkOpRow> {
    params.validate()?;
    let jobs = table(schema, "stoker_jobs");
    let mut first = QueryBuilder::<Postgres>::new(format!("SELECT id FROM {jobs} WHERE true"));
    push_filter(&mut first, &params.filter);
    first.push(" ORDER BY id LIMIT 1");
    let mut tx = pool.begin().await.map_err(store_error)?;
    let first: Option<i64> = first
        .build_query_scalar()
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
    let Some(first) = first else {
        return Err(StoreError::NotFound("job matching the filter".to_owned()));
    };
    let max_id: i64 = sqlx::query_scalar(&format!("SELECT max(id) FROM {jobs}"))
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
    let ops = table(schema, "stoker_bulk_ops");
    let filter = serde_json::to_value(&params.filter).map_err(|err| corrupt("filter", err))?;
    let row = sqlx::query(&format!(
        "INSERT INTO {ops} (action, filter, priority, run_at, state, cursor, max_id, \
                            created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $8) RETURNING {OP_COLUMNS}"
    ))
    .bind(params.action.as_str())
    .bind(filter)
    .bind(params.priority.map(|p| p.0))
    .bind(params.run_at)
    .bind(first - 1)
    .bind(max_id)
    .bind(&params.created_by)
    .bind(params.now)
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    let op = op_from_row(&row)?;
    // The row names the operation and the jobs it matched (issue 17).
    let audit = audit.map(|entry| stoker_core::AuditEntry {
        target: Some(format!("op {}", op.id)),
        affected: Some(op.matched),
        ..entry
    });
    crate::store::audit_insert_on(&mut tx, schema, audit.as_ref()).await?;
    tx.commit().await.map_err(store_error)?;
    Ok(op)
}

/// One bulk operation.
pub(crate) async fn op_get(pool: &PgPool, schema: &str, id: i64) -> StoreResult<Option<BulkOpRow>> {
    let ops = table(schema, "stoker_bulk_ops");
    sqlx::query(&format!("SELECT {OP_COLUMNS} FROM {ops} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(op_from_row)
        .transpose()
}

/// Bulk operations, newest first.
pub(crate) async fn op_list(
    pool: &PgPool,
    schema: &str,
    params: &BulkOpListParams,
) -> StoreResult<Vec<BulkOpRow>> {
    params.validate()?;
    let ops = table(schema, "stoker_bulk_ops");
    let states: Option<Vec<String>> = (!params.states.is_empty()).then(|| {
        params
            .states
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect()
    });
    let rows = sqlx::query(&format!(
        "SELECT {OP_COLUMNS} FROM {ops} \
         WHERE ($1::text[] IS NULL OR state = ANY($1)) \
           AND id < COALESCE($2::int8, 9223372036854775807) \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(states)
    .bind(params.before_id)
    .bind(i64::from(params.limit))
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    rows.iter().map(op_from_row).collect()
}

/// Aborts a running operation.
pub(crate) async fn op_abort(
    pool: &PgPool,
    schema: &str,
    id: i64,
    now: DateTime<Utc>,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<BulkOpRow> {
    let ops = table(schema, "stoker_bulk_ops");
    let mut tx = pool.begin().await.map_err(store_error)?;
    let row = sqlx::query(&format!(
        "UPDATE {ops} SET state = 'aborted', updated_at = $2, finished_at = $2 \
         WHERE id = $1 AND state = 'running' RETURNING {OP_COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(store_error)?;
    match row {
        Some(row) => {
            let op = op_from_row(&row)?;
            // The row counts the jobs done before the abort (issue 17).
            let audit = audit.map(|entry| stoker_core::AuditEntry {
                affected: Some(op.done),
                ..entry
            });
            crate::store::audit_insert_on(&mut tx, schema, audit.as_ref()).await?;
            tx.commit().await.map_err(store_error)?;
            Ok(op)
        }
        None => match op_get(pool, schema, id).await? {
            None => Err(StoreError::NotFound(format!("bulk operation {id}"))),
            Some(op) => Err(StoreError::Conflict(format!(
                "bulk operation {id} is already {}: only a running operation can be aborted",
                op.state.as_str()
            ))),
        },
    }
}

/// The statement applying `action` to the jobs whose ids are in `$1` (and that it applies
/// to), at `$2`, with the action's value in `$3` (a priority or an instant); returns each
/// changed job's id, queue and new state. Counts follow by the table's statement triggers.
fn action_sql(jobs: &str, action: BulkAction) -> String {
    match action {
        BulkAction::Retry => format!(
            "UPDATE {jobs} SET state = 'available', run_at = $2, finished_at = NULL, \
                 cancel_requested_at = NULL, lease_expires_at = NULL, scheduled = false, \
                 max_attempts = GREATEST(max_attempts, attempt + 1) \
             WHERE id = ANY($1) AND state NOT IN ('running', 'blocked') \
             RETURNING id, queue, state, kind, tenant, attempt, metadata ->> 'correlation_id'"
        ),
        BulkAction::Cancel => format!(
            "UPDATE {jobs} SET \
                 state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, \
                 finished_at = CASE WHEN state = 'running' THEN finished_at ELSE $2 END, \
                 scheduled = false, \
                 cancel_requested_at = CASE WHEN state = 'running' \
                                            THEN COALESCE(cancel_requested_at, $2) \
                                            ELSE cancel_requested_at END \
             WHERE id = ANY($1) AND state IN ('available', 'retryable', 'running') \
             RETURNING id, queue, state, kind, tenant, attempt, metadata ->> 'correlation_id'"
        ),
        // Kept as `job_delete` keeps them (issue 18): a job others wait for, an unfinished
        // batch member, an unfired batch callback; they count as skipped.
        BulkAction::Delete => {
            let prefix = jobs.strip_suffix("stoker_jobs").unwrap_or_default();
            format!(
                "DELETE FROM {jobs} AS t WHERE t.id = ANY($1) AND t.state <> 'running' \
                 AND NOT (t.batch_id IS NOT NULL \
                          AND t.state IN ('blocked', 'available', 'retryable')) \
                 AND NOT (t.has_dependents AND EXISTS ( \
                     SELECT 1 FROM {prefix}stoker_deps AS d JOIN {jobs} AS c ON c.id = d.child_id \
                     WHERE d.parent_id = t.id AND NOT d.resolved AND c.state = 'blocked')) \
                 AND NOT (t.state = 'blocked' AND EXISTS ( \
                     SELECT 1 FROM {prefix}stoker_batches AS b WHERE b.callback_id = t.id)) \
                 RETURNING t.id, t.queue, t.state, t.kind, t.tenant, t.attempt, \
                         t.metadata ->> 'correlation_id'"
            )
        }
        BulkAction::Discard => format!(
            "UPDATE {jobs} SET state = 'discarded', finished_at = $2, scheduled = false \
             WHERE id = ANY($1) AND state IN ('available', 'retryable') \
             RETURNING id, queue, state, kind, tenant, attempt, metadata ->> 'correlation_id'"
        ),
        BulkAction::SetPriority => format!(
            "UPDATE {jobs} SET priority = $2 \
             WHERE id = ANY($1) AND state IN ('available', 'retryable') \
             RETURNING id, queue, state, kind, tenant, attempt, metadata ->> 'correlation_id'"
        ),
        BulkAction::SetRunAt => format!(
            "UPDATE {jobs} SET run_at = $2, scheduled = $2 > $3 \
             WHERE id = ANY($1) AND state IN ('available', 'retryable') \
             RETURNING id, queue, state, kind, tenant, attempt, metadata ->> 'correlation_id'"
        ),
    }
}

/// Runs one batch of the oldest running operation, with its progress, in one transaction.
/// Notifications (jobs available, cancel requested) are sent with the commit.
pub(crate) async fn op_step(
    pool: &PgPool,
    schema: &str,
    channel: &str,
    params: &BulkOpStepParams,
) -> StoreResult<Option<BulkOpStep>> {
    let limit = i64::from(params.limit.max(1));
    let ops = table(schema, "stoker_bulk_ops");
    let jobs = table(schema, "stoker_jobs");
    let mut tx = pool.begin().await.map_err(store_error)?;
    // SKIP LOCKED: two leaders in a hand-over never run the same batch; the other takes the
    // next running operation or none.
    let Some(row) = sqlx::query(&format!(
        "SELECT {OP_COLUMNS} FROM {ops} WHERE state = 'running' \
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ))
    .fetch_optional(&mut *tx)
    .await
    .map_err(store_error)?
    else {
        return Ok(None);
    };
    let op = op_from_row(&row)?;
    let window_end = op
        .cursor
        .saturating_add(limit.saturating_mul(10))
        .min(op.max_id);
    let mut candidates =
        QueryBuilder::<Postgres>::new(format!("SELECT id FROM {jobs} WHERE id > "));
    candidates
        .push_bind(op.cursor)
        .push(" AND id <= ")
        .push_bind(window_end);
    push_filter(&mut candidates, &op.filter);
    candidates.push(" ORDER BY id LIMIT ").push_bind(limit);
    let matched: Vec<i64> = candidates
        .build_query_scalar()
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
    let cursor = if matched.len() as i64 == limit {
        matched.last().copied().unwrap_or(window_end)
    } else {
        window_end
    };
    let mut applied = 0i64;
    let mut moved = Vec::new();
    if !matched.is_empty() {
        let sql = action_sql(&jobs, op.action);
        #[allow(clippy::type_complexity)]
        let query = sqlx::query_as::<
            _,
            (
                i64,
                String,
                String,
                String,
                Option<String>,
                i32,
                Option<String>,
            ),
        >(&sql)
        .bind(&matched);
        let query = match op.action {
            BulkAction::SetPriority => query.bind(op.priority.map_or(0, |p| p.0)),
            BulkAction::SetRunAt => query.bind(op.run_at).bind(params.now),
            BulkAction::Delete => query,
            _ => query.bind(params.now),
        };
        let changed = query.fetch_all(&mut *tx).await.map_err(store_error)?;
        applied = changed.len() as i64;
        let mut notes = BTreeSet::new();
        for (id, queue, state, ..) in &changed {
            match op.action {
                BulkAction::Retry => {
                    notes.insert(format!("a:{queue}"));
                }
                BulkAction::SetRunAt if op.run_at.is_some_and(|at| at <= params.now) => {
                    notes.insert(format!("a:{queue}"));
                }
                BulkAction::Cancel if state == JobState::Running.as_str() => {
                    notes.insert(format!("c:{id}"));
                }
                _ => {}
            }
        }
        if !notes.is_empty() {
            let notes: Vec<String> = notes.into_iter().collect();
            sqlx::query("SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n")
                .bind(channel)
                .bind(&notes)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        // --- stream history ---
        for (id, queue, state, kind, tenant, attempt, correlation_id) in changed {
            moved.push(ChangedJob {
                id: JobId(id),
                state: state
                    .parse::<JobState>()
                    .map_err(|err| corrupt("a bulk-changed job's state", err))?,
                queue,
                kind,
                tenant,
                attempt,
                correlation_id,
            });
        }
    }
    let finished = cursor >= op.max_id;
    let row = sqlx::query(&format!(
        "UPDATE {ops} SET matched = matched + $2, done = done + $3, skipped = skipped + $4, \
             cursor = $5, updated_at = $6, \
             state = CASE WHEN $7 THEN 'done' ELSE state END, \
             finished_at = CASE WHEN $7 THEN $6 ELSE finished_at END \
         WHERE id = $1 RETURNING {OP_COLUMNS}"
    ))
    .bind(op.id)
    .bind(matched.len() as i64)
    .bind(applied)
    .bind(matched.len() as i64 - applied)
    .bind(cursor)
    .bind(params.now)
    .bind(finished)
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    let op = op_from_row(&row)?;
    tx.commit().await.map_err(store_error)?;
    Ok(Some(BulkOpStep { op, changed: moved }))
}

/// Appends log lines to a running job, within its limits.
pub(crate) async fn log_append(
    pool: &PgPool,
    schema: &str,
    params: &JobLogParams,
) -> StoreResult<Option<JobLogAppended>> {
    params.validate()?;
    let jobs = table(schema, "stoker_jobs");
    let logs = table(schema, "stoker_job_logs");
    let mut tx = pool.begin().await.map_err(store_error)?;
    // FOR NO KEY UPDATE of the job row: appends to one job take turns, so two cannot both
    // see room for the last lines; finishes and lease extensions are not held up (they do
    // not change the key).
    let attempt: Option<i32> = sqlx::query_scalar(&format!(
        "SELECT attempt FROM {jobs} \
         WHERE id = $1 AND state = 'running' AND fence = $2 \
           AND (lease_expires_at IS NULL OR lease_expires_at > $3) \
         FOR NO KEY UPDATE"
    ))
    .bind(params.id.0)
    .bind(params.fence)
    .bind(params.now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(store_error)?;
    let Some(attempt) = attempt else {
        return Ok(None);
    };
    let (held, bytes, last): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), COALESCE(sum(octet_length(line)), 0)::int8, COALESCE(max(seq), 0) \
         FROM {logs} WHERE job_id = $1"
    ))
    .bind(params.id.0)
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    let fit = stoker_core::log_lines_that_fit(&params.lines, held, bytes);
    if fit > 0 {
        sqlx::query(&format!(
            "INSERT INTO {logs} (job_id, seq, attempt, at, line) \
             SELECT $1, $2 + n, $3, $4, line \
             FROM unnest($5::text[]) WITH ORDINALITY AS u(line, n)"
        ))
        .bind(params.id.0)
        .bind(last)
        .bind(attempt)
        .bind(params.now)
        .bind(&params.lines[..fit])
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(Some(JobLogAppended {
        accepted: fit as u32,
        dropped: (params.lines.len() - fit) as u32,
    }))
}

/// A job's log lines, oldest first.
pub(crate) async fn logs(pool: &PgPool, schema: &str, id: JobId) -> StoreResult<Vec<JobLogLine>> {
    let logs = table(schema, "stoker_job_logs");
    let rows: Vec<(i64, i32, DateTime<Utc>, String)> = sqlx::query_as(&format!(
        "SELECT seq, attempt, at, line FROM {logs} WHERE job_id = $1 ORDER BY seq"
    ))
    .bind(id.0)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|(seq, attempt, at, line)| JobLogLine {
            seq,
            attempt,
            at,
            line,
        })
        .collect())
}

// --- stream ops ---
// Failure-group counts by the hour (issue 13, item 3): schema version 16.

/// The failed attempts of some groups per hour over a range: one primary-key range each.
pub(crate) async fn group_counts(
    pool: &PgPool,
    schema: &str,
    params: &stoker_core::FailureCountParams,
) -> StoreResult<Vec<stoker_core::FailureHour>> {
    params.validate()?;
    let hours = table(schema, "stoker_failure_hours");
    let rows = sqlx::query(&format!(
        "SELECT fingerprint, hour, count FROM {hours} \
         WHERE fingerprint = ANY($1) AND hour >= $2 AND hour < $3 \
         ORDER BY fingerprint, hour"
    ))
    .bind(&params.fingerprints)
    .bind(params.first_hour())
    .bind(params.end())
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            let get = |err: sqlx::Error| corrupt("failure hour", err);
            let hour: i64 = row.try_get(1).map_err(get)?;
            Ok(stoker_core::FailureHour {
                fingerprint: row.try_get(0).map_err(get)?,
                hour: DateTime::from_timestamp(hour, 0)
                    .ok_or_else(|| corrupt("failure hour", hour))?,
                count: row.try_get(2).map_err(get)?,
            })
        })
        .collect()
}
