//! The fencing token: a claim's fence never repeats, so no late or duplicated report from an
//! earlier holder of a job ever applies to a later claim of it, whatever happened in between
//! (a snooze, a hand-back, a rescue, an operator's retry); and a lapsed lease accepts nothing.
//!
//! Each behaviour replays one interleaving, then sends every report the earlier holder could
//! send late (each finish outcome, a progress report, a lease extension) and checks that none
//! changed the job, and that the current holder's own report still applies.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stoker_core::{
    ErrorKind, JobId, JobProgressParams, JobRetryParams, JobRow, JobState, Outcome, Store,
};

use crate::fixture::{
    at, attempt_error, claim_params, finish, get, job, rescue, running_leased, stage, t0,
};
use crate::rescue::extend;

/// A lease long enough that no behaviour here outlives it unless it means to.
const LONG_LEASE: u64 = 3600;

/// Every report the holder of a claim can send, each as it would arrive late at `now`.
fn late_reports(now: DateTime<Utc>) -> Vec<(&'static str, Outcome)> {
    vec![
        (
            "complete",
            Outcome::Completed {
                result: Some(json!("late")),
            },
        ),
        (
            "retry",
            Outcome::Retry {
                error: attempt_error(1, now, "late failure"),
                run_at: now,
            },
        ),
        (
            "discard",
            Outcome::Discard {
                error: attempt_error(1, now, "late discard"),
            },
        ),
        ("snooze", Outcome::Snooze { run_at: now }),
        ("cancel", Outcome::Cancel { error: None }),
        ("hand back", Outcome::HandBack),
    ]
}

/// Progress from the holder of claim `fence` of job `id` at `now`.
fn progress(id: JobId, fence: i64, now: DateTime<Utc>) -> JobProgressParams {
    JobProgressParams {
        id,
        fence,
        fraction: 0.5,
        message: Some("late".into()),
        details: Some(json!({"late": true})),
        now,
    }
}

/// Checks that nothing the holder of claim `stale` of job `id` sends at `now` is applied:
/// every finish outcome, progress and a lease extension are refused, and the job is unchanged.
async fn assert_fenced_off<S: Store>(store: &Arc<S>, id: JobId, stale: i64, now: DateTime<Utc>) {
    let before = get(store, id).await;
    for (what, outcome) in late_reports(now) {
        assert!(
            finish(store, id, stale, outcome, now).await.is_empty(),
            "a late {what} with fence {stale} must be refused (the job is now {:?} with fence {})",
            before.state,
            before.fence
        );
    }
    assert!(
        !store
            .job_progress(progress(id, stale, now))
            .await
            .expect("job_progress"),
        "late progress with fence {stale} must be refused"
    );
    assert_eq!(
        extend(store, id, stale, 60, now).await,
        None,
        "a late lease extension with fence {stale} must be refused"
    );
    assert_eq!(
        get(store, id).await,
        before,
        "refused reports change nothing"
    );
}

/// Claims exactly job `row.id` for `worker` at `now` with a long lease, after staging what is
/// due then.
async fn reclaim<S: Store>(
    store: &Arc<S>,
    row: &JobRow,
    worker: &str,
    now: DateTime<Utc>,
) -> JobRow {
    stage(store, now).await;
    let mut params = claim_params(&row.queue, 1, worker, now);
    params.kinds = vec![row.kind.clone()];
    params.lease = Some(Duration::from_secs(LONG_LEASE));
    let mut claimed = store.job_claim(params).await.expect("job_claim");
    assert_eq!(claimed.len(), 1, "expected to claim job {} again", row.id);
    let again = claimed.remove(0);
    assert_eq!(again.id, row.id);
    assert!(
        again.fence > row.fence,
        "a new claim takes a new fence: {} after {}",
        again.fence,
        row.fence
    );
    again
}

/// The current holder completes the job, which applies.
async fn complete_as<S: Store>(store: &Arc<S>, holder: &JobRow, now: DateTime<Utc>) {
    let done = Outcome::Completed {
        result: Some(json!(holder.worker_id)),
    };
    assert_eq!(
        finish(store, holder.id, holder.fence, done, now).await,
        vec![holder.id],
        "the current holder's report applies"
    );
    let row = get(store, holder.id).await;
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.result, Some(json!(holder.worker_id)));
}

