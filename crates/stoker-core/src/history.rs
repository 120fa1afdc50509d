//! Durable history: per-minute counters and latency histograms by queue, kind and tenant,
//! rolled up to hours and days.
//!
//! The store keeps one narrow table of `(grain, bucket, queue, kind, tenant, metric, value)`
//! rows. A row grows with time × labels, never with jobs, so every history query reads a range
//! of the table's primary key however many jobs ran. Processes add their deltas with
//! [`Store::history_record`](crate::Store::history_record) (one statement per flush); the
//! leader folds minutes into hours and hours into days and drops what is past retention with
//! [`Store::history_rollup`](crate::Store::history_rollup).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;

/// How many latency buckets a histogram has. Bucket 0 holds durations under 1 ms; bucket `i`
/// (1 ≤ i < 27) holds `[2^(i-1), 2^i)` ms; the last holds everything from 2^26 ms (about 18.6
/// hours) up. Fixed and log-spaced, so histograms of any minutes, labels or processes merge by
/// adding, and a percentile of any range is exact to the bucket.
pub const HISTOGRAM_BUCKETS: usize = 28;

/// The bucket a duration falls in (see [`HISTOGRAM_BUCKETS`]).
///
/// ```
/// use std::time::Duration;
/// use stoker_core::{histogram_bucket, histogram_bucket_upper};
/// assert_eq!(histogram_bucket(Duration::from_micros(300)), 0);
/// assert_eq!(histogram_bucket(Duration::from_millis(1)), 1);
/// assert_eq!(histogram_bucket(Duration::from_millis(3)), 2);
/// assert_eq!(histogram_bucket_upper(2), Duration::from_millis(4));
/// ```
pub fn histogram_bucket(duration: Duration) -> usize {
    let ms = duration.as_millis();
    if ms == 0 {
        return 0;
    }
    let bits = (u128::BITS - ms.leading_zeros()) as usize;
    bits.min(HISTOGRAM_BUCKETS - 1)
}

/// The exclusive upper bound of a bucket: what a percentile falling in it reports. The last
/// bucket has no bound; its lower bound is reported.
pub fn histogram_bucket_upper(bucket: usize) -> Duration {
    let bucket = bucket.min(HISTOGRAM_BUCKETS - 1);
    if bucket == HISTOGRAM_BUCKETS - 1 {
        return Duration::from_millis(1 << (bucket - 1));
    }
    Duration::from_millis(1 << bucket)
}

/// What a history row counts. Counters add up across minutes, labels and processes; gauges
/// are sampled once a minute per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryMetric {
    /// Jobs inserted.
    Enqueued,
    /// Attempts started (claimed by a worker, embedded or pull).
    Started,
    /// Attempts that completed the job.
    Completed,
    /// Attempts that failed (retried or discarded).
    Failed,
    /// Failed attempts that will run again.
    Retried,
    /// Failed attempts that ended the job (dead letter).
    Discarded,
    /// Attempts that ended the job cancelled.
    Cancelled,
    /// Attempts snoozed to run later.
    Snoozed,
    /// Wait time (due → started), one count in a histogram bucket.
    Wait(u8),
    /// Run time, one count in a histogram bucket.
    Run(u8),
    /// Gauge: due jobs waiting in the queue (sampled; summed across queues, highest across
    /// time).
    Depth,
    /// Gauge: how long the oldest due job has waited, in milliseconds (sampled; highest across
    /// queues and time).
    OldestAgeMs,
}

impl HistoryMetric {
    /// The counters, in the order tables show them.
    pub const COUNTERS: [HistoryMetric; 8] = [
        HistoryMetric::Enqueued,
        HistoryMetric::Started,
        HistoryMetric::Completed,
        HistoryMetric::Failed,
        HistoryMetric::Retried,
        HistoryMetric::Discarded,
        HistoryMetric::Cancelled,
        HistoryMetric::Snoozed,
    ];

