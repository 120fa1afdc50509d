//! Every request and response body of the HTTP API, shared by the server and its clients (the
//! `stoker` CLI uses these types as its HTTP client's types).
//!
//! All bodies are JSON. Request types reject fields they do not know (a typo such as
//! `max_attemps` is an error, not a silent default); response types may gain fields in later
//! versions, so clients should ignore fields they do not know.
//!
//! Durations are numbers of seconds (fractions allowed) in fields named `*_seconds`; instants are
//! RFC 3339 date-times in UTC, e.g. `2030-01-01T09:30:00Z`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use stoker::{ErrorKind, JobBackoff, JobId, JobRow, JobState, Metadata, Priority, StateCounts};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The body of every error response: `{"error": {"code": "...", "message": "...", "field": "..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error: a stable code to branch on, a message for people, and the field at fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code; see [`ErrorCode`].
    pub code: ErrorCode,
    /// What went wrong and how to fix it, for people. Never contains internal details (those
    /// go to the server's log).
    pub message: String,
    /// The request field at fault (`kind`, `jobs[3].queue`, `run_at`, the query parameter
    /// `state`, the path parameter `id`...), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The stable error codes of the API, with the HTTP status each comes with.
///
/// Clients branch on the code, never on the message. Codes are never renamed; new ones may be
/// added (an older client reads them as [`ErrorCode::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not valid JSON.
    MalformedJson,
    /// 415: the body is not declared as `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 413: the body is larger than the server's limit (`max_body_bytes`).
    BodyTooLarge,
    /// 422: a field (of the body, the query or the path) is missing, of the wrong type, or has
    /// a value that is refused; `field` names it.
    InvalidField,
    /// 422: a job state filter names no state; `field` is `state`.
    UnknownState,
    /// 422: a date-time is not RFC 3339 (e.g. `2030-01-01T09:30:00Z`); `field` names it.
    InvalidDate,
    /// 404: no such job (or one that the token's tenant cannot see).
    NotFound,
    /// 404: no such route.
    RouteNotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 401: no `Authorization: Bearer ...` header, or a token the server does not know.
    Unauthorized,
    /// 403: the token lacks the scope the route needs.
    MissingScope,
    /// 403: the token is bound to a tenant and the request reaches outside it.
    TenantForbidden,
    /// 409: a pull call whose `fence` is no longer the job's current one: its lease lapsed
    /// (and it may have been rescued), it finished, or it was reserved again. Stop working on
    /// it.
    LeaseLost,
    /// 409: the job's state does not allow this (e.g. deleting a running job).
    Conflict,
    /// 503: the database is busy or unreachable, or the server is shutting down; retry later.
    Unavailable,
    /// 429: the enqueue would exceed a tenant's (or key's) enqueue quota; nothing was written.
    /// The `Retry-After` header says in how many seconds it would fit.
    QuotaExceeded,
    /// 500: something failed inside the server; its log has the details.
    Internal,
    /// A code this client version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears in JSON, e.g. `lease_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownState => "unknown_state",
            ErrorCode::InvalidDate => "invalid_date",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::MissingScope => "missing_scope",
            ErrorCode::TenantForbidden => "tenant_forbidden",
            ErrorCode::LeaseLost => "lease_lost",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// A priority in a request: a number (`-32768` to `32767`, higher runs first) or one of the
/// named levels `LOW` (-10), `NORMAL` (0), `HIGH` (10), `CRITICAL` (20), in any case. Always
/// sent back as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PriorityLevel(pub Priority);

impl PriorityLevel {
    /// The level a name stands for, ignoring case: `low`, `normal`, `high`, `critical`.
    pub fn from_name(name: &str) -> Option<PriorityLevel> {
        let priority = match name.to_ascii_lowercase().as_str() {
            "low" => Priority::LOW,
            "normal" => Priority::NORMAL,
            "high" => Priority::HIGH,
            "critical" => Priority::CRITICAL,
            _ => return None,
        };
        Some(PriorityLevel(priority))
    }
}

impl From<Priority> for PriorityLevel {
    fn from(priority: Priority) -> Self {
        PriorityLevel(priority)
    }
}

impl Serialize for PriorityLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i16(self.0 .0)
    }
}

impl<'de> Deserialize<'de> for PriorityLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = PriorityLevel;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number from -32768 to 32767 or one of LOW, NORMAL, HIGH, CRITICAL")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<PriorityLevel, E> {
                i16::try_from(value)
                    .map(|value| PriorityLevel(Priority(value)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(value), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<PriorityLevel, E> {
                i16::try_from(value)
                    .map(|value| PriorityLevel(Priority(value)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<PriorityLevel, E> {
                PriorityLevel::from_name(value)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(value), &self))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl PartialSchema for PriorityLevel {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(i16::MIN))
                    .maximum(Some(i16::MAX)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(["LOW", "NORMAL", "HIGH", "CRITICAL"])),
            )
            .description(Some(
                "Higher runs first: a number, or LOW (-10), NORMAL (0), HIGH (10), CRITICAL (20).",
            ))
            .into()
    }
}

impl ToSchema for PriorityLevel {}

/// A queue's name in a list (the OpenAPI view): 1 to 128 letters, digits, `_`, `-`, `.`
/// and `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueNameSchema;

impl PartialSchema for QueueNameSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .min_length(Some(1))
            .max_length(Some(stoker::core::QUEUE_MAX_LEN))
            .pattern(Some("^[A-Za-z0-9_.:-]+$"))
            .description(Some(
                "A queue: 1 to 128 letters, digits, `_`, `-`, `.` and `:`.",
            ))
            .into()
    }
}

impl ToSchema for QueueNameSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "QueueName".into()
    }
}

/// A job id in a list (the OpenAPI view): an integer, 1 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIdSchema;

impl PartialSchema for JobIdSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .description(Some("A job id: 1 or more."))
            .into()
    }
}