/// Every claim adds one to the fence; nothing else changes it: not a snooze, a hand-back, a
/// failure, an operator's retry or a cancel.
pub async fn grows_with_every_claim_only<S: Store>(store: Arc<S>) {
    let first = running_leased(&store, job("fence_grows"), "a", LONG_LEASE, t0()).await;
    assert_eq!(first.fence, 1, "the first claim takes fence 1");
    let mut fences = vec![first.fence];
    let mut holder = first;
    let outcomes = [
        Outcome::Snooze { run_at: at(1) },
        Outcome::HandBack,
        Outcome::Retry {
            error: attempt_error(1, at(1), "failed"),
            run_at: at(1),
        },
    ];
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let now = at(n as i64 + 1);
        assert_eq!(
            finish(&store, holder.id, holder.fence, outcome, now).await,
            vec![holder.id]
        );
        assert_eq!(get(&store, holder.id).await.fence, holder.fence);
        holder = reclaim(&store, &holder, "a", now).await;
        fences.push(holder.fence);
    }
    assert_eq!(fences, vec![1, 2, 3, 4]);
    assert_eq!(holder.attempt, 2, "only the failure used up an attempt");

    complete_as(&store, &holder, at(10)).await;
    store
        .job_retry(JobRetryParams {
            id: holder.id,
            now: at(11),
        })
        .await
        .expect("job_retry");
    assert_eq!(
        get(&store, holder.id).await.fence,
        4,
        "a retry keeps the fence"
    );
    let again = reclaim(&store, &holder, "a", at(11)).await;
    assert_eq!(again.fence, 5);
}

/// A snoozes its job, B claims it again (the same attempt number as A's): every late report of
/// A's is refused, and B's applies.
pub async fn snooze_then_reclaim<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_snooze"), "a", LONG_LEASE, t0()).await;
    let snooze = Outcome::Snooze { run_at: at(1) };
    assert_eq!(
        finish(&store, a.id, a.fence, snooze, at(1)).await,
        vec![a.id]
    );
    let b = reclaim(&store, &a, "b", at(2)).await;
    assert_eq!(b.attempt, a.attempt, "a snooze gives the attempt back");
    assert_fenced_off(&store, a.id, a.fence, at(3)).await;
    complete_as(&store, &b, at(4)).await;
}

/// A hands its job back (a shutdown), B claims it again: every late report of A's is refused.
pub async fn hand_back_then_reclaim<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_hand_back"), "a", LONG_LEASE, t0()).await;
    assert_eq!(
        finish(&store, a.id, a.fence, Outcome::HandBack, at(1)).await,
        vec![a.id]
    );
    let b = reclaim(&store, &a, "b", at(2)).await;
    assert_eq!(b.attempt, a.attempt, "a hand-back gives the attempt back");
    assert_fenced_off(&store, a.id, a.fence, at(3)).await;
    complete_as(&store, &b, at(4)).await;
}

/// A retries a snooze and a lease extension whose answers it lost, after B claimed the job:
/// the duplicates are refused, so B keeps its job and its lease.
pub async fn duplicated_snooze_and_heartbeat<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_duplicate"), "a", LONG_LEASE, t0()).await;
    let snooze = || Outcome::Snooze { run_at: at(1) };
    assert_eq!(
        finish(&store, a.id, a.fence, snooze(), at(1)).await,
        vec![a.id]
    );
    assert!(
        finish(&store, a.id, a.fence, snooze(), at(1))
            .await
            .is_empty(),
        "a duplicated snooze of a job no longer running is refused"
    );
    let b = reclaim(&store, &a, "b", at(2)).await;
    assert!(
        finish(&store, a.id, a.fence, snooze(), at(3))
            .await
            .is_empty(),
        "a duplicated snooze must not snooze the next holder's claim"
    );
    assert_eq!(
        extend(&store, a.id, a.fence, 5, at(3)).await,
        None,
        "a duplicated heartbeat must not move the next holder's lease"
    );
    let row = get(&store, a.id).await;
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.fence, b.fence);
    assert_eq!(row.lease_expires_at, b.lease_expires_at);
    assert_eq!(row.worker_id.as_deref(), Some("b"));
    complete_as(&store, &b, at(4)).await;
}

