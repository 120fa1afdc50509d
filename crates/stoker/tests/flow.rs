//! Flow control (issue 16) in the worker runtime, on both stores: a concurrency limit holds
//! across a worker's slots, `ctx.rate_limited` snoozes without an attempt and holds the key
//! back, and every slot is given back when the jobs end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker::{
    AttemptResult, EnqueueOptions, JobError, JobState, LimitKey, LimitSpec, Rate, Store, Worker,
    WorkerBuilder,
};

use common::wait_events;

const WAIT: Duration = Duration::from_secs(30);

fn worker(store: &Arc<dyn Store>) -> WorkerBuilder {
    Worker::builder(Arc::clone(store))
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(5))
}

fn limit(name: &str, kind: &str) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        queue: None,
        kind: Some(kind.into()),
        key: LimitKey::Global,
        rate: None,
        concurrency: None,
        fair: None,
        quota: None,
    }
}

/// Eight slots, a limit of two: never more than two of the kind run at once, all complete,
/// and the limiter ends with nothing running.
async fn concurrency_limit_holds_across_slots(store: Arc<dyn Store>) {
    let client = stoker::Client::new(Arc::clone(&store));
    let mut spec = limit("two", "slow");
    spec.concurrency = Some(2);
    client.limit_set(spec).await.unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let handle = worker(&store)
        .queue("default", 8)
        .handler_fn("slow", move |_args, _ctx| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(json!(null))
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut events = handle.events();
    for _ in 0..10 {
        client
            .enqueue_raw("slow", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
    }
    let seen = wait_events(&mut events, 10, WAIT, |e| e.kind == "slow").await;
    assert!(seen.iter().all(|e| e.result == AttemptResult::Completed));
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    handle.shutdown().await;
    let usage = client.limit_usage().await.unwrap();
    assert!(usage.iter().all(|u| u.running == 0), "{usage:?}");
    assert_eq!(client.limit_reconcile().await.unwrap(), 0);
}

/// A handler told "429" by its provider: the job is snoozed without using an attempt, the
/// job runs again after the push-back and completes on its first attempt.
async fn rate_limited_snoozes_without_an_attempt(store: Arc<dyn Store>) {
    let client = stoker::Client::new(Arc::clone(&store));
    let mut spec = limit("provider", "call");
    spec.rate = Some(Rate {
        count: 1000,
        period_ms: 1000,
        burst: 10,
    });
    client.limit_set(spec).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let handle = worker(&store)
        .queue("default", 2)
        .handler_fn("call", move |_args, ctx| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(ctx
                        .rate_limited("provider", Duration::from_millis(300))
                        .await);
                }
                Ok(json!(ctx.attempt()))
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut events = handle.events();
    let job = client
        .enqueue_raw("call", json!({}), EnqueueOptions::new().max_attempts(1))
        .await
        .unwrap();
    let first = wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
    assert_eq!(first[0].result, AttemptResult::Snoozed);
    let second = wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
    assert_eq!(second[0].result, AttemptResult::Completed);
    let row = client.get(job.id).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.attempt, 1, "the 429 used no attempt");
    handle.shutdown().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_limit_holds_across_slots() {
        super::concurrency_limit_holds_across_slots(crate::common::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limited_snoozes_without_an_attempt() {
        super::rate_limited_snoozes_without_an_attempt(crate::common::sqlite().await).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    async fn concurrency_limit_holds_across_slots() {
        super::concurrency_limit_holds_across_slots(crate::common::postgres().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    async fn rate_limited_snoozes_without_an_attempt() {
        super::rate_limited_snoozes_without_an_attempt(crate::common::postgres().await).await;
    }
}