impl ToSchema for JobIdSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "JobIdValue".into()
    }
}

/// A kind's name in a list (the OpenAPI view): 1 to 255 printable ASCII characters without
/// spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindNameSchema;

impl PartialSchema for KindNameSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .min_length(Some(1))
            .max_length(Some(stoker::core::KIND_MAX_LEN))
            .pattern(Some("^[!-~]+$"))
            .description(Some(
                "A kind: 1 to 255 printable ASCII characters without spaces.",
            ))
            .into()
    }
}

impl ToSchema for KindNameSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "KindName".into()
    }
}

/// Where a job is in its life (the OpenAPI view of [`stoker::JobState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = JobState)]
pub enum JobStateSchema {
    /// Waiting to run: now, or at `run_at` if that is in the future (scheduled).
    Available,
    /// Claimed by a worker, which holds it until it reports an outcome.
    Running,
    /// Failed an attempt and waits for its backoff (`run_at`) before it runs again.
    Retryable,
    /// Finished successfully; `result` holds the handler's output.
    Completed,
    /// Failed for good (attempts used up, or discarded): the dead-letter state.
    Discarded,
    /// Cancelled before or while it ran.
    Cancelled,
    // --- stream wf ---
    /// Waiting for its workflow dependencies: no worker can reserve it until they finish.
    Blocked,
}

/// A state a job never leaves on its own: what a bulk retry takes (the OpenAPI view of
/// [`stoker::JobState::FINISHED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FinishedState)]
pub enum FinishedStateSchema {
    /// Finished successfully.
    Completed,
    /// Failed for good: the dead-letter state.
    Discarded,
    /// Cancelled before or while it ran.
    Cancelled,
}

/// Why an attempt failed (the OpenAPI view of [`stoker::ErrorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ErrorKind)]
pub enum ErrorKindSchema {
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
    /// The attempt ran past its timeout.
    Timeout,
    /// The worker stopped heartbeating, or its lease lapsed.
    WorkerLost,
    /// No running worker had a handler for the job's kind.
    NoHandler,
    /// The job's args could not be decoded for its handler.
    InvalidArgs,
    /// The attempt was cancelled.
    Cancelled,
}

/// Lineage and tracing data of a job, passed on to the jobs it enqueues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobMetadata {
    /// Ties together every job started by one request or workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The job that enqueued this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub parent_id: Option<JobId>,
    /// Who enqueued the job: a service name, `cli`... Defaults to the API token's name when
    /// the server has tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Free-form labels for searching and grouping, at most 100 ([`TAGS_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100)]
    pub tags: Vec<String>,
    /// Set by the server on a job a cron schedule fired (issue 15): the schedule, the slot,
    /// and whether it fired late. Read only.
    ///
    /// Clients read it back in job views; in a request it is ignored, as the document's
    /// `readOnly` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub cron: Option<CronJobInfo>,
}

/// What a job fired by a cron schedule carries (issue 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CronJobInfo {
    /// The schedule.
    pub name: String,
    /// The slot it was fired for (the instant of a manual run).
    pub slot: DateTime<Utc>,
    /// Fired late, after an outage, by the catch-up policy.
    pub catch_up: bool,
    /// Fired by hand (`run-now`).
    pub run_now: bool,
}

/// The most tags a job carries.
pub const TAGS_MAX: usize = 100;

impl From<Metadata> for JobMetadata {
    fn from(metadata: Metadata) -> Self {
        JobMetadata {
            correlation_id: metadata.correlation_id,
            parent_id: metadata.parent_id,
            source: metadata.source,
            tags: metadata.tags,
            cron: metadata.cron.map(|cron| CronJobInfo {
                name: cron.name,
                slot: cron.slot,
                catch_up: cron.catch_up,
                run_now: cron.run_now,
            }),
        }
    }
}

impl From<JobMetadata> for Metadata {
    fn from(metadata: JobMetadata) -> Self {
        // `cron` is the server's to set, never a client's.
        Metadata {
            correlation_id: metadata.correlation_id,
            parent_id: metadata.parent_id,
            source: metadata.source,
            tags: metadata.tags,
            cron: None,
            // Set from the request's own `on_finish`, never from metadata.
            on_finish: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Enqueue
// ---------------------------------------------------------------------------------------------

/// `POST /v1/jobs`: one job to enqueue. Everything but `kind` is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The handler's name, e.g. `webhook` or `email`: 1 to 255 printable ASCII characters
    /// without spaces.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: String,
    /// The handler's input: a JSON object (an array, `null` or a scalar is refused), at most
    /// 1 MiB. Defaults to `{}`. Kinds the server runs itself (see `GET /v1/handlers`) check
    /// their args before anything is written.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// The queue to wait in: 1 to 128 letters, digits, `_`, `-`, `.` and `:`. Defaults to
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
    /// Higher runs first. Defaults to `NORMAL` (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityLevel>,
    /// Run no earlier than this instant: an RFC 3339 date-time, years 1 to 9999. Not together
    /// with `delay_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this many seconds from now: 0 to 315,360,000 (ten years). Not
    /// together with `run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub delay_seconds: Option<f64>,
    /// The most attempts the job gets, at least 1. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_attempts: Option<i32>,
    /// An idempotency key: while a job with this key (and tenant) exists, enqueueing another
    /// returns the existing job with `duplicate: true` and writes nothing. 1 to 512 printable
    /// ASCII characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 512, pattern = r"^[ -~]+$")]
    pub idempotency_key: Option<String>,
    /// The tenant the job belongs to: 1 to 255 printable ASCII characters. A tenant-bound
    /// token may leave it out (its tenant is used) or name its own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
    /// Lineage and tracing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// How long one attempt may run, in seconds (one millisecond to ten years), before it
    /// counts as failed. Defaults to the handler's limit, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.001, maximum = 315_360_000)]
    pub timeout_seconds: Option<f64>,
    /// The job's own retry backoff, instead of its kind's (as BullMQ's `backoff` option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
    /// A completion callback: when the job reaches a final state (completed, discarded,
    /// cancelled), its outcome is posted to this URL by a job of the built-in `webhook` kind,
    /// inserted in the same transaction as the state change (so it is retried and never
    /// lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_finish: Option<OnFinishSpec>,
}

/// A job-completion callback (issue 13, item 8). The delivery job posts
/// `{"type": "job.finished", "id", "kind", "queue", "tenant", "state", "attempt",
/// "finished_at", "result", "error"}` (`error`: the last failed attempt's message). For a job
/// of an encrypted kind, `result` and `error` are `null` and `"sealed": true` is added: the
/// callback never writes the payload unsealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnFinishSpec {
    /// Where to post: an absolute `http://` or `https://` URL with a host, at most 2048
    /// bytes. The pattern states what the server accepts in printable ASCII (percent-encode
    /// anything else): a scheme, an optional `user@`, a host not starting with `:`, then any
    /// path, query or fragment.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r#"^https?://([!-"$-.0->@-~]*@)?[!-"$-.0-9;->A-~][!-"$-.0->A-~]*([/?#][!-~]*)?$"#
    )]
    pub url: String,
    /// The queue the delivery job waits in (a queue the server's built-in worker serves, so
    /// its webhook handler sends it). Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
}

