//! Stats: job counts, and throughput from an in-memory sampler.
//!
//! The sampler reads the store's job counts and worker rows every `stats.sample_interval` and
//! adds, per wall-clock minute, how much the cluster's `completed` and `discarded` counts grew
//! and how much the workers' failed-attempt counters grew. Shrinking counts (pruned, retried or
//! deleted jobs, removed worker rows) add nothing. See [`Throughput`](super::model::Throughput).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, DurationRound, Utc};
use tokio_util::sync::CancellationToken;

use super::extract::ApiQuery;
use super::model::{
    ErrorBody, StatsQuery, StatsResponse, Throughput as ThroughputView, ThroughputMinute,
};
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// Minutes of throughput history kept.
pub(crate) const HISTORY_MINUTES: usize = 60;
/// Minutes returned when the request does not say.
const MINUTES_DEFAULT: u32 = 15;

/// The sampler's memory: the last counts seen, and the minutes so far.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    inner: Mutex<ThroughputInner>,
}

#[derive(Debug, Default)]
struct ThroughputInner {
    last: Option<Sample>,
    minutes: VecDeque<ThroughputMinute>,
}

/// One reading of the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Completed jobs in the store.
    pub(crate) completed: i64,
    /// Discarded jobs in the store.
    pub(crate) discarded: i64,
    /// Failed attempts per worker row.
    pub(crate) failed: BTreeMap<String, i64>,
}

fn growth(now: i64, before: i64) -> u64 {
    u64::try_from(now - before).unwrap_or(0)
}

impl Throughput {
    /// Records a reading taken at `at`: the growth since the previous reading goes to `at`'s
    /// minute. The first reading only sets the baseline.
    pub(crate) fn record(&self, sample: Sample, at: DateTime<Utc>) {
        let mut inner = self.inner.lock().expect("throughput lock");
        let minute = at
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(at);
        if let Some(last) = inner.last.take() {
            let failed: u64 = sample
                .failed
                .iter()
                .map(|(worker, &count)| {
                    growth(count, last.failed.get(worker).copied().unwrap_or(0))
                })
                .sum();
            let completed = growth(sample.completed, last.completed);
            let discarded = growth(sample.discarded, last.discarded);
            let slot = match inner.minutes.back_mut() {
                Some(slot) if slot.minute == minute => slot,
                _ => {
                    inner.minutes.push_back(ThroughputMinute {
                        minute,
                        completed: 0,
                        discarded: 0,
                        failed: 0,
                    });
                    while inner.minutes.len() > HISTORY_MINUTES {
                        inner.minutes.pop_front();
                    }
                    inner.minutes.back_mut().expect("just pushed")
                }
            };
            slot.completed += completed;
            slot.discarded += discarded;
            slot.failed += failed;
        } else if inner.minutes.is_empty() {
            inner.minutes.push_back(ThroughputMinute {
                minute,
                completed: 0,
                discarded: 0,
                failed: 0,
            });
        }
        inner.last = Some(sample);
    }

    /// The minutes from `minutes` ago (or the first sample, if later) to `now`, oldest first,
    /// with zeros for minutes without growth.
    pub(crate) fn minutes(&self, minutes: u32, now: DateTime<Utc>) -> Vec<ThroughputMinute> {
        let inner = self.inner.lock().expect("throughput lock");
        let Some(first) = inner.minutes.front().map(|slot| slot.minute) else {
            return Vec::new();
        };
        let current = now
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(now);
        let start = (current - chrono::Duration::minutes(i64::from(minutes) - 1)).max(first);
        let mut out = Vec::new();
        let mut minute = start;
        while minute <= current {
            let found = inner.minutes.iter().find(|slot| slot.minute == minute);
            out.push(found.cloned().unwrap_or(ThroughputMinute {
                minute,
                completed: 0,
                discarded: 0,
                failed: 0,
            }));
            minute += chrono::Duration::minutes(1);
        }
        out
    }
}