    /// The name stored in the `metric` column: `completed`, `wait_07`, `depth`.
    pub fn name(self) -> String {
        match self {
            HistoryMetric::Enqueued => "enqueued".into(),
            HistoryMetric::Started => "started".into(),
            HistoryMetric::Completed => "completed".into(),
            HistoryMetric::Failed => "failed".into(),
            HistoryMetric::Retried => "retried".into(),
            HistoryMetric::Discarded => "discarded".into(),
            HistoryMetric::Cancelled => "cancelled".into(),
            HistoryMetric::Snoozed => "snoozed".into(),
            HistoryMetric::Wait(bucket) => format!("wait_{bucket:02}"),
            HistoryMetric::Run(bucket) => format!("run_{bucket:02}"),
            HistoryMetric::Depth => "depth".into(),
            HistoryMetric::OldestAgeMs => "oldest_age_ms".into(),
        }
    }

    /// Parses a stored name; `None` for a name this build does not know (a newer build's).
    pub fn parse(name: &str) -> Option<HistoryMetric> {
        let bucket = |rest: &str| {
            rest.parse::<u8>()
                .ok()
                .filter(|b| usize::from(*b) < HISTOGRAM_BUCKETS)
        };
        Some(match name {
            "enqueued" => HistoryMetric::Enqueued,
            "started" => HistoryMetric::Started,
            "completed" => HistoryMetric::Completed,
            "failed" => HistoryMetric::Failed,
            "retried" => HistoryMetric::Retried,
            "discarded" => HistoryMetric::Discarded,
            "cancelled" => HistoryMetric::Cancelled,
            "snoozed" => HistoryMetric::Snoozed,
            "depth" => HistoryMetric::Depth,
            "oldest_age_ms" => HistoryMetric::OldestAgeMs,
            other => {
                if let Some(rest) = other.strip_prefix("wait_") {
                    HistoryMetric::Wait(bucket(rest)?)
                } else if let Some(rest) = other.strip_prefix("run_") {
                    HistoryMetric::Run(bucket(rest)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether it is a sampled gauge (merged by maximum over time) rather than a counter.
    pub fn is_gauge(self) -> bool {
        matches!(self, HistoryMetric::Depth | HistoryMetric::OldestAgeMs)
    }
}

/// The stored metric names of gauges, as SQL text for `metric IN (...)`: rows of these merge
/// by maximum where counters add.
pub const GAUGE_NAMES_SQL: &str = "('depth', 'oldest_age_ms')";

/// The resolution of stored history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryGrain {
    /// One row per minute (kept 7 days by default).
    Minute,
    /// One row per hour (kept 90 days by default).
    Hour,
    /// One row per UTC day (kept 2 years by default).
    Day,
}

impl HistoryGrain {
    /// The name stored in the `grain` column.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryGrain::Minute => "minute",
            HistoryGrain::Hour => "hour",
            HistoryGrain::Day => "day",
        }
    }

    /// The bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            HistoryGrain::Minute => 60,
            HistoryGrain::Hour => 3600,
            HistoryGrain::Day => 86_400,
        }
    }

    /// The start of the bucket holding `at`.
    pub fn truncate(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let secs = at.timestamp().div_euclid(self.seconds()) * self.seconds();
        Utc.timestamp_opt(secs, 0).single().unwrap_or(at)
    }
}

/// One delta of [`HistoryRecordParams`]: `value` added to a metric of a minute (for a gauge,
/// the sample, kept if it is the highest of its minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryDelta {
    /// The minute (truncated by the store if it is not).
    pub minute: DateTime<Utc>,
    /// The queue.
    pub queue: String,
    /// The kind (empty for per-queue gauges).
    pub kind: String,
    /// The tenant, if the jobs had one.
    pub tenant: Option<String>,
    /// What is counted.
    pub metric: HistoryMetric,
    /// How much.
    pub value: i64,
}

/// Parameters of [`Store::history_record`](crate::Store::history_record).
#[derive(Debug, Clone, Default)]
pub struct HistoryRecordParams {
    /// The deltas; one row per `(minute, queue, kind, tenant, metric)` is expected, but
    /// repeats are merged.
    pub deltas: Vec<HistoryDelta>,
}

/// Which labels a history query or a count covers; `None` means any. The seam other views
/// (failure groups, alerts) reuse to scope by the same labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryScope {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
}

