//! Live events (issue 13): `GET /v1/events`, server-sent events of job state changes and a
//! once-a-second snapshot, from the client's [`EventHub`](stoker::EventHub).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;
use stoker::{Event, EventFilter, JobId};
use utoipa::{IntoParams, ToSchema};

use super::extract::ApiQuery;
use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// How often a comment line keeps an idle stream (and the proxies on its way) open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The longest `timeout_secs`: a day.
const TIMEOUT_MAX_SECS: u64 = 86_400;

/// `GET /v1/events`: which events to stream. Every filter given must hold (AND). This type
/// documents the parameters; [`EventsRequest::parse`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Follow these jobs: ids separated by commas (the parameter may also repeat); at most
    /// 100. The stream first shows each as it is now, and sends `end` and closes once all of
    /// them are finished (completed, discarded or cancelled).
    #[param(pattern = r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$")]
    pub job: Option<String>,
    /// Only jobs with this correlation id.
    #[param(pattern = r"^[ -~]{1,255}$")]
    pub correlation_id: Option<String>,
    /// Only jobs of this queue.
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub queue: Option<String>,
    /// Only jobs of this kind.
    #[param(pattern = r"^[!-~]{1,255}$")]
    pub kind: Option<String>,
    /// Only this tenant's jobs (forced to the token's tenant for tenant-bound tokens).
    #[param(pattern = r"^[ -~]{1,255}$")]
    pub tenant: Option<String>,
    /// Send the once-a-second `snapshot` events. Defaults to true. A tenant-bound token gets
    /// its tenant's snapshot (its jobs' counts, queues, minute and workers).
    pub snapshot: Option<bool>,
    /// Send the `job` events. Defaults to true.
    pub jobs: Option<bool>,
    /// Close the stream after this many seconds (1 to 86,400). Defaults to never: the stream
    /// lasts until the client disconnects (or its followed jobs end).
    #[param(minimum = 1, maximum = 86_400)]
    pub timeout_secs: Option<u64>,
}

/// The parameters of `GET /v1/events`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    /// Which events.
    pub filter: EventFilter,
    /// When the stream closes by itself, if ever.
    pub timeout: Option<Duration>,
}

impl EventsRequest {
    /// Reads the query string's pairs, refusing unknown parameters and bad values by name.
    ///
    /// # Errors
    ///
    /// An [`ApiError`] naming the parameter at fault.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut request = EventsRequest {
            filter: EventFilter::new(),
            timeout: None,
        };
        let filter = &mut request.filter;
        for (name, value) in pairs {
            match name.as_str() {
                "job" => {
                    for part in value.split(',') {
                        let id = part
                            .trim()
                            .parse::<i64>()
                            .ok()
                            .filter(|id| *id >= 1)
                            .ok_or_else(|| {
                                ApiError::invalid(
                                    "job",
                                    format!("must be a job id (1 or more), got {part:?}"),
                                )
                            })?;
                        filter.jobs.push(JobId(id));
                    }
                    if filter.jobs.len() > stoker::EVENTS_MAX_JOBS {
                        return Err(ApiError::invalid(
                            "job",
                            format!(
                                "names more than {max} jobs; a stream follows at most {max}",
                                max = stoker::EVENTS_MAX_JOBS
                            ),
                        ));
                    }
                }
                "correlation_id" => {
                    filter.correlation_id = Some(text("correlation_id", value, true)?);
                }
                "queue" => filter.queue = Some(value),
                "kind" => filter.kind = Some(text("kind", value, false)?),
                "tenant" => filter.tenant = Some(text("tenant", value, true)?),
                "snapshot" => filter.snapshot = boolean("snapshot", &value)?,
                "jobs" => filter.job_events = boolean("jobs", &value)?,
                "timeout_secs" => {
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|secs| (1..=TIMEOUT_MAX_SECS).contains(secs))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "timeout_secs",
                                format!(
                                    "must be a whole number of seconds from 1 to \
                                     {TIMEOUT_MAX_SECS}, got {value:?}"
                                ),
                            )
                        })?;
                    request.timeout = Some(Duration::from_secs(secs));
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        format!(
                            "unknown parameter {other:?}: expected job, correlation_id, queue, \
                             kind, tenant, snapshot, jobs or timeout_secs"
                        ),
                    ))
                }
            }
        }
        Ok(request)
    }
}

/// The name of a live event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    /// A job changed state; `data` is the job event.
    Job,
    /// The once-a-second snapshot; `data` is the snapshot.
    Snapshot,
    /// Every followed job is finished; `data` is `{}` and the stream closes.
    End,
}

/// One server-sent event of `GET /v1/events`, as an event-stream parser reads it: its name
/// and its one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventsItem {
    /// What happened.
    pub event: EventName,
    /// The event as one line of JSON. `job`: `{"id", "state", "queue", "kind", "tenant",
    /// "correlation_id", "attempt", "at", "error"}`. `snapshot`: `{"at", "states",
    /// "queues": [{"name", "paused", "states", "oldest_waiting_secs"}], "minute":
    /// {"enqueued", "started", "completed", "failed", "discarded"}, "workers_alive"}`, where
    /// `states` has a count for each of available, scheduled, blocked, running, retryable,
    /// completed, discarded and cancelled. `end`: `{}`.
    pub data: String,
}

