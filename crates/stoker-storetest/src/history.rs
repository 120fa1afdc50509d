//! History (issue 13): [`Store::history_record`], [`Store::history_query`],
//! [`Store::history_rollup`] and [`Store::queue_depths`], driven by a fake clock across minute,
//! hour and day boundaries and past each grain's retention.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stoker_core::{
    HistoryDelta, HistoryGrain, HistoryMetric, HistoryQueryParams, HistoryRecordParams,
    HistoryRetention, HistoryRollupParams, HistoryScope, HistoryValue, JobInsert, Store,
};

use crate::fixture::{at, insert, job_in, t0};

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn delta(
    minute: DateTime<Utc>,
    queue: &str,
    kind: &str,
    tenant: Option<&str>,
    metric: HistoryMetric,
    value: i64,
) -> HistoryDelta {
    HistoryDelta {
        minute,
        queue: queue.into(),
        kind: kind.into(),
        tenant: tenant.map(str::to_owned),
        metric,
        value,
    }
}

async fn record<S: Store>(store: &Arc<S>, deltas: Vec<HistoryDelta>) {
    store
        .history_record(HistoryRecordParams { deltas })
        .await
        .expect("history_record");
}

async fn query<S: Store>(
    store: &Arc<S>,
    grain: HistoryGrain,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    scope: HistoryScope,
) -> Vec<HistoryValue> {
    store
        .history_query(HistoryQueryParams {
            grain,
            from,
            to,
            scope,
        })
        .await
        .expect("history_query")
}

/// The value of `metric` in the bucket starting at `bucket`, 0 if absent.
fn value(values: &[HistoryValue], bucket: DateTime<Utc>, metric: HistoryMetric) -> i64 {
    values
        .iter()
        .filter(|v| v.bucket == bucket && v.metric == metric)
        .map(|v| v.value)
        .sum()
}

fn value_v(value: i64) -> impl Fn(&HistoryValue) -> bool {
    move |v| v.value == value
}

fn scope(queue: Option<&str>, kind: Option<&str>, tenant: Option<&str>) -> HistoryScope {
    HistoryScope {
        queue: queue.map(str::to_owned),
        kind: kind.map(str::to_owned),
        tenant: tenant.map(str::to_owned),
    }
}

/// Deltas add up across flushes and within one (repeated keys), seconds are truncated to the
/// minute, gauges keep the highest sample, and a query merges the labels in its scope.
pub async fn record_adds_and_scopes<S: Store>(store: Arc<S>) {
    use HistoryMetric::*;
    let m0 = t0();
    record(
        &store,
        vec![
            delta(at(5), "q1", "a", None, Completed, 2),
            delta(at(59), "q1", "a", None, Completed, 3),
            delta(m0, "q1", "b", Some("t1"), Completed, 4),
            delta(m0, "q2", "a", Some("t1"), Completed, 10),
            delta(m0, "q1", "a", None, Run(3), 5),
            delta(m0, "q1", "", None, Depth, 7),
            delta(m0, "q2", "", None, Depth, 1),
            delta(m0, "q1", "", None, OldestAgeMs, 900),
            delta(m0, "q2", "", None, OldestAgeMs, 4000),
        ],
    )
    .await;
    record(
        &store,
        vec![
            delta(at(30), "q1", "a", None, Completed, 1),
            delta(m0, "q1", "", None, Depth, 3),
            delta(at(MINUTE), "q1", "a", None, Failed, 1),
        ],
    )
    .await;

    let all = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(HOUR),
        scope(None, None, None),
    )
    .await;
    assert_eq!(value(&all, m0, Completed), 2 + 3 + 4 + 10 + 1);
    assert_eq!(value(&all, m0, Run(3)), 5);
    assert_eq!(
        value(&all, m0, Depth),
        7 + 1,
        "a gauge keeps its highest sample per minute"
    );
    assert_eq!(
        value(&all, m0, OldestAgeMs),
        4000,
        "the oldest age is the highest"
    );
    assert_eq!(value(&all, at(MINUTE), Failed), 1);
    assert!(all.iter().all(|v| v.bucket == m0 || v.bucket == at(MINUTE)));

    let q1 = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(HOUR),
        scope(Some("q1"), None, None),
    )
    .await;
    assert_eq!(value(&q1, m0, Completed), 2 + 3 + 4 + 1);
    let q1a = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(HOUR),
        scope(Some("q1"), Some("a"), None),
    )
    .await;
    assert_eq!(value(&q1a, m0, Completed), 6);
    let t1 = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(HOUR),
        scope(None, None, Some("t1")),
    )
    .await;
    assert_eq!(value(&t1, m0, Completed), 14);
    let none = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(HOUR),
        scope(Some("nope"), None, None),
    )
    .await;
    assert!(none.is_empty());
    // `to` is exclusive.
    let first = query(
        &store,
        HistoryGrain::Minute,
        m0,
        at(MINUTE),
        scope(None, None, None),
    )
    .await;
    assert_eq!(value(&first, at(MINUTE), Failed), 0);
    assert!(first.iter().any(value_v(20)));
}

