//! Shared set-up for the behaviours: fixed instants, job builders and short calls.
//!
//! Every instant is an offset from [`T0`], so no behaviour depends on the wall clock or sleeps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use stoker_core::{
    AttemptError, ErrorKind, InsertedJob, JobClaimParams, JobFinish, JobFinishParams, JobId,
    JobInsert, JobInsertParams, JobListParams, JobRow, JobStageParams, JobState, Outcome, Store,
    StoreError, StoreErrorKind, StoreResult,
};

/// 2030-01-01T00:00:00Z: far from the wall clock, so a store that reads the database's clock
/// instead of the given `now` fails loudly.
const T0_UNIX: i64 = 1_893_456_000;

/// The base instant plus `secs` seconds.
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0_UNIX, 0).expect("a valid instant") + Duration::seconds(secs)
}

/// The base instant.
pub(crate) fn t0() -> DateTime<Utc> {
    at(0)
}

/// A job of `kind` with small args and every option at its default.
pub(crate) fn job(kind: &str) -> JobInsert {
    JobInsert::new(kind, json!({"kind": kind}))
}

/// A job of `kind` in `queue`.
pub(crate) fn job_in(queue: &str, kind: &str) -> JobInsert {
    let mut job = job(kind);
    job.queue = queue.to_owned();
    job
}

/// A failed attempt's error.
pub(crate) fn attempt_error(attempt: i32, at: DateTime<Utc>, message: &str) -> AttemptError {
    AttemptError {
        attempt,
        at,
        kind: ErrorKind::Error,
        message: message.to_owned(),
        backtrace: None,
    }
}

/// Inserts `jobs` at `now` and returns the full results.
pub(crate) async fn insert_many<S: Store>(
    store: &Arc<S>,
    jobs: Vec<JobInsert>,
    now: DateTime<Utc>,
) -> Vec<InsertedJob> {
    let count = jobs.len();
    let inserted = store
        .job_insert_many(JobInsertParams::new(jobs, now))
        .await
        .expect("job_insert_many");
    assert_eq!(inserted.len(), count, "one result per input job");
    inserted
}

/// Inserts `jobs` at `now`, checks none was a duplicate, and returns their ids in order.
pub(crate) async fn insert<S: Store>(
    store: &Arc<S>,
    jobs: Vec<JobInsert>,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    insert_many(store, jobs, now)
        .await
        .into_iter()
        .map(|inserted| {
            assert!(
                !inserted.duplicate,
                "a job without a unique key is never a duplicate"
            );
            inserted.id
        })
        .collect()
}

/// Inserts one job at `now` and returns its id.
pub(crate) async fn insert_one<S: Store>(
    store: &Arc<S>,
    job: JobInsert,
    now: DateTime<Utc>,
) -> JobId {
    insert(store, vec![job], now).await[0]
}

/// Claim parameters for every kind of `queue`.
pub(crate) fn claim_params(
    queue: &str,
    limit: u32,
    worker: &str,
    now: DateTime<Utc>,
) -> JobClaimParams {
    JobClaimParams {
        queue: queue.to_owned(),
        kinds: Vec::new(),
        limit,
        worker_id: worker.to_owned(),
        now,
        lease: None,
    }
}

/// Inserts `job` at `now`, claims exactly it for `worker` at `now` with a lease of
/// `lease_secs` seconds, and returns the running row.
pub(crate) async fn running_leased<S: Store>(
    store: &Arc<S>,
    job: JobInsert,
    worker: &str,
    lease_secs: u64,
    now: DateTime<Utc>,
) -> JobRow {
    let (queue, kind) = (job.queue.clone(), job.kind.clone());
    let id = insert_one(store, job, now).await;
    let mut params = claim_params(&queue, 1, worker, now);
    params.kinds = vec![kind];
    params.lease = Some(StdDuration::from_secs(lease_secs));
    let mut claimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(claimed.len(), 1, "expected to claim job {id}");
    let row = claimed.remove(0);
    assert_eq!(row.id, id, "claimed the wrong job");
    assert_eq!(row.state, JobState::Running);
    row
}