impl From<OnFinishSpec> for stoker::OnFinish {
    fn from(spec: OnFinishSpec) -> Self {
        stoker::OnFinish {
            url: spec.url,
            queue: spec.queue,
        }
    }
}

impl From<stoker::OnFinish> for OnFinishSpec {
    fn from(on_finish: stoker::OnFinish) -> Self {
        OnFinishSpec {
            url: on_finish.url,
            queue: on_finish.queue,
        }
    }
}

/// A job's own retry backoff: the wait after failed attempt `n` is
/// `base_seconds * factor^(n - 1)`, at most `max_seconds`, moved at random by up to `jitter`
/// (a fraction) either way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    /// The wait after the first failed attempt, in seconds: a millisecond to ten years.
    #[schema(minimum = 0.001, maximum = 315_360_000.0)]
    pub base_seconds: f64,
    /// How much each further failure multiplies the wait: 1 (a fixed delay) or more.
    /// Defaults to 2.
    #[serde(default = "default_factor")]
    #[schema(minimum = 1.0)]
    pub factor: f64,
    /// The longest wait, in seconds: a millisecond to ten years (below `base_seconds`, every
    /// wait is `max_seconds`). Defaults to one hour, or `base_seconds` if that is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.001, maximum = 315_360_000.0)]
    pub max_seconds: Option<f64>,
    /// The fraction, from 0 to 1, by which each wait moves at random. Defaults to 0.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub jitter: f64,
}

fn default_factor() -> f64 {
    2.0
}

impl From<BackoffSpec> for JobBackoff {
    fn from(spec: BackoffSpec) -> Self {
        JobBackoff {
            base_seconds: spec.base_seconds,
            factor: spec.factor,
            max_seconds: spec
                .max_seconds
                .unwrap_or_else(|| spec.base_seconds.max(3600.0)),
            jitter: spec.jitter,
        }
    }
}

impl From<JobBackoff> for BackoffSpec {
    fn from(backoff: JobBackoff) -> Self {
        BackoffSpec {
            base_seconds: backoff.base_seconds,
            factor: backoff.factor,
            max_seconds: Some(backoff.max_seconds),
            jitter: backoff.jitter,
        }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl EnqueueRequest {
    /// A request for a job of `kind` with `args` and every option at its default.
    pub fn new(kind: impl Into<String>, args: Value) -> Self {
        EnqueueRequest {
            kind: kind.into(),
            args,
            queue: None,
            priority: None,
            run_at: None,
            delay_seconds: None,
            max_attempts: None,
            idempotency_key: None,
            tenant: None,
            metadata: None,
            timeout_seconds: None,
            backoff: None,
            on_finish: None,
        }
    }
}

/// The answer to an enqueue: the job as it is now, and whether it is new (HTTP 201) or an
/// existing job with the same idempotency key (HTTP 200, nothing written). `GET
/// /v1/jobs/{id}` has the rest of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    /// The new job's id, or the existing job's for a duplicate.
    #[schema(value_type = i64)]
    pub id: JobId,
    /// True when the idempotency key matched an existing job.
    pub duplicate: bool,
    /// The job's kind.
    pub kind: String,
    /// The queue it waits in.
    pub queue: String,
    /// Its state now: `available` for a new job; any state for a duplicate.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Not before this instant.
    pub run_at: DateTime<Utc>,
}

impl From<stoker::Enqueued> for EnqueueResponse {
    fn from(job: stoker::Enqueued) -> Self {
        EnqueueResponse {
            id: job.id,
            duplicate: job.duplicate,
            kind: job.kind,
            queue: job.queue,
            state: job.state,
            run_at: job.run_at,
        }
    }
}

/// `POST /v1/jobs/bulk`: many jobs in one request, written in a handful of statements. If any
/// job is invalid, none is written, and the error's `field` says which (`jobs[3].queue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBulkRequest {
    /// The jobs, 1 to 10,000 ([`BULK_MAX`]).
    #[schema(min_items = 1, max_items = 10_000)]
    pub jobs: Vec<EnqueueRequest>,
}

/// The most jobs one bulk enqueue takes.
pub const BULK_MAX: usize = 10_000;

/// One job of a bulk enqueue's answer: what the caller did not send. Kind and queue are left
/// out, as the request holds them: a 10,000-job answer is a quarter of the size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueuedItem {
    /// The new job's id, or the existing job's for a duplicate.
    #[schema(value_type = i64)]
    pub id: JobId,
    /// True when the idempotency key matched an existing job (which may be of another kind or
    /// queue than this entry asked for; `GET /v1/jobs/{id}` shows it).
    pub duplicate: bool,
    /// Its state now: `available` for a new job; any state for a duplicate.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Not before this instant.
    #[serde(serialize_with = "repeated_instant")]
    pub run_at: DateTime<Utc>,
}

