//! Alert rules (issue 13, item 8): `/v1/alerts`. Every route goes through `stoker::Client`,
//! which validates (naming the field) before anything is written.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker::alerts::{
    AlertBaseline, AlertEvent, AlertEventKind, AlertFormat, AlertMetric, AlertRow, AlertRule,
    AlertState, ALERT_WINDOW_DEFAULT_SECONDS,
};
use stoker::{HistoryScope, JobId};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// What a rule watches (its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetricName {
    /// Failed attempts over attempts ended in the window (0 to 1); fires above.
    FailureRate,
    /// Failed attempts in the window; fires above.
    FailureCount,
    /// Due jobs waiting; fires above.
    QueueDepth,
    /// Seconds the oldest due job has waited; fires above.
    OldestAge,
    /// Live workers serving `scope.queue`; fires below (default threshold 1).
    NoWorker,
    /// Completed jobs in the window (or a fraction of a `baseline`); fires below.
    Throughput,
    /// Discarded jobs in the window; fires above (default threshold 0).
    Discarded,
}

impl From<AlertMetricName> for AlertMetric {
    fn from(name: AlertMetricName) -> Self {
        match name {
            AlertMetricName::FailureRate => AlertMetric::FailureRate,
            AlertMetricName::FailureCount => AlertMetric::FailureCount,
            AlertMetricName::QueueDepth => AlertMetric::QueueDepth,
            AlertMetricName::OldestAge => AlertMetric::OldestAge,
            AlertMetricName::NoWorker => AlertMetric::NoWorker,
            AlertMetricName::Throughput => AlertMetric::Throughput,
            AlertMetricName::Discarded => AlertMetric::Discarded,
        }
    }
}

impl From<AlertMetric> for AlertMetricName {
    fn from(metric: AlertMetric) -> Self {
        match metric {
            AlertMetric::FailureRate => AlertMetricName::FailureRate,
            AlertMetric::FailureCount => AlertMetricName::FailureCount,
            AlertMetric::QueueDepth => AlertMetricName::QueueDepth,
            AlertMetric::OldestAge => AlertMetricName::OldestAge,
            AlertMetric::NoWorker => AlertMetricName::NoWorker,
            AlertMetric::Throughput => AlertMetricName::Throughput,
            AlertMetric::Discarded => AlertMetricName::Discarded,
        }
    }
}

/// What a throughput rule compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertBaselineName {
    /// The same window a day earlier.
    Day,
    /// The same window a week earlier.
    Week,
}

impl From<AlertBaselineName> for AlertBaseline {
    fn from(name: AlertBaselineName) -> Self {
        match name {
            AlertBaselineName::Day => AlertBaseline::Day,
            AlertBaselineName::Week => AlertBaseline::Week,
        }
    }
}

impl From<AlertBaseline> for AlertBaselineName {
    fn from(baseline: AlertBaseline) -> Self {
        match baseline {
            AlertBaseline::Day => AlertBaselineName::Day,
            AlertBaseline::Week => AlertBaselineName::Week,
        }
    }
}

/// The body a rule's messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormatName {
    /// Stoker's JSON body (`{"type": "alert.firing", ...}`).
    Stoker,
    /// A Slack incoming-webhook body (`{"text": ...}`).
    Slack,
}

impl From<AlertFormatName> for AlertFormat {
    fn from(name: AlertFormatName) -> Self {
        match name {
            AlertFormatName::Stoker => AlertFormat::Stoker,
            AlertFormatName::Slack => AlertFormat::Slack,
        }
    }
}

impl From<AlertFormat> for AlertFormatName {
    fn from(format: AlertFormat) -> Self {
        match format {
            AlertFormat::Stoker => AlertFormatName::Stoker,
            AlertFormat::Slack => AlertFormatName::Slack,
        }
    }
}

/// Which labels a rule watches; omitted means any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertScopeBody {
    /// Only this queue (required for `no_worker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub queue: Option<String>,
    /// Only this kind (not for per-queue metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub kind: Option<String>,
    /// Only this tenant (not for per-queue metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[ -~]+$")]
    pub tenant: Option<String>,
}

