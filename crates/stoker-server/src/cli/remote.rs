//! The CLI talking to a running `stoker serve` over its HTTP API, with the API's own types.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use stoker::{JobId, JobState};

use super::backend::{EnqueueInput, RetryProgress, StatsOutput};
use super::CliError;
use crate::api::model::{
    EnqueueRequest, EnqueueResponse, ErrorBody, ErrorCode, HandlerList, JobList, JobMetadata,
    JobView, ListJobsQuery, OnFinishSpec, PriorityLevel, QueueList, QueueView, RetryJobsRequest,
    RetryJobsResponse, StatsResponse, WorkerList, WorkerView,
};
use crate::handlers::HandlerInfo;

/// How long one request may take. Bulk retries of many jobs run in one request, so this is
/// generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A client of one server's API.
pub(crate) struct Remote {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Remote {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:7700`), sending `token` as a
    /// bearer token when given.
    pub(crate) fn new(url: &str, token: Option<&str>) -> Result<Remote, CliError> {
        let mut base = Url::parse(url).map_err(|err| {
            CliError::Invalid(format!(
                "--server {url:?} is not a URL such as http://127.0.0.1:7700: {err}"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::Invalid(format!(
                "--server {url:?} must be an http:// or https:// URL"
            )));
        }
        // Routes are joined onto the base, so it must end with a slash to keep any path prefix
        // (a server behind a proxy at https://example.com/stoker/).
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("stoker-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| CliError::Http {
                message: "could not set up the HTTP client".to_owned(),
                source: Some(err),
            })?;
        Ok(Remote {
            http,
            base,
            token: token.filter(|token| !token.is_empty()).map(str::to_owned),
        })
    }

    /// The server's URL.
    pub(crate) fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        let url = self.base.join(path).map_err(|err| {
            CliError::Invalid(format!(
                "{path:?} does not make a URL with {}: {err}",
                self.base
            ))
        })?;
        let builder = self.http.request(method, url);
        Ok(match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        })
    }

    /// Sends a request and decodes the answer, turning the API's error bodies into
    /// [`CliError`]s by their code.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, CliError> {
        let response = request.send().await.map_err(|err| CliError::Http {
            message: format!("could not reach the server at {}", self.base_url()),
            source: Some(err),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|err| CliError::Http {
            message: format!(
                "the server at {} broke off its answer (HTTP {status})",
                self.base_url()
            ),
            source: Some(err),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|err| CliError::Http {
                message: format!(
                    "the server at {} answered with something other than Stoker's API \
                     (HTTP {status}): {err}",
                    self.base_url()
                ),
                source: None,
            });
        }
        Err(self.error(status, &bytes))
    }

    fn error(&self, status: StatusCode, bytes: &[u8]) -> CliError {
        let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(bytes) else {
            let text = String::from_utf8_lossy(bytes);
            let text: String = text.trim().chars().take(300).collect();
            return match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Unauthorized(
                    format!("the server refused the request (HTTP {status}): {text}"),
                ),
                _ => CliError::Server {
                    status: status.as_u16(),
                    message: format!("{text} (is {} a Stoker server?)", self.base_url()),
                },
            };
        };
        let message = error.message;
        match error.code {
            ErrorCode::MalformedJson
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::BodyTooLarge
            | ErrorCode::InvalidField
            | ErrorCode::UnknownState
            | ErrorCode::InvalidDate => CliError::Invalid(match error.field {
                // Name the field at fault unless the message does.
                Some(field) if !message.contains(field.as_str()) => {
                    format!("{field}: {message}")
                }
                _ => message,
            }),
            ErrorCode::NotFound => CliError::NotFound(message),
            ErrorCode::Conflict | ErrorCode::LeaseLost => CliError::Conflict(message),
            ErrorCode::Unauthorized => CliError::Unauthorized(format!(
                "{message} (pass the server's token with --token or STOKER_API_TOKEN)"
            )),
            ErrorCode::MissingScope | ErrorCode::TenantForbidden => CliError::Unauthorized(message),
            ErrorCode::RouteNotFound | ErrorCode::MethodNotAllowed => CliError::Server {
                status: status.as_u16(),
                message: format!(
                    "{message} (is {} a Stoker server of this version?)",
                    self.base_url()
                ),
            },
            ErrorCode::Unavailable
            | ErrorCode::QuotaExceeded
            | ErrorCode::Internal
            | ErrorCode::Unknown => CliError::Server {
                status: status.as_u16(),
                message,
            },
        }
    }

    /// A request with an optional JSON body, for the cron commands (issue 15).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, CliError> {
        let request = self.request(method, path)?;
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        self.send(request).await
    }

    /// `GET path`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(self.request(Method::GET, path)?).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        self.send(self.request(Method::POST, path)?.json(body))
            .await
    }

    // Generic calls for commands kept in their own modules (issue 13's `cli::failures`).

    /// `GET path` with a query string.
    pub(crate) async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, CliError> {
        self.send(self.request(Method::GET, path)?.query(query))
            .await
    }

    /// `POST path` without a body.
    pub(crate) async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(self.request(Method::POST, path)?).await
    }

    pub(crate) async fn enqueue(&self, input: EnqueueInput) -> Result<EnqueueResponse, CliError> {
        let metadata = JobMetadata {
            correlation_id: input.correlation_id,
            parent_id: None,
            // Left to the server, which records the API token's name.
            source: None,
            tags: input.tags,
            cron: None,
        };
        let request = EnqueueRequest {
            kind: input.kind,
            args: input.args,
            queue: input.queue,
            priority: input.priority.map(PriorityLevel),
            run_at: input.run_at,
            delay_seconds: input.delay.map(|delay| delay.as_secs_f64()),
            max_attempts: input.max_attempts,
            idempotency_key: input.idempotency_key,
            tenant: input.tenant,
            metadata: (metadata != JobMetadata::default()).then_some(metadata),
            timeout_seconds: input.timeout.map(|timeout| timeout.as_secs_f64()),
            backoff: None,
            on_finish: input.on_finish.map(|url| OnFinishSpec { url, queue: None }),
        };
        self.post("v1/jobs", &request).await
    }

    // --- stream search ---
    /// One page of a search: the query goes as `q` (the server parses it with its clock), the
    /// flags' criteria as the other parameters.
    pub(crate) async fn search(
        &self,
        input: super::backend::SearchInput,
    ) -> Result<JobList, CliError> {
        let join = |values: Vec<String>| (!values.is_empty()).then(|| values.join(","));
        let criteria = input.criteria;
        let query = ListJobsQuery {
            state: join(
                criteria
                    .states
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            ),
            kind: join(criteria.kinds),
            queue: join(criteria.queues),
            tenant: criteria.tenant,
            cursor: input.cursor.map(|id| id.0),
            limit: Some(input.limit),
            q: input.query,
            direction: Some(input.direction),
            count: input.count.then_some(true),
            ..ListJobsQuery::default()
        };
        self.send(self.request(Method::GET, "v1/jobs")?.query(&query))
            .await
    }

    pub(crate) async fn get_job(&self, id: JobId) -> Result<JobView, CliError> {
        self.get(&format!("v1/jobs/{id}")).await
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<JobView, CliError> {
        self.send(self.request(Method::POST, &format!("v1/jobs/{id}/retry"))?)
            .await
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<JobView, CliError> {
        self.send(self.request(Method::POST, &format!("v1/jobs/{id}/cancel"))?)
            .await
    }

    pub(crate) async fn delete(&self, id: JobId) -> Result<JobView, CliError> {
        self.send(self.request(Method::DELETE, &format!("v1/jobs/{id}"))?)
            .await
    }

    /// Retries discarded jobs through `POST /v1/jobs/retry`, `batch` at a time, reporting the
    /// running count after each request. The first answer's `retried + remaining` is the total;
    /// each request is bounded by what matched when it started, so jobs that fail again meanwhile
    /// are retried by a later request at most.
    pub(crate) async fn retry_discarded(
        &self,
        queues: &[String],
        kinds: &[String],
        batch: u32,
        progress: &mut (dyn RetryProgress + Send),
    ) -> Result<u64, CliError> {
        let request = RetryJobsRequest {
            states: Some(vec![JobState::Discarded]),
            queues: queues.to_vec(),
            kinds: kinds.to_vec(),
            tenant: None,
            limit: Some(u64::from(batch)),
        };
        let mut done = 0;
        loop {
            let response: RetryJobsResponse = self.post("v1/jobs/retry", &request).await?;
            if done == 0 {
                progress.start(Some(response.retried + response.remaining));
            }
            done += response.retried;
            progress.update(done);
            if response.retried == 0 || response.remaining == 0 {
                return Ok(done);
            }
        }
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueView>, CliError> {
        Ok(self.get::<QueueList>("v1/queues").await?.queues)
    }

    pub(crate) async fn pause(&self, queue: &str, paused: bool) -> Result<(), CliError> {
        let action = if paused { "pause" } else { "resume" };
        let mut url = self
            .base
            .join("v1/queues/")
            .map_err(|err| CliError::Invalid(format!("{} is not a base URL: {err}", self.base)))?;
        // The queue name is one path segment, escaped as such.
        url.path_segments_mut()
            .map_err(|()| CliError::Invalid(format!("{} is not a base URL", self.base)))?
            .pop_if_empty()
            .push(queue)
            .push(action);
        let builder = self.http.post(url);
        let builder = match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        self.send::<serde_json::Value>(builder).await.map(drop)
    }

    pub(crate) async fn workers(&self) -> Result<Vec<WorkerView>, CliError> {
        Ok(self.get::<WorkerList>("v1/workers").await?.workers)
    }

    pub(crate) async fn stats(&self) -> Result<StatsOutput, CliError> {
        Ok(self.get::<StatsResponse>("v1/stats").await?.into())
    }

    pub(crate) async fn handlers(&self) -> Result<Vec<HandlerInfo>, CliError> {
        let list: HandlerList = self.get("v1/handlers").await?;
        Ok(list
            .handlers
            .into_iter()
            .map(|handler| HandlerInfo {
                kind: handler.kind,
                description: handler.description,
            })
            .collect())
    }

    // --- stream events ---

    /// A request for a response that streams (`GET /v1/events`): no overall time limit, as a
    /// stream lasts as long as it is followed.
    pub(crate) fn stream_request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<RequestBuilder, CliError> {
        /// Longer than any stream is followed; reqwest takes no "never".
        const STREAM_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 86_400);
        Ok(self.request(method, path)?.timeout(STREAM_TIMEOUT))
    }

    /// Sends a streaming request and hands back its server-sent events, or the API's error
    /// as a [`CliError`].
    pub(crate) async fn open_stream(
        &self,
        request: RequestBuilder,
    ) -> Result<super::events::SseReader, CliError> {
        let response = request.send().await.map_err(|err| CliError::Http {
            message: format!("could not reach the server at {}", self.base_url()),
            source: Some(err),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(super::events::SseReader::new(response));
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(self.error(status, &bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_path_prefix_and_refuses_other_schemes() {
        let remote = Remote::new("https://example.com/stoker", None).unwrap();
        assert_eq!(remote.base_url(), "https://example.com/stoker");
        assert_eq!(
            remote.base.join("v1/jobs").unwrap().as_str(),
            "https://example.com/stoker/v1/jobs"
        );
        assert!(matches!(
            Remote::new("ftp://example.com", None),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(
            Remote::new("localhost:7700", None),
            Err(CliError::Invalid(_))
        ));
    }

    #[test]
    fn maps_api_errors_to_exit_codes() {
        let remote = Remote::new("http://127.0.0.1:1", None).unwrap();
        let body = |code: &str, message: &str| {
            serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": message}}))
                .unwrap()
        };
        let err = remote.error(
            StatusCode::NOT_FOUND,
            &body("not_found", "job 42 not found"),
        );
        assert_eq!(err.to_string(), "job 42 not found");
        assert_eq!(err.code(), 3);
        let err = remote.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &body("invalid_field", "bad"),
        );
        assert_eq!(err.code(), 2);
        assert_eq!(
            remote
                .error(StatusCode::CONFLICT, &body("conflict", "running"))
                .code(),
            4
        );
        assert_eq!(
            remote
                .error(StatusCode::UNAUTHORIZED, &body("unauthorized", "no token"))
                .code(),
            5
        );
        assert_eq!(
            remote
                .error(StatusCode::BAD_GATEWAY, b"<html>proxy error</html>")
                .code(),
            1
        );
    }
}
