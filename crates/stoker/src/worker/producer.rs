//! One producer per queue: claims due jobs in batches sized to the free slots.

use std::sync::Arc;
use std::time::Duration;

use stoker_core::JobClaimParams;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{executor, Runtime};

/// The pause after a failed claim, doubling up to [`CLAIM_RETRY_MAX`].
const CLAIM_RETRY_MIN: Duration = Duration::from_millis(100);
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(5);

pub(crate) async fn run(runtime: Arc<Runtime>, queue: String, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let waker = Arc::clone(&runtime.wakers[&queue]);
    let stop = runtime.stop_fetching.clone();
    // Fetch at once on start; afterwards only when woken (by a store event, or by the
    // heartbeat finding due jobs) or when the last claim came back full (there is probably
    // more waiting). An idle producer sends nothing: the heartbeat polls for it.
    let mut fetch_now = true;
    let mut retry_delay = CLAIM_RETRY_MIN;
    let mut last_claim = tokio::time::Instant::now();
    // Flow control (issue 16): when a rate limit held jobs back, the instant its next token
    // is due; the producer claims again then rather than waiting for a poll.
    let mut limited_until: Option<tokio::time::Instant> = None;
    loop {
        if !fetch_now {
            let limited = async {
                match limited_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = waker.notified() => {}
                () = limited => {}
                () = stop.cancelled() => return,
            }
            limited_until = None;
        }
        // Wait for one free slot, then take every other free one: one claim fills them all.
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
        take_free(&slots, &mut permits);
        // A busy queue frees slots one job at a time: claiming for each would cost a statement
        // per job. With fewer than half the slots free, wait (at most the cooldown, counted
        // from when the last claim came back) for the rest to free up, so they share one
        // claim. Short jobs all free up within that wait and the next claim is a full one;
        // without it, a claim sent the moment a few slots were free would go out half empty
        // and halve the drain rate.
        if permits.len() < concurrency.div_ceil(2) {
            let ready = last_claim + runtime.config.fetch_cooldown;
            if ready > tokio::time::Instant::now() {
                let rest = u32::try_from(concurrency - permits.len()).unwrap_or(u32::MAX);
                tokio::select! {
                    all = Arc::clone(&slots).acquire_many_owned(rest) => match all {
                        Ok(mut all) => {
                            // One permit per job: each frees its slot when its job ends.
                            while let Some(one) = all.split(1) {
                                permits.push(one);
                            }
                        }
                        Err(_) => return,
                    },
                    () = tokio::time::sleep_until(ready) => {}
                    () = stop.cancelled() => return,
                }
                take_free(&slots, &mut permits);
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let limit = permits.len();
        let claimed = runtime
            .config
            .store
            .job_claim(JobClaimParams {
                queue: queue.clone(),
                kinds: runtime.config.claim_kinds.clone(),
                limit: limit as u32,
                worker_id: runtime.id.clone(),
                now: runtime.config.clock.now(),
                // The worker's heartbeat holds its jobs, not a lease per job.
                lease: None,
            })
            .await;
        last_claim = tokio::time::Instant::now();
        match claimed {
            Ok(jobs) => {
                retry_delay = CLAIM_RETRY_MIN;
                fetch_now = jobs.len() == limit;
                if !fetch_now {
                    limited_until = runtime
                        .config
                        .store
                        .limit_wake_at(&queue)
                        .and_then(|at| (at - runtime.config.clock.now()).to_std().ok())
                        .map(|wait| tokio::time::Instant::now() + wait);
                }
                if let Some((history, _)) = &runtime.config.history {
                    history.record_started(&jobs);
                }
                // Live events (issue 13): one send per claim, only while somebody listens.
                runtime
                    .config
                    .client
                    .publish_claimed(&jobs, runtime.config.clock.now())
                    .await;
                for (job, permit) in jobs.into_iter().zip(permits.drain(..)) {
                    executor::spawn(&runtime, job, permit);
                }
            }
            Err(err) => {
                tracing::warn!(%queue, %err, "claiming jobs failed; retrying");
                fetch_now = false;
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(retry_delay) => {}
                    () = stop.cancelled() => return,
                }
                retry_delay = (retry_delay * 2).min(CLAIM_RETRY_MAX);
            }
        }
    }
}

/// Takes every slot that is free right now.
fn take_free(slots: &Arc<Semaphore>, permits: &mut Vec<OwnedSemaphorePermit>) {
    while let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        permits.push(permit);
    }
}