impl From<AlertScopeBody> for HistoryScope {
    fn from(scope: AlertScopeBody) -> Self {
        HistoryScope {
            queue: scope.queue,
            kind: scope.kind,
            tenant: scope.tenant,
        }
    }
}

impl From<HistoryScope> for AlertScopeBody {
    fn from(scope: HistoryScope) -> Self {
        AlertScopeBody {
            queue: scope.queue,
            kind: scope.kind,
            tenant: scope.tenant,
        }
    }
}

/// `POST /v1/alerts`: a new rule. `name`, `metric` and `url` are required; `threshold` too,
/// except for `no_worker` (1) and `discarded` (0).
///
/// Which fields a rule takes depends on its metric, so its schema in the OpenAPI document is
/// one branch per metric (its `utoipa::PartialSchema` impl), not derived from this flat struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCreateRequest {
    /// The rule's name: 1 to 128 letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// What it watches.
    pub metric: AlertMetricName,
    /// Which labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AlertScopeBody>,
    /// The value past which it fires: above it, or below it for `no_worker` and `throughput`.
    /// `failure_rate` takes 0 to 1; a throughput `baseline` takes a fraction above 0 and at
    /// most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Where it counts as clear again, on the good side of `threshold`. Defaults to the
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
    /// The window of windowed metrics, in seconds: 60 to 604,800. Defaults to 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// How long the condition must hold before it fires, in seconds: 0 to 86,400. Defaults
    /// to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
    /// How long it must be clear before it resolves, in seconds: 0 to 86,400. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_seconds: Option<u64>,
    /// Throughput only: compare with the same window a day or a week earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<AlertBaselineName>,
    /// Where messages are posted: an absolute http(s) URL.
    pub url: String,
    /// Headers sent with each message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// `stoker` (default) or `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AlertFormatName>,
    /// False to keep it without evaluating it. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The OpenAPI schema of [`AlertCreateRequest`]: one branch per metric, each stating the
/// threshold range, the scope and the baseline that metric takes, so a schema-valid rule is a
/// rule the server stores. Only `resolve_threshold`'s side of `threshold` (at or below it, or
/// at or above it for the metrics that fire below) and the URL's parse are left to the server.
mod create_schema {
    use std::borrow::Cow;

