//! Job search and bounded counts (issue 14) on SQLite: the one translation of
//! [`JobCriteria`] into SQL, also used by bulk operations.
//!
//! A page is `SELECT ... FROM (driver) d WHERE criteria ORDER BY id LIMIT limit + 1`, where
//! the driver walks one index in id order from the cursor with `LIMIT scan_max` (see
//! [`JobCriteria::driver`]), so a page reads at most `scan_max` rows of the index and the rows
//! they point to, whatever the criteria. Several states are one branch per state over the
//! `(state, id)` index, merged by id.

use sqlx::sqlite::Sqlite;
use sqlx::{QueryBuilder, Row, SqliteConnection};
use stoker_core::{
    search_cursors, JobCount, JobCriteria, JobId, JobSearchPage, JobSearchParams, JobState,
    ScanDriver, SearchDirection, StateView, StoreResult, JOB_COUNT_CAP, JOB_COUNT_SCAN_MAX,
};

use crate::error::db_error;
use crate::row::{job_columns, job_from_row, micros};

/// Adds every criterion (`AND ...`) to a query over `stoker_jobs`.
pub(crate) fn push_criteria(query: &mut QueryBuilder<'_, Sqlite>, criteria: &JobCriteria) {
    if !criteria.states.is_empty() {
        query.push(" AND (state IN ('-'");
        for view in &criteria.states {
            if view.state() != JobState::Available {
                query.push(", ").push_bind(view.as_str());
            }
        }
        query.push(")");
        let available = match (
            criteria.states.contains(&StateView::Available),
            criteria.states.contains(&StateView::Scheduled),
        ) {
            (true, true) => Some(" OR state = 'available'"),
            (true, false) => Some(" OR (state = 'available' AND scheduled = 0)"),
            (false, true) => Some(" OR (state = 'available' AND scheduled = 1)"),
            (false, false) => None,
        };
        if let Some(available) = available {
            query.push(available);
        }
        query.push(")");
    }
    for (column, values) in [("queue", &criteria.queues), ("kind", &criteria.kinds)] {
        if values.is_empty() {
            continue;
        }
        query.push(" AND ").push(column).push(" IN (");
        let mut list = query.separated(", ");
        for value in values {
            list.push_bind(value.clone());
        }
        query.push(")");
    }
    if let Some(tenant) = &criteria.tenant {
        query.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(group) = &criteria.failure_group {
        query.push(" AND failure_group = ").push_bind(group.clone());
    }
    if let Some(after) = criteria.created_after {
        query.push(" AND created_at >= ").push_bind(micros(after));
    }
    if let Some(before) = criteria.created_before {
        query.push(" AND created_at < ").push_bind(micros(before));
    }
    if !criteria.ids.is_empty() {
        query.push(" AND id IN (");
        let mut list = query.separated(", ");
        for id in &criteria.ids {
            list.push_bind(id.0);
        }
        query.push(")");
    }
    if let Some(key) = &criteria.unique_key {
        query.push(" AND unique_key = ").push_bind(key.clone());
    }
    if let Some(correlation) = &criteria.correlation_id {
        query
            .push(" AND (metadata ->> '$.correlation_id') = ")
            .push_bind(correlation.clone());
    }
    if let Some(parent) = criteria.parent_id {
        query
            .push(" AND (metadata ->> '$.parent_id') = ")
            .push_bind(parent.0);
    }
    if let Some(worker) = &criteria.worker_id {
        query.push(" AND worker_id = ").push_bind(worker.clone());
    }
    if let Some(after) = criteria.finished_after {
        query.push(" AND finished_at >= ").push_bind(micros(after));
    }
    if let Some(before) = criteria.finished_before {
        query.push(" AND finished_at < ").push_bind(micros(before));
    }
    if let Some(text) = &criteria.text {
        query
            .push(" AND (instr(args, ")
            .push_bind(text.clone())
            .push(") > 0 OR instr(metadata, ")
            .push_bind(text.clone())
            .push(") > 0)");
    }
}

/// One index walk of a driver.
struct Walk<'w> {
    cols: &'w str,
    cursor: Option<JobId>,
    direction: SearchDirection,
    scan: i64,
}