/// Writes an instant as chrono does, remembering the last one written on this thread: the
/// jobs of one bulk enqueue mostly share their run time, and writing it out was a tenth of
/// a 10,000-job answer's time.
fn repeated_instant<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(DateTime<Utc>, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if !matches!(last, Some((seen, _)) if seen == at) {
            let text = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            *last = Some((*at, text));
        }
        let (_, text) = last.as_ref().expect("set above");
        serializer.serialize_str(text)
    })
}

impl From<stoker::Enqueued> for EnqueuedItem {
    fn from(job: stoker::Enqueued) -> Self {
        EnqueuedItem {
            id: job.id,
            duplicate: job.duplicate,
            state: job.state,
            run_at: job.run_at,
        }
    }
}

/// The answer to a bulk enqueue: one entry per job, in request order. HTTP 201 if at least
/// one job is new, 200 if every one was a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueBulkResponse {
    /// One entry per requested job, in order.
    pub jobs: Vec<EnqueuedItem>,
    /// How many jobs were new.
    pub inserted: u64,
    /// How many were duplicates of existing jobs.
    pub duplicates: u64,
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

/// A job, as the API shows it: state, attempts, error history, result and progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Assigned by the store; ids only grow.
    #[schema(value_type = i64)]
    pub id: JobId,
    /// The handler's name.
    pub kind: String,
    /// The queue it waits in.
    pub queue: String,
    /// The handler's input: an object for jobs enqueued over HTTP; a job enqueued by the Rust
    /// library may carry any JSON value. For a token below admin, the paths the server's
    /// `[[redact]]` tables list for the job's kind read `"[redacted]"`, and args of a kind
    /// whose args are hidden are the string `"[hidden]"` (issue 17). Args sealed under a key
    /// the server does not hold show as their envelope `{"$enc": "v1", "kid", "n", "ct"}`.
    #[schema(value_type = Value)]
    pub args: Value,
    /// Where it is in its life.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Higher runs first.
    pub priority: i16,
    /// Attempts started so far (0 before the first).
    pub attempt: i32,
    /// The fencing token of the job's latest reservation: every reservation takes a new one,
    /// which never repeats. A pull worker sends it with every call about the job.
    pub fence: i64,
    /// The most attempts it gets before it is discarded.
    pub max_attempts: i32,
    /// Not before this instant.
    pub run_at: DateTime<Utc>,
    /// The idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The tenant it belongs to, if any.
    pub tenant: Option<String>,
    /// Lineage and tracing data.
    pub metadata: JobMetadata,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptErrorView>,
    /// The handler's output once completed: any JSON value. Redacted for a token below admin
    /// as the args are (issue 17).
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    /// The last progress report.
    pub progress: Option<ProgressView>,
    /// How long one attempt may run, in seconds, if the job sets its own limit.
    pub timeout_seconds: Option<f64>,
    /// Its own retry backoff, if it was enqueued with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a finished state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker running it, or that ran its latest attempt (`pull:<name>` for pull workers).
    pub worker: Option<String>,
    /// Set when a cancel was requested while it was running.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// While a pull worker holds it, when its lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The lines its attempts logged, oldest first (issue 13): shown by get-job only, absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<super::failures::JobLogView>,
    /// Its completion callback, if it was enqueued with one. The URL can carry a secret (a
    /// signed URL), so a token with none of the `enqueue`, `operate` and `admin` scopes sees
    /// its scheme and host only (`https://hooks.example.com/[redacted]`); so does the `url`
    /// arg of a callback's delivery job (a `webhook` job with metadata source `on_finish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_finish: Option<OnFinishSpec>,
}

impl From<JobRow> for JobView {
    fn from(job: JobRow) -> Self {
        JobView {
            id: job.id,
            kind: job.kind,
            queue: job.queue,
            args: job.args,
            state: job.state,
            priority: job.priority.0,
            attempt: job.attempt,
            fence: job.fence,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            idempotency_key: job.unique_key,
            tenant: job.tenant,
            on_finish: job.metadata.on_finish.clone().map(OnFinishSpec::from),
            metadata: job.metadata.into(),
            errors: job
                .errors
                .into_iter()
                .map(|error| AttemptErrorView {
                    attempt: error.attempt,
                    at: error.at,
                    kind: error.kind,
                    message: error.message,
                    backtrace: error.backtrace,
                })
                .collect(),
            result: job.result,
            progress: job.progress.map(|progress| ProgressView {
                fraction: progress.fraction,
                message: progress.message,
                details: progress.details,
                at: progress.at,
            }),
            timeout_seconds: job.timeout_ms.map(|ms| ms as f64 / 1000.0),
            backoff: job.backoff.map(BackoffSpec::from),
            created_at: job.created_at,
            attempted_at: job.attempted_at,
            finished_at: job.finished_at,
            worker: job.worker_id,
            cancel_requested_at: job.cancel_requested_at,
            lease_expires_at: job.lease_expires_at,
            logs: Vec::new(),
        }
    }
}

/// One failed attempt in a job's error history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptErrorView {
    /// The attempt that failed (1 for the first).
    pub attempt: i32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// Why, by category.
    #[schema(value_type = ErrorKindSchema)]
    pub kind: ErrorKind,
    /// The error's message.
    pub message: String,
    /// A backtrace, for panics where one was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
}

/// The last progress a running job reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// How far along, from 0.0 to 1.0.
    pub fraction: f64,
    /// What it is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Structured details the worker attached (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

