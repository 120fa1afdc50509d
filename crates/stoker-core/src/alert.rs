//! Alert rules (issue 13, item 8): thresholds over the history, the queue depths and the
//! worker registry, stored in the database and evaluated by the elected leader.
//!
//! A rule names a [`AlertMetric`], a scope (queue, kind, tenant), a threshold and a webhook
//! URL. Its [`AlertStatus`] moves like a Prometheus alert: `ok` → `pending` while the
//! condition holds for less than `for_seconds` → `firing`; a firing rule goes back to `ok`
//! once it has been clear (at or past `resolve_threshold`) for `resolve_seconds`. Only the
//! two changes that matter to a person, firing and resolved, send a message, and each is
//! written with [`Store::alert_transition`](crate::Store::alert_transition): a
//! compare-and-set on the rule's `version` that inserts the delivery job in the same
//! transaction. So a message is sent once per change whoever evaluates, and a new leader
//! reads the state its predecessor left instead of notifying again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{HistoryScope, InvalidInput, JobId, JobInsert};

/// The longest rule name, in bytes: 128.
pub const ALERT_NAME_MAX_LEN: usize = 128;
/// The shortest window a windowed metric reads: one minute (the history's grain).
pub const ALERT_WINDOW_MIN_SECONDS: u64 = 60;
/// The longest window: 7 days (the minute history's default retention).
pub const ALERT_WINDOW_MAX_SECONDS: u64 = 7 * 86_400;
/// The window of a windowed metric when the rule gives none: 5 minutes.
pub const ALERT_WINDOW_DEFAULT_SECONDS: u64 = 300;
/// The longest `for_seconds` and `resolve_seconds`: one day.
pub const ALERT_HOLD_MAX_SECONDS: u64 = 86_400;
/// The longest webhook URL, in bytes: 2048.
pub const ALERT_URL_MAX_LEN: usize = 2048;
/// The most headers a rule's webhook sends: 32.
pub const ALERT_HEADERS_MAX: usize = 32;
/// How many state changes each rule keeps in its event history: the newest 100.
pub const ALERT_EVENTS_KEEP: u32 = 100;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// Failed attempts over attempts that ended (completed + failed) in the window, from 0 to
    /// 1; fires above the threshold.
    FailureRate,
    /// Failed attempts in the window; fires above the threshold.
    FailureCount,
    /// Due jobs waiting (summed over the queues in scope); fires above the threshold.
    QueueDepth,
    /// How long the oldest due job has waited, in seconds; fires above the threshold.
    OldestAge,
    /// Live workers serving the scope's queue (a fresh heartbeat); fires below the threshold
    /// (1 by default: no worker at all).
    NoWorker,
    /// Completed jobs in the window, or with a `baseline` that count as a fraction of the same
    /// window a day or a week earlier; fires below the threshold.
    Throughput,
    /// Discarded jobs (dead letters) in the window; fires above the threshold (0 by default:
    /// any discarded job).
    Discarded,
}

impl AlertMetric {
    /// Every metric, in the order the docs list them.
    pub const ALL: [AlertMetric; 7] = [
        AlertMetric::FailureRate,
        AlertMetric::FailureCount,
        AlertMetric::QueueDepth,
        AlertMetric::OldestAge,
        AlertMetric::NoWorker,
        AlertMetric::Throughput,
        AlertMetric::Discarded,
    ];

    /// Its name on the wire: `failure_rate`, `queue_depth`...
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::FailureRate => "failure_rate",
            AlertMetric::FailureCount => "failure_count",
            AlertMetric::QueueDepth => "queue_depth",
            AlertMetric::OldestAge => "oldest_age",
            AlertMetric::NoWorker => "no_worker",
            AlertMetric::Throughput => "throughput",
            AlertMetric::Discarded => "discarded",
        }
    }

    /// Parses a name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `metric`, listing the known names.
    pub fn parse(name: &str) -> Result<AlertMetric, InvalidInput> {
        AlertMetric::ALL
            .into_iter()
            .find(|metric| metric.as_str() == name)
            .ok_or_else(|| {
                InvalidInput::new(
                    "metric",
                    format!(
                        "{name:?} is not a rule type; expected one of {}",
                        AlertMetric::ALL.map(AlertMetric::as_str).join(", ")
                    ),
                )
            })
    }

    /// Whether the rule fires when the value drops below the threshold (rather than above).
    pub fn fires_below(self) -> bool {
        matches!(self, AlertMetric::NoWorker | AlertMetric::Throughput)
    }

    /// Whether the value is counted over `window_seconds` of history.
    pub fn windowed(self) -> bool {
        matches!(
            self,
            AlertMetric::FailureRate
                | AlertMetric::FailureCount
                | AlertMetric::Throughput
                | AlertMetric::Discarded
        )
    }

    /// Whether the value comes from per-queue sources (depths, workers), which know no kind
    /// or tenant.
    fn per_queue(self) -> bool {
        matches!(
            self,
            AlertMetric::QueueDepth | AlertMetric::OldestAge | AlertMetric::NoWorker
        )
    }

    /// The threshold a rule of this metric gets when it names none, if it has one.
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            AlertMetric::NoWorker => Some(1.0),
            AlertMetric::Discarded => Some(0.0),
            _ => None,
        }
    }
}

