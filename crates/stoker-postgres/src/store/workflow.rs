//! Workflows (issue 18) on PostgreSQL: the insert of a graph, its state, its cancel, and a
//! job's dependency results. Edges are resolved by the trigger of migration 14, never here.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use stoker_core::{
    DepPolicy, DepTarget, DependencyEdge, DependencyResult, InvalidInput, JobId, JobInsertParams,
    JobState, StoreError, StoreResult, WorkflowCancelParams, WorkflowCounts, WorkflowId,
    WorkflowInsertParams, WorkflowInserted, WorkflowJob, WorkflowRow, WorkflowState,
};

use super::{InsertBatch, PgStore};
use crate::error::store_error;

/// A workflow's row: name, tenant, created_at, cancelled_at.
type WorkflowHead = (
    String,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// A dependency as read: parent id, node, state, result, policy.
type DependencyRead = (i64, Option<String>, String, Option<Value>, String);

fn state(text: &str) -> StoreResult<JobState> {
    text.parse::<JobState>()
        .map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn policy(text: &str) -> StoreResult<DepPolicy> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown dependency policy {text:?}")))
}

impl PgStore {
    fn wf_tables(&self) -> (String, String, String) {
        let s = &self.inner.schema;
        (
            format!("\"{s}\".stoker_jobs"),
            format!("\"{s}\".stoker_workflows"),
            format!("\"{s}\".stoker_deps"),
        )
    }

    /// Reads a workflow's row, counts, held jobs and (once completed) final results.
    async fn workflow_on(
        &self,
        conn: &mut PgConnection,
        id: WorkflowId,
    ) -> StoreResult<Option<WorkflowRow>> {
        let (jobs, workflows, deps) = self.wf_tables();
        let row: Option<WorkflowHead> = sqlx::query_as(&format!(
            "SELECT name, tenant, created_at, cancelled_at FROM {workflows} WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error)?;
        let Some((name, tenant, created_at, cancelled_at)) = row else {
            return Ok(None);
        };
        let mut counts = WorkflowCounts::default();
        let by_state: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT state, count(*) FROM {jobs} WHERE workflow_id = $1 GROUP BY state"
        ))
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
        for (job_state, count) in by_state {
            counts.add(state(&job_state)?, count);
        }
        let held: i64 = sqlx::query_scalar(&format!(
            "SELECT count(DISTINCT c.id) FROM {jobs} AS c
             JOIN {deps} AS d ON d.child_id = c.id
             JOIN {jobs} AS p ON p.id = d.parent_id
             WHERE c.workflow_id = $1 AND c.state = 'blocked' AND NOT d.resolved
               AND d.policy = 'hold' AND p.state IN ('discarded', 'cancelled')"
        ))
        .bind(id.0)
        .fetch_one(&mut *conn)
        .await
        .map_err(store_error)?;
        let derived = WorkflowState::derive(&counts, held, cancelled_at.is_some());
        let result = if derived == WorkflowState::Completed {
            let finals: Vec<(String, Option<Value>)> = sqlx::query_as(&format!(
                "SELECT j.workflow_node, j.result FROM {jobs} AS j
                 WHERE j.workflow_id = $1 AND NOT EXISTS (
                     SELECT 1 FROM {deps} AS d JOIN {jobs} AS c ON c.id = d.child_id
                     WHERE d.parent_id = j.id AND c.workflow_id = j.workflow_id)
                 ORDER BY j.id"
            ))
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await
            .map_err(store_error)?;
            Some(Value::Object(
                finals
                    .into_iter()
                    .map(|(node, result)| (node, result.unwrap_or(Value::Null)))
                    .collect(),
            ))
        } else {
            None
        };
        Ok(Some(WorkflowRow {
            id,
            name,
            tenant,
            created_at,
            cancelled_at,
            state: derived,
            counts,
            held,
            result,
        }))
    }

    pub(super) async fn workflow_insert_impl(
        &self,
        params: WorkflowInsertParams,
    ) -> StoreResult<WorkflowInserted> {
        let (jobs, workflows, deps) = self.wf_tables();
        // A workflow's jobs are submissions like any insert's: the enqueue quotas (issue 16)
        // are taken in the same transaction, all or none.
        let quotas = self
            .flow_quota_demand(params.nodes.iter().map(|node| &node.job))
            .await?;
        self.listener_ready().await;
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        if !quotas.is_empty() {
            super::flow::flow_quota_take(&mut tx, &self.inner.schema, &quotas, params.now).await?;
        }

        // The workflow's existing nodes, when adding to one; its row stays locked so a cancel
        // waits for this insert (and this insert sees a cancel that committed first).
        let mut existing: HashMap<String, i64> = HashMap::new();
        if let Some(id) = params.workflow {
            let found: Option<(Option<String>, bool)> = sqlx::query_as(&format!(
                "SELECT tenant, cancelled_at IS NOT NULL FROM {workflows} WHERE id = $1 FOR UPDATE"
            ))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
            match found {
                Some((tenant, _)) if tenant != params.tenant => {
                    return Err(StoreError::NotFound(format!("workflow {id}")))
                }
                None => return Err(StoreError::NotFound(format!("workflow {id}"))),
                Some((_, true)) => {
                    return Err(StoreError::Conflict(format!(
                        "workflow {id} is cancelled: no job can be added to it"
                    )))
                }
                Some((_, false)) => {}
            }
            let nodes: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT workflow_node, id FROM {jobs} WHERE workflow_id = $1"
            ))
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
            existing.extend(nodes);
        }
        let existing_names: HashSet<String> = existing.keys().cloned().collect();
        params.validate(&existing_names, existing.len())?;

        let workflow = match params.workflow {
            Some(id) => id,
            None => WorkflowId(
                sqlx::query_scalar(&format!(
                    "INSERT INTO {workflows} (name, tenant, created_at) VALUES ($1, $2, $3)
                     RETURNING id"
                ))
                .bind(&params.name)
                .bind(&params.tenant)
                .bind(params.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?,
            ),
        };

        let batch = InsertBatch::new(JobInsertParams {
            jobs: params.nodes.iter().map(|node| node.job.clone()).collect(),
            now: params.now,
            max_args_bytes: params.max_args_bytes,
        })?;
        let queues = batch.distinct_queues();
        let (inserted, _) = batch.insert(&mut tx, &self.inner.sql, &queues).await?;
        let ids: Vec<i64> = inserted.iter().map(|job| job.id.0).collect();
        let new_ids: HashMap<&str, i64> = params
            .nodes
            .iter()
            .zip(&ids)
            .map(|(node, id)| (node.name.as_str(), *id))
            .collect();
        let new_set: HashSet<i64> = ids.iter().copied().collect();

        // Parents outside this call are flagged first: the row lock this takes orders this
        // insert with their finish. A finish that committed first shows in the state read
        // here; one that commits after sees the flag and the edges, and resolves them.
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
            let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(&format!(
                "UPDATE {jobs} SET has_dependents = true WHERE id = ANY($1)
                 RETURNING id, state, tenant"
            ))
            .bind(&outside)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
            for (id, job_state, tenant) in rows {
                if tenant == params.tenant {
                    outside_state.insert(id, state(&job_state)?);
                }
            }
        }

        let mut parents_of: Vec<i64> = Vec::new();
        let mut children_of: Vec<i64> = Vec::new();
        let mut policies: Vec<&str> = Vec::new();
        let mut resolved_of: Vec<bool> = Vec::new();
        let mut pending: Vec<i32> = vec![0; ids.len()];
        for (i, node) in params.nodes.iter().enumerate() {
            for (d, dep) in node.depends_on.iter().enumerate() {
                let parent = match &dep.target {
                    DepTarget::Job(id) => id.0,
                    DepTarget::Node(name) => match new_ids.get(name.as_str()) {
                        Some(id) => *id,
                        None => existing[name],
                    },
                };
                let field = || format!("nodes[{i}].depends_on[{d}]");
                let resolved = match (new_set.contains(&parent), outside_state.get(&parent)) {
                    (true, _) => false,
                    (false, None) => {
                        return Err(InvalidInput::new(
                            field(),
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
                                field(),
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
                parents_of.push(parent);
                children_of.push(ids[i]);
                policies.push(dep.policy.as_str());
                resolved_of.push(resolved);
            }
        }
        if !parents_of.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {deps} (parent_id, child_id, policy, resolved)
                 SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bool[])"
            ))
            .bind(&parents_of)
            .bind(&children_of)
            .bind(&policies)
            .bind(&resolved_of)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        let parents: HashSet<i64> = parents_of.iter().copied().collect();
        let names: Vec<&str> = params.nodes.iter().map(|node| node.name.as_str()).collect();
        let has_dependents: Vec<bool> = ids.iter().map(|id| parents.contains(id)).collect();
        sqlx::query(&format!(
            "UPDATE {jobs} AS j
             SET workflow_id = $1, workflow_node = m.node, pending_deps = m.pending,
                 has_dependents = m.has_dependents,
                 state = CASE WHEN m.pending > 0 THEN 'blocked' ELSE j.state END,
                 scheduled = CASE WHEN m.pending > 0 THEN false ELSE j.scheduled END
             FROM unnest($2::int8[], $3::text[], $4::int4[], $5::bool[])
                  AS m(id, node, pending, has_dependents)
             WHERE j.id = m.id"
        ))
        .bind(workflow.0)
        .bind(&ids)
        .bind(&names)
        .bind(&pending)
        .bind(&has_dependents)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
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
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        self.workflow_on(&mut conn, id).await
    }

    pub(super) async fn workflow_jobs_impl(&self, id: WorkflowId) -> StoreResult<Vec<WorkflowJob>> {
        let (jobs, _, deps) = self.wf_tables();
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(&format!(
            "SELECT id, workflow_node, kind, state FROM {jobs} WHERE workflow_id = $1 ORDER BY id"
        ))
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut index: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
        for (job_id, node, kind, job_state) in rows {
            index.insert(job_id, out.len());
            out.push(WorkflowJob {
                id: JobId(job_id),
                node,
                kind,
                state: state(&job_state)?,
                depends_on: Vec::new(),
            });
        }
        let edges: Vec<(i64, i64, String, bool)> = sqlx::query_as(&format!(
            "SELECT d.child_id, d.parent_id, d.policy, d.resolved FROM {deps} AS d
             JOIN {jobs} AS c ON c.id = d.child_id
             WHERE c.workflow_id = $1 ORDER BY d.child_id, d.parent_id"
        ))
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
        for (child, parent, edge_policy, resolved) in edges {
            if let Some(&i) = index.get(&child) {
                out[i].depends_on.push(DependencyEdge {
                    id: JobId(parent),
                    policy: policy(&edge_policy)?,
                    resolved,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn workflow_cancel_impl(
        &self,
        params: WorkflowCancelParams,
    ) -> StoreResult<WorkflowRow> {
        let (jobs, workflows, _) = self.wf_tables();
        let channel = crate::builder::channel_name(&self.inner.schema);
        let mut conn = self.inner.pool.acquire().await.map_err(store_error)?;
        let mut tx = conn.begin().await.map_err(store_error)?;
        let found: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE {workflows} SET cancelled_at = COALESCE(cancelled_at, $1)
             WHERE id = $2 RETURNING id"
        ))
        .bind(params.now)
        .bind(params.id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("workflow {}", params.id)));
        }
        // One statement: the edge trigger runs after it, when its jobs are already cancelled.
        // Running jobs get their cancel requested, and their workers are told.
        sqlx::query(&format!(
            "WITH upd AS (
                 UPDATE {jobs} SET
                     state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
                     finished_at = CASE WHEN state = 'running' THEN finished_at ELSE $1 END,
                     scheduled = false,
                     cancel_requested_at = CASE WHEN state = 'running'
                                                THEN COALESCE(cancel_requested_at, $1)
                                                ELSE cancel_requested_at END
                 WHERE workflow_id = $2
                   AND state IN ('blocked', 'available', 'retryable', 'running')
                 RETURNING id, state
             )
             SELECT count(pg_notify($3, 'c:' || id)) FROM upd WHERE state = 'running'"
        ))
        .bind(params.now)
        .bind(params.id.0)
        .bind(&channel)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        let row = self
            .workflow_on(&mut tx, params.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("workflow {}", params.id)))?;
        tx.commit().await.map_err(store_error)?;
        Ok(row)
    }

    pub(super) async fn job_dependency_results_impl(
        &self,
        id: JobId,
    ) -> StoreResult<Vec<DependencyResult>> {
        let (jobs, _, deps) = self.wf_tables();
        let rows: Vec<DependencyRead> = sqlx::query_as(&format!(
            "SELECT d.parent_id, p.workflow_node, p.state, p.result, d.policy
                 FROM {deps} AS d JOIN {jobs} AS p ON p.id = d.parent_id
                 WHERE d.child_id = $1 ORDER BY d.parent_id"
        ))
        .bind(id.0)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|(parent, node, job_state, result, edge_policy)| {
                Ok(DependencyResult {
                    id: JobId(parent),
                    node,
                    state: state(&job_state)?,
                    result,
                    policy: policy(&edge_policy)?,
                })
            })
            .collect()
    }

    pub(super) async fn job_workflow_impl(
        &self,
        id: JobId,
    ) -> StoreResult<Option<(WorkflowId, String)>> {
        let (jobs, _, _) = self.wf_tables();
        let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(&format!(
            "SELECT workflow_id, workflow_node FROM {jobs} WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(store_error)?;
        Ok(match row {
            Some((Some(workflow), Some(node))) => Some((WorkflowId(workflow), node)),
            _ => None,
        })
    }
}
