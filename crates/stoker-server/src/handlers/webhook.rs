//! The `webhook` handler: delivers one HTTP request per job, with the job's retry policy.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use stoker::{Handler, InvalidInput, JobContext, JobError};

/// How long a request may take when the job's args set no `timeout_seconds`. Defaults to 30
/// seconds.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// The longest `timeout_seconds` the args may ask for: 1 hour.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// The most bytes of a response body kept in a completed job's result: 4 KiB.
pub const RESULT_BODY_MAX_BYTES: usize = 4096;
/// The most bytes of a response body kept in a failed attempt's error message: 1 KiB.
pub const ERROR_BODY_MAX_BYTES: usize = 1024;
/// The longest wait a `Retry-After` header can ask for; longer ones are cut to this: 1 day.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// The methods a webhook may use.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The args of a `webhook` job, for building them in Rust; any JSON of the same shape works.
///
/// ```json
/// {
///   "url": "https://example.com/hooks/orders",
///   "method": "POST",
///   "headers": {"Authorization": "Bearer abc"},
///   "body": {"order": 42},
///   "timeout_seconds": 10
/// }
/// ```
///
/// - `url` (required): an absolute `http://` or `https://` URL.
/// - `method`: one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS (any case). Defaults to POST.
/// - `headers`: an object of header names to string values.
/// - `body`: a string is sent as is (`text/plain; charset=utf-8` unless `headers` sets a
///   `Content-Type`); any other JSON value is sent as JSON (`application/json` unless set);
///   absent or `null` sends no body.
/// - `timeout_seconds`: the time limit of one request, in seconds, above 0 and at most 3600.
///   Defaults to 30.
///
/// Unknown fields are refused, so a misspelt `header` does not silently send nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookArgs {
    /// The target URL.
    pub url: String,
    /// The HTTP method. Defaults to POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body: a string as text, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The request's time limit, in seconds. Defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

/// A request checked and ready to send.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<(Vec<u8>, &'static str)>,
    timeout: Duration,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidInput {
    InvalidInput::new(field, reason)
}

impl Request {
    /// Checks raw args, naming the field at fault (`args.url`, `args.headers.X-Token`, ...).
    fn parse(args: &Value) -> Result<Request, InvalidInput> {
        let Value::Object(fields) = args else {
            return Err(invalid(
                "args",
                "must be an object with at least a \"url\" for kind \"webhook\"",
            ));
        };
        const KNOWN: [&str; 5] = ["url", "method", "headers", "body", "timeout_seconds"];
        if let Some(unknown) = fields.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(invalid(
                format!("args.{unknown}"),
                format!(
                    "is not a webhook field; expected one of {}",
                    KNOWN.join(", ")
                ),
            ));
        }
        let url = Self::parse_url(fields)?;
        let method = match fields.get("method") {
            None | Some(Value::Null) => Method::POST,
            Some(Value::String(name)) => {
                let upper = name.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(invalid(
                        "args.method",
                        format!("{name:?} is not one of {}", METHODS.join(", ")),
                    ));
                }
                Method::from_bytes(upper.as_bytes())
                    .map_err(|_| invalid("args.method", format!("{name:?} is not a method")))?
            }
            Some(other) => {
                return Err(invalid(
                    "args.method",
                    format!("must be a string, got {}", type_name(other)),
                ))
            }
        };
        let headers = Self::parse_headers(fields)?;
        let body = match fields.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                Some((text.clone().into_bytes(), "text/plain; charset=utf-8"))
            }
            Some(value) => Some((value.to_string().into_bytes(), "application/json")),
        };
        let timeout = match fields.get("timeout_seconds") {
            None | Some(Value::Null) => TIMEOUT_DEFAULT,
            Some(Value::Number(number)) => {
                let secs = number.as_f64().unwrap_or(f64::NAN);
                if !(secs > 0.0 && secs <= TIMEOUT_MAX.as_secs_f64()) {
                    return Err(invalid(
                        "args.timeout_seconds",
                        format!(
                            "must be above 0 and at most {}, got {number}",
                            TIMEOUT_MAX.as_secs()
                        ),
                    ));
                }
                Duration::from_secs_f64(secs)
            }
            Some(other) => {
                return Err(invalid(
                    "args.timeout_seconds",
                    format!("must be a number of seconds, got {}", type_name(other)),
                ))
            }
        };
        Ok(Request {
            method,
            url,
            headers,
            body,
            timeout,
        })
    }

    fn parse_url(fields: &Map<String, Value>) -> Result<Url, InvalidInput> {
        let raw = match fields.get("url") {
            Some(Value::String(raw)) => raw,
            None | Some(Value::Null) => return Err(invalid("args.url", "is required")),
            Some(other) => {
                return Err(invalid(
                    "args.url",
                    format!("must be a string, got {}", type_name(other)),
                ))
            }
        };
        let url = Url::parse(raw).map_err(|err| {
            invalid(
                "args.url",
                format!("{raw:?} is not an absolute http(s) URL: {err}"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "args.url",
                format!("{raw:?} must use http or https, not {}", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("args.url", format!("{raw:?} has no host")));
        }
        Ok(url)
    }

    fn parse_headers(fields: &Map<String, Value>) -> Result<HeaderMap, InvalidInput> {
        let mut headers = HeaderMap::new();
        match fields.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    let field = format!("args.headers.{name}");
                    let Value::String(value) = value else {
                        return Err(invalid(
                            field,
                            format!("must be a string, got {}", type_name(value)),
                        ));
                    };
                    let header = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| invalid(&field, "is not a valid header name"))?;
                    let value = HeaderValue::from_str(value).map_err(|_| {
                        invalid(&field, "is not a valid header value (control characters?)")
                    })?;
                    headers.append(header, value);
                }
            }
            Some(other) => {
                return Err(invalid(
                    "args.headers",
                    format!(
                        "must be an object of header names to strings, got {}",
                        type_name(other)
                    ),
                ))
            }
        }
        Ok(headers)
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The built-in `webhook` handler: delivers the HTTP request described by the job's
/// [`WebhookArgs`].
///
/// What the response means for the job:
///
/// | response | outcome |
/// |---|---|
/// | 2xx | completed; the result is `{"status", "body", "body_truncated"}`, the body cut to [`RESULT_BODY_MAX_BYTES`] |
/// | 429, 5xx | a failed attempt, retried after `Retry-After` (seconds or an HTTP date) if the response has one, else after the kind's backoff |
/// | timeout, connection error | a failed attempt, retried after backoff |
/// | any other status (other 4xx, an unfollowed 3xx) | discarded at once; the status and the body, cut to [`ERROR_BODY_MAX_BYTES`], are in the error |
///
/// Redirects are followed (up to 10). Args are checked at enqueue by [`Handler::validate`], so a
/// job with a bad URL, method, header or timeout is refused before it is written.
///
/// The args (headers included) are stored in the job like any other args; keep secrets out
/// of them, or encrypt payloads at rest.
#[derive(Debug, Clone)]
pub struct Webhook {
    http: reqwest::Client,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook::new()
    }
}

