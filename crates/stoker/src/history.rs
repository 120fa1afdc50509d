//! Durable history (issue 13): what the runtime records, how it reaches the store, and the
//! time series read back from it.
//!
//! A [`History`] is one process's recorder. The client records enqueues and pull workers'
//! reservations and reports; an embedded [`Worker`](crate::Worker) records its claims and
//! acknowledgements; so both kinds of worker count alike. Each event only bumps a counter in
//! memory (one lock per claim or acknowledgement batch); every few seconds the recorder
//! writes what piled up in one statement ([`Store::history_record`]). The leader's
//! [`HistoryKeeper`] samples queue depths each minute and rolls minutes up into hours and
//! days. [`Client::series`] reads any range at any step from the coarsest grain that serves
//! it, merging histograms into percentiles, with the previous period alongside.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stoker_core::{
    histogram_bucket, histogram_bucket_upper, Clock, FinishedJob, HistoryDelta, HistoryGrain,
    HistoryMetric, HistoryQueryParams, HistoryRecordParams, HistoryRetention, HistoryRollupParams,
    HistoryScope, HistoryValue, InsertedJob, InvalidInput, JobRow, JobState, Outcome, Store,
    HISTOGRAM_BUCKETS,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Client, Result};

/// A job's history labels: queue, kind, tenant.
pub type Labels = (String, String, Option<String>);

/// How often a worker writes its recorder's deltas, unless configured otherwise.
pub const HISTORY_FLUSH_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

/// Counters, then the wait histogram, then the run histogram.
const SLOTS: usize = 8 + 2 * HISTOGRAM_BUCKETS;

fn slot(metric: HistoryMetric) -> Option<usize> {
    Some(match metric {
        HistoryMetric::Wait(b) => 8 + usize::from(b),
        HistoryMetric::Run(b) => 8 + HISTOGRAM_BUCKETS + usize::from(b),
        other => HistoryMetric::COUNTERS.iter().position(|m| *m == other)?,
    })
}

fn metric_of(slot: usize) -> HistoryMetric {
    if slot < 8 {
        HistoryMetric::COUNTERS[slot]
    } else if slot < 8 + HISTOGRAM_BUCKETS {
        HistoryMetric::Wait((slot - 8) as u8)
    } else {
        HistoryMetric::Run((slot - 8 - HISTOGRAM_BUCKETS) as u8)
    }
}

/// One `(minute, queue, kind, tenant)` and its counts not yet written.
struct Cell {
    minute: i64,
    queue: String,
    kind: String,
    tenant: Option<String>,
    counts: [i64; SLOTS],
}

/// The recorder's memory: cells by a hash of their labels, each hash holding the (almost
/// always one) cells that share it. Looking a cell up allocates nothing, so the hot path
/// pays a hash and a compare per job.
#[derive(Default)]
struct Pending {
    cells: HashMap<u64, Vec<Cell>>,
}

impl Pending {
    fn cell(&mut self, minute: i64, queue: &str, kind: &str, tenant: Option<&str>) -> &mut Cell {
        let mut hasher = DefaultHasher::new();
        (minute, queue, kind, tenant).hash(&mut hasher);
        let cells = self.cells.entry(hasher.finish()).or_default();
        let found = cells.iter().position(|c| {
            c.minute == minute
                && c.queue == queue
                && c.kind == kind
                && c.tenant.as_deref() == tenant
        });
        let index = match found {
            Some(index) => index,
            None => {
                cells.push(Cell {
                    minute,
                    queue: queue.to_owned(),
                    kind: kind.to_owned(),
                    tenant: tenant.map(str::to_owned),
                    counts: [0; SLOTS],
                });
                cells.len() - 1
            }
        };
        &mut cells[index]
    }

    fn add(
        &mut self,
        at: DateTime<Utc>,
        queue: &str,
        kind: &str,
        tenant: Option<&str>,
        metrics: &[HistoryMetric],
    ) {
        let minute = HistoryGrain::Minute.truncate(at).timestamp();
        let cell = self.cell(minute, queue, kind, tenant);
        for metric in metrics {
            if let Some(slot) = slot(*metric) {
                cell.counts[slot] += 1;
            }
        }
    }

