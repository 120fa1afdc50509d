//! Job search (issue 14): the criteria of `GET /v1/jobs` (query parameters and the `q` query
//! language), shared with bulk operations, and a job's lineage.

use axum::extract::State;
use axum::Json;
use stoker::{Client, JobCriteria, JobId, StateView};

use super::extract::ApiPath;
use super::model::{ErrorBody, ErrorCode, JobLineageView, JobView, ListJobsQuery};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// Splits a comma-separated parameter into its non-empty parts.
fn split(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses state words (`failed` among them), naming `field` when one is unknown.
pub(crate) fn parse_state_views(names: &[String], field: &str) -> Result<Vec<StateView>, ApiError> {
    let mut views = Vec::new();
    for name in names {
        let parsed = StateView::parse_word(name).map_err(|_| {
            ApiError::new(
                ErrorCode::UnknownState,
                format!(
                    "unknown job state {name:?} in `{field}`: expected one of available, \
                     scheduled, running, retryable, completed, discarded, cancelled, failed"
                ),
            )
            .with_field(field)
        })?;
        for view in parsed {
            if !views.contains(&view) {
                views.push(view);
            }
        }
    }
    Ok(views)
}

/// Maps a criteria field to the query parameter that carries it.
fn param_name(field: &str) -> String {
    let (head, rest) = match field.find('[') {
        Some(at) => field.split_at(at),
        None => (field, ""),
    };
    let name = match head {
        "states" => "state",
        "kinds" => "kind",
        "queues" => "queue",
        "ids" => "id",
        "unique_key" => "idempotency_key",
        "worker_id" => "worker",
        other => other,
    };
    format!("{name}{rest}")
}

/// The criteria of a `GET /v1/jobs` request: its `q` parsed with the client's clock, joined
/// with the other parameters, checked, with errors naming the parameter.
pub(crate) fn criteria_from_query(
    client: &Client,
    query: &ListJobsQuery,
) -> Result<JobCriteria, ApiError> {
    let states = parse_state_views(&split(query.state.as_deref()), "state")?;
    let mut ids = Vec::new();
    for id in split(query.id.as_deref()) {
        match id.parse::<i64>() {
            Ok(id) if id >= 1 => ids.push(JobId(id)),
            _ => {
                return Err(ApiError::invalid(
                    "id",
                    format!("invalid id: {id:?} is not a job id (a whole number, 1 or more)"),
                ))
            }
        }
    }
    let params = JobCriteria {
        states,
        queues: split(query.queue.as_deref()),
        kinds: split(query.kind.as_deref()),
        tenant: query.tenant.clone(),
        failure_group: query.failure_group.clone(),
        created_after: query.created_after,
        created_before: query.created_before,
        ids,
        unique_key: query.idempotency_key.clone(),
        correlation_id: query.correlation_id.clone(),
        parent_id: query.parent_id.map(JobId),
        worker_id: query.worker.clone(),
        finished_after: query.finished_after,
        finished_before: query.finished_before,
        text: query.text.clone(),
    };
    let invalid = |err: stoker::InvalidInput| {
        let field = param_name(&err.field);
        ApiError::invalid(field.clone(), format!("invalid {field}: {}", err.reason))
    };
    let criteria = match query.q.as_deref() {
        Some(q) => {
            let parsed = client.parse_query(q).map_err(|err| match err {
                stoker::Error::Invalid(err) => {
                    ApiError::invalid("q", format!("invalid q: {}", err.reason))
                }
                other => other.into(),
            })?;
            stoker::merge_criteria(parsed, params).map_err(invalid)?
        }
        None => params,
    };
    criteria.validate_as("").map_err(invalid)?;
    Ok(criteria)
}

/// A job's parent and children.
///
/// The parent is the job that enqueued it (`metadata.parent_id`); the children are the jobs
/// it enqueued, newest first (at most 100; list them all with `GET /v1/jobs?parent_id=`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/lineage",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Its parent and children", body = JobLineageView),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn lineage(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobLineageView>, ApiError> {
    principal.require(Scope::Read)?;
    if id < 1 {
        return Err(ApiError::job_not_found(id));
    }
    let client = state.client_for(&principal);
    match client.lineage(JobId(id)).await? {
        Some(lineage) => Ok(Json(JobLineageView {
            parent: lineage.parent.map(JobView::from),
            children: lineage.children.into_iter().map(JobView::from).collect(),
            more_children: lineage.more_children,
        })),
        None => Err(ApiError::job_not_found(id)),
    }
}