impl Walk<'_> {
    fn dir(&self) -> &'static str {
        match self.direction {
            SearchDirection::Older => "DESC",
            SearchDirection::Newer => "ASC",
        }
    }

    /// Adds the driver: `SELECT {cols} FROM stoker_jobs WHERE <index condition> AND id <cmp>
    /// cursor ORDER BY id <dir> LIMIT scan`, several states merged by id.
    fn push(&self, query: &mut QueryBuilder<'_, Sqlite>, criteria: &JobCriteria) {
        match criteria.driver() {
            ScanDriver::States(states) if states.len() > 1 => {
                for (n, state) in states.iter().enumerate() {
                    if n > 0 {
                        query.push(" UNION ALL ");
                    }
                    query.push("SELECT * FROM (");
                    self.branch(query, &ScanDriver::States(vec![*state]));
                    query.push(")");
                }
                query
                    .push(format!(" ORDER BY id {} LIMIT ", self.dir()))
                    .push_bind(self.scan);
            }
            driver => self.branch(query, &driver),
        }
    }

    /// Adds one branch: a driver of at most one state.
    fn branch(&self, query: &mut QueryBuilder<'_, Sqlite>, driver: &ScanDriver) {
        let cmp = match self.direction {
            SearchDirection::Older => "<",
            SearchDirection::Newer => ">",
        };
        query.push(format!("SELECT {} FROM stoker_jobs WHERE true", self.cols));
        match driver {
            ScanDriver::Ids(ids) => {
                query.push(" AND id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(id.0);
                }
                query.push(")");
            }
            ScanDriver::CorrelationId(value) => {
                query
                    .push(" AND (metadata ->> '$.correlation_id') = ")
                    .push_bind(value.clone());
            }
            ScanDriver::ParentId(parent) => {
                query
                    .push(" AND (metadata ->> '$.parent_id') = ")
                    .push_bind(parent.0);
            }
            ScanDriver::UniqueKey(key) => {
                query.push(" AND unique_key = ").push_bind(key.clone());
            }
            ScanDriver::FailureGroup(group) => {
                query.push(" AND failure_group = ").push_bind(group.clone());
            }
            ScanDriver::States(states) => {
                if let Some(state) = states.first() {
                    query.push(format!(" AND state = '{}'", state.as_str()));
                }
            }
            ScanDriver::All => {}
        }
        if let Some(cursor) = self.cursor {
            query.push(format!(" AND id {cmp} ")).push_bind(cursor.0);
        }
        query
            .push(format!(" ORDER BY id {} LIMIT ", self.dir()))
            .push_bind(self.scan);
    }
}

/// One page of a search.
pub(crate) async fn search(
    conn: &mut SqliteConnection,
    params: &JobSearchParams,
) -> StoreResult<JobSearchPage> {
    params.validate()?;
    // Every column: the criteria read some the page does not return (the schedule flag, the
    // failure group).
    let walk = Walk {
        cols: "*",
        cursor: params.cursor,
        direction: params.direction,
        scan: i64::from(params.scan_max),
    };
    let mut query = QueryBuilder::<Sqlite>::new(concat!("SELECT ", job_columns!(), " FROM ("));
    walk.push(&mut query, &params.criteria);
    query.push(") d WHERE true");
    push_criteria(&mut query, &params.criteria);
    query
        .push(format!(" ORDER BY id {} LIMIT ", walk.dir()))
        .push_bind(i64::from(params.limit) + 1);
    let rows = query
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let mut found = rows
        .iter()
        .map(job_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let (scanned, last) = if found.len() > params.limit as usize {
        (0, None)
    } else {
        let edge = match params.direction {
            SearchDirection::Older => "min",
            SearchDirection::Newer => "max",
        };
        let ids = Walk { cols: "id", ..walk };
        let mut count = QueryBuilder::<Sqlite>::new(format!("SELECT count(*), {edge}(id) FROM ("));
        ids.push(&mut count, &params.criteria);
        count.push(") d");
        let row = count
            .build()
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        let scanned: i64 = row.try_get(0).map_err(db_error)?;
        let last: Option<i64> = row.try_get(1).map_err(db_error)?;
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
    conn: &mut SqliteConnection,
    criteria: &JobCriteria,
) -> StoreResult<JobCount> {
    criteria.validate_as("")?;
    let driver_only = criteria.driver_only();
    let walk = Walk {
        cols: if driver_only { "id" } else { "*" },
        cursor: None,
        direction: SearchDirection::Older,
        scan: i64::from(JOB_COUNT_SCAN_MAX) + 1,
    };
    let mut query = QueryBuilder::<Sqlite>::new("SELECT count(*) FILTER (WHERE true");
    if !driver_only {
        push_criteria(&mut query, criteria);
    }
    query.push("), count(*) FROM (");
    walk.push(&mut query, criteria);
    query.push(") d");
    let row = query
        .build()
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    let hits: i64 = row.try_get(0).map_err(db_error)?;
    let scanned: i64 = row.try_get(1).map_err(db_error)?;
    let walked_all = scanned <= i64::from(JOB_COUNT_SCAN_MAX);
    let hits = hits.max(0) as u64;
    Ok(JobCount {
        count: hits.min(JOB_COUNT_CAP),
        exact: walked_all && hits <= JOB_COUNT_CAP,
    })
}
