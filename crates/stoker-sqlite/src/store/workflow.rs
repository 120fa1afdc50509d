//! Workflows (issue 18) on SQLite: the insert of a graph, its state, its cancel, and a job's
//! dependency results. Edges are resolved by the trigger of migration 16, never here.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use stoker_core::{
    DepPolicy, DepTarget, DependencyEdge, DependencyResult, InvalidInput, JobId, JobInsertParams,
    JobState, StoreError, StoreEvent, StoreResult, WorkflowCancelParams, WorkflowCounts,
    WorkflowId, WorkflowInsertParams, WorkflowInserted, WorkflowJob, WorkflowRow, WorkflowState,
};

use super::{begin_write, SqliteStore};
use crate::counts::CountDeltas;
use crate::error::db_error;
use crate::insert;
use crate::row::{column, from_json, micros, parse_state, time_column, time_column_opt, to_json};

/// Reads a workflow's row, counts, held jobs and (once completed) final results.
async fn workflow_on(
    conn: &mut SqliteConnection,
    id: WorkflowId,
) -> StoreResult<Option<WorkflowRow>> {
    let Some(row) = sqlx::query(
        "SELECT id, name, tenant, created_at, cancelled_at FROM stoker_workflows WHERE id = ?1",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    else {
        return Ok(None);
    };
    let mut counts = WorkflowCounts::default();
    let by_state: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM stoker_jobs WHERE workflow_id = ?1 GROUP BY state",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    for (state, count) in by_state {
        counts.add(parse_state(&state)?, count);
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT c.id) FROM stoker_jobs AS c
         JOIN stoker_deps AS d ON d.child_id = c.id
         JOIN stoker_jobs AS p ON p.id = d.parent_id
         WHERE c.workflow_id = ?1 AND c.state = 'blocked' AND NOT d.resolved
           AND d.policy = 'hold' AND p.state IN ('discarded', 'cancelled')",
    )
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    let cancelled_at = time_column_opt(&row, 4, "cancelled_at")?;
    let state = WorkflowState::derive(&counts, held, cancelled_at.is_some());
    let result = if state == WorkflowState::Completed {
        let finals: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT j.workflow_node, j.result FROM stoker_jobs AS j
             WHERE j.workflow_id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM stoker_deps AS d JOIN stoker_jobs AS c ON c.id = d.child_id
                 WHERE d.parent_id = j.id AND c.workflow_id = j.workflow_id)
             ORDER BY j.id",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut map = serde_json::Map::new();
        for (node, result) in finals {
            let value = match result {
                Some(text) => from_json("result", &text)?,
                None => serde_json::Value::Null,
            };
            map.insert(node, value);
        }
        Some(serde_json::Value::Object(map))
    } else {
        None
    };
    Ok(Some(WorkflowRow {
        id,
        name: column(&row, 1, "name")?,
        tenant: column(&row, 2, "tenant")?,
        created_at: time_column(&row, 3, "created_at")?,
        cancelled_at,
        state,
        counts,
        held,
        result,
    }))
}

/// A dependency as read: parent id, node, state, result, policy.
type DependencyRead = (i64, Option<String>, String, Option<String>, String);

fn policy(text: &str) -> StoreResult<DepPolicy> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown dependency policy {text:?}")))
}