impl Webhook {
    /// The kind the handler is registered under.
    pub const KIND: &'static str = "webhook";
    /// The handler's description for `stoker handlers` and the API.
    pub const DESCRIPTION: &'static str = "Delivers an HTTP request: args {url, method \
        (default POST), headers, body (JSON, or a string sent as text), timeout_seconds (default \
        30)}. 2xx completes with {status, body}; 429, 5xx, timeouts and connection errors are \
        retried (honouring Retry-After); other statuses discard the job with the response \
        recorded.";

    /// A handler with its own HTTP client (connection pool, `stoker-webhook` user agent).
    ///
    /// # Panics
    ///
    /// If the HTTP client cannot be built, which happens only when the TLS backend cannot
    /// initialise.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("stoker-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook HTTP client builds");
        Webhook { http }
    }

    async fn deliver(&self, request: Request, now: DateTime<Utc>) -> Result<Value, JobError> {
        let mut builder = self
            .http
            .request(request.method, request.url)
            .timeout(request.timeout);
        let has_content_type = request.headers.contains_key(CONTENT_TYPE);
        builder = builder.headers(request.headers);
        if let Some((bytes, content_type)) = request.body {
            if !has_content_type {
                builder = builder.header(CONTENT_TYPE, content_type);
            }
            builder = builder.body(bytes);
        }
        let response = builder
            .send()
            .await
            .map_err(|err| send_error(&err, request.timeout))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now));
        if status.is_success() {
            let (body, truncated) = read_prefix(response, RESULT_BODY_MAX_BYTES).await;
            return Ok(json!({
                "status": status.as_u16(),
                "body": body,
                "body_truncated": truncated,
            }));
        }
        let (body, truncated) = read_prefix(response, ERROR_BODY_MAX_BYTES).await;
        let mut message = format!("HTTP {}", describe_status(status));
        if !body.is_empty() {
            message.push_str(": ");
            message.push_str(&body);
            if truncated {
                message.push_str("… (truncated)");
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(match retry_after {
                Some(delay) => {
                    message.push_str(&format!(
                        " (retrying after {}s as Retry-After asks)",
                        delay.as_secs()
                    ));
                    JobError::retry_in(message, delay)
                }
                None => JobError::retryable(message),
            })
        } else {
            Err(JobError::fatal(message))
        }
    }
}