/// A's lease lapses and the rescuer retries the job; B claims it and snoozes it (the attempt
/// goes back to A's next); C claims it: neither A's nor B's late reports apply.
pub async fn rescue_then_reclaim<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_rescue"), "a", 30, t0()).await;
    let mut error = attempt_error(a.attempt, at(31), "worker lost: the lease of a ended");
    error.kind = ErrorKind::WorkerLost;
    let lost = Outcome::Retry {
        error,
        run_at: at(31),
    };
    assert_eq!(
        rescue(&store, a.id, a.fence, lost, at(31)).await,
        vec![a.id],
        "the rescuer finishes a lapsed lease"
    );
    let b = reclaim(&store, &a, "b", at(32)).await;
    assert_fenced_off(&store, a.id, a.fence, at(33)).await;
    assert_eq!(
        finish(
            &store,
            b.id,
            b.fence,
            Outcome::Snooze { run_at: at(34) },
            at(34)
        )
        .await,
        vec![b.id]
    );
    let c = reclaim(&store, &b, "c", at(35)).await;
    assert_eq!(c.attempt, b.attempt, "the snooze gave B's attempt back");
    assert_fenced_off(&store, a.id, a.fence, at(36)).await;
    assert_fenced_off(&store, a.id, b.fence, at(36)).await;
    complete_as(&store, &c, at(37)).await;
}

/// A completes its job, an operator retries it, B claims it: A's late (duplicated) reports
/// are refused.
pub async fn operator_retry_then_reclaim<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_operator"), "a", LONG_LEASE, t0()).await;
    assert_eq!(
        finish(&store, a.id, a.fence, Outcome::HandBack, at(1)).await,
        vec![a.id]
    );
    let a2 = reclaim(&store, &a, "a", at(2)).await;
    complete_as(&store, &a2, at(3)).await;
    store
        .job_retry(JobRetryParams {
            id: a.id,
            now: at(4),
        })
        .await
        .expect("job_retry");
    let b = reclaim(&store, &a2, "b", at(5)).await;
    assert_eq!(b.attempt, a2.attempt + 1);
    assert_fenced_off(&store, a.id, a.fence, at(6)).await;
    assert_fenced_off(&store, a.id, a2.fence, at(6)).await;
    complete_as(&store, &b, at(7)).await;
}

/// Once a lease has ended (`lease_expires_at <= now`), the holder's finish, progress and lease
/// extension are refused even before the rescuer runs; the rescuer still finishes the job.
/// Before the end they apply.
pub async fn lapsed_lease_refuses_reports<S: Store>(store: Arc<S>) {
    let a = running_leased(&store, job("fence_lapse"), "a", 30, t0()).await;
    assert!(
        store
            .job_progress(progress(a.id, a.fence, at(29)))
            .await
            .expect("job_progress"),
        "progress within the lease applies"
    );
    let before = get(&store, a.id).await;
    for now in [at(30), at(31)] {
        assert_fenced_off(&store, a.id, a.fence, now).await;
    }
    assert_eq!(get(&store, a.id).await, before);

    let lost = Outcome::Retry {
        error: attempt_error(1, at(31), "worker lost"),
        run_at: at(40),
    };
    assert_eq!(
        rescue(&store, a.id, a.fence, lost, at(31)).await,
        vec![a.id],
        "the rescuer still finishes a lapsed lease"
    );
    let row = get(&store, a.id).await;
    assert_eq!(row.state, JobState::Retryable);
    assert_eq!(row.lease_expires_at, None);
}

/// A lease extended in time keeps the holder's reports valid past the first end; a job held
/// without a lease (by its worker's heartbeat) accepts reports whenever they come.
pub async fn lease_rule_spares_live_and_unleased_jobs<S: Store>(store: Arc<S>) {
    let leased = running_leased(&store, job("fence_extended"), "a", 30, t0()).await;
    assert!(extend(&store, leased.id, leased.fence, 60, at(29))
        .await
        .is_some());
    complete_as(&store, &leased, at(80)).await;

    let held = crate::fixture::running(&store, "fence_unleased", t0()).await;
    assert_eq!(held.lease_expires_at, None);
    assert!(store
        .job_progress(progress(held.id, held.fence, at(100_000)))
        .await
        .expect("job_progress"));
    complete_as(&store, &held, at(100_000)).await;
}
