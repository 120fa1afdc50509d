//! Job search and bounded counts (issue 14) on PostgreSQL: the one translation of
//! [`JobCriteria`] into SQL, also used by bulk operations.
//!
//! A page is `SELECT ... FROM (driver) d WHERE criteria ORDER BY id LIMIT limit + 1`, where
//! the driver walks one index in id order from the cursor with `LIMIT scan_max`. The subquery's
//! limit keeps it from being flattened, so the plan is a `Limit` over a filtered `Subquery Scan`
//! over a `Limit` over an `Index Scan`: it stops at the page's last match or at the scan
//! budget, whichever comes first, and never sorts. Several states are one branch per state
//! (the state a constant, so the planner walks the `(state, id)` index), merged by id with a
//! `Merge Append`. `tests/pg_specific.rs` pins these plans with `EXPLAIN` over 200,000 jobs.

use sqlx::postgres::Postgres;
use sqlx::{PgPool, QueryBuilder, Row};
use stoker_core::{
    search_cursors, JobCount, JobCriteria, JobId, JobSearchPage, JobSearchParams, JobState,
    ScanDriver, SearchDirection, StateView, StoreResult, JOB_COUNT_CAP, JOB_COUNT_SCAN_MAX,
};

use crate::error::store_error;
use crate::row::{job_columns, job_row};

/// Adds every criterion (`AND ...`) to a query over the jobs table.
pub(crate) fn push_criteria(query: &mut QueryBuilder<'_, Postgres>, criteria: &JobCriteria) {
    if !criteria.states.is_empty() {
        // The plain states, plus `available` narrowed by the schedule flag for the views.
        let plain: Vec<String> = criteria
            .states
            .iter()
            .filter(|view| view.state() != JobState::Available)
            .map(|view| view.as_str().to_owned())
            .collect();
        let available = match (
            criteria.states.contains(&StateView::Available),
            criteria.states.contains(&StateView::Scheduled),
        ) {
            (true, true) => Some("state = 'available'"),
            (true, false) => Some("(state = 'available' AND NOT scheduled)"),
            (false, true) => Some("(state = 'available' AND scheduled)"),
            (false, false) => None,
        };
        query.push(" AND (state = ANY(").push_bind(plain).push(")");
        if let Some(available) = available {
            query.push(" OR ").push(available);
        }
        query.push(")");
    }
    if !criteria.queues.is_empty() {
        query
            .push(" AND queue = ANY(")
            .push_bind(criteria.queues.clone())
            .push(")");
    }
    if !criteria.kinds.is_empty() {
        query
            .push(" AND kind = ANY(")
            .push_bind(criteria.kinds.clone())
            .push(")");
    }
    if let Some(tenant) = &criteria.tenant {
        query.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(group) = &criteria.failure_group {
        query.push(" AND failure_group = ").push_bind(group.clone());
    }
    if let Some(after) = criteria.created_after {
        query.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = criteria.created_before {
        query.push(" AND created_at < ").push_bind(before);
    }
    if !criteria.ids.is_empty() {
        let ids: Vec<i64> = criteria.ids.iter().map(|id| id.0).collect();
        query.push(" AND id = ANY(").push_bind(ids).push(")");
    }
    if let Some(key) = &criteria.unique_key {
        query.push(" AND unique_key = ").push_bind(key.clone());
    }
    if let Some(correlation) = &criteria.correlation_id {
        query
            .push(" AND (metadata ->> 'correlation_id') = ")
            .push_bind(correlation.clone());
    }
    if let Some(parent) = criteria.parent_id {
        query
            .push(" AND (metadata ->> 'parent_id') = ")
            .push_bind(parent.0.to_string());
    }
    if let Some(worker) = &criteria.worker_id {
        query.push(" AND worker_id = ").push_bind(worker.clone());
    }
    if let Some(after) = criteria.finished_after {
        query.push(" AND finished_at >= ").push_bind(after);
    }
    if let Some(before) = criteria.finished_before {
        query.push(" AND finished_at < ").push_bind(before);
    }
    if let Some(text) = &criteria.text {
        query
            .push(" AND (strpos(args::text, ")
            .push_bind(text.clone())
            .push(") > 0 OR strpos(metadata::text, ")
            .push_bind(text.clone())
            .push(") > 0)");
    }
}

/// Adds the driver: `SELECT {cols} FROM jobs WHERE <index condition> AND id <cmp> cursor
/// ORDER BY id <dir> LIMIT scan` (without the order unless `ordered`).
#[allow(clippy::too_many_arguments)]
fn push_driver(
    query: &mut QueryBuilder<'_, Postgres>,
    jobs: &str,
    cols: &str,
    criteria: &JobCriteria,
    cursor: Option<JobId>,
    direction: SearchDirection,
    scan: i64,
    ordered: bool,
) {
    let dir = match direction {
        SearchDirection::Older => "DESC",
        SearchDirection::Newer => "ASC",
    };
    let walk = Walk {
        jobs,
        cols,
        cursor,
        direction,
        scan,
        ordered,
    };
    match criteria.driver() {
        ScanDriver::States(states) if states.len() > 1 => {
            // One branch per state, each walking the (state, id) index; a Merge Append keeps
            // id order, and the outer limit stops the walk.
            query.push(format!("SELECT {cols} FROM ("));
            for (n, state) in states.iter().enumerate() {
                if n > 0 {
                    query.push(" UNION ALL ");
                }
                query.push("(");
                walk.branch(query, &ScanDriver::States(vec![*state]));
                query.push(")");
            }
            query.push(") branches");
            if ordered {
                query.push(format!(" ORDER BY id {dir}"));
            }
            query.push(" LIMIT ").push_bind(scan);
        }
        driver => walk.branch(query, &driver),
    }
}

/// One index walk of a driver.
struct Walk<'w> {
    jobs: &'w str,
    cols: &'w str,
    cursor: Option<JobId>,
    direction: SearchDirection,
    scan: i64,
    /// Whether the walk is in id order (a page); a count takes any `scan` rows, so the
    /// planner need not sort what a bitmap scan finds.
    ordered: bool,
}

impl Walk<'_> {
    /// Adds one branch: a driver of at most one state.
    fn branch(&self, query: &mut QueryBuilder<'_, Postgres>, driver: &ScanDriver) {
        let (cmp, dir) = match self.direction {
            SearchDirection::Older => ("<", "DESC"),
            SearchDirection::Newer => (">", "ASC"),
        };
        query.push(format!(
            "SELECT {} FROM {} WHERE true",
            self.cols, self.jobs
        ));
        match driver {
            ScanDriver::Ids(ids) => {
                let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
                query.push(" AND id = ANY(").push_bind(ids).push(")");
            }
            ScanDriver::CorrelationId(value) => {
                query
                    .push(" AND (metadata ->> 'correlation_id') = ")
                    .push_bind(value.clone());
            }
            ScanDriver::ParentId(parent) => {
                query
                    .push(" AND (metadata ->> 'parent_id') = ")
                    .push_bind(parent.0.to_string());
            }
            ScanDriver::UniqueKey(key) => {
                query.push(" AND unique_key = ").push_bind(key.clone());
            }
            ScanDriver::FailureGroup(group) => {
                query.push(" AND failure_group = ").push_bind(group.clone());
            }
            ScanDriver::States(states) => {
                // A constant, so even a generic plan knows how rare the state is.
                if let Some(state) = states.first() {
                    query.push(format!(" AND state = '{}'", state.as_str()));
                }
            }
            ScanDriver::All => {}
        }
        if let Some(cursor) = self.cursor {
            query.push(format!(" AND id {cmp} ")).push_bind(cursor.0);
        }
        if self.ordered {
            query.push(format!(" ORDER BY id {dir}"));
        }
        query.push(" LIMIT ").push_bind(self.scan);
    }
}