    use stoker::alerts::{
        AlertMetric, ALERT_HEADERS_MAX, ALERT_HOLD_MAX_SECONDS, ALERT_NAME_MAX_LEN,
        ALERT_URL_MAX_LEN, ALERT_WINDOW_MAX_SECONDS, ALERT_WINDOW_MIN_SECONDS,
    };
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
    };
    use utoipa::openapi::RefOr;

    use super::AlertCreateRequest;

    /// A threshold's range: `(minimum, exclusive, maximum)`.
    type Range = (f64, bool, Option<f64>);

    fn nullable(kind: Type) -> SchemaType {
        SchemaType::from_iter([kind, Type::Null])
    }

    fn null_only() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::Null)
    }

    fn integer(min: u64, max: u64, description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(nullable(Type::Integer))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description))
    }

    fn number((min, exclusive, max): Range, required: bool, description: &str) -> ObjectBuilder {
        let kind = if required {
            SchemaType::Type(Type::Number)
        } else {
            nullable(Type::Number)
        };
        let number = ObjectBuilder::new()
            .schema_type(kind)
            .maximum(max)
            .description(Some(description));
        if exclusive {
            number.exclusive_minimum(Some(min))
        } else {
            number.minimum(Some(min))
        }
    }

    fn text(min: usize, max: usize, pattern: Option<&str>, description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(pattern)
            .description(Some(description))
    }

    /// The scope a metric takes: per-queue metrics take only a queue (required by
    /// `no_worker`), the others a queue, a kind and a tenant.
    fn scope(metric: AlertMetric) -> ObjectBuilder {
        let queue = text(
            1,
            stoker::QUEUE_MAX_LEN,
            Some(r"^[A-Za-z0-9_.:-]+$"),
            "Only this queue.",
        );
        let per_queue = matches!(
            metric,
            AlertMetric::QueueDepth | AlertMetric::OldestAge | AlertMetric::NoWorker
        );
        let (kind, tenant) = if per_queue {
            (null_only(), null_only())
        } else {
            (
                text(
                    1,
                    stoker::KIND_MAX_LEN,
                    Some(r"^[!-~]+$"),
                    "Only this kind.",
                ),
                text(
                    1,
                    stoker::TENANT_MAX_LEN,
                    Some(r"^[ -~]+$"),
                    "Only this tenant.",
                ),
            )
        };
        let mut scope = ObjectBuilder::new()
            .property("queue", queue)
            .property("kind", kind)
            .property("tenant", tenant)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        if metric == AlertMetric::NoWorker {
            scope = scope
                .schema_type(Type::Object)
                .required("queue")
                .description(Some("The queue whose workers to watch (required)."));
        } else {
            scope = scope
                .schema_type(nullable(Type::Object))
                .description(Some("Which labels; omitted means any."));
        }
        scope
    }

    /// One branch: `metric` fixed to one value; `baseline` is the day-or-week branch of
    /// `throughput` (`Some`) or absent/null (`None`).
    fn branch(metric: AlertMetric, baseline: Option<()>) -> ObjectBuilder {
        let threshold: Range = match metric {
            AlertMetric::FailureRate => (0.0, false, Some(1.0)),
            AlertMetric::Throughput if baseline.is_some() => (0.0, true, Some(1.0)),
            AlertMetric::Throughput | AlertMetric::NoWorker => (0.0, true, None),
            _ => (0.0, false, None),
        };
        let required = metric.default_threshold().is_none();
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some(match (metric, baseline) {
                (AlertMetric::Throughput, Some(())) => "throughput (against a baseline)".into(),
                _ => metric.to_string(),
            }))
            .property(
                "name",
                text(
                    1,
                    ALERT_NAME_MAX_LEN,
                    Some(r"^[A-Za-z0-9_.-]+$"),
                    "The rule's name.",
                ),
            )
            .required("name")
            .property(
                "metric",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([metric.as_str()])),
            )
            .required("metric")
            .property("scope", scope(metric))
            .property(
                "threshold",
                number(
                    threshold,
                    required,
                    "The value past which it fires: above it, or below it for `no_worker` and \
                     `throughput` (with a baseline, a fraction of the baseline).",
                ),
            )
            .property(
                "resolve_threshold",
                number(
                    threshold,
                    false,
                    "Where it counts as clear again: on the good side of `threshold` (at or \
                     below it, at or above it for the metrics that fire below). Defaults to the \
                     threshold.",
                ),
            )
            .property(
                "window_seconds",
                integer(
                    ALERT_WINDOW_MIN_SECONDS,
                    ALERT_WINDOW_MAX_SECONDS,
                    "The window of windowed metrics, in seconds. Defaults to 300.",
                ),
            )
            .property(
                "for_seconds",
                integer(
                    0,
                    ALERT_HOLD_MAX_SECONDS,
                    "How long the condition must hold before it fires, in seconds.",
                ),
            )
            .property(
                "resolve_seconds",
                integer(
                    0,
                    ALERT_HOLD_MAX_SECONDS,
                    "How long it must be clear before it resolves, in seconds.",
                ),
            )
            .property(
                "url",
                text(
                    1,
                    ALERT_URL_MAX_LEN,
                    None,
                    "Where messages are posted: an absolute http(s) URL.",
                ),
            )
            .required("url")
            .property(
                "headers",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Object))
                    .max_properties(Some(ALERT_HEADERS_MAX))
                    .property_names(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")),
                    ))
                    .additional_properties(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(r"^[^\x00-\x08\x0A-\x1F\x7F-\x9F]*$")),
                    ))
                    .description(Some("Headers sent with each message.")),
            )
            .property(
                "format",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .enum_values(Some([Some("stoker"), Some("slack"), None]))
                    .description(Some("`stoker` (default) or `slack`.")),
            )
            .property(
                "enabled",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Boolean))
                    .description(Some("False to keep it without evaluating it.")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        if required {
            object = object.required("threshold");
        }
        if metric == AlertMetric::NoWorker {
            object = object.required("scope");
        }
        object = match baseline {
            Some(()) => object
                .property(
                    "baseline",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["day", "week"]))
                        .description(Some(
                            "Compare with the same window a day or a week earlier.",
                        )),
                )
                .required("baseline"),
            None => object.property("baseline", null_only()),
        };
        object
    }

    impl utoipa::PartialSchema for AlertCreateRequest {
        fn schema() -> RefOr<Schema> {
            let mut one_of = OneOfBuilder::new().description(Some(
                "A new rule: `name`, `metric` and `url`, and the fields its metric takes.",
            ));
            for metric in AlertMetric::ALL {
                one_of = one_of.item(branch(metric, None));
                if metric == AlertMetric::Throughput {
                    one_of = one_of.item(branch(metric, Some(())));
                }
            }
            RefOr::T(Schema::OneOf(one_of.build()))
        }
    }

    impl utoipa::ToSchema for AlertCreateRequest {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("AlertCreateRequest")
        }
    }
}