#[async_trait]
impl Handler for Webhook {
    async fn perform(&self, args: Value, ctx: JobContext) -> Result<Option<Value>, JobError> {
        // Args were checked at enqueue; args that fail now (written by an older version, or
        // straight into the database) never will pass: discard.
        let request = Request::parse(&args).map_err(JobError::fatal)?;
        let now = ctx.client().clock().now();
        tokio::select! {
            result = self.deliver(request, now) => result.map(Some),
            () = ctx.cancelled() => Err(JobError::retryable("stopped before the response arrived")),
        }
    }

    fn validate(&self, args: &Value) -> Result<(), InvalidInput> {
        Request::parse(args).map(drop)
    }
}

/// The message of a request that got no response.
fn send_error(err: &reqwest::Error, timeout: Duration) -> JobError {
    if err.is_timeout() {
        return JobError::retryable(format!("request timed out after {timeout:?}"));
    }
    if err.is_builder() {
        return JobError::fatal(format!("could not build the request: {}", chain(err)));
    }
    let what = if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    JobError::retryable(format!("{what}: {}", chain(err)))
}

/// An error and its causes, joined: "error sending request: connection refused".
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Reads at most `limit` bytes of the body, as text (invalid UTF-8 replaced), and whether
/// anything was left out. A body that fails half-way keeps what arrived, marked truncated.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> (String, bool) {
    let mut bytes = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    (text, truncated)
}

/// The wait a `Retry-After` value asks for: delay-seconds, or an HTTP date (IMF-fixdate, RFC
/// 850 or asctime), counted from `now`. A date in the past means no wait. Capped at
/// [`RETRY_AFTER_MAX`].
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .map(|at| at.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(value, "%A, %d-%b-%y %H:%M:%S GMT")
                    .or_else(|_| NaiveDateTime::parse_from_str(value, "%a %b %e %H:%M:%S %Y"))
                    .map(|at| at.and_utc())
            })
            .ok()?;
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(delay.min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: Value) -> String {
        Request::parse(&args).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_full_request() {
        let request = Request::parse(&json!({
            "url": "https://example.com/hook?x=1",
            "method": "put",
            "headers": {"X-Token": "abc"},
            "body": {"a": 1},
            "timeout_seconds": 2.5,
        }))
        .unwrap();
        assert_eq!(request.method, Method::PUT);
        assert_eq!(request.headers["x-token"], "abc");
        assert_eq!(request.timeout, Duration::from_millis(2500));
        assert_eq!(request.body.unwrap().1, "application/json");
    }

    #[test]
    fn defaults_to_post_without_a_body() {
        let request = Request::parse(&json!({"url": "http://127.0.0.1:9/x"})).unwrap();
        assert_eq!(request.method, Method::POST);
        assert!(request.body.is_none());
        assert_eq!(request.timeout, TIMEOUT_DEFAULT);
    }

    #[test]
    fn refuses_bad_args_naming_the_field() {
        assert!(err(json!("x")).starts_with("invalid args:"));
        assert!(err(json!({})).contains("invalid args.url: is required"));
        assert!(err(json!({"url": "/relative"})).contains("args.url"));
        assert!(err(json!({"url": "ftp://example.com/"})).contains("must use http or https"));
        assert!(err(json!({"url": "http://x", "method": "FETCH"})).contains("args.method"));
        assert!(err(json!({"url": "http://x", "headers": {"A": 1}})).contains("args.headers.A"));
        assert!(err(json!({"url": "http://x", "headers": {"A B": "1"}})).contains("header name"));
        assert!(err(json!({"url": "http://x", "headers": []})).contains("args.headers"));
        assert!(
            err(json!({"url": "http://x", "timeout_seconds": 0})).contains("args.timeout_seconds")
        );
        assert!(err(json!({"url": "http://x", "timeout_seconds": -1})).contains("above 0"));
        assert!(err(json!({"url": "http://x", "timeout_seconds": "5"})).contains("number"));
        assert!(err(json!({"url": "http://x", "header": {}})).contains("args.header:"));
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("1994-11-06T08:49:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:40 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:31 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", now), Some(RETRY_AFTER_MAX));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn args_struct_round_trips_through_validation() {
        let args = WebhookArgs {
            url: "https://example.com/".into(),
            headers: BTreeMap::from([("X-A".into(), "b".into())]),
            body: Some(json!("text")),
            ..WebhookArgs::default()
        };
        let request = Request::parse(&serde_json::to_value(args).unwrap()).unwrap();
        assert_eq!(request.body.unwrap().1, "text/plain; charset=utf-8");
    }
}