/// Reads the counts once.
async fn sample(state: &AppState) -> Result<Sample, stoker::Error> {
    let client = state.client();
    let stats = client.stats().await?;
    let workers = client.workers().await?;
    Ok(Sample {
        completed: stats.totals.completed,
        discarded: stats.totals.discarded,
        failed: workers
            .into_iter()
            .map(|worker| (worker.id, worker.jobs_failed))
            .collect(),
    })
}

/// Samples every `stats.sample_interval` until `stop`; survives store errors.
pub(crate) async fn run_sampler(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(state.inner.sample_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        match sample(&state).await {
            Ok(sample) => state.inner.throughput.record(sample, state.now()),
            Err(err) => tracing::warn!(%err, "throughput sample failed; will retry"),
        }
    }
}

/// Job counts (totals, per queue, per kind, per tenant; a tenant-bound token sees its own) and
/// throughput of the last minutes.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, description = "Counts and throughput", body = StatsResponse),
        (status = 403, description = "Missing scope", body = ErrorBody),
        (status = 422, description = "A bad parameter", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<StatsResponse>, ApiError> {
    principal.require(Scope::Read)?;
    let client = state.client_for(&principal);
    let minutes = query.minutes.unwrap_or(MINUTES_DEFAULT);
    if !(1..=HISTORY_MINUTES as u32).contains(&minutes) {
        return Err(ApiError::invalid(
            "minutes",
            format!("minutes must be between 1 and {HISTORY_MINUTES}, got {minutes}"),
        ));
    }
    let stats = client.stats().await?;
    Ok(Json(StatsResponse {
        totals: stats.totals.into(),
        queues: stats
            .queues
            .into_iter()
            .map(|(name, counts)| (name, counts.into()))
            .collect(),
        kinds: stats
            .kinds
            .into_iter()
            .map(|(name, counts)| (name, counts.into()))
            .collect(),
        throughput: ThroughputView {
            sample_interval_seconds: state.inner.sample_interval.as_secs_f64(),
            // The sampler's minutes span every tenant: none for a tenant-bound token.
            minutes: if client.tenant().is_some() {
                Vec::new()
            } else {
                state.inner.throughput.minutes(minutes, state.now())
            },
        },
        tenants: stats
            .tenants
            .into_iter()
            .map(|(name, counts)| (name, counts.into()))
            .collect(),
        // --- stream flow ---
        limits: client
            .limit_usage()
            .await?
            .into_iter()
            .map(crate::api::limits::UsageView::from)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn sample(completed: i64, discarded: i64, failed: &[(&str, i64)]) -> Sample {
        Sample {
            completed,
            discarded,
            failed: failed
                .iter()
                .map(|(worker, count)| ((*worker).to_owned(), *count))
                .collect(),
        }
    }

    #[test]
    fn adds_growth_per_minute_and_clamps_drops() {
        let throughput = Throughput::default();
        throughput.record(sample(100, 5, &[("w1", 3)]), at("2030-01-01T00:00:10Z"));
        throughput.record(sample(110, 6, &[("w1", 5)]), at("2030-01-01T00:00:20Z"));
        // Pruning dropped completed jobs; a worker went away and a new one came.
        throughput.record(sample(50, 6, &[("w2", 1)]), at("2030-01-01T00:01:05Z"));
        throughput.record(sample(53, 4, &[("w2", 2)]), at("2030-01-01T00:01:15Z"));

        let minutes = throughput.minutes(5, at("2030-01-01T00:02:30Z"));
        assert_eq!(minutes.len(), 3, "{minutes:?}");
        assert_eq!(
            (
                minutes[0].completed,
                minutes[0].discarded,
                minutes[0].failed
            ),
            (10, 1, 2)
        );
        assert_eq!(
            (
                minutes[1].completed,
                minutes[1].discarded,
                minutes[1].failed
            ),
            (3, 0, 2)
        );
        assert_eq!(minutes[2].completed, 0);
        assert_eq!(minutes[2].minute, at("2030-01-01T00:02:00Z"));

        let last = throughput.minutes(1, at("2030-01-01T00:01:30Z"));
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].completed, 3);
    }
}
