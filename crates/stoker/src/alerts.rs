//! Alert rules (issue 13, item 8) through the [`Client`], and the [`AlertEvaluator`] the
//! elected leader runs to evaluate them.
//!
//! A rule watches one [`AlertMetric`] over a scope and posts to a URL when it starts firing
//! and when it resolves. Values come from the store's cheap sources, never from a scan of the
//! jobs: failure rate, failure count, throughput and discarded jobs from the per-minute
//! history (so the process must record history: [`WorkerBuilder::history`]); queue depth and
//! oldest age from [`Store::queue_depths`] (the fetch index); live workers from the worker
//! registry. Each message is a job of the built-in `webhook` kind ([`ALERT_DELIVERY_KIND`]),
//! inserted by [`Store::alert_transition`] in the same transaction as the state change, so it
//! is retried like any job, and sent once per change however many leaders come and go.
//!
//! [`WorkerBuilder::history`]: crate::WorkerBuilder::history
//!
//! ```
//! # async fn demo() -> stoker::Result<()> {
//! use std::sync::Arc;
//! use stoker::alerts::{AlertMetric, AlertRule};
//! use stoker::Client;
//!
//! let store = Arc::new(stoker::sqlite::SqliteStore::connect("sqlite::memory:").await?);
//! let client = Client::new(store);
//! client.migrate().await?;
//! let mut rule = AlertRule::new("mail-backlog", AlertMetric::QueueDepth, 1000.0, "https://hooks.example.com/ops");
//! rule.scope.queue = Some("mail".into());
//! rule.for_seconds = 120;
//! client.alert_create(rule).await?;
//! assert_eq!(client.alert_list().await?.len(), 1);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
pub use stoker_core::alert::{
    alert_step, validate_alert_name, AlertBaseline, AlertEvent, AlertEventKind, AlertFormat,
    AlertMetric, AlertRow, AlertRule, AlertState, AlertStatus, ALERT_EVENTS_KEEP,
    ALERT_HEADERS_MAX, ALERT_HOLD_MAX_SECONDS, ALERT_NAME_MAX_LEN, ALERT_URL_MAX_LEN,
    ALERT_WINDOW_DEFAULT_SECONDS, ALERT_WINDOW_MAX_SECONDS, ALERT_WINDOW_MIN_SECONDS,
};
use stoker_core::alert::{AlertTransitionParams, AlertWriteMode, AlertWriteParams};
use stoker_core::{
    HistoryGrain, HistoryMetric, HistoryQueryParams, HistoryScope, InvalidInput, JobInsert,
    Metadata, QueueDepth, Store, WorkerRow, QUEUE_DEFAULT,
};

use crate::{worker_alive, Client, Error, Result, STALE_AFTER_DEFAULT};

/// The kind of the jobs that deliver alert messages: the server's built-in webhook handler.
/// A process that runs the evaluator needs some worker serving that kind on
/// [`AlertEvaluatorConfig::queue`] (`stoker serve` runs it).
pub const ALERT_DELIVERY_KIND: &str = "webhook";
/// The attempts a delivery job gets: 10 (about an hour of backoff with the default policy).
pub const ALERT_DELIVERY_MAX_ATTEMPTS: i32 = 10;
/// The most events [`Client::alert_events`] returns.
pub const ALERT_EVENTS_MAX: u32 = ALERT_EVENTS_KEEP;

