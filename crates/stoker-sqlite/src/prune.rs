//! Deleting finished jobs by retention rules, a bounded batch at a time.

use sqlx::{Connection, SqliteConnection};
use stoker_core::{JobPruneParams, JobState, QueuePruneRule, StoreResult};

use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::row::{micros, parse_state};

/// The queues that have finished jobs, from the finished counts (cheap however many jobs
/// there are).
const QUEUES_SQL: &str =
    "SELECT DISTINCT queue FROM stoker_job_counts WHERE count > 0 ORDER BY queue";

/// The finished index's predicate, word for word as migration 5 writes it: every pruning
/// query repeats it so SQLite can use that partial index. (An OR chain, not an `IN` list:
/// the migration says why.)
macro_rules! finished {
    () => {
        "(state = 'completed' OR state = 'discarded' OR state = 'cancelled')"
    };
}

// --- stream wf ---
/// Spares the jobs a workflow still needs (issue 18): any job of a workflow with an
/// unfinished job, and any job with an unfinished dependent, so a dependent always finds its
/// dependencies' results. Ordinary jobs (no workflow, no dependents) pass on two column tests.
macro_rules! needed {
    () => {
        "(stoker_jobs.workflow_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM stoker_jobs AS w
            WHERE w.workflow_id = stoker_jobs.workflow_id
              AND w.state NOT IN ('completed', 'discarded', 'cancelled')))
         AND (NOT stoker_jobs.has_dependents OR NOT EXISTS (
            SELECT 1 FROM stoker_deps AS d JOIN stoker_jobs AS c ON c.id = d.child_id
            WHERE d.parent_id = stoker_jobs.id
              AND c.state NOT IN ('completed', 'discarded', 'cancelled')))"
    };
}

/// Deletes up to `?4` jobs of queue `?2` in finished state `?1` that finished before `?3`,
/// oldest first; returns each deleted job's kind and tenant, for the finished counts. `+state` keeps
/// SQLite from picking the `(state, id)` index instead of the finished one.
pub(crate) const PRUNE_AGE_SQL: &str = concat!(
    "
DELETE FROM stoker_jobs WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND +state = ?1
      AND queue = ?2 AND finished_at < ?3
    ORDER BY finished_at, id
    LIMIT ?4)
RETURNING kind, tenant"
);

/// The newest finished job of queue `?1` beyond the `?2` to keep: it and everything older go.
pub(crate) const KEEP_LAST_CUTOFF_SQL: &str = concat!(
    "
SELECT finished_at, id FROM stoker_jobs
WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND queue = ?1
ORDER BY finished_at DESC, id DESC
LIMIT 1 OFFSET ?2"
);

/// Deletes up to `?4` finished jobs of queue `?1` at or before the cutoff `(?2, ?3)`, oldest
/// first; returns each one's kind, state and tenant.
pub(crate) const PRUNE_KEEP_LAST_SQL: &str = concat!(
    "
DELETE FROM stoker_jobs WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND queue = ?1
      AND (finished_at, id) <= (?2, ?3)
    ORDER BY finished_at, id
    LIMIT ?4)
RETURNING kind, state, tenant"
);