impl std::fmt::Display for AlertMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a throughput rule compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertBaseline {
    /// The same window one day earlier.
    Day,
    /// The same window one week earlier.
    Week,
}

impl AlertBaseline {
    /// How far back the baseline window is, in seconds.
    pub fn offset_seconds(self) -> i64 {
        match self {
            AlertBaseline::Day => 86_400,
            AlertBaseline::Week => 7 * 86_400,
        }
    }
}

/// The body a rule's webhook posts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// Stoker's JSON body: `{"type": "alert.firing", "rule", "metric", "value", ...}`.
    #[default]
    Stoker,
    /// A Slack incoming-webhook body: `{"text": "..."}`.
    Slack,
}

/// One alert rule, as written by a user.
///
/// Stored as JSON in the rule's row. Unknown fields are ignored when read, so a rule written
/// by a newer build still loads in an older one during a rolling upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Its name: 1 to 128 letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// What it watches.
    pub metric: AlertMetric,
    /// Which labels: a queue, a kind, a tenant (per-queue metrics take a queue only).
    #[serde(default)]
    pub scope: HistoryScope,
    /// The value past which it fires (above, or below for [`AlertMetric::fires_below`]).
    pub threshold: f64,
    /// The value it must be back at (or past) to count as clear; defaults to `threshold`.
    /// Set it apart from `threshold` so a value hovering at the line does not flap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_threshold: Option<f64>,
    /// The window windowed metrics count over, in seconds (60 to 604,800). Defaults to 300.
    #[serde(default = "window_default")]
    pub window_seconds: u64,
    /// How long the condition must hold before it fires, in seconds (0 to 86,400). Defaults
    /// to 0.
    #[serde(default)]
    pub for_seconds: u64,
    /// How long it must be clear before it resolves, in seconds (0 to 86,400). Defaults to 0.
    #[serde(default)]
    pub resolve_seconds: u64,
    /// Throughput only: compare with the same window a day or week earlier, `threshold` then
    /// being a fraction (above 0, at most 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<AlertBaseline>,
    /// Where the messages are posted: an absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers sent with each message (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body: Stoker's JSON or Slack's `{"text"}`. Defaults to Stoker's.
    #[serde(default)]
    pub format: AlertFormat,
    /// False to keep the rule without evaluating it (its state stays as it was). Defaults to
    /// true.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn window_default() -> u64 {
    ALERT_WINDOW_DEFAULT_SECONDS
}

fn enabled_default() -> bool {
    true
}