/// `PATCH /v1/alerts/{name}`: the fields to change; the others keep their values. The rule's
/// state stays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertUpdateRequest {
    /// What it watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<AlertMetricName>,
    /// Which labels (replaces the whole scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<AlertScopeBody>,
    /// The threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The resolve threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
    /// The window, in seconds: 60 to 604,800.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 60, maximum = 604_800)]
    pub window_seconds: Option<u64>,
    /// The hold before firing, in seconds: 0 to 86,400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 86_400)]
    pub for_seconds: Option<u64>,
    /// The hold before resolving, in seconds: 0 to 86,400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 86_400)]
    pub resolve_seconds: Option<u64>,
    /// The baseline (throughput only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<AlertBaselineName>,
    /// The URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// The headers (replaces them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The body format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AlertFormatName>,
    /// False to stop evaluating it, true to start again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A rule's state: `ok`, `pending` or `firing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStateName {
    /// The condition does not hold.
    Ok,
    /// The condition holds, for less than `for_seconds` so far.
    Pending,
    /// Firing: a message was sent.
    Firing,
}

impl From<AlertState> for AlertStateName {
    fn from(state: AlertState) -> Self {
        match state {
            AlertState::Ok => AlertStateName::Ok,
            AlertState::Pending => AlertStateName::Pending,
            AlertState::Firing => AlertStateName::Firing,
        }
    }
}

/// A rule as stored, with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// The name.
    pub name: String,
    /// What it watches.
    pub metric: AlertMetricName,
    /// Which labels.
    pub scope: AlertScopeBody,
    /// The threshold.
    pub threshold: f64,
    /// Where it counts as clear.
    pub resolve_threshold: f64,
    /// The window, in seconds.
    pub window_seconds: u64,
    /// The hold before firing, in seconds.
    pub for_seconds: u64,
    /// The hold before resolving, in seconds.
    pub resolve_seconds: u64,
    /// The baseline, for throughput.
    pub baseline: Option<AlertBaselineName>,
    /// Where messages go.
    pub url: String,
    /// The names of the headers sent (their values are not shown: they often hold secrets).
    pub header_names: Vec<String>,
    /// The body format.
    pub format: AlertFormatName,
    /// False while not evaluated.
    pub enabled: bool,
    /// Its state.
    pub state: AlertStateName,
    /// When it entered that state.
    pub since: Option<DateTime<Utc>>,
    /// While firing: since when it has been clear.
    pub clear_since: Option<DateTime<Utc>>,
    /// The value at the latest change of state.
    pub value: Option<f64>,
    /// Grows with every change.
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its definition last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<AlertRow> for AlertView {
    fn from(row: AlertRow) -> Self {
        let rule = row.rule;
        AlertView {
            resolve_threshold: rule.clear_threshold(),
            name: rule.name,
            metric: rule.metric.into(),
            scope: rule.scope.into(),
            threshold: rule.threshold,
            window_seconds: rule.window_seconds,
            for_seconds: rule.for_seconds,
            resolve_seconds: rule.resolve_seconds,
            baseline: rule.baseline.map(Into::into),
            url: rule.url,
            header_names: rule.headers.into_keys().collect(),
            format: rule.format.into(),
            enabled: rule.enabled,
            state: row.status.state.into(),
            since: row.status.since,
            clear_since: row.status.clear_since,
            value: row.status.value,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Every rule, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    /// The rules.
    pub alerts: Vec<AlertView>,
}

/// One sent change of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEventView {
    /// `firing` or `resolved`.
    pub kind: String,
    /// The value that caused it.
    pub value: f64,
    /// The threshold at the time.
    pub threshold: f64,
    /// When.
    pub at: DateTime<Utc>,
    /// The delivery job.
    #[schema(value_type = Option<i64>)]
    pub job_id: Option<JobId>,
}

impl From<AlertEvent> for AlertEventView {
    fn from(event: AlertEvent) -> Self {
        AlertEventView {
            kind: match event.kind {
                AlertEventKind::Firing => "firing",
                AlertEventKind::Resolved => "resolved",
            }
            .to_owned(),
            value: event.value,
            threshold: event.threshold,
            at: event.at,
            job_id: event.job_id,
        }
    }
}

/// A rule's state and its recent changes, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertHistory {
    /// The rule now.
    pub alert: AlertView,
    /// Its sent changes.
    pub events: Vec<AlertEventView>,
}