/// Applies the rules queue by queue, in one `BEGIN IMMEDIATE` transaction, deleting at most
/// `params.limit` jobs and moving the finished counts with them; returns how many it deleted.
pub(crate) async fn prune(
    conn: &mut SqliteConnection,
    params: &JobPruneParams,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<u64> {
    let age_rules: Vec<(JobState, i64)> = [
        (JobState::Completed, params.completed_before),
        (JobState::Discarded, params.discarded_before),
        (JobState::Cancelled, params.cancelled_before),
    ]
    .into_iter()
    .filter_map(|(state, before)| Some((state, micros(before?))))
    .collect();
    for rule in &params.queue_rules {
        rule.validate()?;
    }
    if params.limit == 0
        || (age_rules.is_empty() && params.keep_last.is_none() && params.queue_rules.is_empty())
    {
        return Ok(0);
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let queues: Vec<String> = sqlx::query_scalar(QUEUES_SQL)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    let mut left = u64::from(params.limit);
    let mut counts = CountDeltas::default();
    for queue in &queues {
        for &(state, before) in &age_rules {
            if left == 0 {
                break;
            }
            let kinds: Vec<(String, Option<String>)> = sqlx::query_as(PRUNE_AGE_SQL)
                .bind(state.as_str())
                .bind(queue)
                .bind(before)
                .bind(limit(left))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            left = left.saturating_sub(kinds.len() as u64);
            for (kind, tenant) in &kinds {
                counts.left(queue, kind, tenant.as_deref(), state);
            }
        }
        if let Some(keep) = params.keep_last {
            if left > 0 {
                left =
                    left.saturating_sub(keep_last(&mut tx, queue, keep, left, &mut counts).await?);
            }
        }
        if left == 0 {
            break;
        }
    }
    // --- stream counts ---
    for rule in &params.queue_rules {
        if left == 0 {
            break;
        }
        left = left.saturating_sub(queue_rule(&mut tx, rule, left, &mut counts).await?);
    }
    let deleted = u64::from(params.limit) - left;
    audit_deleted(&mut tx, audit, deleted).await?;
    counts.apply(&mut tx).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(deleted)
}

/// Deletes up to `left` of `queue`'s finished jobs beyond the newest `keep` (by finish time,
/// then id), noting them in `counts`.
async fn keep_last(
    conn: &mut SqliteConnection,
    queue: &str,
    keep: u32,
    left: u64,
    counts: &mut CountDeltas,
) -> StoreResult<u64> {
    let cutoff: Option<(Option<i64>, i64)> = sqlx::query_as(KEEP_LAST_CUTOFF_SQL)
        .bind(queue)
        .bind(i64::from(keep))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    // No cutoff: the queue has no more than `keep` finished jobs. A cutoff without a finish
    // time (only possible through manual SQL) matches nothing: keep them all.
    let Some((Some(finished_at), id)) = cutoff else {
        return Ok(0);
    };
    let deleted: Vec<(String, String, Option<String>)> = sqlx::query_as(PRUNE_KEEP_LAST_SQL)
        .bind(queue)
        .bind(finished_at)
        .bind(id)
        .bind(limit(left))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    for (kind, state, tenant) in &deleted {
        counts.left(queue, kind, tenant.as_deref(), parse_state(state)?);
    }
    Ok(deleted.len() as u64)
}

fn limit(left: u64) -> i64 {
    i64::try_from(left).unwrap_or(i64::MAX)
}

// --- stream counts ---

/// The newest job of queue `?2` in finished state `?1` beyond the `?3` to keep: it and every
/// older one of that state go. Walks the finished index backwards from the queue's newest.
pub(crate) const KEEP_LAST_STATE_CUTOFF_SQL: &str = concat!(
    "
SELECT finished_at, id FROM stoker_jobs
WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND +state = ?1 AND queue = ?2
ORDER BY finished_at DESC, id DESC
LIMIT 1 OFFSET ?3"
);

/// Deletes up to `?5` jobs of queue `?2` in finished state `?1` at or before the cutoff
/// `(?3, ?4)`, oldest first; returns each one's kind and tenant.
pub(crate) const PRUNE_KEEP_LAST_STATE_SQL: &str = concat!(
    "
DELETE FROM stoker_jobs WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND +state = ?1 AND queue = ?2
      AND (finished_at, id) <= (?3, ?4)
    ORDER BY finished_at, id
    LIMIT ?5)
RETURNING kind, tenant"
);

/// Applies one queue's rule for one finished state, deleting at most `left` jobs, oldest
/// first; returns how many it deleted, noting them in `counts`.
async fn queue_rule(
    conn: &mut SqliteConnection,
    rule: &QueuePruneRule,
    mut left: u64,
    counts: &mut CountDeltas,
) -> StoreResult<u64> {
    let state = rule.state.as_str();
    let mut deleted: Vec<(String, Option<String>)> = Vec::new();
    if let Some(before) = rule.finished_before {
        deleted = sqlx::query_as(PRUNE_AGE_SQL)
            .bind(state)
            .bind(&rule.queue)
            .bind(micros(before))
            .bind(limit(left))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        left = left.saturating_sub(deleted.len() as u64);
    }
    if let (Some(keep), true) = (rule.keep_last, left > 0) {
        let cutoff: Option<(Option<i64>, i64)> = sqlx::query_as(KEEP_LAST_STATE_CUTOFF_SQL)
            .bind(state)
            .bind(&rule.queue)
            .bind(i64::from(keep))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        if let Some((Some(finished_at), id)) = cutoff {
            let more: Vec<(String, Option<String>)> = sqlx::query_as(PRUNE_KEEP_LAST_STATE_SQL)
                .bind(state)
                .bind(&rule.queue)
                .bind(finished_at)
                .bind(id)
                .bind(limit(left))
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?;
            deleted.extend(more);
        }
    }
    for (kind, tenant) in &deleted {
        counts.left(&rule.queue, kind, tenant.as_deref(), rule.state);
    }
    Ok(deleted.len() as u64)
}

// --- stream tenant ---

/// [`PRUNE_AGE_SQL`] limited to tenant `?5` (issue 17): a tenant cleans only its own jobs.
const PRUNE_AGE_TENANT_SQL: &str = concat!(
    "
DELETE FROM stoker_jobs WHERE id IN (
    SELECT id FROM stoker_jobs
    WHERE ",
    finished!(),
    " AND ",
    needed!(),
    " AND +state = ?1
      AND queue = ?2 AND finished_at < ?3 AND tenant = ?5
    ORDER BY finished_at, id
    LIMIT ?4)
RETURNING kind"
);

/// The queues holding finished jobs of tenant `?1`, from its finished counts.
const TENANT_QUEUES_SQL: &str = "SELECT DISTINCT queue FROM stoker_job_counts
WHERE tenant = ?1 AND count > 0 AND state IN ('completed', 'discarded', 'cancelled')
ORDER BY queue";

/// The age rules of `params` applied to the finished jobs of `tenant` only, in one
/// `BEGIN IMMEDIATE` transaction with their counts; see
/// [`Store::job_prune_tenant`](stoker_core::Store::job_prune_tenant).
pub(crate) async fn prune_tenant(
    conn: &mut SqliteConnection,
    params: &JobPruneParams,
    tenant: &str,
    audit: Option<stoker_core::AuditEntry>,
) -> StoreResult<u64> {
    params.validate_for_tenant()?;
    let age_rules: Vec<(JobState, i64)> = [
        (JobState::Completed, params.completed_before),
        (JobState::Discarded, params.discarded_before),
        (JobState::Cancelled, params.cancelled_before),
    ]
    .into_iter()
    .filter_map(|(state, before)| Some((state, micros(before?))))
    .collect();
    if params.limit == 0 || age_rules.is_empty() {
        return Ok(0);
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let queues: Vec<String> = sqlx::query_scalar(TENANT_QUEUES_SQL)
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    let mut left = u64::from(params.limit);
    let mut counts = CountDeltas::default();
    'queues: for queue in &queues {
        for &(state, before) in &age_rules {
            if left == 0 {
                break 'queues;
            }
            let kinds: Vec<String> = sqlx::query_scalar(PRUNE_AGE_TENANT_SQL)
                .bind(state.as_str())
                .bind(queue)
                .bind(before)
                .bind(limit(left))
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            left = left.saturating_sub(kinds.len() as u64);
            for kind in &kinds {
                counts.left(queue, kind, Some(tenant), state);
            }
        }
    }
    let deleted = u64::from(params.limit) - left;
    audit_deleted(&mut tx, audit, deleted).await?;
    counts.apply(&mut tx).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(deleted)
}

/// Appends the audit row of a clean (issue 17) with the count it deleted, in its transaction.
async fn audit_deleted(
    conn: &mut SqliteConnection,
    audit: Option<stoker_core::AuditEntry>,
    deleted: u64,
) -> StoreResult<()> {
    if deleted == 0 {
        // A clean that deleted nothing changed nothing, and records nothing.
        return Ok(());
    }
    let audit = audit.map(|entry| stoker_core::AuditEntry {
        affected: Some(i64::try_from(deleted).unwrap_or(i64::MAX)),
        ..entry
    });
    crate::store::audit_insert_on(conn, audit.as_ref()).await
}