// Alert rules (issue 13, item 8).
impl<S: Store + ?Sized> Client<S> {
    async fn alert_write(&self, mut rule: AlertRule, mode: AlertWriteMode) -> Result<AlertRow> {
        // A client scoped to a tenant (issue 17) writes only rules scoped to its tenant: the
        // scope's tenant is forced to its own, and a rule of that name owned by anyone else is
        // not found (to update) or taken (to create).
        if self.tenant().is_some() {
            rule.scope.tenant = self.tenant_for(rule.scope.tenant.take(), "scope.tenant")?;
            validate_alert_name(&rule.name)?;
            if let Some(existing) = self.store().alert_get(&rule.name).await? {
                if !self.owns_alert(&existing) {
                    return Err(match mode {
                        AlertWriteMode::Update => {
                            Error::NotFound(format!("alert rule {:?}", rule.name))
                        }
                        _ => {
                            Error::Conflict(format!("the alert rule name {:?} is taken", rule.name))
                        }
                    });
                }
            }
        }
        rule.validate()?;
        let now = self.clock().now();
        let params = AlertWriteParams { rule, mode, now };
        // A create or update commits with its audit row (issue 17); the config's upsert at
        // start is not an operator's action.
        let action = match mode {
            AlertWriteMode::Create => "alert.create",
            AlertWriteMode::Update => "alert.update",
            AlertWriteMode::Upsert => return Ok(self.store().alert_write(params).await?),
        };
        let entry = self.audit_entry(
            action,
            Some(format!("alert {}", params.rule.name)),
            None,
            None,
        );
        Ok(self
            .store()
            .audited(stoker_core::AuditedAction::AlertWrite(params), entry)
            .await?
            .alert()?)
    }

    /// Creates a rule, in state `ok`. A client scoped to a tenant (issue 17) creates a rule
    /// scoped to its tenant whatever the request's scope names.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault (nothing is written);
    /// [`Error::Conflict`] if the name is taken; [`Error::TenantForbidden`] naming
    /// `scope.tenant` if a scoped client names another tenant.
    pub async fn alert_create(&self, rule: AlertRule) -> Result<AlertRow> {
        self.alert_write(rule, AlertWriteMode::Create).await
    }

    /// Replaces a rule's definition; its state stays (a firing rule resolves by the new
    /// definition).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault; [`Error::NotFound`] if there is none.
    pub async fn alert_update(&self, rule: AlertRule) -> Result<AlertRow> {
        self.alert_write(rule, AlertWriteMode::Update).await
    }

    /// Creates or updates a rule by name (what the `stoker serve` config does at start). An
    /// unchanged definition writes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field at fault.
    pub async fn alert_upsert(&self, rule: AlertRule) -> Result<AlertRow> {
        self.alert_write(rule, AlertWriteMode::Upsert).await
    }

    /// One rule, with its state.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn alert_get(&self, name: &str) -> Result<AlertRow> {
        validate_alert_name(name)?;
        self.store()
            .alert_get(name)
            .await?
            .filter(|row| self.owns_alert(row))
            .ok_or_else(|| Error::NotFound(format!("alert rule {name:?}")))
    }

    /// Whether this client may see and change a rule: every rule for a client spanning every
    /// tenant, only rules scoped to its tenant for a scoped one (issue 17).
    fn owns_alert(&self, row: &AlertRow) -> bool {
        match self.tenant() {
            None => true,
            Some(own) => row.rule.scope.tenant.as_deref() == Some(own),
        }
    }

    /// Every rule, by name, with its state. A client scoped to a tenant (issue 17) gets only
    /// the rules scoped to its tenant.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn alert_list(&self) -> Result<Vec<AlertRow>> {
        let rows = self.store().alert_list().await?;
        Ok(rows
            .into_iter()
            .filter(|row| self.owns_alert(row))
            .collect())
    }

    /// Deletes a rule and its events, and returns it as it was. Messages already queued are
    /// still delivered.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub async fn alert_delete(&self, name: &str) -> Result<AlertRow> {
        // Another tenant's rule is not found by a scoped client.
        self.alert_get(name).await?;
        let entry = self.audit_entry("alert.delete", Some(format!("alert {name}")), None, None);
        let action = stoker_core::AuditedAction::AlertDelete(name.to_owned());
        Ok(self.store().audited(action, entry).await?.alert()?)
    }

    /// A rule's newest `limit` (1 to [`ALERT_EVENTS_MAX`]) sent changes, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `limit`; [`Error::NotFound`] if there is no such rule.
    pub async fn alert_events(&self, name: &str, limit: u32) -> Result<Vec<AlertEvent>> {
        if !(1..=ALERT_EVENTS_MAX).contains(&limit) {
            return Err(InvalidInput::new(
                "limit",
                format!("must be from 1 to {ALERT_EVENTS_MAX}"),
            )
            .into());
        }
        self.alert_get(name).await?;
        Ok(self.store().alert_events(name, limit).await?)
    }
}

