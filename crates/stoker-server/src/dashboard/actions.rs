//! The dashboard's buttons: each posts a form here, is checked (admin scope, form token; the
//! same-origin check ran in the session layer), and calls the [`stoker::Client`] operation
//! the matching `/v1` route calls. Then the browser is sent back where it came from, with a
//! notice, or to the bulk operation it started.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use stoker::{BulkAction, BulkFilter, BulkRequest, JobId};

use super::session::{local_path, see_other, Viewer};
use super::{Dash, DashError, Form};

/// Reads an action's form: checks the form token and the viewer's right to act.
fn checked(viewer: &Viewer, body: &Bytes) -> Result<Form, DashError> {
    let form = Form::parse(body);
    viewer.check_csrf(form.get("csrf"))?;
    viewer.require_act()?;
    Ok(form)
}

/// `back` with `done=code` added.
fn back_with(form: &Form, fallback: &str, code: &str) -> Response {
    let back = match form.get("back") {
        Some(back) => local_path(Some(back)),
        None => fallback.to_owned(),
    };
    let sep = if back.contains('?') { '&' } else { '?' };
    see_other(&format!("{back}{sep}done={code}"))
}

fn unknown(action: &str) -> DashError {
    DashError::new(
        StatusCode::NOT_FOUND,
        "No such action",
        format!("There is no action {action:?} here."),
    )
}

/// Who started an operation, as the API records it: the token's name, or `dashboard`.
fn actor(viewer: &Viewer) -> Option<String> {
    Some(
        viewer
            .principal
            .name
            .clone()
            .map_or_else(|| "dashboard".to_owned(), |name| format!("{name} (dashboard)")),
    )
}

/// `POST /ui/queues/{name}/pause|resume`.
pub(crate) async fn queue(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let client = dash.app.client_for(&viewer.principal);
    let code = match action.as_str() {
        "pause" => {
            client.pause(&name).await?;
            "paused"
        }
        "resume" => {
            client.resume(&name).await?;
            "resumed"
        }
        other => return Err(unknown(other)),
    };
    Ok(back_with(&form, "/queues", code))
}

fn job_id(id: &str) -> Result<JobId, DashError> {
    id.parse::<i64>().map(JobId).map_err(|_| {
        DashError::new(
            StatusCode::BAD_REQUEST,
            "Not a job id",
            format!("{id:?} is not a job id (a whole number)."),
        )
    })
}

/// `POST /ui/jobs/{id}/retry|cancel|delete`.
pub(crate) async fn job(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let id = job_id(&id)?;
    let client = dash.app.client_for(&viewer.principal);
    match action.as_str() {
        "retry" => {
            client.retry(id).await?;
            Ok(back_with(&form, &format!("/jobs/{id}"), "retried"))
        }
        "cancel" => {
            client.cancel(id).await?;
            Ok(back_with(&form, &format!("/jobs/{id}"), "cancelled"))
        }
        "delete" => {
            client.delete(id).await?;
            // The job's page is gone: back to the list.
            Ok(see_other("/jobs?done=deleted"))
        }
        other => Err(unknown(other)),
    }
}

/// The most jobs one "selected" action takes: a page of the list.
const SELECTED_MAX: usize = 100;

/// `POST /ui/jobs/selected`: retry, cancel or delete the ticked jobs, one by one (a page at
/// most); jobs whose state does not allow it are passed over.
pub(crate) async fn selected(
    State(dash): State<Dash>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let ids = form
        .all("id")
        .into_iter()
        .map(job_id)
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Tick at least one job, or use \"all matching\" for a bulk operation.",
        ));
    }
    if ids.len() > SELECTED_MAX {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Too many jobs",
            format!(
                "At most {SELECTED_MAX} jobs at once; use \"all matching\" for a bulk operation."
            ),
        ));
    }
    let client = dash.app.client_for(&viewer.principal);
    let action = form.get("action").unwrap_or_default();
    for id in ids {
        let result = match action {
            "retry" => client.retry(id).await.map(drop),
            "cancel" => client.cancel(id).await.map(drop),
            "delete" => client.delete(id).await.map(drop),
            other => return Err(unknown(other)),
        };
        match result {
            Ok(()) | Err(stoker::Error::Conflict(_) | stoker::Error::NotFound(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(back_with(&form, "/jobs", "selected"))
}

/// `POST /ui/ops`: a bulk operation over every job the search matches.
pub(crate) async fn bulk(
    State(dash): State<Dash>,
    viewer: Viewer,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let action = match form.get("action").unwrap_or_default() {
        "retry" => BulkAction::Retry,
        "cancel" => BulkAction::Cancel,
        "delete" => BulkAction::Delete,
        "discard" => BulkAction::Discard,
        other => return Err(unknown(other)),
    };
    let search = super::pages::parse_search(form.get("q").unwrap_or_default())
        .map_err(|message| DashError::new(StatusCode::BAD_REQUEST, "Search not understood", message))?;
    if search.id.is_some() {
        return Err(DashError::new(
            StatusCode::BAD_REQUEST,
            "Search not understood",
            "id: names one job; use the job's own buttons.",
        ));
    }
    let filter = BulkFilter {
        states: search.filter.states,
        queues: search.filter.queues,
        kinds: search.filter.kinds,
        tenant: search.filter.tenant,
        ..BulkFilter::default()
    };
    let mut request = BulkRequest::new(action, filter);
    request.created_by = actor(&viewer);
    let client = dash.app.client_for(&viewer.principal);
    let op = client.bulk_start(request).await?;
    Ok(see_other(&format!("/ops/{}", op.id)))
}

/// `POST /ui/ops/{id}/abort`.
pub(crate) async fn abort(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let id: i64 = id.parse().map_err(|_| {
        DashError::new(
            StatusCode::NOT_FOUND,
            "No such operation",
            format!("There is no bulk operation {id:?}."),
        )
    })?;
    let client = dash.app.client_for(&viewer.principal);
    client.bulk_abort(id).await?;
    Ok(back_with(&form, &format!("/ops/{id}"), "aborted"))
}

/// `POST /ui/failures/{fingerprint}/retry|discard`: a bulk operation over the group.
pub(crate) async fn failure_group(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((fingerprint, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    checked(&viewer, &body)?;
    let client = dash.app.client_for(&viewer.principal);
    let op = match action.as_str() {
        "retry" => {
            client
                .retry_failure_group(&fingerprint, actor(&viewer))
                .await?
        }
        "discard" => {
            client
                .discard_failure_group(&fingerprint, actor(&viewer))
                .await?
        }
        other => return Err(unknown(other)),
    };
    Ok(see_other(&format!("/ops/{}", op.id)))
}

/// `POST /ui/cron/{name}/pause|resume|run-now`.
pub(crate) async fn cron(
    State(dash): State<Dash>,
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = checked(&viewer, &body)?;
    let client = dash.app.client_for(&viewer.principal);
    let code = match action.as_str() {
        "pause" => {
            client.cron_pause(&name).await?;
            "cron-paused"
        }
        "resume" => {
            client.cron_resume(&name).await?;
            "cron-resumed"
        }
        "run-now" => {
            client.cron_run_now(&name).await?;
            "cron-run"
        }
        other => return Err(unknown(other)),
    };
    Ok(back_with(&form, "/cron", code))
}