/// Checks a rule name: 1 to 128 letters, digits, `_`, `-` and `.`.
///
/// # Errors
///
/// [`InvalidInput`] naming `name`.
pub fn validate_alert_name(name: &str) -> Result<(), InvalidInput> {
    if name.is_empty() || name.len() > ALERT_NAME_MAX_LEN {
        return Err(InvalidInput::new(
            "name",
            format!("must be 1 to {ALERT_NAME_MAX_LEN} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(InvalidInput::new(
            "name",
            format!("{name:?} contains {c:?}; rule names use letters, digits, '_', '-', '.'"),
        ));
    }
    Ok(())
}

impl AlertRule {
    /// A rule with every optional field at its default.
    pub fn new(
        name: impl Into<String>,
        metric: AlertMetric,
        threshold: f64,
        url: impl Into<String>,
    ) -> AlertRule {
        AlertRule {
            name: name.into(),
            metric,
            scope: HistoryScope::default(),
            threshold,
            resolve_threshold: None,
            window_seconds: ALERT_WINDOW_DEFAULT_SECONDS,
            for_seconds: 0,
            resolve_seconds: 0,
            baseline: None,
            url: url.into(),
            headers: BTreeMap::new(),
            format: AlertFormat::Stoker,
            enabled: true,
        }
    }

    /// The value at which it counts as clear.
    pub fn clear_threshold(&self) -> f64 {
        self.resolve_threshold.unwrap_or(self.threshold)
    }

    /// Whether `value` breaches the threshold.
    pub fn breached(&self, value: f64) -> bool {
        if self.metric.fires_below() {
            value < self.threshold
        } else {
            value > self.threshold
        }
    }

    /// Whether `value` is clear: at or past the resolve threshold on the good side.
    pub fn clear(&self, value: f64) -> bool {
        if self.metric.fires_below() {
            value >= self.clear_threshold()
        } else {
            value <= self.clear_threshold()
        }
    }

    /// Checks every field, naming the first at fault. Writes nothing: stores call it before
    /// any write.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `name`, `threshold`, `resolve_threshold`, `window_seconds`,
    /// `for_seconds`, `resolve_seconds`, `baseline`, `scope.queue`, `scope.kind`,
    /// `scope.tenant`, `url` or `headers`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_alert_name(&self.name)?;
        let metric = self.metric;
        self.validate_threshold("threshold", self.threshold)?;
        if let Some(resolve) = self.resolve_threshold {
            self.validate_threshold("resolve_threshold", resolve)?;
            let wrong_side = if metric.fires_below() {
                resolve < self.threshold
            } else {
                resolve > self.threshold
            };
            if wrong_side {
                return Err(InvalidInput::new(
                    "resolve_threshold",
                    format!(
                        "must be {} the threshold {} for {metric} (it is where the rule counts \
                         as clear)",
                        if metric.fires_below() {
                            "at or above"
                        } else {
                            "at or below"
                        },
                        self.threshold
                    ),
                ));
            }
        }
        // Checked for every metric: a rule of a metric that ignores its window still must not
        // store a window the API would refuse for another (its metric can change later).
        if !(ALERT_WINDOW_MIN_SECONDS..=ALERT_WINDOW_MAX_SECONDS).contains(&self.window_seconds) {
            return Err(InvalidInput::new(
                "window_seconds",
                format!(
                    "must be from {ALERT_WINDOW_MIN_SECONDS} to {ALERT_WINDOW_MAX_SECONDS} \
                     seconds, got {}",
                    self.window_seconds
                ),
            ));
        }
        for (field, value) in [
            ("for_seconds", self.for_seconds),
            ("resolve_seconds", self.resolve_seconds),
        ] {
            if value > ALERT_HOLD_MAX_SECONDS {
                return Err(InvalidInput::new(
                    field,
                    format!("must be at most {ALERT_HOLD_MAX_SECONDS} seconds, got {value}"),
                ));
            }
        }
        if self.baseline.is_some() && metric != AlertMetric::Throughput {
            return Err(InvalidInput::new(
                "baseline",
                format!("only throughput rules compare with a baseline, not {metric}"),
            ));
        }
        self.validate_scope()?;
        validate_url(&self.url)?;
        if self.headers.len() > ALERT_HEADERS_MAX {
            return Err(InvalidInput::new(
                "headers",
                format!("at most {ALERT_HEADERS_MAX} headers"),
            ));
        }
        for (name, value) in &self.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(InvalidInput::new(
                    format!("headers.{name}"),
                    "is not a valid header name",
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(InvalidInput::new(
                    format!("headers.{name}"),
                    "must not contain control characters",
                ));
            }
        }
        Ok(())
    }

    fn validate_threshold(&self, field: &str, value: f64) -> Result<(), InvalidInput> {
        let metric = self.metric;
        let (ok, range) = if !value.is_finite() {
            (false, "a finite number".to_owned())
        } else {
            match metric {
                AlertMetric::FailureRate => ((0.0..=1.0).contains(&value), "from 0 to 1".into()),
                AlertMetric::Throughput if self.baseline.is_some() => (
                    value > 0.0 && value <= 1.0,
                    "above 0 and at most 1 (a fraction of the baseline)".into(),
                ),
                AlertMetric::Throughput | AlertMetric::NoWorker => {
                    (value > 0.0, "above 0".to_owned())
                }
                _ => (value >= 0.0, "at least 0".to_owned()),
            }
        };
        if ok {
            Ok(())
        } else {
            Err(InvalidInput::new(
                field,
                format!("must be {range} for {metric}, got {value}"),
            ))
        }
    }

    fn validate_scope(&self) -> Result<(), InvalidInput> {
        let scope = &self.scope;
        for (field, value, check) in [
            (
                "scope.queue",
                &scope.queue,
                crate::validate_queue as fn(&str) -> Result<(), InvalidInput>,
            ),
            ("scope.kind", &scope.kind, crate::validate_kind),
        ] {
            if let Some(value) = value {
                check(value).map_err(|err| InvalidInput::new(field, err.reason))?;
            }
        }
        if let Some(tenant) = &scope.tenant {
            if tenant.is_empty() || tenant.len() > crate::TENANT_MAX_LEN {
                return Err(InvalidInput::new(
                    "scope.tenant",
                    format!("must be 1 to {} characters", crate::TENANT_MAX_LEN),
                ));
            }
        }
        if self.metric.per_queue() {
            if scope.kind.is_some() {
                return Err(InvalidInput::new(
                    "scope.kind",
                    format!("{} is per queue; it cannot be scoped by kind", self.metric),
                ));
            }
            if scope.tenant.is_some() {
                return Err(InvalidInput::new(
                    "scope.tenant",
                    format!(
                        "{} is per queue; it cannot be scoped by tenant",
                        self.metric
                    ),
                ));
            }
        }
        if self.metric == AlertMetric::NoWorker && scope.queue.is_none() {
            return Err(InvalidInput::new(
                "scope.queue",
                "is required for no_worker: the queue whose workers to watch",
            ));
        }
        Ok(())
    }
}

