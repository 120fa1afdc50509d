//! [`Store::subscribe`]: the events that wake workers. Skipped, with the reason printed, for a
//! store that delivers none.

use std::sync::Arc;
use std::time::Duration;

use stoker_core::{
    JobCancelParams, JobInsert, JobRetryManyParams, JobRetryParams, JobState, Outcome, QueueParams,
    Store, StoreEvent,
};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::fixture::{at, attempt_error, finish, insert, job_in, running_job, t0};

/// How long an event may take to arrive (PostgreSQL delivers through a listener connection).
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribes, or prints why the behaviour is skipped and returns `None`.
fn subscribe<S: Store>(store: &Arc<S>, behaviour: &str) -> Option<broadcast::Receiver<StoreEvent>> {
    let receiver = store.subscribe();
    if receiver.is_none() {
        eprintln!(
            "skipped events::{behaviour}: the {} store delivers no events (subscribe() is None)",
            store.name()
        );
    }
    receiver
}

/// Waits until every event in `wanted` has arrived, skipping others; panics if they do not all
/// come in time.
async fn expect_events(
    receiver: &mut broadcast::Receiver<StoreEvent>,
    mut wanted: Vec<StoreEvent>,
) {
    let wait = async {
        while !wanted.is_empty() {
            match receiver.recv().await {
                Ok(event) => wanted.retain(|w| *w != event),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Err("the event channel closed"),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(EVENT_TIMEOUT, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => panic!("{why} while waiting for {wanted:?}"),
        Err(_) => panic!("still waiting for {wanted:?} after {EVENT_TIMEOUT:?}"),
    }
}

/// Waits for `wanted`, skipping other events.
async fn expect_event(receiver: &mut broadcast::Receiver<StoreEvent>, wanted: StoreEvent) {
    expect_events(receiver, vec![wanted]).await;
}

/// Throws away events already delivered, so the next wait sees only what follows.
fn drain(receiver: &mut broadcast::Receiver<StoreEvent>) {
    loop {
        match receiver.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

fn available(queue: &str) -> StoreEvent {
    StoreEvent::JobsAvailable {
        queue: queue.to_owned(),
    }
}

/// An insert sends `JobsAvailable` for each queue that got jobs.
pub async fn insert_sends_jobs_available<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "insert_sends_jobs_available") else {
        return;
    };
    insert(
        &store,
        vec![
            job_in("ev-a", "k"),
            job_in("ev-b", "k"),
            job_in("ev-a", "k"),
        ],
        t0(),
    )
    .await;
    expect_events(&mut events, vec![available("ev-a"), available("ev-b")]).await;
    insert(&store, vec![job_in("ev-c", "k")], t0()).await;
    expect_event(&mut events, available("ev-c")).await;
}

/// Staging sends `JobsAvailable` for each queue that got jobs out of the schedule, and an
/// insert of jobs scheduled for later sends none.
pub async fn stage_sends_jobs_available<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "stage_sends_jobs_available") else {
        return;
    };
    let later = |queue: &str| JobInsert {
        run_at: Some(at(60)),
        ..job_in(queue, "k")
    };
    insert(&store, vec![later("ev-stage-a"), later("ev-stage-b")], t0()).await;
    // The marker insert's event comes after any the scheduled insert sent.
    insert(&store, vec![job_in("ev-stage-marker", "k")], t0()).await;
    let marker = available("ev-stage-marker");
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if event == marker => return,
                Ok(event) => assert!(
                    event != available("ev-stage-a") && event != available("ev-stage-b"),
                    "an insert of scheduled jobs sent {event:?}"
                ),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    tokio::time::timeout(EVENT_TIMEOUT, wait)
        .await
        .expect("the marker's event in time");

    assert_eq!(crate::fixture::stage(&store, at(60)).await, 2);
    expect_events(
        &mut events,
        vec![available("ev-stage-a"), available("ev-stage-b")],
    )
    .await;
}

/// Retrying a job sends `JobsAvailable` for its queue.
pub async fn retry_sends_jobs_available<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "retry_sends_jobs_available") else {
        return;
    };
    let job = running_job(&store, job_in("ev-retry", "k"), t0()).await;
    expect_event(&mut events, available("ev-retry")).await;
    finish(
        &store,
        job.id,
        1,
        Outcome::Completed { result: None },
        at(1),
    )
    .await;
    drain(&mut events);

    store
        .job_retry(JobRetryParams {
            id: job.id,
            now: at(2),
        })
        .await
        .expect("job_retry");
    expect_event(&mut events, available("ev-retry")).await;
}

