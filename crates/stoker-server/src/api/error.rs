//! [`ApiError`]: every error the API answers with, as `{"error": {"code", "message", "field"}}`.
//!
//! Handlers return `Result<_, ApiError>`. Store and internal failures are logged with their
//! cause and answered with a safe message; input errors name the field at fault. Axum's own
//! extractor rejections (bad JSON, a wrong content type, an oversized body, a malformed path or
//! query) are converted too, by the extractors in `api::extract`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stoker::{InvalidInput, StoreError};

use super::model::{ErrorBody, ErrorCode, ErrorDetail};

/// An error answer of the API: a status, a stable [`ErrorCode`], a message for people and the
/// field at fault. Internal causes are logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    cause: Option<String>,
    /// Seconds to send in `Retry-After` (a refused quota).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            cause: None,
            retry_after: None,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The same error, about the request as a whole rather than one field.
    pub fn without_field(mut self) -> Self {
        self.field = None;
        self
    }

    /// A refused field value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError::new(ErrorCode::InvalidField, message).with_field(field)
    }

    /// No such job (also what a tenant-bound token gets for another tenant's job, so it learns
    /// nothing about it).
    pub fn job_not_found(id: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("job {id} not found")).with_field("id")
    }

    /// A pull call whose fence is no longer the job's current one.
    pub fn lease_lost(id: impl std::fmt::Display, fence: i64) -> Self {
        ApiError::new(
            ErrorCode::LeaseLost,
            format!(
                "job {id} is no longer held under fence {fence}: its lease ended, it finished, or \
                 it was reserved again; stop working on it"
            ),
        )
        .with_field("fence")
    }

    /// A failure inside the server: `cause` is logged, a generic message is sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::Internal,
            message: "internal error; the server's log has the details".to_owned(),
            field: None,
            cause: Some(cause.to_string()),
            retry_after: None,
        }
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The HTTP status for the error's code.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The HTTP status each code comes with.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedJson => StatusCode::BAD_REQUEST,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::InvalidField | ErrorCode::UnknownState | ErrorCode::InvalidDate => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::NotFound | ErrorCode::RouteNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::MissingScope | ErrorCode::TenantForbidden => StatusCode::FORBIDDEN,
        ErrorCode::LeaseLost | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Some(cause) = &self.cause {
            tracing::error!(code = %self.code, %cause, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        match self.code {
            ErrorCode::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stoker\""),
                );
            }
            ErrorCode::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<InvalidInput> for ApiError {
    fn from(err: InvalidInput) -> Self {
        let message = err.to_string();
        ApiError::invalid(err.field, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::from(stoker::Error::from(err))
    }
}

impl From<stoker::Error> for ApiError {
    fn from(err: stoker::Error) -> Self {
        match err {
            stoker::Error::Invalid(invalid) => invalid.into(),
            stoker::Error::NotFound(what) => {
                ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            stoker::Error::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            stoker::Error::LeaseLost { id, fence } => ApiError::lease_lost(id, fence),
            stoker::Error::TenantForbidden { field, message } => {
                let error = ApiError::new(ErrorCode::TenantForbidden, message);
                match field {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            }
            stoker::Error::QuotaExceeded {
                limit,
                key,
                retry_after,
            } => {
                // Whole seconds, rounded up: a client that waits that long fits.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut error = ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "enqueue quota {limit:?} exceeded for {key:?}; nothing was written; \
                         retry in {seconds} s"
                    ),
                );
                error.retry_after = Some(seconds.max(1));
                error
            }
            stoker::Error::Store(store) if store.kind() == stoker::StoreErrorKind::Busy => {
                tracing::warn!(err = %store, "the database is busy or unreachable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database is busy or unreachable; retry shortly",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

/// Splits serde's `path: message` (axum reports data errors with the path to the field).
fn split_path(detail: &str) -> (Option<String>, String) {
    if let Some((path, message)) = detail.split_once(": ") {
        if !path.is_empty() && !path.contains(' ') && path != "." {
            return (Some(path.to_owned()), message.to_owned());
        }
    }
    (None, detail.to_owned())
}

/// The field a serde message is about: its path, or the field it says is missing or unknown.
fn field_of(path: Option<String>, message: &str) -> Option<String> {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| {
            let rest = message.split_once(prefix)?.1;
            Some(rest.split('`').next()?.to_owned())
        });
    match (path, named) {
        (Some(path), Some(name)) if !path.ends_with(&name) => Some(format!("{path}.{name}")),
        (Some(path), _) => Some(path),
        (None, named) => named,
    }
}

/// Drops serde's " at line 1 column 20" suffix: the field name says more.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// The innermost error's text: serde's message with the path, without axum's prefix.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// A data error in a JSON body or query string: name the field, and use the specific code for
/// dates.
fn data_error(detail: &str, what: &str) -> ApiError {
    let (path, message) = split_path(detail);
    let message = without_position(&message).to_owned();
    let field = field_of(path, &message);
    let is_date = field
        .as_deref()
        .is_some_and(|field| field.ends_with("run_at"));
    let text = match &field {
        Some(field) => format!("invalid {what} field `{field}`: {message}"),
        None => format!("invalid {what}: {message}"),
    };
    let is_state = message.starts_with("unknown variant")
        && field.as_deref().is_some_and(|field| {
            let field = field.trim_end_matches(|c: char| c == ']' || c.is_ascii_digit());
            field.ends_with("state") || field.ends_with("states[")
        });
    let error = if is_state {
        ApiError::new(ErrorCode::UnknownState, text)
    } else if is_date {
        ApiError::new(
            ErrorCode::InvalidDate,
            format!("{text} (expected an RFC 3339 date-time such as 2030-01-01T09:30:00Z)"),
        )
    } else {
        ApiError::new(ErrorCode::InvalidField, text)
    };
    match field {
        Some(field) => error.with_field(field),
        None => error,
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for ApiError {
    fn from(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        data_error(&err.to_string(), "request")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match &rejection {
            JsonRejection::JsonDataError(err) => data_error(&innermost(err), "request"),
            JsonRejection::JsonSyntaxError(err) => ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {}", innermost(err)),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with the header `Content-Type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                ErrorCode::BodyTooLarge,
                "the body is larger than the server's limit (max_body_bytes); split a bulk \
                 enqueue into smaller requests",
            ),
            other => ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body could not be read: {}", other.body_text()),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        match &rejection {
            QueryRejection::FailedToDeserializeQueryString(err) => {
                data_error(&innermost(err), "query")
            }
            other => ApiError::new(ErrorCode::InvalidField, other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match &rejection {
            PathRejection::FailedToDeserializePathParams(err) => {
                let (field, hint) = match err.kind() {
                    axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. } => (
                        Some(key.clone()),
                        format!("path parameter `{key}` must be a number"),
                    ),
                    axum::extract::path::ErrorKind::ParseError { .. } => (
                        Some("id".to_owned()),
                        "the job id must be a number".to_owned(),
                    ),
                    _ => (None, err.body_text()),
                };
                let error = ApiError::new(ErrorCode::InvalidField, hint);
                match field {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            }
            other => ApiError::internal(other.body_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_in_serde_messages() {
        let error = data_error("jobs[2].priority: invalid value: string \"urgent\", expected a number at line 1 column 40", "request");
        assert_eq!(error.field(), Some("jobs[2].priority"));
        assert!(!error.message().contains("line 1"), "{}", error.message());

        let error = data_error("missing field `kind` at line 1 column 2", "request");
        assert_eq!(error.field(), Some("kind"));

        let error = data_error("jobs[0]: missing field `kind`", "request");
        assert_eq!(error.field(), Some("jobs[0].kind"));

        let error = data_error("run_at: input contains invalid characters", "request");
        assert_eq!(error.code(), ErrorCode::InvalidDate);
        assert_eq!(error.field(), Some("run_at"));

        let error = data_error("metadata: unknown field `tgas`, expected `tags`", "request");
        assert_eq!(error.field(), Some("metadata.tgas"));

        let error = data_error(
            "states[0]: unknown variant `dead`, expected one of ...",
            "request",
        );
        assert_eq!(error.code(), ErrorCode::UnknownState);
    }

    #[test]
    fn store_failures_are_safe_and_typed() {
        let busy = ApiError::from(StoreError::Busy {
            message: "database is locked".into(),
            source: None,
        });
        assert_eq!(busy.code(), ErrorCode::Unavailable);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);

        let broken = ApiError::from(StoreError::Database {
            message: "relation stoker_jobs does not exist at 10.0.0.5".into(),
            source: None,
        });
        assert_eq!(broken.code(), ErrorCode::Internal);
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !broken.message().contains("10.0.0.5"),
            "internal details stay in the log"
        );

        let invalid = ApiError::from(InvalidInput::new("queue", "bad"));
        assert_eq!(invalid.code(), ErrorCode::InvalidField);
        assert_eq!(invalid.field(), Some("queue"));

        let conflict = ApiError::from(StoreError::Conflict("job 1 is running".into()));
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn every_code_has_a_status() {
        for (code, status) in [
            (ErrorCode::MalformedJson, 400),
            (ErrorCode::UnsupportedMediaType, 415),
            (ErrorCode::BodyTooLarge, 413),
            (ErrorCode::InvalidField, 422),
            (ErrorCode::UnknownState, 422),
            (ErrorCode::InvalidDate, 422),
            (ErrorCode::NotFound, 404),
            (ErrorCode::RouteNotFound, 404),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::MissingScope, 403),
            (ErrorCode::TenantForbidden, 403),
            (ErrorCode::LeaseLost, 409),
            (ErrorCode::Conflict, 409),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::Internal, 500),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "{code}");
        }
        let unknown: ErrorCode = serde_json::from_value(serde_json::json!("brand_new")).unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }
}