/// The JSON a message posts: Stoker's body, or Slack's `{"text"}` (see [`AlertFormat`]).
///
/// Stoker's body is `{"type": "alert.firing" | "alert.resolved", "rule", "metric", "scope",
/// "value", "threshold", "resolve_threshold", "window_seconds", "at", "since"}`.
pub fn alert_body(
    rule: &AlertRule,
    kind: AlertEventKind,
    value: f64,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    match rule.format {
        AlertFormat::Stoker => json!({
            "type": format!("alert.{}", kind.as_str()),
            "rule": rule.name,
            "metric": rule.metric.as_str(),
            "scope": rule.scope,
            "value": value,
            "threshold": rule.threshold,
            "resolve_threshold": rule.clear_threshold(),
            "window_seconds": rule.metric.windowed().then_some(rule.window_seconds),
            "at": now,
            "since": since,
        }),
        AlertFormat::Slack => json!({ "text": slack_text(rule, kind, value) }),
    }
}

fn slack_text(rule: &AlertRule, kind: AlertEventKind, value: f64) -> String {
    let mut scope = Vec::new();
    for (label, value) in [
        ("queue", &rule.scope.queue),
        ("kind", &rule.scope.kind),
        ("tenant", &rule.scope.tenant),
    ] {
        if let Some(value) = value {
            scope.push(format!("{label}={value}"));
        }
    }
    let scope = if scope.is_empty() {
        String::new()
    } else {
        format!(" ({})", scope.join(", "))
    };
    let side = if rule.metric.fires_below() {
        "below"
    } else {
        "above"
    };
    match kind {
        AlertEventKind::Firing => format!(
            ":rotating_light: [FIRING] {}: {} is {value}{scope}, {side} the threshold {}",
            rule.name, rule.metric, rule.threshold
        ),
        AlertEventKind::Resolved => format!(
            ":white_check_mark: [RESOLVED] {}: {} is back to {value}{scope}",
            rule.name, rule.metric
        ),
    }
}

/// The job that delivers one message of `rule`.
pub fn delivery_job(
    rule: &AlertRule,
    kind: AlertEventKind,
    value: f64,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    queue: &str,
) -> JobInsert {
    let mut args = json!({
        "url": rule.url,
        "method": "POST",
        "body": alert_body(rule, kind, value, since, now),
    });
    if !rule.headers.is_empty() {
        args["headers"] = json!(rule.headers);
    }
    let mut job = JobInsert::new(ALERT_DELIVERY_KIND, args);
    job.queue = queue.to_owned();
    job.max_attempts = ALERT_DELIVERY_MAX_ATTEMPTS;
    job.metadata = Metadata {
        source: Some("alert".into()),
        tags: vec![format!("alert:{}", rule.name)],
        ..Metadata::default()
    };
    job
}

/// Settings of the [`AlertEvaluator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvaluatorConfig {
    /// How often every enabled rule is evaluated. Defaults to 5 seconds.
    pub interval: Duration,
    /// The queue delivery jobs go to. Defaults to `default`.
    pub queue: String,
    /// A worker silent for longer than this is not live (for `no_worker`). Defaults to
    /// [`STALE_AFTER_DEFAULT`].
    pub stale_after: Duration,
}

impl Default for AlertEvaluatorConfig {
    fn default() -> Self {
        AlertEvaluatorConfig {
            interval: Duration::from_secs(5),
            queue: QUEUE_DEFAULT.to_owned(),
            stale_after: STALE_AFTER_DEFAULT,
        }
    }
}

/// What one evaluation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertReport {
    /// Enabled rules evaluated.
    pub evaluated: u64,
    /// Rules that started firing (a message queued each).
    pub fired: u64,
    /// Rules that resolved (a message queued each).
    pub resolved: u64,
    /// Transitions another evaluator or an edit got to first (nothing written).
    pub lost: u64,
    /// Rules without a value this pass (no baseline yet).
    pub skipped: u64,
}