/// `GET /v1/jobs`: which jobs to list, newest first. Every filter is optional; lists are
/// comma-separated (`state=discarded,retryable`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Only jobs in these states: `available` (due), `scheduled` (available, not yet due),
    /// `running`, `retryable`, `completed`, `discarded`, `cancelled`, or `failed` (retryable
    /// and discarded); at most 32 names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(
        pattern = r"^((available|scheduled|running|retryable|completed|discarded|cancelled|failed)(,(available|scheduled|running|retryable|completed|discarded|cancelled|failed)){0,31})?$"
    )]
    pub state: Option<String>,
    /// Only jobs of these kinds (printable ASCII without spaces); at most 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^([!-+\--~]{1,255}(,[!-+\--~]{1,255}){0,31})?$")]
    pub kind: Option<String>,
    /// Only jobs in these queues; at most 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^([A-Za-z0-9_.:-]{1,128}(,[A-Za-z0-9_.:-]{1,128}){0,31})?$")]
    pub queue: Option<String>,
    /// Only this tenant's jobs (a tenant-bound token always sees only its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^[ -~]{1,255}$")]
    pub tenant: Option<String>,
    /// The keyset cursor: `next_cursor` of the previous page (a job id, 1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// Page size, 1 to 1,000. Defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    // --- stream search ---
    /// A search-bar query: `state:failed queue:mail kind:email tenant:acme id:42 key:abc
    /// corr:xyz worker:w1 parent:7 group:FINGERPRINT after:1h before:2026-12-01
    /// finished-after:7d finished-before:... free "quoted text"` (see the README). Combined
    /// with the other parameters: lists join, single values must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(max_length = 2000)]
    pub q: Option<String>,
    /// Only these jobs: comma-separated ids; at most 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^([1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,31})?$")]
    pub id: Option<String>,
    /// Only jobs with this idempotency key (printable ASCII, at most 512 characters, as an
    /// enqueue's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(min_length = 1, max_length = 512, pattern = r"^[ -~]+$")]
    pub idempotency_key: Option<String>,
    /// Only jobs with this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub correlation_id: Option<String>,
    /// Only children of this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    pub parent_id: Option<i64>,
    /// Only jobs last run (or running) on this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub worker: Option<String>,
    /// Only jobs whose latest failure is in this group (16 lowercase hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^[0-9a-f]{16}$")]
    pub failure_group: Option<String>,
    /// Only jobs created at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs finished at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_after: Option<DateTime<Utc>>,
    /// Only jobs finished before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_before: Option<DateTime<Utc>>,
    /// Only jobs whose args or metadata contain this text (case-sensitive substring of their
    /// JSON). Not index-backed: each page reads a bounded number of rows (see `partial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub text: Option<String>,
    /// Which way from `cursor`: `older` (the default: pass `next_cursor`) or `newer` (pass
    /// `prev_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<SearchDirectionSchema>)]
    pub direction: Option<stoker::SearchDirection>,
    /// Also count the matching jobs: exact for states, queues and kinds alone, otherwise exact
    /// up to 10,000 (else "at least").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<bool>,
}

// --- stream search ---
/// Which way a page runs from its cursor (the OpenAPI view of `stoker::SearchDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SearchDirection)]
pub enum SearchDirectionSchema {
    /// Older jobs: ids below the cursor.
    Older,
    /// Newer jobs: ids above the cursor.
    Newer,
}

/// A job state as a search sees it (the OpenAPI view of `stoker::StateView`): the states,
/// with `available` split into due work and `scheduled` work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = StateView)]
pub enum StateViewSchema {
    /// Available and due.
    Available,
    /// Available, waiting for its `run_at`.
    Scheduled,
    /// Running.
    Running,
    /// Waiting for its backoff.
    Retryable,
    /// Completed.
    Completed,
    /// Failed for good.
    Discarded,
    /// Cancelled.
    Cancelled,
    // --- stream wf ---
    /// Waiting for its workflow dependencies.
    Blocked,
}

/// A bounded count of matching jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCountView {
    /// Jobs counted: exact for states, queues and kinds alone (from the store's counts),
    /// otherwise at most 10,000.
    pub count: u64,
    /// Whether `count` is exact; if not, it is a lower bound ("10,000+").
    pub exact: bool,
}

impl From<stoker::JobCount> for JobCountView {
    fn from(count: stoker::JobCount) -> Self {
        JobCountView {
            count: count.count,
            exact: count.exact,
        }
    }
}

/// `GET /v1/jobs/{id}/lineage`: a job's parent and children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobLineageView {
    /// The job that enqueued it, if it still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<JobView>,
    /// The jobs it enqueued, newest first, at most 100.
    pub children: Vec<JobView>,
    /// Whether it has more children (list them with `parent_id`).
    pub more_children: bool,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub next_cursor: Option<JobId>,
    // --- stream search ---
    /// Pass as `cursor` with `direction=newer` for the newer jobs; absent when the page
    /// reached the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub prev_cursor: Option<JobId>,
    /// Whether the page stopped at its scan budget (10,000 rows) before it was full: more
    /// matches may lie beyond `next_cursor` even if this page is short or empty.
    pub partial: bool,
    /// Rows the page read.
    pub scanned: u64,
    /// The count of matching jobs, when asked for with `count=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<JobCountView>,
}

/// `POST /v1/jobs/retry`: run finished jobs again now, all at once (e.g. every discarded job
/// of a queue after a fix). Each keeps its error history and gets one more attempt if it had
/// none left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryJobsRequest {
    /// The finished states to retry: `discarded`, `cancelled`, `completed`. Defaults to
    /// `["discarded"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FinishedStateSchema>>, min_items = 1, max_items = 100)]
    pub states: Option<Vec<JobState>>,
    /// Only jobs of these queues (at most 100); empty or absent means every queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<QueueNameSchema>, max_items = 100)]
    pub queues: Vec<String>,
    /// Only jobs of these kinds (at most 100); empty or absent means every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<KindNameSchema>, max_items = 100)]
    pub kinds: Vec<String>,
    /// Only this tenant's jobs (forced to the token's tenant for tenant-bound tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The most jobs to retry in this request, at least 1; repeat the request for more,
    /// reading `remaining`, to show progress through a large retry. Defaults to every job
    /// that matched when the request started (jobs that fail again meanwhile are not retried
    /// twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub limit: Option<u64>,
}