    fn drain(&mut self) -> Vec<HistoryDelta> {
        let mut deltas = Vec::new();
        for cell in self.cells.drain().flat_map(|(_, cells)| cells) {
            let minute = DateTime::from_timestamp(cell.minute, 0).unwrap_or_default();
            for (slot, &value) in cell.counts.iter().enumerate() {
                if value != 0 {
                    deltas.push(HistoryDelta {
                        minute,
                        queue: cell.queue.clone(),
                        kind: cell.kind.clone(),
                        tenant: cell.tenant.clone(),
                        metric: metric_of(slot),
                        value,
                    });
                }
            }
        }
        deltas
    }

    fn restore(&mut self, deltas: Vec<HistoryDelta>) {
        for delta in deltas {
            let minute = HistoryGrain::Minute.truncate(delta.minute).timestamp();
            if let Some(slot) = slot(delta.metric) {
                self.cell(minute, &delta.queue, &delta.kind, delta.tenant.as_deref())
                    .counts[slot] += delta.value;
            }
        }
    }
}

/// One process's history recorder: counts in memory, written to the store by
/// [`History::flush`] (every [`HISTORY_FLUSH_INTERVAL_DEFAULT`] by a worker given it).
///
/// Cloning shares the recorder. Give the same one to the [`Client`] (with
/// [`Client::with_history`]) and the [`Worker`](crate::Worker) (with
/// [`WorkerBuilder::history`](crate::WorkerBuilder::history)) of a process, so it writes one
/// statement per flush.
#[derive(Clone)]
pub struct History {
    inner: Arc<HistoryInner>,
}

struct HistoryInner {
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("store", &self.inner.store.name())
            .finish_non_exhaustive()
    }
}

/// A wait or run time of `from → to`, never negative.
fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

impl History {
    /// A recorder writing to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        History {
            inner: Arc::new(HistoryInner {
                store,
                pending: Mutex::new(Pending::default()),
            }),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves counts at worst half-added: keep going.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the jobs an insert created: `labels` has one `(queue, kind, tenant)` per job
    /// given to the insert, `inserted` its results (duplicates are not new jobs).
    pub fn record_enqueued(&self, now: DateTime<Utc>, labels: &[Labels], inserted: &[InsertedJob]) {
        let mut pending = self.pending();
        for ((queue, kind, tenant), result) in labels.iter().zip(inserted) {
            if !result.duplicate {
                pending.add(
                    now,
                    queue,
                    kind,
                    tenant.as_deref(),
                    &[HistoryMetric::Enqueued],
                );
            }
        }
    }

    /// Records claimed jobs: an attempt started, after waiting from `run_at` to the claim.
    pub fn record_started(&self, jobs: &[JobRow]) {
        if jobs.is_empty() {
            return;
        }
        let mut pending = self.pending();
        for job in jobs {
            let started = job.attempted_at.unwrap_or(job.run_at);
            let wait = histogram_bucket(elapsed(job.run_at, started)) as u8;
            pending.add(
                started,
                &job.queue,
                &job.kind,
                job.tenant.as_deref(),
                &[HistoryMetric::Started, HistoryMetric::Wait(wait)],
            );
        }
    }