impl fmt::Display for AlertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "evaluated {} rules: {} fired, {} resolved, {} lost, {} skipped",
            self.evaluated, self.fired, self.resolved, self.lost, self.skipped
        )
    }
}

/// The sources a pass reads at most once, whatever number of rules use them.
#[derive(Default)]
struct Sources {
    depths: Option<Vec<QueueDepth>>,
    workers: Option<Vec<WorkerRow>>,
}

/// Evaluates every enabled alert rule and queues a message per change (see the [module
/// docs](self)). Runs on the elected leader; a pass is safe on several processes at once,
/// since each change is a compare-and-set.
///
/// ```
/// # async fn demo() -> stoker::Result<()> {
/// use std::sync::Arc;
/// use stoker::alerts::{AlertEvaluator, AlertEvaluatorConfig};
/// use stoker::Client;
///
/// let store = Arc::new(stoker::sqlite::SqliteStore::connect("sqlite::memory:").await?);
/// let client = Client::new(store).into_dyn();
/// client.migrate().await?;
/// let evaluator = AlertEvaluator::new(client, AlertEvaluatorConfig::default());
/// assert_eq!(evaluator.run_once().await?.evaluated, 0);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct AlertEvaluator {
    client: Client,
    config: AlertEvaluatorConfig,
}

impl AlertEvaluator {
    /// An evaluator reading and writing through `client` (its clock decides `now`).
    pub fn new(client: Client, config: AlertEvaluatorConfig) -> Self {
        AlertEvaluator { client, config }
    }

    /// Its settings.
    pub fn config(&self) -> &AlertEvaluatorConfig {
        &self.config
    }

    /// Evaluates every enabled rule once.
    ///
    /// # Errors
    ///
    /// A store error reading the rules; a failure on one rule is logged and the pass goes on
    /// to the next.
    pub async fn run_once(&self) -> Result<AlertReport> {
        let store = self.client.store();
        let now = self.client.clock().now();
        let mut report = AlertReport::default();
        let mut sources = Sources::default();
        for row in store.alert_list().await? {
            if !row.rule.enabled {
                continue;
            }
            report.evaluated += 1;
            match self.evaluate(&row, now, &mut sources).await {
                Ok(Some(Some(AlertEventKind::Firing))) => report.fired += 1,
                Ok(Some(Some(AlertEventKind::Resolved))) => report.resolved += 1,
                Ok(Some(None)) => {}
                Ok(None) => report.lost += 1,
                Err(Error::NotFound(_)) => report.skipped += 1,
                Err(err) => {
                    tracing::warn!(rule = %row.rule.name, %err, "alert rule evaluation failed");
                }
            }
        }
        Ok(report)
    }

    /// One rule: `Ok(Some(event))` when the status was written (or needed no write),
    /// `Ok(None)` when the compare-and-set was lost, `Err(NotFound)` when there is no value.
    async fn evaluate(
        &self,
        row: &AlertRow,
        now: DateTime<Utc>,
        sources: &mut Sources,
    ) -> Result<Option<Option<AlertEventKind>>> {
        let rule = &row.rule;
        let value = self
            .measure(rule, now, sources)
            .await?
            .ok_or_else(|| Error::NotFound("no baseline yet".into()))?;
        let (status, event) = alert_step(rule, &row.status, value, now);
        let unchanged = status.state == row.status.state
            && status.since == row.status.since
            && status.clear_since == row.status.clear_since;
        if unchanged && event.is_none() {
            return Ok(Some(None));
        }
        let jobs = event
            .map(|kind| {
                let since = match kind {
                    AlertEventKind::Firing => status.since,
                    AlertEventKind::Resolved => row.status.since,
                };
                vec![delivery_job(
                    rule,
                    kind,
                    value,
                    since,
                    now,
                    &self.config.queue,
                )]
            })
            .unwrap_or_default();
        let written = self
            .client
            .store()
            .alert_transition(AlertTransitionParams {
                name: rule.name.clone(),
                version: row.version,
                status,
                event: event.map(|kind| (kind, value, rule.threshold)),
                jobs,
                now,
                max_args_bytes: self.client.args_limit(),
            })
            .await?;
        if written.is_none() {
            return Ok(None);
        }
        if let Some(kind) = event {
            tracing::info!(rule = %rule.name, value, event = kind.as_str(), "alert rule changed");
        }
        Ok(Some(event))
    }