/// How many jobs a bulk retry sent back to their queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryJobsResponse {
    /// Jobs retried.
    pub retried: u64,
    /// Matching jobs this request left (its `limit` was reached), counted as they were when it
    /// started and in the caller's own scope: a tenant-bound token counts only its tenant's.
    pub remaining: u64,
}

// ---------------------------------------------------------------------------------------------
// Queues, workers, stats, handlers
// ---------------------------------------------------------------------------------------------

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCounts {
    /// Due: waiting to run now. Jobs waiting for their `run_at` are in `scheduled`.
    pub available: i64,
    /// Running now.
    pub running: i64,
    /// Waiting for a retry.
    pub retryable: i64,
    /// Finished successfully.
    pub completed: i64,
    /// Failed for good (dead letter).
    pub discarded: i64,
    /// Cancelled.
    pub cancelled: i64,
    // --- stream counts ---
    /// Scheduled: in state `available` but not yet due (waiting for their `run_at`).
    #[serde(default)]
    pub scheduled: i64,
    // --- stream wf ---
    /// Blocked: workflow jobs waiting for their dependencies.
    #[serde(default)]
    pub blocked: i64,
}

impl From<StateCounts> for JobCounts {
    fn from(counts: StateCounts) -> Self {
        JobCounts {
            available: counts.available,
            running: counts.running,
            retryable: counts.retryable,
            completed: counts.completed,
            discarded: counts.discarded,
            cancelled: counts.cancelled,
            scheduled: counts.scheduled,
            blocked: counts.blocked,
        }
    }
}

impl JobCounts {
    /// The count for `state`; for `available`, due and scheduled jobs together.
    pub fn get(&self, state: JobState) -> i64 {
        match state {
            JobState::Available => self.available + self.scheduled,
            JobState::Running => self.running,
            JobState::Retryable => self.retryable,
            JobState::Completed => self.completed,
            JobState::Discarded => self.discarded,
            JobState::Cancelled => self.cancelled,
            JobState::Blocked => self.blocked,
        }
    }
}

/// A queue: whether it is paused, its jobs by state, and the workers serving it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// The queue's name.
    pub name: String,
    /// Whether workers skip it.
    pub paused: bool,
    /// When it was last paused or resumed; absent for a queue never paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Its jobs by state.
    pub counts: JobCounts,
    /// The workers whose rows name this queue, by id, with whether each is alive (the same
    /// rule as `GET /v1/workers`).
    #[serde(default)]
    pub workers: Vec<QueueWorkerView>,
}

impl From<stoker::QueueOverview> for QueueView {
    fn from(queue: stoker::QueueOverview) -> Self {
        QueueView {
            name: queue.name,
            paused: queue.paused,
            updated_at: queue.updated_at,
            counts: queue.counts.into(),
            workers: queue
                .workers
                .into_iter()
                .map(|worker| QueueWorkerView {
                    id: worker.id,
                    alive: worker.alive,
                })
                .collect(),
        }
    }
}

/// A worker serving a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueWorkerView {
    /// The worker's id (`pull:<name>` for pull workers).
    pub id: String,
    /// Whether its heartbeat is no older than the rescuer's `stale_after`.
    pub alive: bool,
}

/// Every queue that has jobs or settings, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// The queues.
    pub queues: Vec<QueueView>,
}

/// A worker process, or a pull worker, as its heartbeat row shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Unique per process; `pull:<name>` for pull workers.
    pub id: String,
    /// Whether it is a pull worker (another process reserving jobs over HTTP).
    pub pull: bool,
    /// The machine's host name.
    pub host: String,
    /// The process id (0 when a pull worker did not say).
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Its concurrency (for a pull worker: the most jobs it reserved at once).
    pub concurrency: u32,
    /// When it started (for a pull worker: when this server first saw it).
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether its heartbeat is no older than the rescuer's `stale_after`, so its jobs are
    /// safe from the rescuer.
    pub alive: bool,
    /// Jobs it completed.
    pub jobs_done: i64,
    /// Attempts of its that failed.
    pub jobs_failed: i64,
    /// The registry (issue 13): `busy`, `idle`, `stopping` or `stale`.
    #[serde(default = "idle")]
    #[schema(value_type = String, pattern = "^(busy|idle|stopping|stale)$")]
    pub status: String,
    /// Its software version, if it reported one.
    #[serde(default)]
    pub version: Option<String>,
    /// The jobs it is running now (as of its latest heartbeat).
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub running: Vec<JobId>,
    /// The mean run time of its finished attempts, in milliseconds.
    #[serde(default)]
    pub mean_run_ms: Option<u64>,
    /// Its resident memory, in bytes, if it reported it.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// The CPU time it used, in milliseconds, if it reported it.
    #[serde(default)]
    pub cpu_ms: Option<u64>,
}

fn idle() -> String {
    "idle".to_owned()
}

impl From<stoker::WorkerStatus> for WorkerView {
    fn from(status: stoker::WorkerStatus) -> Self {
        let state = status.state();
        let mean_run_ms = status.mean_run_ms();
        let worker = status.worker;
        let details = worker.details.unwrap_or_default();
        WorkerView {
            status: state.as_str().to_owned(),
            version: details.version,
            running: details.running,
            mean_run_ms,
            rss_bytes: details.rss_bytes,
            cpu_ms: details.cpu_ms,
            pull: worker.id.starts_with(super::pull::PULL_PREFIX),
            id: worker.id,
            host: worker.host,
            pid: worker.pid,
            queues: worker.queues,
            concurrency: worker.concurrency,
            started_at: worker.started_at,
            heartbeat_at: worker.heartbeat_at,
            alive: status.alive,
            jobs_done: worker.jobs_done,
            jobs_failed: worker.jobs_failed,
        }
    }
}