/// Parameters of [`Store::history_query`](crate::Store::history_query).
#[derive(Debug, Clone)]
pub struct HistoryQueryParams {
    /// Which resolution to read.
    pub grain: HistoryGrain,
    /// Buckets starting at or after this.
    pub from: DateTime<Utc>,
    /// Buckets starting before this.
    pub to: DateTime<Utc>,
    /// Which labels.
    pub scope: HistoryScope,
}

/// One value of [`Store::history_query`](crate::Store::history_query): a metric of one
/// bucket, merged over the labels in scope (counters and depth summed, the oldest age the
/// highest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryValue {
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    /// What is counted.
    pub metric: HistoryMetric,
    /// How much.
    pub value: i64,
}

/// How long each grain is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRetention {
    /// Minute rows; 7 days by default.
    pub minute: Duration,
    /// Hour rows; 90 days by default.
    pub hour: Duration,
    /// Day rows; 2 years (730 days) by default.
    pub day: Duration,
}

impl Default for HistoryRetention {
    fn default() -> Self {
        HistoryRetention {
            minute: Duration::from_secs(7 * 86_400),
            hour: Duration::from_secs(90 * 86_400),
            day: Duration::from_secs(730 * 86_400),
        }
    }
}

impl HistoryRetention {
    /// Checks that each grain is kept at least one of its buckets and that coarser grains are
    /// kept no shorter than finer ones (roll-ups read the finer rows).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the retention at fault.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        for (field, value, grain) in [
            (
                "history_retention.minute",
                self.minute,
                HistoryGrain::Minute,
            ),
            ("history_retention.hour", self.hour, HistoryGrain::Hour),
            ("history_retention.day", self.day, HistoryGrain::Day),
        ] {
            if value.as_secs() < grain.seconds() as u64 {
                return Err(InvalidInput::new(
                    field,
                    format!("must be at least one {} ", grain.as_str()),
                ));
            }
        }
        if self.hour < self.minute || self.day < self.hour {
            return Err(InvalidInput::new(
                "history_retention",
                "coarser grains must be kept at least as long as finer ones",
            ));
        }
        Ok(())
    }
}

/// Parameters of [`Store::history_rollup`](crate::Store::history_rollup).
#[derive(Debug, Clone)]
pub struct HistoryRollupParams {
    /// When: the roll-ups cover buckets up to the one holding `now`, and retention counts back
    /// from it.
    pub now: DateTime<Utc>,
    /// How long each grain is kept.
    pub retention: HistoryRetention,
}

/// What one [`Store::history_rollup`](crate::Store::history_rollup) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRollupReport {
    /// Hour rows written (new or recomputed).
    pub hours: u64,
    /// Day rows written (new or recomputed).
    pub days: u64,
    /// Rows deleted past retention, of every grain.
    pub pruned: u64,
}

/// One queue's waiting work, from [`Store::queue_depths`](crate::Store::queue_depths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Due jobs: `available` or `retryable` and out of the schedule.
    pub due: i64,
    /// Scheduled jobs: `available` or `retryable` but waiting for their `run_at`.
    pub scheduled: i64,
    /// The `run_at` of the longest-waiting due job.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// What a worker reports with each heartbeat beyond being alive (issue 13, the worker
/// registry). Stored with its row; [`Store::worker_heartbeat`](crate::Store::worker_heartbeat)
/// fills `running` from the heartbeat's own list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerDetails {
    /// The worker's software version (the application's, or Stoker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// It is shutting down: it claims nothing more and finishes what it runs.
    #[serde(default)]
    pub stopping: bool,
    /// The jobs it is running now.
    #[serde(default)]
    pub running: Vec<crate::JobId>,
    /// The run time of every attempt it finished, in milliseconds, since it started.
    #[serde(default)]
    pub run_ms_total: u64,
    /// Its resident memory, in bytes, where the platform tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The CPU time it used, in milliseconds, where the platform tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    // --- stream tenant ---
    /// The tenant it works for, when it is bound to one (issue 17): a pull worker reserving
    /// with a tenant-bound token. A client limited to that tenant lists only such workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}
