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
        if self.rate.is_none() && self.concurrency.is_none() {
            return Err(InvalidInput::new(
                "rate",
                "a limit needs a rate, a concurrency, or both",
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

/// A store's cached list of limits, read again after [`LIMIT_CACHE_TTL`], so a claim in a
/// queue without limits costs nothing but a clock read, and a limit set on another node takes
/// effect within a second.
#[derive(Debug, Default)]
pub struct LimitCache {
    cached: Mutex<Option<(Instant, Arc<Vec<LimitSpec>>)>>,
    wake: Mutex<BTreeMap<String, DateTime<Utc>>>,
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

    /// See [`Store::limit_wake_at`](crate::Store::limit_wake_at).
    pub fn wake_at(&self, queue: &str) -> Option<DateTime<Utc>> {
        self.wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .copied()
    }
}

/// The limits among `limits` that apply to `queue`, or `None` if there are none (the claim
/// takes its usual path).
pub fn limits_for_queue(limits: &[LimitSpec], queue: &str) -> Option<Vec<LimitSpec>> {
    let applicable: Vec<LimitSpec> = limits
        .iter()
        .filter(|limit| limit.applies_to_queue(queue))
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
        }
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