/// Every worker row, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<WorkerView>,
}

/// `GET /v1/stats`: how much throughput history to return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Minutes of throughput history, 1 to 60. Defaults to 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 60)]
    pub minutes: Option<u32>,
}

/// Job counts (totals, per queue, per kind, per tenant) and recent throughput. For a
/// tenant-bound token, every count is of its own tenant's jobs only, and the throughput
/// (which spans every tenant) has no minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    /// Every job by state.
    pub totals: JobCounts,
    /// Per queue, by name.
    pub queues: BTreeMap<String, JobCounts>,
    /// Per kind, by name.
    pub kinds: BTreeMap<String, JobCounts>,
    /// Jobs finished per minute, as observed by this server.
    pub throughput: Throughput,
    // --- stream counts ---
    /// Per tenant, by id (jobs without a tenant are in none).
    #[serde(default)]
    pub tenants: BTreeMap<String, JobCounts>,
    // --- stream flow ---
    /// The limiters in use (issue 16): running against each cap, tokens left, quota used,
    /// and how many available jobs each holds back. Empty for a token that may not read
    /// limits (a tenant-bound token sees its own tenant's limiters).
    #[serde(default)]
    pub limits: Vec<crate::api::limits::UsageView>,
}

/// Jobs finished per minute across the cluster, as this server observed them.
///
/// The server samples the store's job counts every `sample_interval_seconds` and adds up, per
/// wall-clock minute, how much the `completed` and `discarded` counts grew, and how much the
/// workers' failed-attempt counters grew. Counts that shrink (the pruner deleted finished jobs,
/// jobs were retried or deleted, a worker row went away) add nothing, so a minute in which jobs
/// were also pruned may be undercounted. History starts when the server starts and is kept for
/// an hour, in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Throughput {
    /// How often the server samples the counts, in seconds.
    pub sample_interval_seconds: f64,
    /// The minutes asked for, oldest first; the last one is still running.
    pub minutes: Vec<ThroughputMinute>,
}

/// One minute of [`Throughput`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputMinute {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Jobs that completed.
    pub completed: u64,
    /// Jobs that were discarded (moved to the dead letter).
    pub discarded: u64,
    /// Attempts that failed (retried or discarded), as counted by worker rows.
    pub failed: u64,
}

/// A handler built into the server, which runs jobs of its kind without any worker of yours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerView {
    /// The kind, e.g. `webhook`.
    pub kind: String,
    /// What it does and which args it takes.
    pub description: String,
}

/// The built-in handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerList {
    /// The handlers, by kind.
    pub handlers: Vec<HandlerView>,
    /// The queues this server's built-in worker serves (its handlers run only jobs there).
    pub queues: Vec<String>,
}

/// `GET /health`: whether this server can do its work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`: all is well. `degraded`: the store works but no process leads the maintenance
    /// services (rescue, prune), e.g. just after start. `unavailable` (HTTP 503): the store is
    /// unreachable or its schema is not current.
    pub status: HealthStatus,
    /// The store: `sqlite` or `postgres`.
    pub store: String,
    /// Whether the store answered.
    pub store_reachable: bool,
    /// Whether every migration this build knows of is applied.
    pub migrations_current: bool,
    /// The id of the process leading the maintenance services, if one does.
    pub leader: Option<String>,
    /// The server's version.
    pub version: String,
}

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// All is well.
    Ok,
    /// Serving, but no leader runs maintenance.
    Degraded,
    /// Not serving: the store is unreachable or not migrated.
    Unavailable,
}

// ---------------------------------------------------------------------------------------------
// Pull protocol
// ---------------------------------------------------------------------------------------------

/// `POST /v1/pull/reserve`: reserve up to `limit` due jobs of the given queues, each held by a
/// lease. With `wait_seconds`, waits that long for a job to arrive when none is due
/// (long-poll), and answers the moment one is enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// The worker's name, unique per worker process, e.g. `billing-7f3a`: 1 to 128 characters,
    /// no spaces. Its jobs show `worker: "pull:<name>"`, and it appears in `GET /v1/workers`
    /// under that id.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub worker: String,
    /// The queues to take jobs from, in order of preference: 1 to 32 queue names (1 to 128
    /// letters, digits, `_`, `-`, `.`, `:`).
    #[schema(schema_with = queue_names_schema)]
    pub queues: Vec<String>,
    /// Only jobs of these kinds (the kinds the worker can run), at most 64 kind names (1 to 255
    /// bytes, no spaces or control characters). Empty means every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = kind_names_schema)]
    pub kinds: Vec<String>,
    /// The most jobs to reserve, 1 to 100. Defaults to 1.
    #[serde(
        default,
        deserialize_with = "whole_u32",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// How long each job is held before it returns to the queue unless extended, in seconds.
    /// Defaults to the server's `pull.lease` (30 s); a longer one than `pull.max_lease` (1 h)
    /// is cut to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 315_360_000.0)]
    pub lease_seconds: Option<f64>,
    /// How long to wait for a job when none is due, in seconds. Defaults to 0 (answer at
    /// once), at most the server's `pull.max_wait` (30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 315_360_000.0)]
    pub wait_seconds: Option<f64>,
    /// The worker's host name, shown in the workers list: at most 255 bytes, no control
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub host: Option<String>,
    /// The worker's process id, shown in the workers list.
    #[serde(
        default,
        deserialize_with = "whole_u32",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4_294_967_295_i64)]
    pub pid: Option<u32>,
}

/// An optional whole number from 0 to `u32::MAX`, also when written with a fraction of zero.
fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value) if value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value) => {
            Ok(Some(value as u32))
        }
        Some(value) => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Float(value),
            &"a whole number from 0 to 4294967295",
        )),
    }
}

