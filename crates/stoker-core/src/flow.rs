//! Flow control (issue 16): rate limits and global concurrency limits enforced in the claim.
//!
//! A [`LimitSpec`] names the jobs it governs (a queue, a kind, or both) and how they are split
//! into independent limiters ([`LimitKey`]: one for all, one per tenant, one per value of an
//! args or metadata field). Each limiter has a row in the store (`stoker_limit_state`) holding
//! its token-bucket time and its running count. A claim that meets a limit locks the rows of
//! the limiters its candidates need, in key order, and admits candidates one by one with
//! [`FlowGate`]; candidates it refuses stay `available` untouched, and candidates of limiters
//! already known to be full are not even fetched, so a throttled key never blocks the others.
//!
//! The rate limit is GCRA (the "generic cell rate algorithm", a token bucket kept as one
//! instant): with `T = period / count`, each admitted job moves the limiter's theoretical
//! arrival time `tat` to `max(tat, now) + T`, and a job is admitted only if that leaves
//! `tat - now <= burst * T`. So at most `burst` jobs start at once, and over any window of
//! length `w` at most `burst + w / T` start: smooth, with no window boundary to double up on.
//! A rate counts at claim, when the downstream call happens; a concurrency limit counts from
//! claim until the job stops running, however it stops (the store releases the slot in the
//! same transaction as the state change).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{validate_kind, validate_queue, InvalidInput, Metadata};

/// The longest limit name.
pub const LIMIT_NAME_MAX_LEN: usize = 64;
/// The longest period of a rate limit: one day, in milliseconds.
pub const LIMIT_PERIOD_MAX_MS: u64 = 86_400_000;
/// The most segments of an args or metadata key path.
pub const LIMIT_KEY_MAX_SEGMENTS: usize = 8;
/// How long a store trusts its cached list of limits before reading it again: limits set on
/// another node take effect within this.
pub const LIMIT_CACHE_TTL: Duration = Duration::from_secs(1);

/// How a limit splits its jobs into independent limiters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// One limiter for every job the limit governs.
    Global,
    /// One limiter per tenant; jobs without a tenant are not limited.
    Tenant,
    /// One limiter per value of a field of the args (`args.shop_id`, `args.account.id`); jobs
    /// without the field are not limited.
    Args(Vec<String>),
    /// One limiter per value of a field of the metadata (`metadata.source`).
    Metadata(Vec<String>),
}

impl LimitKey {
    /// Parses `global`, `tenant`, `args.PATH` or `metadata.PATH`, where PATH is 1 to 8
    /// dot-separated names of letters, digits, `_` and `-`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] for field `key`.
    pub fn parse(text: &str) -> Result<LimitKey, InvalidInput> {
        let bad = |why: String| InvalidInput::new("key", why);
        match text {
            "global" => return Ok(LimitKey::Global),
            "tenant" => return Ok(LimitKey::Tenant),
            _ => {}
        }
        let (root, path) = text.split_once('.').ok_or_else(|| {
            bad(format!(
                "{text:?} is not a key expression: use global, tenant, args.FIELD or \
                 metadata.FIELD"
            ))
        })?;
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.len() > LIMIT_KEY_MAX_SEGMENTS {
            return Err(bad(format!(
                "{text:?} has more than {LIMIT_KEY_MAX_SEGMENTS} path segments"
            )));
        }
        for segment in &segments {
            let valid = !segment.is_empty()
                && segment.len() <= 64
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(bad(format!(
                    "{text:?}: each field name is 1 to 64 letters, digits, '_' or '-'"
                )));
            }
        }
        match root {
            "args" => Ok(LimitKey::Args(segments)),
            "metadata" => Ok(LimitKey::Metadata(segments)),
            _ => Err(bad(format!(
                "{text:?} is not a key expression: use global, tenant, args.FIELD or \
                 metadata.FIELD"
            ))),
        }
    }

    /// The limiter key of a job, or `None` if the job has no value for it (and so is not
    /// limited). Strings are their text; other JSON values their compact JSON.
    pub fn key_of(
        &self,
        tenant: Option<&str>,
        args: &Value,
        metadata: &Metadata,
    ) -> Option<String> {
        let at = |root: &Value, path: &[String]| -> Option<String> {
            let mut value = root;
            for segment in path {
                value = value.get(segment)?;
            }
            match value {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            }
        };
        match self {
            LimitKey::Global => Some(String::new()),
            LimitKey::Tenant => tenant.map(str::to_owned),
            LimitKey::Args(path) => at(args, path),
            LimitKey::Metadata(path) => at(&serde_json::to_value(metadata).ok()?, path),
        }
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Global => f.write_str("global"),
            LimitKey::Tenant => f.write_str("tenant"),
            LimitKey::Args(path) => write!(f, "args.{}", path.join(".")),
            LimitKey::Metadata(path) => write!(f, "metadata.{}", path.join(".")),
        }
    }
}

impl Serialize for LimitKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        LimitKey::parse(&text).map_err(|err| serde::de::Error::custom(err.reason))
    }
}

/// A rate: `count` jobs per `period_ms`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// How many per period; at least 1.
    pub count: u32,
    /// The period in milliseconds, 1 to one day.
    pub period_ms: u64,
    /// How many may start at once after a quiet spell; at least 1. Defaults to 1 (the
    /// smoothest: one every `period / count`).
    #[serde(default = "burst_default")]
    pub burst: u32,
}

fn burst_default() -> u32 {
    1
}

