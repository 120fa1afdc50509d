//! The counts of finished jobs in `stoker_job_counts`, kept by the store's own statements.
//!
//! Every path that moves a job into or out of a finished state writes the change to the
//! counts in the same transaction, so the counts move with the rows or not at all. The
//! acknowledgement, the hot path, counts in SQL within its own statements (see
//! `finish::FINISH_SQL`); the rarer paths (cancel, retry, bulk retry, delete, prune) gather
//! what they changed in a [`CountDeltas`] and write it with [`CountDeltas::apply`]. Per-row
//! triggers did this until schema version 4: SQLite ran two for every claimed job and two
//! for every acknowledged one.

use std::collections::BTreeMap;

use sqlx::SqliteConnection;
use stoker_core::{JobState, StoreResult};

use crate::error::db_error;
use crate::row::to_json;

/// Adds each `[queue, kind, tenant, state, n]` of the JSON array `?1` (every `n` positive)
/// to its counter. `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to the
/// insert.
const ADD_SQL: &str = "
INSERT INTO stoker_job_counts (queue, kind, tenant, state, count)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?1)
WHERE true
ON CONFLICT (queue, kind, tenant, state) DO UPDATE SET count = count + excluded.count";

/// Takes each `[queue, kind, tenant, state, n]` of the JSON array `?1` from its counter,
/// never below zero.
const SUBTRACT_SQL: &str = "
UPDATE stoker_job_counts SET count = MAX(count - d.n, 0)
FROM (SELECT value ->> 0 AS queue, value ->> 1 AS kind, value ->> 2 AS tenant,
             value ->> 3 AS state, value ->> 4 AS n
      FROM json_each(?1)) AS d
WHERE stoker_job_counts.queue = d.queue AND stoker_job_counts.kind = d.kind
  AND stoker_job_counts.tenant = d.tenant AND stoker_job_counts.state = d.state";

/// Changes to the finished counts, by queue, kind, tenant ('' for none) and state, not yet
/// written.
#[derive(Debug, Default)]
pub(crate) struct CountDeltas(BTreeMap<(String, String, String, &'static str), i64>);

impl CountDeltas {
    /// A job of `queue`, `kind` and `tenant` entered `state`: counted if `state` is finished.
    pub(crate) fn entered(
        &mut self,
        queue: &str,
        kind: &str,
        tenant: Option<&str>,
        state: JobState,
    ) {
        self.add(queue, kind, tenant, state, 1);
    }

    /// A job of `queue`, `kind` and `tenant` left `state` (or was deleted in it).
    pub(crate) fn left(&mut self, queue: &str, kind: &str, tenant: Option<&str>, state: JobState) {
        self.add(queue, kind, tenant, state, -1);
    }

    fn add(&mut self, queue: &str, kind: &str, tenant: Option<&str>, state: JobState, delta: i64) {
        if state.is_finished() {
            let key = (
                queue.to_owned(),
                kind.to_owned(),
                tenant.unwrap_or_default().to_owned(),
                state.as_str(),
            );
            *self.0.entry(key).or_default() += delta;
        }
    }

    /// Writes the changes on `conn`, which should be inside the transaction that made them:
    /// one statement for the counters that grew, one for those that shrank, none for neither.
    pub(crate) async fn apply(self, conn: &mut SqliteConnection) -> StoreResult<()> {
        let mut added = Vec::new();
        let mut subtracted = Vec::new();
        for ((queue, kind, tenant, state), delta) in self.0 {
            let row = (queue, kind, tenant, state, delta.abs());
            match delta.signum() {
                1 => added.push(row),
                -1 => subtracted.push(row),
                _ => {}
            }
        }
        for (sql, rows) in [(ADD_SQL, added), (SUBTRACT_SQL, subtracted)] {
            if !rows.is_empty() {
                sqlx::query(sql)
                    .bind(to_json(&rows)?)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(())
    }
}