/// Checks a webhook URL: absolute, `http` or `https`, with a host. The webhook job checks it
/// again, fully, when it runs.
///
/// # Errors
///
/// [`InvalidInput`] naming `url`.
pub fn validate_url(url: &str) -> Result<(), InvalidInput> {
    if url.len() > ALERT_URL_MAX_LEN {
        return Err(InvalidInput::new(
            "url",
            format!("must be at most {ALERT_URL_MAX_LEN} bytes"),
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            InvalidInput::new(
                "url",
                format!("{url:?} must be an absolute http:// or https:// URL"),
            )
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(InvalidInput::new("url", format!("{url:?} has no host")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidInput::new(
            "url",
            format!("{url:?} must not contain spaces or control characters"),
        ));
    }
    Ok(())
}

/// Where a rule stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold (or the rule was never evaluated).
    #[default]
    Ok,
    /// The condition holds, for less than `for_seconds` so far.
    Pending,
    /// The condition held for `for_seconds`; a firing message was sent.
    Firing,
}

impl AlertState {
    /// Its name: `ok`, `pending`, `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `state`.
    pub fn parse(name: &str) -> Result<AlertState, InvalidInput> {
        match name {
            "ok" => Ok(AlertState::Ok),
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            other => Err(InvalidInput::new(
                "state",
                format!("{other:?} is not ok, pending or firing"),
            )),
        }
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's evaluation state, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    /// Where it stands.
    pub state: AlertState,
    /// When it entered `state` (`None` for a rule never evaluated).
    pub since: Option<DateTime<Utc>>,
    /// While firing: since when the value has been clear (`None` while it is not).
    pub clear_since: Option<DateTime<Utc>>,
    /// The value at the latest evaluation that changed the status.
    pub value: Option<f64>,
}

/// A message-worthy change of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEventKind {
    /// The rule started firing.
    Firing,
    /// The rule stopped firing.
    Resolved,
}

impl AlertEventKind {
    /// Its name: `firing`, `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventKind::Firing => "firing",
            AlertEventKind::Resolved => "resolved",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `kind`.
    pub fn parse(name: &str) -> Result<AlertEventKind, InvalidInput> {
        match name {
            "firing" => Ok(AlertEventKind::Firing),
            "resolved" => Ok(AlertEventKind::Resolved),
            other => Err(InvalidInput::new(
                "kind",
                format!("{other:?} is not firing or resolved"),
            )),
        }
    }
}

/// A rule as stored: its definition and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// The definition.
    pub rule: AlertRule,
    /// The evaluation state.
    pub status: AlertStatus,
    /// Grows with every write of the definition or the state: the compare-and-set token of
    /// [`Store::alert_transition`](crate::Store::alert_transition).
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its definition last changed.
    pub updated_at: DateTime<Utc>,
}

/// One sent change of a rule, newest first in [`Store::alert_events`](crate::Store::alert_events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Grows with every event.
    pub id: i64,
    /// The rule.
    pub name: String,
    /// What changed.
    pub kind: AlertEventKind,
    /// The value that caused it.
    pub value: f64,
    /// The rule's threshold at the time.
    pub threshold: f64,
    /// When.
    pub at: DateTime<Utc>,
    /// The delivery job, if a message was sent.
    pub job_id: Option<JobId>,
}

