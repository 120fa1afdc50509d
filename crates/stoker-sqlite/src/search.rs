//! Job search and bounded counts (issue 14) on SQLite: the one translation of
//! [`JobCriteria`] into SQL, also used by bulk operations.
//!
//! A page or a count first walks the driver's index for ids only (see
//! [`JobCriteria::driver`]: at most the scan budget of them, several states merged by id), which
//! reads no rows; then it reads the rows of those ids that match the other criteria, a chunk at
//! a time in walk order for a page (stopping when it is full), in one statement for a count. A
//! single statement over the rows would read every row of the budget before sorting them: on a
//! million jobs, a page of two states with a queue took 250 ms that way, and takes 25 ms so.

use sqlx::sqlite::Sqlite;
use sqlx::{QueryBuilder, SqliteConnection};
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

/// How many walked ids one row lookup takes.
const LOOKUP_CHUNK: usize = 200;
/// The first window of a page's walk; each next one is eight times larger, up to the budget,
/// so a page whose first rows match reads few ids.
const WALK_WINDOW_FIRST: i64 = 256;

/// One page of a search, in two steps per window of the walk: the driver's next ids (a walk of
/// its index that reads no rows: SQLite would otherwise read every row of the budget to sort
/// them), then their rows, a chunk of ids at a time in walk order, until the page is full or
/// the budget is spent.
pub(crate) async fn search(
    conn: &mut SqliteConnection,
    params: &JobSearchParams,
) -> StoreResult<JobSearchPage> {
    params.validate()?;
    let budget = i64::from(params.scan_max);
    let wanted = params.limit as usize + 1;
    let mut walked: Vec<i64> = Vec::new();
    let mut found = Vec::new();
    let mut window = WALK_WINDOW_FIRST;
    let mut cursor = params.cursor;
    loop {
        let scan = window.min(budget - walked.len() as i64);
        let walk = Walk {
            cols: "id",
            cursor,
            direction: params.direction,
            scan,
        };
        let mut ids_query = QueryBuilder::<Sqlite>::new("");
        walk.push(&mut ids_query, &params.criteria);
        let ids: Vec<i64> = ids_query
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            if found.len() >= wanted {
                break;
            }
            let mut rows = QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                job_columns!(),
                " FROM stoker_jobs WHERE id IN ("
            ));
            let mut list = rows.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            rows.push(")");
            push_criteria(&mut rows, &params.criteria);
            rows.push(format!(" ORDER BY id {}", walk.dir()));
            let page = rows.build().fetch_all(&mut *conn).await.map_err(db_error)?;
            for row in &page {
                found.push(job_from_row(row)?);
            }
            // The walk counts as far as the rows were read.
            walked.extend_from_slice(chunk);
        }
        let ended = (ids.len() as i64) < scan;
        if found.len() >= wanted || ended || walked.len() as i64 >= budget {
            break;
        }
        cursor = walked.last().copied().map(JobId);
        window = window.saturating_mul(8);
    }
    found.truncate(wanted);
    let scanned = walked.len() as u64;
    let last = walked.last().copied().map(JobId);
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

/// A bounded count, in two steps like a page: the driver's ids (no rows read), then, unless
/// the driver alone decides, one statement counting those ids' rows that match (the ids go as
/// one JSON array).
pub(crate) async fn count(
    conn: &mut SqliteConnection,
    criteria: &JobCriteria,
) -> StoreResult<JobCount> {
    criteria.validate_as("")?;
    let walk = Walk {
        cols: "id",
        cursor: None,
        direction: SearchDirection::Older,
        scan: i64::from(JOB_COUNT_SCAN_MAX) + 1,
    };
    let mut ids_query = QueryBuilder::<Sqlite>::new("");
    walk.push(&mut ids_query, criteria);
    let walked: Vec<i64> = ids_query
        .build_query_scalar()
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let scanned = walked.len() as i64;
    let hits = if criteria.driver_only() || walked.is_empty() {
        scanned
    } else {
        let ids = serde_json::to_string(&walked)
            .map_err(|err| stoker_core::StoreError::Corrupt(format!("job ids: {err}")))?;
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT count(*) FROM stoker_jobs WHERE id IN (SELECT value FROM json_each(",
        );
        query.push_bind(ids).push("))");
        push_criteria(&mut query, criteria);
        query
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?
    };
    let walked_all = scanned <= i64::from(JOB_COUNT_SCAN_MAX);
    let hits = hits.max(0) as u64;
    Ok(JobCount {
        count: hits.min(JOB_COUNT_CAP),
        exact: walked_all && hits <= JOB_COUNT_CAP,
    })
}