/// `GET /v1/alerts/{name}/events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertEventsQuery {
    /// The most events: 1 to 100. Defaults to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

const NAME_PARAM: &str = "The rule: 1 to 128 letters, digits, `_`, `-` and `.`";

fn check_name(name: &str) -> Result<(), ApiError> {
    stoker::alerts::validate_alert_name(name).map_err(|err| ApiError::invalid("name", err.reason))
}

/// The rule a create request describes, every omitted field at its default.
///
/// # Errors
///
/// An error naming `threshold` when it is omitted for a metric without a default.
pub fn rule_from(request: AlertCreateRequest) -> Result<AlertRule, stoker::InvalidInput> {
    let metric = AlertMetric::from(request.metric);
    let threshold = request
        .threshold
        .or_else(|| metric.default_threshold())
        .ok_or_else(|| {
            stoker::InvalidInput::new("threshold", format!("is required for {metric}"))
        })?;
    let mut rule = AlertRule::new(request.name, metric, threshold, request.url);
    rule.scope = request.scope.map(Into::into).unwrap_or_default();
    rule.resolve_threshold = request.resolve_threshold;
    rule.window_seconds = request
        .window_seconds
        .unwrap_or(ALERT_WINDOW_DEFAULT_SECONDS);
    rule.for_seconds = request.for_seconds.unwrap_or(0);
    rule.resolve_seconds = request.resolve_seconds.unwrap_or(0);
    rule.baseline = request.baseline.map(Into::into);
    rule.headers = request.headers.unwrap_or_default();
    rule.format = request.format.map(Into::into).unwrap_or_default();
    rule.enabled = request.enabled.unwrap_or(true);
    Ok(rule)
}

/// Applies the fields an update request gives to `rule`.
pub fn apply_update(rule: &mut AlertRule, request: AlertUpdateRequest) {
    if let Some(metric) = request.metric {
        rule.metric = metric.into();
    }
    if let Some(scope) = request.scope {
        rule.scope = scope.into();
    }
    if let Some(threshold) = request.threshold {
        rule.threshold = threshold;
    }
    if let Some(resolve) = request.resolve_threshold {
        rule.resolve_threshold = Some(resolve);
    }
    if let Some(window) = request.window_seconds {
        rule.window_seconds = window;
    }
    if let Some(hold) = request.for_seconds {
        rule.for_seconds = hold;
    }
    if let Some(hold) = request.resolve_seconds {
        rule.resolve_seconds = hold;
    }
    if let Some(baseline) = request.baseline {
        rule.baseline = Some(baseline.into());
    }
    if let Some(url) = request.url {
        rule.url = url;
    }
    if let Some(headers) = request.headers {
        rule.headers = headers;
    }
    if let Some(format) = request.format {
        rule.format = format.into();
    }
    if let Some(enabled) = request.enabled {
        rule.enabled = enabled;
    }
}