/// Claims up to `limit` jobs of `queue` for `worker` at `now`.
pub(crate) async fn claim<S: Store>(
    store: &Arc<S>,
    queue: &str,
    limit: u32,
    worker: &str,
    now: DateTime<Utc>,
) -> Vec<JobRow> {
    store
        .job_claim(claim_params(queue, limit, worker, now))
        .await
        .expect("job_claim")
}

/// Claims the ids of up to `limit` jobs of `queue`, as a sorted list.
pub(crate) async fn claim_ids<S: Store>(
    store: &Arc<S>,
    queue: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let mut ids: Vec<JobId> = claim(store, queue, limit, "w1", now)
        .await
        .iter()
        .map(|row| row.id)
        .collect();
    ids.sort();
    ids
}

/// Inserts one job of `kind` into the default queue at `now`, claims it for `w1` at `now`, and
/// returns the running row (attempt 1).
pub(crate) async fn running<S: Store>(store: &Arc<S>, kind: &str, now: DateTime<Utc>) -> JobRow {
    running_job(store, job(kind), now).await
}

/// Inserts `job` at `now`, claims exactly it for `w1` at `now`, and returns the running row.
pub(crate) async fn running_job<S: Store>(
    store: &Arc<S>,
    job: JobInsert,
    now: DateTime<Utc>,
) -> JobRow {
    let (queue, kind) = (job.queue.clone(), job.kind.clone());
    let id = insert_one(store, job, now).await;
    claim_exactly(store, &queue, &kind, id, now).await
}

/// Stages every job due at `now`, as the leader's stager would have by then, and returns how
/// many it moved.
pub(crate) async fn stage<S: Store>(store: &Arc<S>, now: DateTime<Utc>) -> u64 {
    store
        .job_stage(JobStageParams { now, limit: 1000 })
        .await
        .expect("job_stage")
}

/// Claims exactly job `id` (of `kind` in `queue`) for `w1` at `now`, after staging what is due
/// then (a job retried or scheduled earlier waits for the stager), and returns the row.
///
/// # Panics
///
/// If the claim returns anything else.
pub(crate) async fn claim_exactly<S: Store>(
    store: &Arc<S>,
    queue: &str,
    kind: &str,
    id: JobId,
    now: DateTime<Utc>,
) -> JobRow {
    stage(store, now).await;
    let mut params = claim_params(queue, 1, "w1", now);
    params.kinds = vec![kind.to_owned()];
    let mut claimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(claimed.len(), 1, "expected to claim job {id}");
    let row = claimed.remove(0);
    assert_eq!(row.id, id, "claimed the wrong job");
    assert_eq!(row.state, JobState::Running);
    row
}

/// Finishes the claim `fence` of job `id` at `now` and returns the ids the store applied.
pub(crate) async fn finish<S: Store>(
    store: &Arc<S>,
    id: JobId,
    fence: i64,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    finish_many(store, vec![JobFinish { id, fence, outcome }], now).await
}

/// Finishes the claim `fence` of job `id` at `now` as the rescuer does (leases ignored), and
/// returns the ids the store applied.
pub(crate) async fn rescue<S: Store>(
    store: &Arc<S>,
    id: JobId,
    fence: i64,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let params = JobFinishParams {
        finishes: vec![JobFinish { id, fence, outcome }],
        now,
        rescue: true,
    };
    store
        .job_finish_many(params)
        .await
        .expect("job_finish_many")
        .iter()
        .map(|job| job.id)
        .collect()
}

/// Applies `finishes` at `now` and returns the applied ids, sorted.
pub(crate) async fn finish_many<S: Store>(
    store: &Arc<S>,
    finishes: Vec<JobFinish>,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let mut ids: Vec<JobId> = store
        .job_finish_many(JobFinishParams::new(finishes, now))
        .await
        .expect("job_finish_many")
        .iter()
        .map(|job| job.id)
        .collect();
    ids.sort();
    ids
}

/// Claims and completes job `id` (of `kind` in `queue`), finishing it at `finished_at`.
pub(crate) async fn complete<S: Store>(
    store: &Arc<S>,
    queue: &str,
    kind: &str,
    id: JobId,
    finished_at: DateTime<Utc>,
) {
    let row = claim_exactly(store, queue, kind, id, finished_at).await;
    let applied = finish(
        store,
        id,
        row.fence,
        Outcome::Completed { result: None },
        finished_at,
    )
    .await;
    assert_eq!(applied, vec![id]);
}