    /// Records applied acknowledgements at `now`: each `(job as finished, the outcome asked
    /// for, the run time if measured)`. Without a measured run time it is taken from the
    /// attempt's start to `now`. A hand-back (shutdown) records nothing: the attempt did not
    /// happen.
    pub fn record_finished<'a>(
        &self,
        now: DateTime<Utc>,
        finished: impl IntoIterator<Item = (&'a FinishedJob, &'a Outcome, Option<Duration>)>,
    ) {
        let mut pending = self.pending();
        for (job, outcome, run_time) in finished {
            let failed = matches!(outcome, Outcome::Retry { .. } | Outcome::Discard { .. });
            let end = match (job.state, outcome) {
                (_, Outcome::HandBack) => continue,
                (JobState::Completed, _) => HistoryMetric::Completed,
                (JobState::Retryable, _) => HistoryMetric::Retried,
                (JobState::Discarded, _) => HistoryMetric::Discarded,
                (JobState::Cancelled, _) => HistoryMetric::Cancelled,
                (JobState::Available, Outcome::Snooze { .. }) => HistoryMetric::Snoozed,
                _ => continue,
            };
            let run_time = run_time
                .or_else(|| job.attempted_at.map(|started| elapsed(started, now)))
                .unwrap_or_default();
            let run = HistoryMetric::Run(histogram_bucket(run_time) as u8);
            let metrics: &[HistoryMetric] = if failed {
                &[HistoryMetric::Failed, end, run]
            } else {
                &[end, run]
            };
            pending.add(now, &job.queue, &job.kind, job.tenant.as_deref(), metrics);
        }
    }

    /// Writes every delta recorded so far in one statement, and returns how many rows it
    /// carried. On a store error the deltas are kept for the next flush.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn flush(&self) -> Result<usize> {
        let deltas = self.pending().drain();
        if deltas.is_empty() {
            return Ok(0);
        }
        let count = deltas.len();
        match self
            .inner
            .store
            .history_record(HistoryRecordParams {
                deltas: deltas.clone(),
            })
            .await
        {
            Ok(()) => Ok(count),
            Err(err) => {
                self.pending().restore(deltas);
                Err(err.into())
            }
        }
    }

    // --- stream events ---

    /// Adds this process's counts of the minute starting at `minute`, not yet written, to a
    /// live snapshot's minute (issue 13, live events).
    /// Only `tenant`'s counts when one is given (issue 17).
    pub(crate) fn add_pending_minute(
        &self,
        minute: DateTime<Utc>,
        tenant: Option<&str>,
        into: &mut crate::events::SnapshotMinute,
    ) {
        let minute = HistoryGrain::Minute.truncate(minute).timestamp();
        let pending = self.pending();
        for cell in pending.cells.values().flatten() {
            if cell.minute == minute && tenant.is_none_or(|own| cell.tenant.as_deref() == Some(own))
            {
                for (slot, &value) in cell.counts.iter().enumerate().take(8) {
                    into.add(metric_of(slot), value);
                }
            }
        }
    }

    /// Flushes every `interval` until `stop`, then once more. Workers given a recorder run
    /// this; a process that only enqueues can spawn it itself.
    pub fn spawn_flusher(&self, interval: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = stop.cancelled() => break,
                }
                if let Err(err) = history.flush().await {
                    tracing::warn!(%err, "writing history failed; will retry");
                }
            }
            if let Err(err) = history.flush().await {
                tracing::warn!(%err, "writing the last history failed");
            }
        })
    }
}

/// Settings of the [`HistoryKeeper`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryKeeperConfig {
    /// How often it samples queue depths and rolls up. Defaults to 60 seconds (a sample per
    /// minute).
    pub interval: Duration,
    /// How long each grain is kept. Defaults to minutes 7 days, hours 90 days, days 2 years.
    pub retention: HistoryRetention,
}

impl Default for HistoryKeeperConfig {
    fn default() -> Self {
        HistoryKeeperConfig {
            interval: Duration::from_secs(60),
            retention: HistoryRetention::default(),
        }
    }
}

/// What one [`HistoryKeeper`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryKeeperReport {
    /// Queues whose depth was sampled.
    pub sampled: usize,
    /// Hour and day rows written, rows pruned.
    pub rollup: stoker_core::HistoryRollupReport,
}

impl std::fmt::Display for HistoryKeeperReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sampled {} queues, wrote {} hour and {} day rows, pruned {}",
            self.sampled, self.rollup.hours, self.rollup.days, self.rollup.pruned
        )
    }
}

/// The leader's history service: samples each queue's depth and oldest-waiting age into the
/// current minute, rolls minutes into hours and days, and drops rows past retention.
#[derive(Clone)]
pub struct HistoryKeeper {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: HistoryKeeperConfig,
}