/// List every alert rule with its state.
///
/// A tenant-bound token sees only the rules scoped to its tenant; a rule it creates is scoped
/// to its tenant, and another tenant's rule answers 404 to it.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    responses((status = 200, description = "Every rule, by name (for a tenant-bound token: the rules scoped to its tenant)", body = AlertList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<AlertList>, ApiError> {
    principal.require(Scope::Read)?;
    let rows = state.client_for(&principal).alert_list().await?;
    Ok(Json(AlertList {
        alerts: rows.into_iter().map(AlertView::from).collect(),
    }))
}

/// Create an alert rule, in state `ok`. Bad input is refused naming the field, and nothing is
/// written.
#[utoipa::path(
    post,
    path = "/v1/alerts",
    tag = "alerts",
    request_body = AlertCreateRequest,
    responses(
        (status = 201, description = "Created", body = AlertView),
        (status = 409, description = "`conflict`: a rule with this name exists", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<AlertCreateRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let rule = rule_from(request)?;
    let row = state.client_for(&principal).alert_create(rule).await?;
    tracing::info!(alert = %row.rule.name, "alert rule created");
    let location = format!("/v1/alerts/{}", row.rule.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AlertView::from(row)),
    )
        .into_response())
}

/// One alert rule with its state.
#[utoipa::path(
    get,
    path = "/v1/alerts/{name}",
    tag = "alerts",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The rule", body = AlertView),
        (status = 404, description = "`not_found`: no such rule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AlertView>, ApiError> {
    principal.require(Scope::Read)?;
    check_name(&name)?;
    let row = state.client_for(&principal).alert_get(&name).await?;
    Ok(Json(row.into()))
}

/// Change an alert rule: only the fields given. Its state stays.
#[utoipa::path(
    patch,
    path = "/v1/alerts/{name}",
    tag = "alerts",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    request_body = AlertUpdateRequest,
    responses(
        (status = 200, description = "The rule, changed", body = AlertView),
        (status = 404, description = "`not_found`: no such rule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<AlertUpdateRequest>,
) -> Result<Json<AlertView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let client = state.client_for(&principal);
    let mut rule = client.alert_get(&name).await?.rule;
    apply_update(&mut rule, request);
    let row = client.alert_update(rule).await?;
    tracing::info!(alert = %name, "alert rule updated");
    Ok(Json(row.into()))
}

/// Delete an alert rule and its events. Messages already queued are still delivered.
#[utoipa::path(
    delete,
    path = "/v1/alerts/{name}",
    tag = "alerts",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$")),
    responses(
        (status = 200, description = "The rule, as it was", body = AlertView),
        (status = 404, description = "`not_found`: no such rule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AlertView>, ApiError> {
    principal.require(Scope::Admin)?;
    check_name(&name)?;
    let row = state.client_for(&principal).alert_delete(&name).await?;
    tracing::info!(alert = %name, "alert rule deleted");
    Ok(Json(row.into()))
}

/// An alert rule's state and its recent firing and resolved changes, newest first.
#[utoipa::path(
    get,
    path = "/v1/alerts/{name}/events",
    tag = "alerts",
    params(("name" = String, Path, description = NAME_PARAM, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.-]+$"), AlertEventsQuery),
    responses(
        (status = 200, description = "The rule and its events", body = AlertHistory),
        (status = 404, description = "`not_found`: no such rule", body = super::model::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<AlertEventsQuery>,
) -> Result<Json<AlertHistory>, ApiError> {
    principal.require(Scope::Read)?;
    check_name(&name)?;
    let client = state.client_for(&principal);
    let alert = client.alert_get(&name).await?;
    let events = client
        .alert_events(&name, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(AlertHistory {
        alert: alert.into(),
        events: events.into_iter().map(AlertEventView::from).collect(),
    }))
}