/// 1 to 255 printable ASCII characters (with spaces when `spaces`), as the document says.
fn text(field: &str, value: String, spaces: bool) -> Result<String, ApiError> {
    let first = if spaces { ' ' } else { '!' };
    let printable = value.chars().all(|c| (first..='~').contains(&c));
    if value.is_empty() || value.len() > 255 || !printable {
        let what = if spaces {
            "printable ASCII"
        } else {
            "printable ASCII without spaces"
        };
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to 255 characters of {what}, got {value:?}"),
        ));
    }
    Ok(value)
}

fn boolean(field: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::invalid(
            field,
            format!("must be true or false, got {other:?}"),
        )),
    }
}

/// One live event as a server-sent event: its name, then its JSON.
fn sse(event: Event) -> SseEvent {
    let (name, data) = match &event {
        Event::Job(job) => ("job", serde_json::to_string(job)),
        Event::Snapshot(snapshot) => ("snapshot", serde_json::to_string(&**snapshot)),
        Event::End => ("end", Ok("{}".to_owned())),
    };
    SseEvent::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".to_owned()))
}

/// Live events: job state changes and a once-a-second snapshot (server-sent events).
///
/// A `text/event-stream` of events named `job` (a job changed state), `snapshot` (counts by
/// state and queue, the current minute's history, workers alive; computed once a second by
/// one task per server, whatever the number of streams) and `end` (every followed job is
/// finished; the stream then closes), each with one JSON `data:` line, and a `: keep-alive`
/// comment every 15 seconds.
///
/// Job events come from this server (its API and its built-in worker); jobs followed by
/// `job` or `correlation_id` are also read once a second, so changes made by other servers
/// and workers sharing the database show too (a correlation's jobs once this server has seen
/// them). Other processes' changes to queue, kind and tenant streams show in the snapshot's
/// counts. The stream ends when the client disconnects, after `timeout_secs`, or when the
/// server shuts down.
///
/// One `job` event per job is sent for: enqueues (one and bulk), the jobs a cron schedule
/// fires (and `run-now`), a workflow's jobs without dependencies, reservations and claims,
/// acknowledgements (completed, retryable, discarded, snoozed, cancelled), cancels, single
/// retries and rescues. Changes made many at a time, or inside the database, send no `job`
/// event and show in the snapshot's counts (and, for followed jobs, in their read once a
/// second): bulk retries (`POST /v1/jobs/retry`), bulk operations (`/v1/ops`, failure-group
/// retries and discards), a job released or cancelled by its dependencies, the delivery jobs
/// of alerts and completion callbacks (`on_finish`), and the stager's move of a scheduled job
/// to due work (no state change: `available` either way).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "stats",
    params(EventsQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = EventsItem),
        (status = 404, description = "`not_found`: a followed job does not exist (or is another tenant's)", body = ErrorBody),
        (status = 422, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let request = EventsRequest::parse(pairs)?;
    let events = state.client_for(&principal).events(request.filter).await?;
    let shutdown = state.inner.shutdown.clone();
    let deadline = request.timeout;
    let ends = async move {
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep(deadline) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            None => shutdown.cancelled().await,
        }
    };
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(events.take_until(ends).map(|event| Ok(sse(event))));
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_repeated_and_comma_separated_job_ids() {
        let request = EventsRequest::parse(pairs(&[("job", "3"), ("job", "4,5")])).unwrap();
        assert_eq!(request.filter.jobs, [JobId(3), JobId(4), JobId(5)]);
        assert!(request.filter.snapshot && request.filter.job_events);
        assert_eq!(request.timeout, None);
    }

    #[test]
    fn refuses_bad_values_by_name() {
        for (name, value) in [
            ("job", "0"),
            ("job", "x"),
            ("job", "1,,2"),
            ("snapshot", "yes"),
            ("jobs", "1"),
            ("timeout_secs", "0"),
            ("timeout_secs", "86401"),
            ("kind", "a b"),
            ("tenant", ""),
            ("correlation_id", "\u{e9}"),
            ("color", "red"),
        ] {
            let err = EventsRequest::parse(pairs(&[(name, value)])).unwrap_err();
            assert_eq!(err.field(), Some(name), "{name}={value}: {err}");
        }
        let many: Vec<(String, String)> =
            (1..=101).map(|id| ("job".into(), id.to_string())).collect();
        assert_eq!(EventsRequest::parse(many).unwrap_err().field(), Some("job"));
    }

    #[test]
    fn reads_switches_and_the_timeout() {
        let request = EventsRequest::parse(pairs(&[
            ("snapshot", "false"),
            ("jobs", "true"),
            ("timeout_secs", "5"),
            ("queue", "mailers"),
        ]))
        .unwrap();
        assert!(!request.filter.snapshot && request.filter.job_events);
        assert_eq!(request.timeout, Some(Duration::from_secs(5)));
        assert_eq!(request.filter.queue.as_deref(), Some("mailers"));
    }
}