impl HistoryKeeper {
    /// A keeper with `config`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: HistoryKeeperConfig) -> Self {
        HistoryKeeper {
            store,
            clock,
            config,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &HistoryKeeperConfig {
        &self.config
    }

    /// One pass.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) for a retention that fails
    /// [`HistoryRetention::validate`]; a store error.
    pub async fn run_once(&self) -> Result<HistoryKeeperReport> {
        self.config.retention.validate()?;
        let now = self.clock.now();
        let depths = self.store.queue_depths().await?;
        let mut deltas = Vec::with_capacity(depths.len() * 2);
        for depth in &depths {
            let gauge = |metric, value| HistoryDelta {
                minute: now,
                queue: depth.queue.clone(),
                kind: String::new(),
                tenant: None,
                metric,
                value,
            };
            deltas.push(gauge(HistoryMetric::Depth, depth.due));
            let age = depth
                .oldest_due_at
                .map(|at| elapsed(at, now).as_millis())
                .unwrap_or(0);
            deltas.push(gauge(
                HistoryMetric::OldestAgeMs,
                i64::try_from(age).unwrap_or(i64::MAX),
            ));
        }
        self.store
            .history_record(HistoryRecordParams { deltas })
            .await?;
        let rollup = self
            .store
            .history_rollup(HistoryRollupParams {
                now,
                retention: self.config.retention,
            })
            .await?;
        Ok(HistoryKeeperReport {
            sampled: depths.len(),
            rollup,
        })
    }
}

/// The most points one [`Client::series`] returns.
pub const SERIES_MAX_POINTS: u64 = 1440;
/// The longest range [`Client::series`] covers: two years, the day grain's default retention.
pub const SERIES_MAX_RANGE: Duration = Duration::from_secs(730 * 86_400);

/// What [`Client::series`] reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeriesRequest {
    /// How far back from `end`.
    pub range: Duration,
    /// The width of each point, in whole minutes; whole hours read the hour rows and whole
    /// days the day rows. Widened when the range would take more than [`SERIES_MAX_POINTS`]
    /// points. Minutes are kept 7 days and hours 90 by default: finer steps further back read
    /// as zeros.
    pub step: Duration,
    /// The end of the range; now if `None`.
    pub end: Option<DateTime<Utc>>,
    /// Which labels (a tenant-scoped client reads only its tenant).
    pub scope: HistoryScope,
    /// Also total the period of the same length just before.
    pub compare: bool,
}

/// Percentiles of a merged histogram, exact to its bucket: each is the upper bound of the
/// bucket where that share of the counts is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Latency {
    /// How many durations the histogram holds.
    pub count: i64,
    /// Median, in milliseconds.
    pub p50_ms: Option<u64>,
    /// 95th percentile, in milliseconds.
    pub p95_ms: Option<u64>,
    /// 99th percentile, in milliseconds.
    pub p99_ms: Option<u64>,
}

impl Latency {
    fn of(buckets: &[i64; HISTOGRAM_BUCKETS]) -> Latency {
        let count: i64 = buckets.iter().sum();
        let percentile = |q: f64| -> Option<u64> {
            if count == 0 {
                return None;
            }
            let rank = ((q * count as f64).ceil() as i64).max(1);
            let mut seen = 0;
            for (bucket, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some(histogram_bucket_upper(bucket).as_millis() as u64);
                }
            }
            None
        };
        Latency {
            count,
            p50_ms: percentile(0.50),
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
        }
    }
}

/// One point of a [`Series`]: the counts of `[at, at + step)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The start of the point's interval.
    pub at: DateTime<Utc>,
    /// Jobs inserted.
    pub enqueued: i64,
    /// Attempts started.
    pub started: i64,
    /// Attempts that completed their job.
    pub completed: i64,
    /// Attempts that failed (retried + discarded).
    pub failed: i64,
    /// Failed attempts that will run again.
    pub retried: i64,
    /// Failed attempts that ended their job.
    pub discarded: i64,
    /// Attempts that ended cancelled.
    pub cancelled: i64,
    /// Attempts snoozed.
    pub snoozed: i64,
    /// Wait time (due → started).
    pub wait: Latency,
    /// Run time.
    pub run: Latency,
    /// The highest sampled depth of due jobs (summed over the queues in scope), if sampled.
    pub depth: Option<i64>,
    /// The highest sampled age of the oldest due job, in milliseconds, if sampled.
    pub oldest_age_ms: Option<i64>,
}

/// Accumulates history values into one point.
struct Acc {
    counters: [i64; 8],
    wait: [i64; HISTOGRAM_BUCKETS],
    run: [i64; HISTOGRAM_BUCKETS],
    depth: Option<i64>,
    oldest: Option<i64>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            counters: [0; 8],
            wait: [0; HISTOGRAM_BUCKETS],
            run: [0; HISTOGRAM_BUCKETS],
            depth: None,
            oldest: None,
        }
    }

    fn add(&mut self, value: &HistoryValue) {
        match value.metric {
            HistoryMetric::Wait(b) => self.wait[usize::from(b)] += value.value,
            HistoryMetric::Run(b) => self.run[usize::from(b)] += value.value,
            HistoryMetric::Depth => self.depth = Some(self.depth.unwrap_or(0).max(value.value)),
            HistoryMetric::OldestAgeMs => {
                self.oldest = Some(self.oldest.unwrap_or(0).max(value.value));
            }
            counter => {
                if let Some(i) = HistoryMetric::COUNTERS.iter().position(|m| *m == counter) {
                    self.counters[i] += value.value;
                }
            }
        }
    }

    fn point(&self, at: DateTime<Utc>) -> SeriesPoint {
        let [enqueued, started, completed, failed, retried, discarded, cancelled, snoozed] =
            self.counters;
        SeriesPoint {
            at,
            enqueued,
            started,
            completed,
            failed,
            retried,
            discarded,
            cancelled,
            snoozed,
            wait: Latency::of(&self.wait),
            run: Latency::of(&self.run),
            depth: self.depth,
            oldest_age_ms: self.oldest,
        }
    }
}