/// How [`Store::alert_write`](crate::Store::alert_write) treats an existing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertWriteMode {
    /// Only a new name; an existing one is a conflict.
    Create,
    /// Only an existing name; a missing one is not found.
    Update,
    /// Either; an unchanged definition writes nothing (a config reloaded at start).
    Upsert,
}

/// Parameters of [`Store::alert_write`](crate::Store::alert_write).
#[derive(Debug, Clone)]
pub struct AlertWriteParams {
    /// The rule (validated by the caller with [`AlertRule::validate`]; stores check again).
    pub rule: AlertRule,
    /// Create, update or upsert.
    pub mode: AlertWriteMode,
    /// When: `created_at`, `updated_at`.
    pub now: DateTime<Utc>,
}

/// Parameters of [`Store::alert_transition`](crate::Store::alert_transition).
#[derive(Debug, Clone)]
pub struct AlertTransitionParams {
    /// The rule.
    pub name: String,
    /// The version the caller evaluated; the write applies only if the rule is still at it.
    pub version: i64,
    /// The new status.
    pub status: AlertStatus,
    /// The change to record (with its value and threshold), if it is message-worthy.
    pub event: Option<(AlertEventKind, f64, f64)>,
    /// The delivery jobs to insert in the same transaction (their ids go with the event).
    pub jobs: Vec<JobInsert>,
    /// When.
    pub now: DateTime<Utc>,
    /// Args larger than this are refused.
    pub max_args_bytes: usize,
}