/// The statement of a search page: `prefix` (`EXPLAIN ` or nothing) then the page's query.
///
/// The driver yields ids only, so it is an index-only walk of its index (the planner never
/// prefers the primary key with a filter on the state, which could read far past the budget);
/// each id is then looked up by primary key in a `LATERAL` subquery that `OFFSET 0` keeps from
/// being flattened, so the join is a nested loop that keeps the walk's order and stops at the
/// page's last match.
fn page_query<'q>(
    jobs: &str,
    params: &JobSearchParams,
    prefix: &str,
) -> QueryBuilder<'q, Postgres> {
    let cols = job_columns(None);
    let dir = match params.direction {
        SearchDirection::Older => "DESC",
        SearchDirection::Newer => "ASC",
    };
    let mut query = QueryBuilder::<Postgres>::new(format!("{prefix}SELECT {cols} FROM ("));
    push_driver(
        &mut query,
        jobs,
        "id",
        &params.criteria,
        params.cursor,
        params.direction,
        i64::from(params.scan_max),
        true,
    );
    query.push(format!(
        ") AS d(walk) CROSS JOIN LATERAL (SELECT * FROM {jobs} WHERE id = d.walk OFFSET 0) j \
         WHERE true"
    ));
    push_criteria(&mut query, &params.criteria);
    query
        .push(format!(" ORDER BY d.walk {dir} LIMIT "))
        .push_bind(i64::from(params.limit) + 1);
    query
}