/// A time series from the durable history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// The start of the first point.
    pub from: DateTime<Utc>,
    /// The end of the last point (exclusive).
    pub to: DateTime<Utc>,
    /// Each point's width, in seconds.
    pub step_seconds: u64,
    /// The stored grain the series was read from.
    pub grain: HistoryGrain,
    /// The labels it covers.
    pub scope: HistoryScope,
    /// One point per step, oldest first, zeros where nothing happened.
    pub points: Vec<SeriesPoint>,
    /// The whole range as one point (at `from`).
    pub total: SeriesPoint,
    /// The period of the same length just before `from`, as one point, if asked for.
    pub previous: Option<SeriesPoint>,
}

/// Checks a request and settles its step: whole minutes, widened (to whole minutes) when the
/// range would take more than [`SERIES_MAX_POINTS`] points. A step longer than the range gives
/// one point.
fn check_request(request: &SeriesRequest) -> Result<(u64, u64), InvalidInput> {
    let range = request.range.as_secs();
    let step = request.step.as_secs();
    if range < 60 || request.range > SERIES_MAX_RANGE {
        return Err(InvalidInput::new(
            "range",
            format!(
                "must be from 60 seconds to {} seconds (two years), got {range}",
                SERIES_MAX_RANGE.as_secs()
            ),
        ));
    }
    if step < 60
        || step % 60 != 0
        || request.step.subsec_nanos() != 0
        || request.step > SERIES_MAX_RANGE
    {
        return Err(InvalidInput::new(
            "step",
            format!("must be a whole number of minutes up to two years, got {step} seconds"),
        ));
    }
    let fitting = range.div_ceil(SERIES_MAX_POINTS).div_ceil(60) * 60;
    Ok((range, step.max(fitting)))
}