impl Rate {
    /// The emission interval `T = period / count`, in microseconds (at least 1).
    pub fn interval_us(&self) -> i64 {
        let period_us = i64::try_from(self.period_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        (period_us / i64::from(self.count.max(1))).max(1)
    }

    fn validate(&self, field: &str) -> Result<(), InvalidInput> {
        if self.count == 0 {
            return Err(InvalidInput::new(
                format!("{field}.count"),
                "must be at least 1 (a rate of 0 would stop the jobs for good: pause the queue instead)",
            ));
        }
        if self.period_ms == 0 || self.period_ms > LIMIT_PERIOD_MAX_MS {
            return Err(InvalidInput::new(
                format!("{field}.period_ms"),
                format!(
                    "must be 1 to {LIMIT_PERIOD_MAX_MS} (one day), not {}",
                    self.period_ms
                ),
            ));
        }
        if self.burst == 0 {
            return Err(InvalidInput::new(
                format!("{field}.burst"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A limit, as set by config, API or CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    /// Its name: 1 to 64 letters, digits, `_`, `-`, `.` or `:`.
    pub name: String,
    /// Only jobs of this queue; `None` for every queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Only jobs of this kind; `None` for every kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// How the jobs are split into limiters. Defaults to one for all.
    #[serde(default = "key_default")]
    pub key: LimitKey,
    /// Start at most this many jobs per period (counted at claim).
    #[serde(default)]
    pub rate: Option<Rate>,
    /// At most this many running at once, across every worker.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Serve the queue's tenants in turn (weighted fair queuing) rather than in plain priority
    /// order; needs `queue` and no `kind`. Independent of `key`, `rate` and `concurrency`,
    /// which may be set alongside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair: Option<Fair>,
    /// Accept at most this many submissions (enqueued jobs) per period for each of the
    /// limit's keys, counted in the insert's own transaction (issue 16, item 4): an insert
    /// beyond it is refused whole with [`StoreError::QuotaExceeded`](crate::StoreError) and
    /// writes nothing. Usually with `key` = `tenant`: a quota per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Rate>,
}

/// Fair queuing across the tenants of one queue (issue 16, item 3).
///
/// Each tenant with ready jobs gets a share of every claim in proportion to its weight, so a
/// tenant with a backlog of 100,000 jobs cannot hold back one with ten: the claim serves
/// tenants by *virtual time*, each admitted job advancing its tenant's clock by
/// `1 / weight`. Within a tenant, jobs keep their usual order (priority, then `run_at`).
/// Jobs without a tenant share one turn, as if they were one more tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fair {
    /// Weights of named tenants, 1 to [`FAIR_WEIGHT_MAX`]; a tenant not named weighs 1. A
    /// tenant of weight 3 gets three jobs started for every one of a tenant of weight 1,
    /// while both have jobs waiting.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
}

/// The largest weight of a tenant under fair queuing.
pub const FAIR_WEIGHT_MAX: u32 = 1000;
/// The most tenants a fair queue may name weights for.
pub const FAIR_WEIGHTS_MAX: usize = 1000;

impl Fair {
    /// The weight of `tenant` (`None`: the jobs without a tenant), 1 unless named.
    pub fn weight(&self, tenant: Option<&str>) -> u32 {
        tenant
            .and_then(|tenant| self.weights.get(tenant))
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// The largest weight of any tenant (1 when none is named above it).
    pub fn weight_max(&self) -> u32 {
        self.weights.values().copied().max().unwrap_or(1).max(1)
    }

    fn validate(&self) -> Result<(), InvalidInput> {
        if self.weights.len() > FAIR_WEIGHTS_MAX {
            return Err(InvalidInput::new(
                "fair.weights",
                format!("names at most {FAIR_WEIGHTS_MAX} tenants"),
            ));
        }
        for (tenant, weight) in &self.weights {
            if tenant.is_empty() || tenant.len() > crate::insert::TENANT_MAX_LEN {
                return Err(InvalidInput::new(
                    "fair.weights",
                    format!(
                        "{tenant:?}: a tenant id is 1 to {} bytes",
                        crate::insert::TENANT_MAX_LEN
                    ),
                ));
            }
            if *weight == 0 || *weight > FAIR_WEIGHT_MAX {
                return Err(InvalidInput::new(
                    format!("fair.weights.{tenant}"),
                    format!("must be 1 to {FAIR_WEIGHT_MAX}, not {weight}"),
                ));
            }
        }
        Ok(())
    }
}

/// One tenant's turn in a fair claim, as [`FairScheduler`] plans it.
#[derive(Debug, Clone, PartialEq)]
struct FairTurn {
    tenant: Option<String>,
    base: f64,
    step: f64,
}

/// Plans one claim of a fair queue: which tenants get how many candidates, in which order the
/// candidates are offered to the limits, and the tenants' new virtual times. Pure, so it is
/// tested without a store.
///
/// Each tenant has a virtual time, and the queue a virtual clock: the smallest virtual time
/// among its tenants with ready work at the last claim. A tenant's `k`-th job in this claim is
/// tagged `max(its time, clock) + k / weight`, and candidates are served in tag order. The
/// clock keeps a tenant that comes back from idle (or is new) from catching up on the turns it
/// missed: it starts level with the others. The stores keep one row per (queue, tenant) with
/// the virtual time and one per queue with the clock.
#[derive(Debug, Clone)]
pub struct FairScheduler {
    turns: Vec<FairTurn>,
}

/// The stored key of the jobs without a tenant in a fair queue's table (tenant ids are never
/// empty).
pub const FAIR_NO_TENANT: &str = "";

// --- stream flow ---
/// How many tenants of a fair queue one claim looks for ready jobs beyond those it knows of,
/// walking the fair index on from where the last claim stopped (wrapping at the end). Tenants
/// an insert brings are marked ready by the insert itself; this walk finds those made ready
/// another way (staging, a retry, a released dependency) within `tenants / 32` claims, and
/// costs a claim at most 32 index probes whatever the number of tenants.
pub const FAIR_DISCOVER_PER_CLAIM: u32 = 32;

/// How many more ready tenants than places a fair claim reads per page of its walk in
/// virtual-time order (see [`fair_walk_complete`]).
pub const FAIR_PAGE_EXTRA: u32 = 16;

/// Whether a fair claim's walk of its ready tenants, in (virtual time, tenant) order, has
/// read every tenant that could get one of `slots` places: `walked` holds the (tenant,
/// stored virtual time) read so far, and the walk has more. A tenant not read yet has a
/// virtual time at least the last one's, so its first tag is at least
/// `max(last, clock) + 1 / (largest weight)`; once that is no smaller than the `slots`-th
/// smallest first tag read, it can get no place (ties go to the tenant read first, as in
/// [`FairScheduler::quotas`]). With equal weights the walk stops after one page; only
/// weights make it read further, and then exactly as far as they matter.
pub fn fair_walk_complete(fair: &Fair, clock: f64, slots: usize, walked: &[(String, f64)]) -> bool {
    let Some((_, last)) = walked.last() else {
        return true;
    };
    if slots == 0 {
        return true;
    }
    if walked.len() < slots {
        return false;
    }
    let mut tags: Vec<f64> = walked
        .iter()
        .map(|(tenant, vtime)| vtime.max(clock) + 1.0 / f64::from(fair.weight(Some(tenant))))
        .collect();
    tags.sort_by(f64::total_cmp);
    last.max(clock) + 1.0 / f64::from(fair.weight_max()) >= tags[slots - 1]
}

impl FairScheduler {
    /// A plan over the tenants with ready work (`None`: the jobs without a tenant), each with
    /// its stored virtual time if it has one, at the queue's stored `clock`.
    pub fn new(
        fair: &Fair,
        clock: f64,
        tenants: Vec<(Option<String>, Option<f64>)>,
    ) -> FairScheduler {
        let turns = tenants
            .into_iter()
            .map(|(tenant, vtime)| FairTurn {
                step: 1.0 / f64::from(fair.weight(tenant.as_deref())),
                base: vtime.map_or(clock, |v| v.max(clock)),
                tenant,
            })
            .collect();
        FairScheduler { turns }
    }

    /// The queue's clock after `admitted` jobs of each tenant started: the smallest virtual
    /// time among the tenants with ready work, as this claim leaves them (never less than the
    /// clock the plan started from). `None` without tenants.
    pub fn clock(&self, admitted: &BTreeMap<Option<String>, u32>) -> Option<f64> {
        self.turns
            .iter()
            .map(|turn| {
                let n = admitted.get(&turn.tenant).copied().unwrap_or(0);
                turn.base + turn.step * f64::from(n)
            })
            .fold(None, |min: Option<f64>, v| {
                Some(min.map_or(v, |m| m.min(v)))
            })
    }

    /// How many candidates to read from each tenant for `slots` places, in tag order: the
    /// tenants with no place are left out.
    pub fn quotas(&self, slots: usize) -> Vec<(Option<String>, u32)> {
        let mut given = vec![0u32; self.turns.len()];
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(TagKey, usize)>> = self
            .turns
            .iter()
            .enumerate()
            .map(|(i, turn)| std::cmp::Reverse((TagKey(turn.base + turn.step), i)))
            .collect();
        for _ in 0..slots {
            let Some(std::cmp::Reverse((_, i))) = heap.pop() else {
                break;
            };
            given[i] += 1;
            let turn = &self.turns[i];
            heap.push(std::cmp::Reverse((
                TagKey(turn.base + turn.step * f64::from(given[i] + 1)),
                i,
            )));
        }
        self.turns
            .iter()
            .zip(given)
            .filter(|(_, n)| *n > 0)
            .map(|(turn, n)| (turn.tenant.clone(), n))
            .collect()
    }

    /// Orders candidates for the limits: `candidates` holds each tenant's jobs in its own
    /// order (priority, `run_at`, id); the result interleaves them by tag.
    pub fn order<T>(&self, candidates: Vec<(Option<String>, Vec<T>)>) -> Vec<(Option<String>, T)> {
        let mut tagged = Vec::new();
        for (tenant, jobs) in candidates {
            let Some((index, turn)) = self
                .turns
                .iter()
                .enumerate()
                .find(|(_, turn)| turn.tenant == tenant)
            else {
                continue;
            };
            for (k, job) in jobs.into_iter().enumerate() {
                let tag = turn.base + turn.step * (k as f64 + 1.0);
                tagged.push((TagKey(tag), index, k, tenant.clone(), job));
            }
        }
        tagged.sort_by_key(|a| (a.0, a.1, a.2));
        tagged
            .into_iter()
            .map(|(_, _, _, tenant, job)| (tenant, job))
            .collect()
    }

    /// The virtual times to store after `admitted` jobs of each tenant started: for each
    /// tenant with at least one, (tenant, base, advance). A store writes
    /// `max(stored, base) + advance`, so two claims that planned from the same reading both
    /// count.
    pub fn advances(&self, admitted: &BTreeMap<Option<String>, u32>) -> Vec<(String, f64, f64)> {
        self.turns
            .iter()
            .filter_map(|turn| {
                let n = *admitted.get(&turn.tenant)?;
                (n > 0).then(|| {
                    (
                        turn.tenant
                            .clone()
                            .unwrap_or_else(|| FAIR_NO_TENANT.to_owned()),
                        turn.base,
                        turn.step * f64::from(n),
                    )
                })
            })
            .collect()
    }
}

/// An `f64` tag ordered totally (tags are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct TagKey(f64);

impl Eq for TagKey {}

impl PartialOrd for TagKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TagKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn key_default() -> LimitKey {
    LimitKey::Global
}

impl LimitSpec {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_limit_name(&self.name)?;
        if let Some(queue) = &self.queue {
            validate_queue(queue)?;
        }
        if let Some(kind) = &self.kind {
            validate_kind(kind)?;
        }
        if let Some(rate) = &self.rate {
            rate.validate("rate")?;
        }
        if self.concurrency == Some(0) {
            return Err(InvalidInput::new(
                "concurrency",
                "must be at least 1 (0 would stop the jobs for good: pause the queue instead)",
            ));
        }
        if let Some(fair) = &self.fair {
            if self.queue.is_none() {
                return Err(InvalidInput::new(
                    "queue",
                    "fair queuing is per queue: name the queue",
                ));
            }
            if self.kind.is_some() {
                return Err(InvalidInput::new(
                    "kind",
                    "fair queuing shares a whole queue between its tenants: leave out the kind",
                ));
            }
            fair.validate()?;
        }
        if let Some(quota) = &self.quota {
            quota.validate("quota")?;
        }
        if self.rate.is_none()
            && self.concurrency.is_none()
            && self.fair.is_none()
            && self.quota.is_none()
        {
            return Err(InvalidInput::new(
                "rate",
                "a limit needs a rate, a concurrency, fair queuing, a quota, or some of them",
            ));
        }
        Ok(())
    }

    /// Whether the limit governs jobs of `kind` in `queue`.
    pub fn applies(&self, queue: &str, kind: &str) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue)
            && self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// Whether the limit can govern some job of `queue`.
    pub fn applies_to_queue(&self, queue: &str) -> bool {
        self.queue.as_deref().is_none_or(|q| q == queue)
    }
}

/// Checks a limit name: 1 to 64 letters, digits, `_`, `-`, `.` or `:`.
///
/// # Errors
///
/// [`InvalidInput`] for field `name`.
pub fn validate_limit_name(name: &str) -> Result<(), InvalidInput> {
    let valid = !name.is_empty()
        && name.len() <= LIMIT_NAME_MAX_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if valid {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "name",
            format!(
                "{name:?}: a limit name is 1 to {LIMIT_NAME_MAX_LEN} letters, digits, '_', '-', \
                 '.' or ':'"
            ),
        ))
    }
}

/// A stored limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRow {
    /// The limit.
    #[serde(flatten)]
    pub spec: LimitSpec,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// Parameters of [`Store::limit_set`](crate::Store::limit_set).
#[derive(Debug, Clone)]
pub struct LimitSetParams {
    /// The limit, created or replaced by name.
    pub spec: LimitSpec,
    /// When.
    pub now: DateTime<Utc>,
}

/// One limiter's current usage: a row of `stoker_limit_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUsage {
    /// The limit.
    pub name: String,
    /// The limiter's key within it (empty for a global limit).
    pub key: String,
    /// Jobs running under its concurrency limit now.
    pub running: i64,
    /// Until when it admits no job, if it is rate limited now (as of its last claim).
    pub throttled_until: Option<DateTime<Utc>>,
    // --- stream flow ---
    /// Its limit's concurrency cap, if the limit has one.
    #[serde(default)]
    pub cap: Option<u32>,
    /// Starts its rate limit allows right now (0 to the burst), if the limit has a rate.
    #[serde(default)]
    pub tokens_left: Option<u32>,
    /// When its rate limit next allows a start, if it allows none now.
    #[serde(default)]
    pub next_token_at: Option<DateTime<Utc>>,
    /// Submissions its enqueue quota has counted in the current window (0 to the quota's
    /// burst), if the limit has a quota.
    #[serde(default)]
    pub quota_used: Option<u32>,
    /// Available, due jobs it holds back now: counted only while it admits none (throttled,
    /// out of tokens, or at its cap), from at most [`HELD_BACK_READ_MAX`] of its scope's due
    /// jobs, so a request never scans a backlog; 0 while it admits jobs.
    #[serde(default)]
    pub held_back: u64,
    /// Whether [`Self::held_back`] stopped at the bound: there may be more.
    #[serde(default)]
    pub held_back_more: bool,
}

/// The most due jobs a store reads to count one limiter's held-back jobs
/// ([`LimitUsage::held_back`]).
pub const HELD_BACK_READ_MAX: u32 = 10_000;

/// The most limiters whose held-back jobs one usage request counts (the fullest first by
/// name and key); the others report 0 with [`LimitUsage::held_back_more`] set.
pub const HELD_BACK_LIMITERS_MAX: usize = 100;

impl LimitUsage {
    /// A limiter's usage at `now` from its stored state (`tat`: its rate's arrival time,
    /// `quota_tat`: its quota's) and its limit's `spec` (`None` if the limit was deleted):
    /// everything but the held-back count, which the store fills in.
    #[allow(clippy::too_many_arguments)]
    pub fn from_state(
        spec: Option<&LimitSpec>,
        name: String,
        key: String,
        running: i64,
        tat: Option<DateTime<Utc>>,
        throttled_until: Option<DateTime<Utc>>,
        quota_tat: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> LimitUsage {
        let throttled_until = throttled_until.filter(|until| *until > now);
        // GCRA: each start pushes the arrival time one interval on; the bucket holds
        // `burst` intervals, so the debt ahead of `now` says how many are used.
        let used = |rate: &Rate, tat: Option<DateTime<Utc>>| -> u32 {
            let debt = tat.map_or(0, |tat| (tat - now).num_microseconds().unwrap_or(i64::MAX));
            if debt <= 0 {
                return 0;
            }
            let interval = rate.interval_us();
            let used = (debt + interval - 1) / interval;
            u32::try_from(used).unwrap_or(u32::MAX).min(rate.burst)
        };
        let rate = spec.and_then(|spec| spec.rate.as_ref());
        let tokens_left = rate.map(|rate| {
            if throttled_until.is_some() {
                0
            } else {
                rate.burst - used(rate, tat)
            }
        });
        let next_token_at = match (rate, tokens_left) {
            (Some(rate), Some(0)) => {
                let from_rate = gcra_next(rate, tat, now);
                match (from_rate, throttled_until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => None,
        };
        let quota_used = spec
            .and_then(|spec| spec.quota.as_ref())
            .map(|quota| used(quota, quota_tat));
        LimitUsage {
            name,
            key,
            running,
            throttled_until,
            cap: spec.and_then(|spec| spec.concurrency),
            tokens_left,
            next_token_at,
            quota_used,
            held_back: 0,
            held_back_more: false,
        }
    }

    /// Whether the limiter admits no job now: throttled, out of tokens, or at its cap. Only
    /// such a limiter holds jobs back.
    pub fn is_full(&self) -> bool {
        self.throttled_until.is_some()
            || self.tokens_left == Some(0)
            || self.cap.is_some_and(|cap| self.running >= i64::from(cap))
    }
}

/// Parameters of [`Store::limit_push_back`](crate::Store::limit_push_back): a handler was
/// told by its provider to slow down (an HTTP 429).
#[derive(Debug, Clone)]
pub struct LimitPushBackParams {
    /// The limit.
    pub name: String,
    /// The limiter's key (empty for a global limit).
    pub key: String,
    /// The limiter admits no job before this instant.
    pub until: DateTime<Utc>,
    /// When.
    pub now: DateTime<Utc>,
}

/// One limiter's state as a claim reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimiterState {
    /// GCRA's theoretical arrival time; `None` for a limiter that never admitted a job.
    pub tat: Option<DateTime<Utc>>,
    /// Jobs running under it.
    pub running: i64,
}

/// A limiter a job needs: the index of its limit in the gate's list, and its key.
pub type LimiterRef = (usize, String);

/// Admits jobs against the limits of one queue, inside one claim, on state the store loaded
/// (and locked) for it. Pure: time comes from `now`, so it is tested with a fake clock.
#[derive(Debug)]
pub struct FlowGate {
    limits: Vec<LimitSpec>,
    states: BTreeMap<(String, String), LimiterState>,
    touched: std::collections::BTreeSet<(String, String)>,
    now: DateTime<Utc>,
    wake_at: Option<DateTime<Utc>>,
}

impl FlowGate {
    /// A gate over `limits` (those that apply to the claim's queue) at `now`.
    pub fn new(limits: Vec<LimitSpec>, now: DateTime<Utc>) -> FlowGate {
        FlowGate {
            limits,
            states: BTreeMap::new(),
            touched: Default::default(),
            now,
            wake_at: None,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &[LimitSpec] {
        &self.limits
    }

    /// The limiters a job of `kind` (in the gate's queue) needs.
    pub fn limiters_of(
        &self,
        kind: &str,
        tenant: Option<&str>,
        args: &Value,
        metadata: &Metadata,
    ) -> Vec<LimiterRef> {
        self.limits
            .iter()
            .enumerate()
            .filter(|(_, limit)| limit.kind.as_deref().is_none_or(|k| k == kind))
            // Fair queuing alone counts nothing per limiter.
            .filter(|(_, limit)| limit.rate.is_some() || limit.concurrency.is_some())
            .filter_map(|(index, limit)| {
                limit
                    .key
                    .key_of(tenant, args, metadata)
                    .map(|key| (index, key))
            })
            .collect()
    }

    /// Puts the stored state of limiter (`name`, `key`), as loaded under its row lock.
    pub fn load(&mut self, name: &str, key: &str, state: LimiterState) {
        let id = (name.to_owned(), key.to_owned());
        self.states.insert(id.clone(), state);
        // Written back even if no job is admitted, so a refusal is recorded as
        // `throttled_until` and the next claim skips the limiter's jobs.
        self.touched.insert(id);
    }

    /// Admits a job needing `limiters` if every one has room, taking a token and a slot from
    /// each; otherwise changes nothing. Returns the concurrency slots the job now holds
    /// (limit name, key), or `None` if it was refused.
    pub fn admit(&mut self, limiters: &[LimiterRef]) -> Option<Vec<(String, String)>> {
        let now = self.now;
        let mut refused = false;
        for (index, key) in limiters {
            let limit = &self.limits[*index];
            let state = self
                .states
                .get(&(limit.name.clone(), key.clone()))
                .copied()
                .unwrap_or_default();
            if let Some(rate) = &limit.rate {
                if let Some(at) = gcra_next(rate, state.tat, now) {
                    refused = true;
                    self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
                }
            }
            if let Some(max) = limit.concurrency {
                if state.running >= i64::from(max) {
                    refused = true;
                }
            }
        }
        if refused {
            return None;
        }
        let mut slots = Vec::new();
        for (index, key) in limiters {
            let limit = &self.limits[*index];
            let id = (limit.name.clone(), key.clone());
            let state = self.states.entry(id.clone()).or_default();
            if let Some(rate) = &limit.rate {
                let base = state.tat.map_or(now, |tat| tat.max(now));
                state.tat = Some(base + chrono::Duration::microseconds(rate.interval_us()));
            }
            if limit.concurrency.is_some() {
                state.running += 1;
                slots.push(id.clone());
            }
            self.touched.insert(id);
        }
        Some(slots)
    }

    /// The limiters this claim loaded or changed, with their new state, when each next admits a job
    /// (its `throttled_until`, `None` if it has a token now) and whether its concurrency is
    /// full: what the store writes back.
    pub fn changes(&self) -> Vec<LimiterChange> {
        self.touched
            .iter()
            .filter_map(|id| {
                let state = *self.states.get(id)?;
                let limit = self.limits.iter().find(|limit| limit.name == id.0)?;
                Some(LimiterChange {
                    name: id.0.clone(),
                    key: id.1.clone(),
                    state,
                    throttled_until: limit
                        .rate
                        .as_ref()
                        .and_then(|rate| gcra_next(rate, state.tat, self.now)),
                    cap: limit.concurrency.map(i64::from),
                })
            })
            .collect()
    }

    /// The earliest instant a limiter that refused a job in this claim admits one again: a
    /// worker with nothing claimed sleeps until then rather than a poll interval.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        self.wake_at
    }
}

/// What a claim writes back for one limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterChange {
    /// The limit.
    pub name: String,
    /// The limiter's key.
    pub key: String,
    /// Its new state.
    pub state: LimiterState,
    /// When it next admits a job, if not now.
    pub throttled_until: Option<DateTime<Utc>>,
    /// Its concurrency limit, kept in the row so claims can skip full limiters' jobs without
    /// reading the limits.
    pub cap: Option<i64>,
}

/// When a limiter whose arrival time is `tat` next admits a job, or `None` if it admits one
/// at `now`. A job is admitted at `t` when `max(tat, t) + T - t <= burst * T`, that is when
/// `t >= tat - (burst - 1) * T`.
pub fn gcra_next(
    rate: &Rate,
    tat: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tat = tat?;
    let slack = chrono::Duration::microseconds(
        rate.interval_us()
            .saturating_mul(i64::from(rate.burst.max(1)) - 1),
    );
    let next = tat - slack;
    (next > now).then_some(next)
}

/// The arrival time that makes a limiter admit nothing before `until` and then one job:
/// what a push-back (an HTTP 429 from the provider) stores.
pub fn gcra_push_back(
    rate: Option<&Rate>,
    tat: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> DateTime<Utc> {
    let slack = rate.map_or(0, |rate| {
        rate.interval_us()
            .saturating_mul(i64::from(rate.burst.max(1)) - 1)
    });
    let pushed = until + chrono::Duration::microseconds(slack);
    tat.map_or(pushed, |tat| tat.max(pushed))
}

/// What one insert asks of one quota limiter: `count` submissions of limit `name`, key `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDemand {
    /// The limit.
    pub name: String,
    /// The limiter's key (the tenant, for a quota per tenant).
    pub key: String,
    /// Its quota.
    pub quota: Rate,
    /// How many of the insert's jobs count against it.
    pub count: u32,
}

/// The quota limiters an insert of `jobs` draws on, in (name, key) order (the order stores
/// lock them in), or an empty list when no quota applies (the usual insert).
pub fn quota_demand<'a, I>(limits: &[LimitSpec], jobs: I) -> Vec<QuotaDemand>
where
    I: IntoIterator<Item = &'a crate::JobInsert> + Clone,
{
    let mut demand: BTreeMap<(String, String), (Rate, u32)> = BTreeMap::new();
    for limit in limits {
        let Some(quota) = limit.quota else {
            continue;
        };
        for job in jobs.clone() {
            if !limit.applies(&job.queue, &job.kind) {
                continue;
            }
            let Some(key) = limit
                .key
                .key_of(job.tenant.as_deref(), &job.args, &job.metadata)
            else {
                continue;
            };
            demand
                .entry((limit.name.clone(), key))
                .or_insert((quota, 0))
                .1 += 1;
        }
    }
    demand
        .into_iter()
        .map(|((name, key), (quota, count))| QuotaDemand {
            name,
            key,
            quota,
            count,
        })
        .collect()
}

/// Takes `demand.count` tokens from a quota limiter whose arrival time is `tat`, at `now`:
/// the new arrival time, or the error saying how long until the submissions would fit.
///
/// # Errors
///
/// [`StoreError::QuotaExceeded`](crate::StoreError::QuotaExceeded) when the bucket holds too
/// few tokens now; [`InvalidInput`] when the insert asks for more than the quota's burst,
/// which no wait would admit.
pub fn quota_take(
    demand: &QuotaDemand,
    tat: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, crate::StoreError> {
    let quota = &demand.quota;
    if demand.count > quota.burst {
        return Err(InvalidInput::new(
            "jobs",
            format!(
                "{} submissions at once exceed the burst of {} of quota {:?} (key {:?}): \
                 submit in smaller batches",
                demand.count, quota.burst, demand.name, demand.key
            ),
        )
        .into());
    }
    let interval = chrono::Duration::microseconds(quota.interval_us());
    let base = tat.map_or(now, |tat| tat.max(now));
    let next = base + interval * i32::try_from(demand.count).unwrap_or(i32::MAX);
    let allowance = interval * i32::try_from(quota.burst).unwrap_or(i32::MAX);
    let fits_at = next - allowance;
    if fits_at > now {
        return Err(crate::StoreError::QuotaExceeded {
            limit: demand.name.clone(),
            key: demand.key.clone(),
            retry_after: (fits_at - now).to_std().unwrap_or_default(),
        });
    }
    Ok(next)
}

/// A store's cached list of limits, read again after [`LIMIT_CACHE_TTL`], so a claim in a
/// queue without limits costs nothing but a clock read, and a limit set on another node takes
/// effect within a second.
#[derive(Debug, Default)]
pub struct LimitCache {
    cached: Mutex<Option<(Instant, Arc<Vec<LimitSpec>>)>>,
    wake: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Queues whose last limited claim came back short: a freed slot wakes their workers.
    held: Mutex<std::collections::BTreeSet<String>>,
    /// Per fair queue, the tenant this process's discovery walk goes on after (`None`: the
    /// start). Kept in memory: each process covers every tenant in its own walk, and no
    /// claim writes a shared row for it.
    fair_cursors: Mutex<BTreeMap<String, String>>,
}

impl LimitCache {
    /// The cached limits, if read less than [`LIMIT_CACHE_TTL`] ago.
    pub fn fresh(&self) -> Option<Arc<Vec<LimitSpec>>> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < LIMIT_CACHE_TTL)
            .map(|(_, limits)| limits.clone())
    }

    /// Caches `limits`, just read.
    pub fn put(&self, limits: Vec<LimitSpec>) -> Arc<Vec<LimitSpec>> {
        let limits = Arc::new(limits);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), limits.clone()));
        limits
    }

    /// Forgets the cache (this node changed a limit).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records when a limiter that refused a job of `queue` next admits one (`None`: none
    /// refused).
    pub fn set_wake(&self, queue: &str, at: Option<DateTime<Utc>>) {
        let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        match at {
            Some(at) => {
                wake.insert(queue.to_owned(), at);
            }
            None => {
                wake.remove(queue);
            }
        }
    }

    /// Records that a limited claim in `queue` came back with fewer jobs than asked, so the
    /// next freed concurrency slot should wake its workers.
    pub fn hold(&self, queue: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.contains(queue) {
            held.insert(queue.to_owned());
        }
    }

    /// The queues [`Self::hold`] recorded since the last call, forgotten: their workers are
    /// about to be woken and claim again (recording them again if still limited).
    pub fn take_held(&self) -> Vec<String> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    /// Where the discovery walk of fair queue `queue` goes on after (see
    /// [`FAIR_DISCOVER_PER_CLAIM`]); `None`: from the first tenant.
    pub fn fair_cursor(&self, queue: &str) -> Option<String> {
        self.fair_cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .cloned()
    }

    /// Records where the next discovery walk of `queue` starts after (`None`: from the start).
    pub fn set_fair_cursor(&self, queue: &str, after: Option<String>) {
        let mut cursors = self.fair_cursors.lock().unwrap_or_else(|e| e.into_inner());
        match after {
            Some(after) => {
                cursors.insert(queue.to_owned(), after);
            }
            None => {
                cursors.remove(queue);
            }
        }
    }

    /// See [`Store::limit_wake_at`](crate::Store::limit_wake_at).
    pub fn wake_at(&self, queue: &str) -> Option<DateTime<Utc>> {
        self.wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .copied()
    }
}