/// The statement of a count: `prefix` (`EXPLAIN ` or nothing) then the count's query. The
/// driver takes any `JOB_COUNT_SCAN_MAX + 1` of its rows (no order, so nothing to sort): the
/// planner stops a sequential scan early when most jobs match (a million jobs, 90% completed:
/// 12 ms for `state:completed queue:q3`), and reads a rare state's rows through a bitmap of
/// its index. Ids alone when the driver decides, which is an index-only walk.
fn count_query<'q>(jobs: &str, criteria: &JobCriteria, prefix: &str) -> QueryBuilder<'q, Postgres> {
    let driver_only = criteria.driver_only();
    let mut query =
        QueryBuilder::<Postgres>::new(format!("{prefix}SELECT count(*) FILTER (WHERE true"));
    if !driver_only {
        push_criteria(&mut query, criteria);
    }
    query.push("), count(*) FROM (");
    push_driver(
        &mut query,
        jobs,
        if driver_only { "id" } else { "*" },
        criteria,
        None,
        SearchDirection::Older,
        i64::from(JOB_COUNT_SCAN_MAX) + 1,
        false,
    );
    query.push(") d");
    query
}

/// The plans PostgreSQL picks for a search page's statement and for the count of its
/// criteria (`EXPLAIN`, not run), as text.
pub(crate) async fn explain(
    pool: &PgPool,
    schema: &str,
    params: &JobSearchParams,
) -> StoreResult<(String, String)> {
    params.validate()?;
    let jobs = format!("\"{schema}\".stoker_jobs");
    let mut plans = Vec::new();
    for mut query in [
        page_query(&jobs, params, "EXPLAIN "),
        count_query(&jobs, &params.criteria, "EXPLAIN "),
    ] {
        let lines: Vec<String> = query
            .build_query_scalar()
            .fetch_all(pool)
            .await
            .map_err(store_error)?;
        plans.push(lines.join("\n"));
    }
    let count = plans.pop().unwrap_or_default();
    let page = plans.pop().unwrap_or_default();
    Ok((page, count))
}

/// One page of a search.
pub(crate) async fn search(
    pool: &PgPool,
    schema: &str,
    params: &JobSearchParams,
) -> StoreResult<JobSearchPage> {
    params.validate()?;
    let jobs = format!("\"{schema}\".stoker_jobs");
    let scan = i64::from(params.scan_max);
    let mut query = page_query(&jobs, params, "");
    let rows = query.build().fetch_all(pool).await.map_err(store_error)?;
    let mut found = rows.iter().map(job_row).collect::<StoreResult<Vec<_>>>()?;
    // A short page: how far did the walk get? (A full page needs no answer.)
    let (scanned, last) = if found.len() > params.limit as usize {
        (0, None)
    } else {
        let edge = match params.direction {
            SearchDirection::Older => "min",
            SearchDirection::Newer => "max",
        };
        let mut walk = QueryBuilder::<Postgres>::new(format!("SELECT count(*), {edge}(id) FROM ("));
        push_driver(
            &mut walk,
            &jobs,
            "id",
            &params.criteria,
            params.cursor,
            params.direction,
            scan,
            true,
        );
        walk.push(") d");
        let row = walk.build().fetch_one(pool).await.map_err(store_error)?;
        let scanned: i64 = row.try_get(0).map_err(store_error)?;
        let last: Option<i64> = row.try_get(1).map_err(store_error)?;
        (scanned.max(0) as u64, last.map(JobId))
    };
    let ids = found.iter().map(|job| job.id).collect();
    let (shown, older, newer, partial) = search_cursors(params, ids, scanned, last);
    found.truncate(shown.len());
    if params.direction == SearchDirection::Newer {
        found.reverse();
    }
    Ok(JobSearchPage {
        jobs: found,
        older,
        newer,
        partial,
        scanned,
    })
}

/// A bounded count.
pub(crate) async fn count(
    pool: &PgPool,
    schema: &str,
    criteria: &JobCriteria,
) -> StoreResult<JobCount> {
    criteria.validate_as("")?;
    let jobs = format!("\"{schema}\".stoker_jobs");
    let mut query = count_query(&jobs, criteria, "");
    let row = query.build().fetch_one(pool).await.map_err(store_error)?;
    let hits: i64 = row.try_get(0).map_err(store_error)?;
    let scanned: i64 = row.try_get(1).map_err(store_error)?;
    Ok(bounded_count(hits, scanned))
}

/// The count to report from `hits` among `scanned` rows of a driver read up to
/// [`JOB_COUNT_SCAN_MAX`] + 1 rows.
pub(crate) fn bounded_count(hits: i64, scanned: i64) -> JobCount {
    let hits = hits.max(0) as u64;
    let walked_all = scanned <= i64::from(JOB_COUNT_SCAN_MAX);
    JobCount {
        count: hits.min(JOB_COUNT_CAP),
        exact: walked_all && hits <= JOB_COUNT_CAP,
    }
}