/// Roll-ups fold minutes into hours and hours into UTC days as the clock crosses their
/// boundaries; a late delta for a rolled-up hour is folded in by the next roll-up; rows past
/// each grain's retention go, and coarser rows outlive them.
pub async fn rollup_across_boundaries_and_retention<S: Store>(store: Arc<S>) {
    use HistoryMetric::*;
    let retention = HistoryRetention::default();
    let rollup = |now: DateTime<Utc>| {
        let store = Arc::clone(&store);
        async move {
            store
                .history_rollup(HistoryRollupParams { now, retention })
                .await
                .expect("history_rollup")
        }
    };
    let any = || scope(None, None, None);
    // Hour 0: minutes 0 and 59; hour 1: minute 60; day 1: one minute.
    record(
        &store,
        vec![
            delta(at(0), "q", "a", None, Completed, 1),
            delta(at(59 * MINUTE), "q", "a", None, Completed, 2),
            delta(at(59 * MINUTE), "q", "", None, Depth, 9),
            delta(at(20 * MINUTE), "q", "", None, Depth, 4),
        ],
    )
    .await;
    rollup(at(59 * MINUTE + 30)).await;
    let hours = query(&store, HistoryGrain::Hour, at(0), at(DAY), any()).await;
    assert_eq!(value(&hours, at(0), Completed), 3);
    assert_eq!(
        value(&hours, at(0), Depth),
        9,
        "gauges roll up by their highest"
    );

    record(
        &store,
        vec![
            delta(at(HOUR), "q", "a", None, Completed, 5),
            // Late: a process flushed hour 0 after it was rolled up.
            delta(at(30 * MINUTE), "q", "a", None, Completed, 10),
        ],
    )
    .await;
    rollup(at(HOUR + 10)).await;
    let hours = query(&store, HistoryGrain::Hour, at(0), at(DAY), any()).await;
    assert_eq!(
        value(&hours, at(0), Completed),
        13,
        "the late delta is folded in"
    );
    assert_eq!(value(&hours, at(HOUR), Completed), 5);
    // Rolling up again changes nothing.
    rollup(at(HOUR + 20)).await;
    let again = query(&store, HistoryGrain::Hour, at(0), at(DAY), any()).await;
    assert_eq!(again, hours);

    record(
        &store,
        vec![delta(at(DAY + 5 * MINUTE), "q", "a", None, Completed, 7)],
    )
    .await;
    rollup(at(DAY + 6 * MINUTE)).await;
    let days = query(&store, HistoryGrain::Day, at(0), at(10 * DAY), any()).await;
    assert_eq!(value(&days, at(0), Completed), 18);
    assert_eq!(value(&days, at(DAY), Completed), 7);

    // Eight days on, day 0's minutes are past the 7-day retention; its hours stay.
    rollup(at(8 * DAY)).await;
    let minutes = query(&store, HistoryGrain::Minute, at(0), at(10 * DAY), any()).await;
    assert_eq!(value(&minutes, at(0), Completed), 0);
    assert_eq!(value(&minutes, at(DAY + 5 * MINUTE), Completed), 7);
    let hours = query(&store, HistoryGrain::Hour, at(0), at(10 * DAY), any()).await;
    assert_eq!(value(&hours, at(0), Completed), 13);
    // Rolling up after the minutes are gone keeps the hours and days they made.
    let days = query(&store, HistoryGrain::Day, at(0), at(10 * DAY), any()).await;
    assert_eq!(value(&days, at(0), Completed), 18);

    // 91 days on the hours are gone too; the days stay for two years.
    rollup(at(91 * DAY + HOUR)).await;
    let hours = query(&store, HistoryGrain::Hour, at(0), at(100 * DAY), any()).await;
    assert!(hours.is_empty(), "hours past 90 days are pruned: {hours:?}");
    let days = query(&store, HistoryGrain::Day, at(0), at(100 * DAY), any()).await;
    assert_eq!(value(&days, at(0), Completed), 18);
    assert_eq!(value(&days, at(DAY), Completed), 7);

    // A shorter, configured retention applies.
    let short = HistoryRetention {
        minute: Duration::from_secs(3600),
        hour: Duration::from_secs(3600 * 24),
        day: Duration::from_secs(86_400 * 30),
    };
    store
        .history_rollup(HistoryRollupParams {
            now: at(91 * DAY + HOUR),
            retention: short,
        })
        .await
        .expect("history_rollup");
    let days = query(&store, HistoryGrain::Day, at(0), at(100 * DAY), any()).await;
    assert!(
        days.is_empty(),
        "days past a 30-day retention are pruned: {days:?}"
    );
}

/// Queue depths split due work from scheduled work and name the oldest due job's `run_at`.
pub async fn queue_depths_due_and_scheduled<S: Store>(store: Arc<S>) {
    let later = |queue: &str| {
        let mut job: JobInsert = job_in(queue, "a");
        job.run_at = Some(at(HOUR));
        job
    };
    insert(&store, vec![job_in("q1", "a"), job_in("q1", "b")], at(-30)).await;
    insert(
        &store,
        vec![job_in("q1", "a"), later("q1"), later("q2")],
        t0(),
    )
    .await;
    let depths = store.queue_depths().await.expect("queue_depths");
    assert_eq!(depths.len(), 2);
    assert_eq!(depths[0].queue, "q1");
    assert_eq!((depths[0].due, depths[0].scheduled), (3, 1));
    assert_eq!(depths[0].oldest_due_at, Some(at(-30)));
    assert_eq!(depths[1].queue, "q2");
    assert_eq!((depths[1].due, depths[1].scheduled), (0, 1));
    assert_eq!(depths[1].oldest_due_at, None);
}