/// The fair queuing setting of `queue` among its `limits`, if one asks for it (the first by
/// name, if several do).
pub fn fair_of(limits: &[LimitSpec]) -> Option<&Fair> {
    limits.iter().find_map(|limit| limit.fair.as_ref())
}

/// The limits among `limits` that apply to `queue`, or `None` if there are none (the claim
/// takes its usual path).
pub fn limits_for_queue(limits: &[LimitSpec], queue: &str) -> Option<Vec<LimitSpec>> {
    let applicable: Vec<LimitSpec> = limits
        .iter()
        .filter(|limit| limit.applies_to_queue(queue))
        // A quota counts at insert: alone, it leaves the claim as it is.
        .filter(|limit| limit.rate.is_some() || limit.concurrency.is_some() || limit.fair.is_some())
        .cloned()
        .collect();
    (!applicable.is_empty()).then_some(applicable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn rate_limit(count: u32, period_ms: u64, burst: u32) -> LimitSpec {
        LimitSpec {
            name: "r".into(),
            queue: None,
            kind: None,
            key: LimitKey::Global,
            rate: Some(Rate {
                count,
                period_ms,
                burst,
            }),
            concurrency: None,
            fair: None,
            quota: None,
        }
    }

    #[test]
    fn fair_scheduler_takes_turns_by_weight() {
        let fair = Fair {
            weights: BTreeMap::from([("b".to_owned(), 3)]),
        };
        // At clock 50: `a` has been served a lot; `b` is new and `c` was idle long, so both
        // start at the clock rather than catching up.
        let plan = FairScheduler::new(
            &fair,
            50.0,
            vec![
                (Some("a".into()), Some(100.0)),
                (Some("b".into()), None),
                (Some("c".into()), Some(2.0)),
            ],
        );
        let quotas: BTreeMap<_, _> = plan.quotas(10).into_iter().collect();
        // Per unit of virtual time b gets 3 places and c 1; a is 50 ahead and gets none.
        assert_eq!(quotas[&Some("b".to_owned())], 8);
        assert_eq!(quotas[&Some("c".to_owned())], 2);
        assert!(!quotas.contains_key(&Some("a".to_owned())));
        let order = plan.order(vec![
            (Some("a".into()), vec![1, 2]),
            (Some("c".into()), vec![5]),
            (Some("b".into()), vec![10, 11, 12, 13]),
        ]);
        let ids: Vec<i32> = order.into_iter().map(|(_, id)| id).collect();
        // Tags: b 50.33, 50.67, 51 (tied with c's 51: list order), b 51.33, then a 101, 102.
        assert_eq!(ids, vec![10, 11, 12, 5, 13, 1, 2]);
        let admitted = BTreeMap::from([(Some("b".to_owned()), 3)]);
        assert_eq!(plan.advances(&admitted), vec![("b".to_owned(), 50.0, 1.0)]);
        // c, at 50 and served nothing, is the furthest behind.
        assert_eq!(plan.clock(&admitted), Some(50.0));
    }

    #[test]
    fn fair_needs_a_queue_and_valid_weights() {
        let mut limit = LimitSpec {
            rate: None,
            fair: Some(Fair::default()),
            ..rate_limit(1, 1, 1)
        };
        assert_eq!(limit.validate().unwrap_err().field, "queue");
        limit.queue = Some("q".into());
        limit.validate().unwrap();
        limit.kind = Some("k".into());
        assert_eq!(limit.validate().unwrap_err().field, "kind");
        limit.kind = None;
        limit.fair = Some(Fair {
            weights: BTreeMap::from([("t".to_owned(), 0)]),
        });
        assert_eq!(limit.validate().unwrap_err().field, "fair.weights.t");
        // A fair-only limit counts nothing per limiter.
        let gate = FlowGate::new(
            vec![LimitSpec {
                fair: Some(Fair::default()),
                ..limit
            }],
            t(0),
        );
        assert!(gate
            .limiters_of("k", Some("t"), &Value::Null, &Metadata::default())
            .is_empty());
    }

    #[test]
    fn quota_takes_tokens_per_key_and_refuses_whole() {
        let quota = Rate {
            count: 10,
            period_ms: 1000,
            burst: 5,
        };
        let limit = LimitSpec {
            rate: None,
            key: LimitKey::Tenant,
            quota: Some(quota),
            ..rate_limit(1, 1, 1)
        };
        let mut jobs = vec![crate::JobInsert::new("k", Value::Null); 4];
        jobs[0].tenant = Some("a".into());
        jobs[1].tenant = Some("a".into());
        jobs[2].tenant = Some("b".into());
        let demand = quota_demand(&[limit], &jobs);
        assert_eq!(demand.len(), 2, "no tenant, no quota");
        assert_eq!((demand[0].key.as_str(), demand[0].count), ("a", 2));
        // 2 of a burst of 5 at t0, then 3 more fit, then the 6th waits 100 ms.
        let tat = quota_take(&demand[0], None, t(0)).unwrap();
        let three = QuotaDemand {
            count: 3,
            ..demand[0].clone()
        };
        let tat = quota_take(&three, Some(tat), t(0)).unwrap();
        let one = QuotaDemand {
            count: 1,
            ..demand[0].clone()
        };
        match quota_take(&one, Some(tat), t(0)).unwrap_err() {
            crate::StoreError::QuotaExceeded {
                limit,
                key,
                retry_after,
            } => {
                assert_eq!((limit.as_str(), key.as_str()), ("r", "a"));
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        assert!(quota_take(&one, Some(tat), t(100)).is_ok());
        let six = QuotaDemand {
            count: 6,
            ..demand[0].clone()
        };
        assert!(matches!(
            quota_take(&six, None, t(0)),
            Err(crate::StoreError::Invalid(_))
        ));
    }

    #[test]
    fn gcra_admits_burst_then_one_per_interval() {
        // 10 per second, burst 3: 3 at once, then one every 100 ms.
        let mut gate = FlowGate::new(vec![rate_limit(10, 1000, 3)], t(0));
        let one = vec![(0, String::new())];
        let admitted = (0..10).filter(|_| gate.admit(&one).is_some()).count();
        assert_eq!(admitted, 3);
        assert_eq!(gate.wake_at(), Some(t(100)));
        let state = gate.changes()[0].state;
        let mut gate = FlowGate::new(vec![rate_limit(10, 1000, 3)], t(100));
        gate.load("r", "", state);
        assert!(gate.admit(&one).is_some());
        assert!(gate.admit(&one).is_none());
    }

    #[test]
    fn gcra_never_exceeds_burst_plus_rate_in_any_window() {
        // Claims every 7 ms for 5 s at 100/s burst 5: any 1 s window holds at most 105.
        let limit = rate_limit(100, 1000, 5);
        let mut state = LimiterState::default();
        let mut starts = Vec::new();
        for step in 0..715 {
            let now = t(step * 7);
            let mut gate = FlowGate::new(vec![limit.clone()], now);
            gate.load("r", "", state);
            while gate.admit(&[(0, String::new())]).is_some() {
                starts.push(now);
            }
            if let Some(change) = gate.changes().first() {
                state = change.state;
            }
        }
        for (i, start) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .take_while(|s| **s < *start + chrono::Duration::seconds(1))
                .count();
            assert!(within <= 105, "{within} starts in the second from {start}");
        }
        // And it does not under-admit: ~100/s over 5 s, plus the burst.
        assert!(
            starts.len() >= 495 && starts.len() <= 506,
            "{}",
            starts.len()
        );
    }

    #[test]
    fn concurrency_counts_slots() {
        let limit = LimitSpec {
            concurrency: Some(2),
            rate: None,
            key: LimitKey::Tenant,
            ..rate_limit(1, 1, 1)
        };
        let mut gate = FlowGate::new(vec![limit], t(0));
        let a = gate.limiters_of("k", Some("a"), &Value::Null, &Metadata::default());
        let b = gate.limiters_of("k", Some("b"), &Value::Null, &Metadata::default());
        let none = gate.limiters_of("k", None, &Value::Null, &Metadata::default());
        assert!(none.is_empty());
        assert!(gate.admit(&a).is_some());
        assert!(gate.admit(&a).is_some());
        assert!(gate.admit(&a).is_none());
        assert_eq!(gate.admit(&b), Some(vec![("r".to_owned(), "b".to_owned())]));
    }

    #[test]
    fn key_expressions() {
        let args = serde_json::json!({"shop": {"id": 42}, "name": "x"});
        let meta = Metadata::default();
        assert_eq!(
            LimitKey::parse("args.shop.id")
                .unwrap()
                .key_of(None, &args, &meta),
            Some("42".into())
        );
        assert_eq!(
            LimitKey::parse("args.name")
                .unwrap()
                .key_of(None, &args, &meta),
            Some("x".into())
        );
        assert_eq!(
            LimitKey::parse("args.missing")
                .unwrap()
                .key_of(None, &args, &meta),
            None
        );
        for bad in [
            "",
            "args",
            "args.",
            "args.a..b",
            "job.x",
            "args.a b",
            "Tenant",
        ] {
            assert_eq!(LimitKey::parse(bad).unwrap_err().field, "key", "{bad:?}");
        }
        assert_eq!(
            LimitKey::parse("metadata.source").unwrap().to_string(),
            "metadata.source"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut limit = rate_limit(0, 1000, 1);
        assert_eq!(limit.validate().unwrap_err().field, "rate.count");
        limit.rate = Some(Rate {
            count: 1,
            period_ms: 0,
            burst: 1,
        });
        assert_eq!(limit.validate().unwrap_err().field, "rate.period_ms");
        limit.rate = Some(Rate {
            count: 1,
            period_ms: 10,
            burst: 0,
        });
        assert_eq!(limit.validate().unwrap_err().field, "rate.burst");
        limit.rate = None;
        assert_eq!(limit.validate().unwrap_err().field, "rate");
        limit.concurrency = Some(0);
        assert_eq!(limit.validate().unwrap_err().field, "concurrency");
        limit.concurrency = Some(1);
        limit.name = "bad name".into();
        assert_eq!(limit.validate().unwrap_err().field, "name");
    }

    #[test]
    fn push_back_holds_until_then_admits_one() {
        let rate = Rate {
            count: 10,
            period_ms: 1000,
            burst: 4,
        };
        let tat = gcra_push_back(Some(&rate), None, t(5000));
        assert_eq!(gcra_next(&rate, Some(tat), t(4999)), Some(t(5000)));
        assert_eq!(gcra_next(&rate, Some(tat), t(5000)), None);
    }
}