/// The reserve request's `queues`: 1 to 32 queue names.
fn queue_names_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .min_length(Some(1))
                .max_length(Some(stoker::core::QUEUE_MAX_LEN))
                .pattern(Some(r"^[A-Za-z0-9_.:-]+$")),
        )
        .min_items(Some(1))
        .max_items(Some(stoker::RESERVE_MAX_QUEUES))
        .build()
}

/// The reserve request's `kinds`: at most 64 kind names.
fn kind_names_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .min_length(Some(1))
                .max_length(Some(stoker::core::KIND_MAX_LEN))
                .pattern(Some(r"^[^\s\x00-\x1f\x7f-\x9f]+$")),
        )
        .max_items(Some(stoker::RESERVE_MAX_KINDS))
        .build()
}

/// A whole number, also when written with a fraction of zero (`3.0`): JSON does not tell the
/// two apart, and neither does the OpenAPI `integer` type.
pub(crate) fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<i64, E> {
            // The range check is on the float: `i64::MAX as f64` rounds up to 2^63. Both ends
            // are open: an integer below `i64::MIN` (`-9223372036854775809`) reaches here as a
            // float that rounds to exactly -2^63, and must be refused (issue 19's fuzzing);
            // `i64::MIN` itself arrives through `visit_i64`.
            if value.fract() == 0.0
                && value > -9.223_372_036_854_776e18
                && value < 9.223_372_036_854_776e18
            {
                Ok(value as i64)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(value), &self))
            }
        }
    }

    deserializer.deserialize_any(Visitor)
}

/// The reserved jobs (possibly none). Each is `running` under this worker with a lease until
/// `lease_expires_at`; report it with its `fence` before then, or extend the lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReserveResponse {
    /// The jobs, highest priority first within each queue.
    pub jobs: Vec<JobView>,
}

/// `POST /v1/pull/jobs/{id}/heartbeat`: extend the lease of a job the worker holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendLeaseRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// The new lease from now, in seconds. Defaults to the server's `pull.lease`; a longer one
    /// than `pull.max_lease` is cut to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 315_360_000.0)]
    pub lease_seconds: Option<f64>,
}

/// The extended lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    /// When the lease now ends.
    pub lease_expires_at: DateTime<Utc>,
    /// Whether a cancel was requested: stop the work and acknowledge it with `cancel` (or
    /// `fail`; the job then ends `cancelled` either way).
    pub cancel_requested: bool,
}

/// `POST /v1/pull/jobs/{id}/progress`: record how far along a held job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// From 0.0 to 1.0.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub fraction: f64,
    /// What it is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Structured details (any JSON, e.g. `{"rows": 1200, "of": 5000}`), at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// `POST /v1/pull/jobs/{id}/complete`: the job succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// The handler's output, stored as the job's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
}

/// `POST /v1/pull/jobs/{id}/fail`: the attempt failed. The job is retried after backoff while
/// attempts remain, then discarded; a job with a cancel requested ends `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// What went wrong, recorded in the job's error history.
    #[schema(min_length = 1)]
    pub error: String,
    /// Retry after this many seconds instead of the backoff (the job's own, given at enqueue,
    /// else 2 s doubling per attempt, up to 1 hour, with 10% jitter), e.g. from a
    /// `Retry-After` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 315_360_000.0)]
    pub retry_in_seconds: Option<f64>,
    /// Discard the job now (dead letter) whatever attempts remain: no retry can fix this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard: bool,
}

/// `POST /v1/pull/jobs/{id}/snooze`: not now; run again later without using up an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// Run again after this many seconds.
    #[schema(minimum = 0.0, maximum = 315_360_000.0)]
    pub snooze_seconds: f64,
}

/// `POST /v1/pull/jobs/{id}/cancel`: the worker stopped the job because a cancel was requested
/// (or it decided to): it ends `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAckRequest {
    /// The `fence` the job was reserved with.
    #[serde(deserialize_with = "whole_number")]
    pub fence: i64,
    /// Why, recorded in the job's error history (kind `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a pull worker's report did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// The job.
    #[schema(value_type = i64)]
    pub id: JobId,
    /// Its state now: `completed`; `retryable` or `discarded` after a failure; `available`
    /// after a snooze; `cancelled` after a cancel, or if a cancel was requested.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// When it runs again, for `retryable` and `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job a schedule fired reads back through the API's own types (the CLI against a
    /// server reads job views with them), while a request cannot claim to be such a job.
    #[test]
    fn cron_metadata_reads_back_and_is_ignored_in_requests() {
        let metadata = JobMetadata::from(Metadata {
            cron: Some(stoker::core::cron::CronJobMeta {
                name: "nightly".into(),
                slot: "2026-12-07T00:00:00Z".parse().unwrap(),
                catch_up: false,
                run_now: false,
            }),
            ..Metadata::default()
        });
        let written = serde_json::to_value(&metadata).unwrap();
        assert_eq!(written["cron"]["name"], "nightly");
        let read: JobMetadata = serde_json::from_value(written).unwrap();
        assert_eq!(read, metadata);
        // A request cannot make a job look fired by a schedule.
        assert_eq!(Metadata::from(read).cron, None);
    }

    /// A bulk answer's run times read as every other instant the API writes, whatever their
    /// precision, repeated or not.
    #[test]
    fn bulk_entries_write_instants_as_chrono_does() {
        let instants = [
            "2026-12-07T09:48:00Z",
            "2026-12-07T09:48:00Z",
            "2026-12-07T09:48:00.120Z",
            "2026-12-07T09:48:00.123456Z",
            "2026-12-07T09:48:00.123456789Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        for text in instants {
            let at: DateTime<Utc> = text.parse().unwrap();
            let item = EnqueuedItem {
                id: JobId(1),
                duplicate: false,
                state: JobState::Available,
                run_at: at,
            };
            let written = serde_json::to_value(&item).unwrap();
            assert_eq!(
                written["run_at"],
                serde_json::to_value(at).unwrap(),
                "{text}"
            );
        }
    }
}