/// The evaluation step of a rule: from its status and the value now, the next status and the
/// change to send, if any. Pure, so the hysteresis is tested with any clock.
///
/// - `ok` and breached: `pending` since now, or `firing` at once with `for_seconds = 0`.
/// - `pending`: `ok` when no longer breached; `firing` once breached for `for_seconds`.
/// - `firing`: clear (see [`AlertRule::clear`]) starts `clear_since`; clear for
///   `resolve_seconds` resolves to `ok`; not clear resets `clear_since`.
///
/// # Examples
///
/// ```
/// use chrono::{Duration, TimeZone, Utc};
/// use stoker_core::alert::{alert_step, AlertEventKind, AlertMetric, AlertRule, AlertState, AlertStatus};
///
/// let mut rule = AlertRule::new("deep", AlertMetric::QueueDepth, 100.0, "http://example.com/h");
/// rule.for_seconds = 60;
/// let t0 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
/// let (pending, event) = alert_step(&rule, &AlertStatus::default(), 500.0, t0);
/// assert_eq!((pending.state, event), (AlertState::Pending, None));
/// let (firing, event) = alert_step(&rule, &pending, 500.0, t0 + Duration::seconds(60));
/// assert_eq!((firing.state, event), (AlertState::Firing, Some(AlertEventKind::Firing)));
/// ```
pub fn alert_step(
    rule: &AlertRule,
    status: &AlertStatus,
    value: f64,
    now: DateTime<Utc>,
) -> (AlertStatus, Option<AlertEventKind>) {
    let held = |since: Option<DateTime<Utc>>, seconds: u64| {
        since.is_some_and(|since| (now - since).num_milliseconds() >= (seconds as i64) * 1000)
    };
    let at = |state: AlertState| AlertStatus {
        state,
        since: Some(now),
        clear_since: None,
        value: Some(value),
    };
    let breached = rule.breached(value);
    match status.state {
        AlertState::Ok if breached => {
            if rule.for_seconds == 0 {
                (at(AlertState::Firing), Some(AlertEventKind::Firing))
            } else {
                (at(AlertState::Pending), None)
            }
        }
        AlertState::Ok => (
            AlertStatus {
                value: Some(value),
                ..status.clone()
            },
            None,
        ),
        AlertState::Pending if !breached => (at(AlertState::Ok), None),
        AlertState::Pending => {
            if held(status.since, rule.for_seconds) {
                (at(AlertState::Firing), Some(AlertEventKind::Firing))
            } else {
                (
                    AlertStatus {
                        value: Some(value),
                        ..status.clone()
                    },
                    None,
                )
            }
        }
        AlertState::Firing => {
            if rule.clear(value) {
                let clear_since = status.clear_since.unwrap_or(now);
                if held(Some(clear_since), rule.resolve_seconds) {
                    (at(AlertState::Ok), Some(AlertEventKind::Resolved))
                } else {
                    (
                        AlertStatus {
                            clear_since: Some(clear_since),
                            value: Some(value),
                            ..status.clone()
                        },
                        None,
                    )
                }
            } else {
                (
                    AlertStatus {
                        clear_since: None,
                        value: Some(value),
                        ..status.clone()
                    },
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(seconds)
    }

    fn rule() -> AlertRule {
        let mut rule = AlertRule::new("r", AlertMetric::QueueDepth, 10.0, "http://x.test/h");
        rule.for_seconds = 30;
        rule.resolve_seconds = 20;
        rule.resolve_threshold = Some(5.0);
        rule
    }

    /// Drives `values` at `(second, value)` points and returns the events sent.
    fn drive(rule: &AlertRule, points: &[(i64, f64)]) -> Vec<(i64, AlertEventKind)> {
        let mut status = AlertStatus::default();
        let mut events = Vec::new();
        for &(second, value) in points {
            let (next, event) = alert_step(rule, &status, value, t(second));
            if let Some(event) = event {
                events.push((second, event));
            }
            status = next;
        }
        events
    }

    #[test]
    fn fires_once_after_for_and_resolves_once_after_resolve_delay() {
        let events = drive(
            &rule(),
            &[
                (0, 50.0),
                (10, 50.0),
                (29, 50.0),
                (30, 50.0),
                (40, 60.0),
                (50, 7.0),
                (60, 4.0),
                (70, 4.0),
                (79, 4.0),
                (80, 4.0),
                (90, 4.0),
            ],
        );
        assert_eq!(
            events,
            [(30, AlertEventKind::Firing), (80, AlertEventKind::Resolved)]
        );
    }

    #[test]
    fn a_flapping_value_never_fires_nor_resolves_twice() {
        // Breached and clear in turn, each for less than the hold times.
        let mut points = Vec::new();
        for i in 0..20 {
            points.push((i * 10, if i % 2 == 0 { 50.0 } else { 1.0 }));
        }
        assert!(drive(&rule(), &points).is_empty());
        // Firing, then hovering between resolve threshold and threshold: stays firing.
        let mut points = vec![(0, 50.0), (30, 50.0)];
        for i in 4..40 {
            points.push((i * 10, if i % 2 == 0 { 8.0 } else { 4.0 }));
        }
        assert_eq!(drive(&rule(), &points), [(30, AlertEventKind::Firing)]);
    }

    #[test]
    fn below_metrics_fire_below() {
        let mut rule = AlertRule::new("w", AlertMetric::NoWorker, 1.0, "http://x.test/h");
        rule.scope.queue = Some("mail".into());
        rule.validate().unwrap();
        let events = drive(&rule, &[(0, 1.0), (5, 0.0), (10, 1.0)]);
        assert_eq!(
            events,
            [(5, AlertEventKind::Firing), (10, AlertEventKind::Resolved)]
        );
    }

    #[test]
    fn validation_names_the_field() {
        let field = |rule: AlertRule| rule.validate().unwrap_err().field;
        let mut r = AlertRule::new("r", AlertMetric::FailureRate, 1.5, "http://x.test/h");
        assert_eq!(field(r.clone()), "threshold");
        r.threshold = 0.5;
        r.validate().unwrap();
        r.window_seconds = 0;
        assert_eq!(field(r.clone()), "window_seconds");
        r.window_seconds = 60;
        r.resolve_threshold = Some(0.9);
        assert_eq!(field(r.clone()), "resolve_threshold");
        r.resolve_threshold = None;
        r.url = "ftp://x".into();
        assert_eq!(field(r.clone()), "url");
        r.url = "http://x.test/h".into();
        r.baseline = Some(AlertBaseline::Day);
        assert_eq!(field(r.clone()), "baseline");
        let mut d = AlertRule::new("d", AlertMetric::QueueDepth, 1.0, "http://x.test/h");
        d.scope.kind = Some("email".into());
        assert_eq!(field(d.clone()), "scope.kind");
        // A per-queue metric ignores its window, but a window out of range is still refused.
        d.scope.kind = None;
        d.window_seconds = 10;
        assert_eq!(field(d), "window_seconds");
        let w = AlertRule::new("w", AlertMetric::NoWorker, 1.0, "http://x.test/h");
        assert_eq!(field(w), "scope.queue");
        assert_eq!(AlertMetric::parse("bogus").unwrap_err().field, "metric");
        let bad = AlertRule::new("bad name", AlertMetric::QueueDepth, 1.0, "http://x.test/h");
        assert_eq!(field(bad), "name");
    }
}