/// Fetches a job that must exist.
pub(crate) async fn get<S: Store>(store: &Arc<S>, id: JobId) -> JobRow {
    store
        .job_get(id)
        .await
        .expect("job_get")
        .unwrap_or_else(|| panic!("job {id} should exist"))
}

/// Every job in the store, newest first.
pub(crate) async fn all_jobs<S: Store>(store: &Arc<S>) -> Vec<JobRow> {
    list(store, JobListParams::default()).await
}

/// Lists with `params`, raising a zero limit to "everything".
pub(crate) async fn list<S: Store>(store: &Arc<S>, mut params: JobListParams) -> Vec<JobRow> {
    if params.limit == 0 {
        params.limit = 100_000;
    }
    store.job_list(params).await.expect("job_list")
}

/// The ids of `rows`, in their order.
pub(crate) fn ids(rows: &[JobRow]) -> Vec<JobId> {
    rows.iter().map(|row| row.id).collect()
}

/// `(queue, kind, state name)` to count, as [`Store::job_stats`] reports it.
pub(crate) type Stats = BTreeMap<(String, String, &'static str), i64>;

/// The store's counts, keyed by `(queue, kind, state)`: summed over tenants.
///
/// # Panics
///
/// As [`stats_by_tenant`].
pub(crate) async fn stats<S: Store>(store: &Arc<S>) -> Stats {
    let mut stats = Stats::new();
    for ((queue, kind, _, state), (count, _)) in stats_by_tenant(store).await {
        *stats.entry((queue, kind, state)).or_default() += count;
    }
    stats
}

/// `(queue, kind, tenant, state name)` to `(count, scheduled)`, as [`Store::job_stats`]
/// reports it.
pub(crate) type TenantStats = BTreeMap<(String, String, Option<String>, &'static str), (i64, i64)>;

/// The store's counts, keyed by `(queue, kind, tenant, state)`, with the scheduled share.
///
/// # Panics
///
/// If a key appears twice, a count is not positive (only non-zero counts are returned), or
/// the scheduled share is negative, above the count, or given for a state but `available`.
pub(crate) async fn stats_by_tenant<S: Store>(store: &Arc<S>) -> TenantStats {
    let mut stats = TenantStats::new();
    for row in store.job_stats().await.expect("job_stats") {
        assert!(
            row.count > 0,
            "job_stats returns only non-zero counts, got {row:?}"
        );
        assert!(
            (0..=row.count).contains(&row.scheduled)
                && (row.state == JobState::Available || row.scheduled == 0),
            "a scheduled share only of available jobs, within the count: {row:?}"
        );
        let key = (
            row.queue.clone(),
            row.kind.clone(),
            row.tenant.clone(),
            row.state.as_str(),
        );
        assert!(
            stats.insert(key, (row.count, row.scheduled)).is_none(),
            "job_stats repeats {row:?}"
        );
    }
    stats
}

/// Builds the expected [`Stats`] from `(queue, kind, state, count)` entries.
pub(crate) fn expected_stats(entries: &[(&str, &str, JobState, i64)]) -> Stats {
    entries
        .iter()
        .map(|&(queue, kind, state, count)| {
            ((queue.to_owned(), kind.to_owned(), state.as_str()), count)
        })
        .collect()
}

/// Asserts `result` failed with an error of `kind`, and returns the error.
pub(crate) fn expect_err_kind<T: Debug>(
    result: StoreResult<T>,
    kind: StoreErrorKind,
) -> StoreError {
    match result {
        Ok(value) => panic!("expected a {kind:?} error, got Ok({value:?})"),
        Err(err) => {
            assert_eq!(err.kind(), kind, "wrong error kind: {err}");
            err
        }
    }
}

/// Asserts `result` failed as `Invalid` naming `field`.
pub(crate) fn expect_invalid<T: Debug>(result: StoreResult<T>, field: &str) {
    match expect_err_kind(result, StoreErrorKind::Invalid) {
        StoreError::Invalid(input) => assert_eq!(input.field, field, "wrong field named: {input}"),
        other => panic!("an Invalid error should carry the InvalidInput, got {other:?}"),
    }
}

/// An id no store has handed out in these tests.
pub(crate) const UNKNOWN_ID: JobId = JobId(i64::MAX - 7);