    /// The rule's value now, or `None` when it has none yet (a baseline without data).
    async fn measure(
        &self,
        rule: &AlertRule,
        now: DateTime<Utc>,
        sources: &mut Sources,
    ) -> Result<Option<f64>> {
        let store = self.client.store();
        let in_scope = |queue: &str| rule.scope.queue.as_deref().is_none_or(|q| q == queue);
        Ok(Some(match rule.metric {
            AlertMetric::QueueDepth | AlertMetric::OldestAge => {
                if sources.depths.is_none() {
                    sources.depths = Some(store.queue_depths().await?);
                }
                let depths = sources
                    .depths
                    .iter()
                    .flatten()
                    .filter(|d| in_scope(&d.queue));
                if rule.metric == AlertMetric::QueueDepth {
                    depths.map(|d| d.due).sum::<i64>() as f64
                } else {
                    depths
                        .filter_map(|d| d.oldest_due_at)
                        .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0)
                        .fold(0.0, f64::max)
                }
            }
            AlertMetric::NoWorker => {
                if sources.workers.is_none() {
                    sources.workers = Some(store.worker_list().await?);
                }
                sources
                    .workers
                    .iter()
                    .flatten()
                    .filter(|w| worker_alive(w.heartbeat_at, now, self.config.stale_after))
                    .filter(|w| w.queues.iter().any(|q| in_scope(q)))
                    .count() as f64
            }
            AlertMetric::FailureRate => {
                let counts = self.counts(rule, now, 0).await?;
                let failed = counts.get(&HistoryMetric::Failed).copied().unwrap_or(0);
                let completed = counts.get(&HistoryMetric::Completed).copied().unwrap_or(0);
                if failed + completed == 0 {
                    0.0
                } else {
                    failed as f64 / (failed + completed) as f64
                }
            }
            AlertMetric::FailureCount => {
                let counts = self.counts(rule, now, 0).await?;
                counts.get(&HistoryMetric::Failed).copied().unwrap_or(0) as f64
            }
            AlertMetric::Discarded => {
                let counts = self.counts(rule, now, 0).await?;
                counts.get(&HistoryMetric::Discarded).copied().unwrap_or(0) as f64
            }
            AlertMetric::Throughput => {
                let completed = |counts: HashMap<HistoryMetric, i64>| {
                    counts.get(&HistoryMetric::Completed).copied().unwrap_or(0)
                };
                let current = completed(self.counts(rule, now, 0).await?);
                match rule.baseline {
                    None => current as f64,
                    Some(baseline) => {
                        let before =
                            completed(self.counts(rule, now, baseline.offset_seconds()).await?);
                        if before == 0 {
                            return Ok(None);
                        }
                        current as f64 / before as f64
                    }
                }
            }
        }))
    }

    /// The counters of the rule's window ending at `now - offset_seconds`, from the minute
    /// history (the current, partial minute included).
    async fn counts(
        &self,
        rule: &AlertRule,
        now: DateTime<Utc>,
        offset_seconds: i64,
    ) -> Result<HashMap<HistoryMetric, i64>> {
        let end = now - chrono::Duration::seconds(offset_seconds);
        let window = chrono::Duration::seconds(rule.window_seconds as i64);
        let grain = HistoryGrain::Minute;
        // Whole minutes: the window's last `window_seconds`, rounded out to the minutes
        // holding them.
        let to = grain.truncate(end) + chrono::Duration::seconds(grain.seconds());
        let from = grain.truncate(end - window + chrono::Duration::seconds(1));
        let values = self
            .client
            .store()
            .history_query(HistoryQueryParams {
                grain,
                from,
                to,
                scope: HistoryScope::clone(&rule.scope),
            })
            .await?;
        let mut counts = HashMap::new();
        for value in values {
            *counts.entry(value.metric).or_insert(0) += value.value;
        }
        Ok(counts)
    }
}