/// The coarsest grain whose buckets divide `step`. A range older than that grain's retention
/// (minutes 7 days, hours 90 days by default) reads as zeros: the rows are gone.
fn choose_grain(step: u64) -> HistoryGrain {
    if step % 86_400 == 0 {
        HistoryGrain::Day
    } else if step % 3600 == 0 {
        HistoryGrain::Hour
    } else {
        HistoryGrain::Minute
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// Reads a time series from the durable history: one point per `step` over `range`,
    /// scoped to a queue, kind and tenant, with the previous period if asked. Reads the
    /// history's rows for the range, never the jobs, so its cost does not grow with the job
    /// table.
    ///
    /// The range is widened to whole grains: it starts at the beginning of the grain holding
    /// `end - range` and ends with the (maybe partial) grain holding `end`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming `range` (under 60 seconds or over two
    /// years), `step` (not whole minutes, or over two years) or a label;
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) for another tenant.
    pub async fn series(&self, request: &SeriesRequest) -> Result<Series> {
        let (range, step) = check_request(request)?;
        let mut scope = request.scope.clone();
        if let Some(queue) = &scope.queue {
            stoker_core::validate_queue(queue)?;
        }
        if let Some(kind) = &scope.kind {
            stoker_core::validate_kind(kind)?;
        }
        if let Some(tenant) = &scope.tenant {
            let printable = tenant.chars().all(|c| (' '..='~').contains(&c));
            if tenant.is_empty() || tenant.len() > stoker_core::TENANT_MAX_LEN || !printable {
                return Err(InvalidInput::new(
                    "tenant",
                    format!(
                        "must be 1 to {} printable ASCII characters",
                        stoker_core::TENANT_MAX_LEN
                    ),
                )
                .into());
            }
        }
        scope.tenant = self.tenant_for(scope.tenant.take(), "tenant")?;
        let now = self.clock().now();
        let end = request.end.unwrap_or(now);
        let start = end - chrono::Duration::seconds(range as i64);
        let grain = choose_grain(step);
        let from = grain.truncate(start);
        let count = (end - from).num_seconds().max(1) as u64;
        let points = count.div_ceil(step).max(1);
        let to = from + chrono::Duration::seconds((points * step) as i64);
        let values = self
            .store()
            .history_query(HistoryQueryParams {
                grain,
                from,
                to,
                scope: scope.clone(),
            })
            .await?;
        let mut accs: Vec<Acc> = (0..points).map(|_| Acc::new()).collect();
        let mut total = Acc::new();
        for value in &values {
            let index = ((value.bucket - from).num_seconds().max(0) as u64 / step) as usize;
            if let Some(acc) = accs.get_mut(index) {
                acc.add(value);
            }
            total.add(value);
        }
        let previous = if request.compare {
            let width = to - from;
            let values = self
                .store()
                .history_query(HistoryQueryParams {
                    grain,
                    from: from - width,
                    to: from,
                    scope: scope.clone(),
                })
                .await?;
            let mut acc = Acc::new();
            for value in &values {
                acc.add(value);
            }
            Some(acc.point(from - width))
        } else {
            None
        };
        Ok(Series {
            from,
            to,
            step_seconds: step,
            grain,
            scope,
            points: accs
                .iter()
                .enumerate()
                .map(|(i, acc)| {
                    acc.point(from + chrono::Duration::seconds((i as u64 * step) as i64))
                })
                .collect(),
            total: total.point(from),
            previous,
        })
    }

    /// Each queue's waiting work: due jobs, scheduled jobs, and how long the oldest due job has
    /// waited. What autoscalers read (the server exports it as Prometheus gauges).
    ///
    /// A client scoped to a tenant (issue 17) gets only the queues holding its tenant's
    /// waiting jobs, counting those jobs only.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn queue_depths(&self) -> Result<Vec<stoker_core::QueueDepth>> {
        Ok(match self.tenant() {
            None => self.store().queue_depths().await?,
            Some(tenant) => self.store().queue_depths_tenant(tenant).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_bucket_bounds() {
        let mut buckets = [0; HISTOGRAM_BUCKETS];
        buckets[histogram_bucket(Duration::from_millis(3))] = 90;
        buckets[histogram_bucket(Duration::from_millis(100))] = 9;
        buckets[histogram_bucket(Duration::from_secs(2))] = 1;
        let latency = Latency::of(&buckets);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, Some(4));
        assert_eq!(latency.p95_ms, Some(128));
        assert_eq!(latency.p99_ms, Some(128));
        assert_eq!(Latency::of(&[0; HISTOGRAM_BUCKETS]).p50_ms, None);
    }

    #[test]
    fn pending_merges_and_restores() {
        let mut pending = Pending::default();
        let at = DateTime::from_timestamp(1_893_456_030, 0).unwrap();
        pending.add(at, "q", "a", None, &[HistoryMetric::Completed]);
        pending.add(
            at,
            "q",
            "a",
            None,
            &[HistoryMetric::Completed, HistoryMetric::Run(3)],
        );
        pending.add(at, "q", "a", Some("t"), &[HistoryMetric::Completed]);
        let mut deltas = pending.drain();
        deltas.sort_by_key(|d| (d.tenant.clone(), d.metric));
        assert_eq!(deltas.len(), 3);
        assert_eq!(deltas[0].value, 2);
        assert_eq!(deltas[0].minute.timestamp(), 1_893_456_000);
        assert!(pending.drain().is_empty());
        pending.restore(deltas.clone());
        assert_eq!(pending.drain().len(), 3);
    }

    #[test]
    fn requests_are_checked() {
        let ok = SeriesRequest {
            range: Duration::from_secs(86_400),
            step: Duration::from_secs(3600),
            ..SeriesRequest::default()
        };
        assert_eq!(check_request(&ok), Ok((86_400, 3600)));
        // Too many points: the step widens to whole minutes that fit.
        let week = SeriesRequest {
            range: Duration::from_secs(7 * 86_400),
            step: Duration::from_secs(60),
            ..SeriesRequest::default()
        };
        assert_eq!(check_request(&week), Ok((7 * 86_400, 420)));
        for (range, step, field) in [(30, 60, "range"), (86_400, 90, "step")] {
            let request = SeriesRequest {
                range: Duration::from_secs(range),
                step: Duration::from_secs(step),
                ..SeriesRequest::default()
            };
            assert_eq!(check_request(&request).unwrap_err().field, field);
        }
    }
}