/// A bulk retry sends `JobsAvailable` for each queue that got jobs back, and none for a queue
/// whose finished jobs it left alone.
pub async fn retry_many_sends_jobs_available<S: Store>(store: Arc<S>) {
    let Some(mut events) = subscribe(&store, "retry_many_sends_jobs_available") else {
        return;
    };
    for queue in ["ev-many-a", "ev-many-b", "ev-many-c"] {
        let job = running_job(&store, job_in(queue, "k"), t0()).await;
        let outcome = if queue == "ev-many-c" {
            Outcome::Completed { result: None }
        } else {
            Outcome::Discard {
                error: attempt_error(1, at(1), "fatal"),
            }
        };
        finish(&store, job.id, 1, outcome, at(1)).await;
    }
    expect_events(
        &mut events,
        vec![
            available("ev-many-a"),
            available("ev-many-b"),
            available("ev-many-c"),
        ],
    )
    .await;
    drain(&mut events);

    let retried = store
        .job_retry_many(JobRetryManyParams {
            states: vec![JobState::Discarded],
            queues: Vec::new(),
            kinds: Vec::new(),
            tenant: None,
            limit: 10,
            now: at(2),
        })
        .await
        .expect("job_retry_many");
    assert_eq!(retried, 2);
    expect_events(
        &mut events,
        vec![available("ev-many-a"), available("ev-many-b")],
    )
    .await;

    // A later event proves nothing for ev-many-c was sent in between: events of one store
    // arrive in the order they were sent.
    store
        .queue_resume(QueueParams {
            queue: "ev-many-d".into(),
            now: at(3),
        })
        .await
        .expect("queue_resume");
    let wait = async {
        loop {
            match events.recv().await {
                Ok(StoreEvent::JobsAvailable { queue }) if queue == "ev-many-d" => return,
                Ok(StoreEvent::JobsAvailable { queue }) if queue == "ev-many-c" => {
                    panic!("JobsAvailable for a queue that got no job back")
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    tokio::time::timeout(EVENT_TIMEOUT, wait)
        .await
        .expect("JobsAvailable for the resumed queue");
}

/// Resuming a queue sends `JobsAvailable` for it.
pub async fn resume_sends_jobs_available<S: Store>(store: Arc<S>) {
    let queue = |secs| QueueParams {
        queue: "ev-resume".into(),
        now: at(secs),
    };
    store.queue_pause(queue(1)).await.expect("queue_pause");
    let Some(mut events) = subscribe(&store, "resume_sends_jobs_available") else {
        return;
    };
    store.queue_resume(queue(2)).await.expect("queue_resume");
    expect_event(&mut events, available("ev-resume")).await;
}

/// Cancelling a running job sends `JobCancelRequested` for it.
pub async fn cancel_running_sends_cancel_requested<S: Store>(store: Arc<S>) {
    let job = running_job(&store, job_in("ev-cancel", "k"), t0()).await;
    let Some(mut events) = subscribe(&store, "cancel_running_sends_cancel_requested") else {
        return;
    };
    store
        .job_cancel(JobCancelParams {
            id: job.id,
            now: at(1),
        })
        .await
        .expect("job_cancel");
    expect_event(&mut events, StoreEvent::JobCancelRequested { id: job.id }).await;
}
