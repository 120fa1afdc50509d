//! Waking the workers of jobs a finished dependency released (issue 18).
//!
//! The trigger `stoker_jobs_resolve_deps` makes a blocked job available in the transaction
//! that finishes its last dependency, but a trigger cannot reach this process's event channel.
//! So after such a transaction commits, the store reads which queues got released jobs and
//! sends `JobsAvailable` for each, as an insert into them does; without it a released job
//! waits for its workers' next poll. Callers only come here when a finished job had
//! dependents (`has_dependents`), so a finish of ordinary jobs costs nothing more.

use stoker_core::StoreEvent;

use super::SqliteStore;
use crate::error::db_error;
use crate::row::to_json;

/// The queues with available, due jobs among the dependents of the jobs in the JSON array
/// `?1`, which just finished. A parent that did not complete cancels its children on
/// `cancel` edges, and those pass the walk on to their own dependents (a `run` edge releases
/// a grandchild), so the walk goes on through cancelled children. Released jobs whose
/// `run_at` is still ahead are left to staging, which sends its own event. Batch members
/// (issue 18) come here too: the callback their batch released is woken the same way.
const RELEASED_QUEUES_SQL: &str = "
WITH RECURSIVE finished(id) AS (
    SELECT value FROM json_each(?1)
    UNION
    SELECT c.id
    FROM finished AS f
    JOIN stoker_deps AS d ON d.parent_id = f.id
    JOIN stoker_jobs AS c ON c.id = d.child_id
    WHERE c.state = 'cancelled' AND c.has_dependents
)
SELECT DISTINCT c.queue
FROM finished AS f
JOIN stoker_deps AS d ON d.parent_id = f.id
JOIN stoker_jobs AS c ON c.id = d.child_id
WHERE c.state = 'available' AND NOT c.scheduled
UNION
SELECT c.queue
FROM stoker_jobs AS m
JOIN stoker_batches AS b ON b.id = m.batch_id
JOIN stoker_jobs AS c ON c.id = b.callback_id
WHERE m.id IN (SELECT value FROM json_each(?1)) AND c.state = 'available' AND NOT c.scheduled";

impl SqliteStore {
    /// Sends `JobsAvailable` for every queue that got jobs released by the committed finish of
    /// `parents` (jobs with dependents).
    ///
    /// The finish is already committed, so a failed read is no error of the caller's: it is
    /// logged, and the released jobs wait for the next poll as they would without this.
    pub(super) async fn wake_released(&self, parents: Vec<i64>) {
        let read = async {
            let parents = to_json(&parents)?;
            sqlx::query_scalar::<_, String>(RELEASED_QUEUES_SQL)
                .bind(parents)
                .fetch_all(&mut *self.read().await?)
                .await
                .map_err(db_error)
        };
        match read.await {
            Ok(queues) => {
                for queue in queues {
                    self.notify(StoreEvent::JobsAvailable { queue });
                }
            }
            Err(err) => tracing::warn!(
                %err,
                "could not read which queues finished dependencies released; \
                 their workers will find the jobs at their next poll"
            ),
        }
    }
}