impl SqliteStore {
    pub(super) async fn workflow_insert_impl(
        &self,
        params: WorkflowInsertParams,
    ) -> StoreResult<WorkflowInserted> {
        // A workflow's jobs are submissions like any insert's: the enqueue quotas (issue 16)
        // are taken in the same transaction, all or none.
        let quotas = self
            .flow_quota_demand(params.nodes.iter().map(|node| &node.job))
            .await?;
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, &quotas, params.now).await?;
        }

        // The workflow's existing nodes, when adding to one.
        let mut existing: HashMap<String, i64> = HashMap::new();
        if let Some(id) = params.workflow {
            let found: Option<(Option<String>, Option<i64>)> =
                sqlx::query_as("SELECT tenant, cancelled_at FROM stoker_workflows WHERE id = ?1")
                    .bind(id.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            match found {
                Some((tenant, _)) if tenant != params.tenant => {
                    return Err(StoreError::NotFound(format!("workflow {id}")))
                }
                None => return Err(StoreError::NotFound(format!("workflow {id}"))),
                Some((_, Some(_))) => {
                    return Err(StoreError::Conflict(format!(
                        "workflow {id} is cancelled: no job can be added to it"
                    )))
                }
                Some((_, None)) => {}
            }
            let nodes: Vec<(String, i64)> =
                sqlx::query_as("SELECT workflow_node, id FROM stoker_jobs WHERE workflow_id = ?1")
                    .bind(id.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
            existing.extend(nodes);
        }
        let existing_names: HashSet<String> = existing.keys().cloned().collect();
        params.validate(&existing_names, existing.len())?;

        let workflow = match params.workflow {
            Some(id) => id,
            None => WorkflowId(
                sqlx::query_scalar(
                    "INSERT INTO stoker_workflows (name, tenant, created_at) VALUES (?1, ?2, ?3)
                     RETURNING id",
                )
                .bind(&params.name)
                .bind(&params.tenant)
                .bind(micros(params.now))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?,
            ),
        };

        let inserted = insert::insert_jobs(
            &mut tx,
            &JobInsertParams {
                jobs: params.nodes.iter().map(|node| node.job.clone()).collect(),
                now: params.now,
                max_args_bytes: params.max_args_bytes,
            },
        )
        .await?;
        let ids: Vec<i64> = inserted.jobs.iter().map(|job| job.id.0).collect();
        let new_ids: HashMap<&str, i64> = params
            .nodes
            .iter()
            .zip(&ids)
            .map(|(node, id)| (node.name.as_str(), *id))
            .collect();

        // Parents outside this call: their states decide whether an edge starts resolved.
        let outside: Vec<i64> = params
            .nodes
            .iter()
            .flat_map(|node| &node.depends_on)
            .filter_map(|dep| match &dep.target {
                DepTarget::Job(id) => Some(id.0),
                DepTarget::Node(name) if !new_ids.contains_key(name.as_str()) => {
                    existing.get(name).copied()
                }
                DepTarget::Node(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut outside_state: HashMap<i64, JobState> = HashMap::new();
        if !outside.is_empty() {
            let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT id, state, tenant FROM stoker_jobs
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(to_json(&outside)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            for (id, state, tenant) in rows {
                if tenant == params.tenant {
                    outside_state.insert(id, parse_state(&state)?);
                }
            }
        }

        let new_set: HashSet<i64> = ids.iter().copied().collect();
        // Each edge as [parent, child, policy, resolved], and each new job's unresolved count.
        let mut edges: Vec<(i64, i64, &str, bool)> = Vec::new();
        let mut pending: Vec<i64> = vec![0; ids.len()];
        for (i, node) in params.nodes.iter().enumerate() {
            for (d, dep) in node.depends_on.iter().enumerate() {
                let parent = match &dep.target {
                    DepTarget::Job(id) => id.0,
                    DepTarget::Node(name) => match new_ids.get(name.as_str()) {
                        Some(id) => *id,
                        None => existing[name],
                    },
                };
                let resolved = match (new_set.contains(&parent), outside_state.get(&parent)) {
                    (true, _) => false,
                    (false, None) => {
                        return Err(InvalidInput::new(
                            format!("nodes[{i}].depends_on[{d}]"),
                            format!(
                            "node {:?}: job {parent} does not exist or belongs to another tenant",
                            node.name
                        ),
                        )
                        .into())
                    }
                    (false, Some(JobState::Completed)) => true,
                    (false, Some(JobState::Discarded | JobState::Cancelled)) => match dep.policy {
                        DepPolicy::Run => true,
                        DepPolicy::Hold => false,
                        DepPolicy::Cancel => {
                            return Err(InvalidInput::new(
                                format!("nodes[{i}].depends_on[{d}]"),
                                format!(
                                "node {:?}: job {parent} already failed and the policy is cancel",
                                node.name
                            ),
                            )
                            .into())
                        }
                    },
                    (false, Some(_)) => false,
                };
                if !resolved {
                    pending[i] += 1;
                }
                edges.push((parent, ids[i], dep.policy.as_str(), resolved));
            }
        }
        let parents: HashSet<i64> = edges.iter().map(|edge| edge.0).collect();
        for chunk in edges.chunks(10_000) {
            sqlx::query(
                "INSERT INTO stoker_deps (parent_id, child_id, policy, resolved)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?1)",
            )
            .bind(to_json(chunk)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        // Each new job: [id, node, pending, has_dependents].
        let marks: Vec<(i64, &str, i64, bool)> = params
            .nodes
            .iter()
            .zip(&ids)
            .zip(&pending)
            .map(|((node, id), pending)| (*id, node.name.as_str(), *pending, parents.contains(id)))
            .collect();
        for chunk in marks.chunks(10_000) {
            sqlx::query(
                "UPDATE stoker_jobs
                 SET workflow_id = ?1, workflow_node = m.value ->> 1,
                     pending_deps = m.value ->> 2, has_dependents = m.value ->> 3,
                     state = CASE WHEN m.value ->> 2 > 0 THEN 'blocked' ELSE state END,
                     scheduled = CASE WHEN m.value ->> 2 > 0 THEN 0 ELSE scheduled END
                 FROM json_each(?2) AS m
                 WHERE stoker_jobs.id = m.value ->> 0",
            )
            .bind(workflow.0)
            .bind(to_json(chunk)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let outside_parents: Vec<i64> = parents
            .iter()
            .copied()
            .filter(|id| outside_state.contains_key(id))
            .collect();
        if !outside_parents.is_empty() {
            sqlx::query(
                "UPDATE stoker_jobs SET has_dependents = 1
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(to_json(&outside_parents)?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        drop(conn);
        let queues = params
            .nodes
            .iter()
            .zip(&pending)
            .filter(|(_, pending)| **pending == 0)
            .map(|(node, _)| node.job.queue.clone())
            .collect();
        self.notify_available(queues);
        Ok(WorkflowInserted {
            workflow,
            jobs: params
                .nodes
                .iter()
                .zip(ids)
                .map(|(node, id)| (node.name.clone(), JobId(id)))
                .collect(),
        })
    }

    pub(super) async fn workflow_get_impl(
        &self,
        id: WorkflowId,
    ) -> StoreResult<Option<WorkflowRow>> {
        let mut conn = self.read().await?;
        workflow_on(&mut conn, id).await
    }

    pub(super) async fn workflow_jobs_impl(&self, id: WorkflowId) -> StoreResult<Vec<WorkflowJob>> {
        let mut conn = self.read().await?;
        let rows: Vec<SqliteRow> = sqlx::query(
            "SELECT id, workflow_node, kind, state FROM stoker_jobs
             WHERE workflow_id = ?1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut index: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let job_id: i64 = column(row, 0, "id")?;
            index.insert(job_id, jobs.len());
            jobs.push(WorkflowJob {
                id: JobId(job_id),
                node: column(row, 1, "workflow_node")?,
                kind: column(row, 2, "kind")?,
                state: parse_state(&column::<String>(row, 3, "state")?)?,
                depends_on: Vec::new(),
            });
        }
        let edges: Vec<(i64, i64, String, bool)> = sqlx::query_as(
            "SELECT d.child_id, d.parent_id, d.policy, d.resolved FROM stoker_deps AS d
             JOIN stoker_jobs AS c ON c.id = d.child_id
             WHERE c.workflow_id = ?1 ORDER BY d.child_id, d.parent_id",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        for (child, parent, edge_policy, resolved) in edges {
            if let Some(&i) = index.get(&child) {
                jobs[i].depends_on.push(DependencyEdge {
                    id: JobId(parent),
                    policy: policy(&edge_policy)?,
                    resolved,
                });
            }
        }
        Ok(jobs)
    }

    pub(super) async fn workflow_cancel_impl(
        &self,
        params: WorkflowCancelParams,
    ) -> StoreResult<WorkflowRow> {
        let mut conn = self.write().await?;
        let mut tx = begin_write(&mut conn).await?;
        let now = micros(params.now);
        let found: Option<i64> = sqlx::query_scalar(
            "UPDATE stoker_workflows SET cancelled_at = COALESCE(cancelled_at, ?1)
             WHERE id = ?2 RETURNING id",
        )
        .bind(now)
        .bind(params.id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("workflow {}", params.id)));
        }
        // Waiting jobs end cancelled (the trigger leaves this workflow's jobs to this
        // statement); running ones get their cancel requested.
        let cancelled: Vec<(String, String, Option<String>, i64, bool)> = sqlx::query_as(
            "UPDATE stoker_jobs SET state = 'cancelled', finished_at = ?1, scheduled = 0
             WHERE workflow_id = ?2 AND state IN ('blocked', 'available', 'retryable')
             RETURNING queue, kind, tenant, id, has_dependents",
        )
        .bind(now)
        .bind(params.id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut counts = CountDeltas::default();
        for (queue, kind, tenant, ..) in &cancelled {
            counts.entered(queue, kind, tenant.as_deref(), JobState::Cancelled);
        }
        counts.apply(&mut tx).await?;
        let running: Vec<i64> = sqlx::query_scalar(
            "UPDATE stoker_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?1)
             WHERE workflow_id = ?2 AND state = 'running' RETURNING id",
        )
        .bind(now)
        .bind(params.id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let row = workflow_on(&mut tx, params.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("workflow {}", params.id)))?;
        tx.commit().await.map_err(db_error)?;
        for id in running {
            self.notify(StoreEvent::JobCancelRequested { id: JobId(id) });
        }
        // --- stream wake ---
        // Jobs outside the workflow may depend on the cancelled ones (on `run` edges).
        let parents: Vec<i64> = cancelled
            .iter()
            .filter(|job| job.4)
            .map(|job| job.3)
            .collect();
        if !parents.is_empty() {
            self.wake_released(parents).await;
        }
        Ok(row)
    }

    pub(super) async fn job_dependency_results_impl(
        &self,
        id: JobId,
    ) -> StoreResult<Vec<DependencyResult>> {
        let rows: Vec<DependencyRead> = sqlx::query_as(
            "SELECT d.parent_id, p.workflow_node, p.state, p.result, d.policy
             FROM stoker_deps AS d JOIN stoker_jobs AS p ON p.id = d.parent_id
             WHERE d.child_id = ?1 ORDER BY d.parent_id",
        )
        .bind(id.0)
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(parent, node, state, result, edge_policy)| {
                Ok(DependencyResult {
                    id: JobId(parent),
                    node,
                    state: parse_state(&state)?,
                    result: result.map(|text| from_json("result", &text)).transpose()?,
                    policy: policy(&edge_policy)?,
                })
            })
            .collect()
    }

    pub(super) async fn job_workflow_impl(
        &self,
        id: JobId,
    ) -> StoreResult<Option<(WorkflowId, String)>> {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT workflow_id, workflow_node FROM stoker_jobs WHERE id = ?1")
                .bind(id.0)
                .fetch_optional(&mut *self.read().await?)
                .await
                .map_err(db_error)?;
        Ok(match row {
            Some((Some(workflow), Some(node))) => Some((WorkflowId(workflow), node)),
            _ => None,
        })
    }
}
