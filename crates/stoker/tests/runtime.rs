//! The worker runtime and client, end to end, against every store.
//!
//! Each scenario is written once, generic over the store, and expanded into one test per store
//! by `scenario_tests!`. The PostgreSQL tests are ignored, with the reason shown, when
//! `STOKER_TEST_DATABASE_URL` is unset.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stoker::core::JobClaimParams;
use stoker::maintenance::{RescuerConfig, StagerConfig};
use stoker::{
    AttemptResult, Backoff, Client, EnqueueOptions, Error, ErrorKind, InvalidInput, Job,
    JobContext, JobError, JobFilter, JobState, NewJob, Priority, Store, Worker, WorkerBuilder,
};
use tokio::sync::{mpsc, oneshot};

use common::wait_events;

const WAIT: Duration = Duration::from_secs(20);

/// A worker tuned for tests: quick polls and heartbeats, short grace periods.
fn worker(store: &Arc<dyn Store>) -> WorkerBuilder {
    Worker::builder(Arc::clone(store))
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(5))
        .cancel_grace(Duration::from_millis(500))
}

fn client(store: &Arc<dyn Store>) -> Client {
    Client::new(Arc::clone(store))
}

#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Job for Add {
    const KIND: &'static str = "add";
    type Output = i64;

    fn validate(&self) -> Result<(), InvalidInput> {
        if self.a < 0 {
            return Err(InvalidInput::new("a", "must not be negative"));
        }
        Ok(())
    }

    async fn perform(self, _ctx: JobContext) -> Result<i64, JobError> {
        Ok(self.a + self.b)
    }
}

/// Fails its first `fail_times` attempts, then returns the attempt it succeeded on.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    fail_times: i32,
}

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type Output = i32;

    fn backoff(_attempt: i32) -> Duration {
        Duration::from_millis(10)
    }

    async fn perform(self, ctx: JobContext) -> Result<i32, JobError> {
        if ctx.attempt() <= self.fail_times {
            return Err(JobError::retryable(format!(
                "boom on attempt {}",
                ctx.attempt()
            )));
        }
        Ok(ctx.attempt())
    }
}

/// Sleeps far longer than any test, unless its per-kind timeout stops it.
#[derive(Debug, Serialize, Deserialize)]
struct Slow;

impl Job for Slow {
    const KIND: &'static str = "slow";
    const MAX_ATTEMPTS: i32 = 1;
    type Output = ();

    fn timeout() -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    async fn perform(self, _ctx: JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(())
    }
}

/// Waits for cancellation and says so; announces that it started on a channel.
fn park_until_cancelled(
    started: mpsc::UnboundedSender<i64>,
) -> impl Fn(
    Value,
    JobContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, JobError>> + Send>>
       + Send
       + Sync
       + 'static {
    move |_args, ctx| {
        let started = started.clone();
        Box::pin(async move {
            let _ = started.send(ctx.id().0);
            ctx.cancelled().await;
            Err(JobError::retryable("stopped because it was cancelled"))
        })
    }
}

mod scenarios {
    use super::*;

    pub async fn typed_job_runs_and_stores_result(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 4)
            .register::<Add>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client.enqueue(Add { a: 2, b: 3 }).await.unwrap();
        assert!(!job.duplicate);
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(row.result, Some(json!(5)));
        assert_eq!(row.attempt, 1);
        assert_eq!(row.worker_id.as_deref(), Some(handle.id()));
        assert!(row.finished_at.is_some() && row.attempted_at.is_some());
        handle.shutdown().await;
    }

    pub async fn dynamic_handler_and_registry_kinds(store: Arc<dyn Store>) {
        let worker = worker(&store)
            .queue("default", 2)
            .register::<Add>()
            .handler_fn("upper", |args: Value, _ctx| async move {
                let text = args["text"]
                    .as_str()
                    .ok_or_else(|| JobError::fatal("text must be a string"))?;
                Ok(json!(text.to_uppercase()))
            })
            .build()
            .unwrap();
        assert_eq!(worker.kinds(), vec!["add", "upper"]);
        let handle = worker.start().await.unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let ok = client
            .enqueue_raw("upper", json!({"text": "hi"}), EnqueueOptions::new())
            .await
            .unwrap();
        let bad = client
            .enqueue_raw("upper", json!({"text": 7}), EnqueueOptions::new())
            .await
            .unwrap();
        wait_events(&mut events, 2, WAIT, |e| e.id == ok.id || e.id == bad.id).await;
        assert_eq!(
            client.get(ok.id).await.unwrap().unwrap().result,
            Some(json!("HI"))
        );
        let bad = client.get(bad.id).await.unwrap().unwrap();
        assert_eq!(bad.state, JobState::Discarded);
        assert_eq!(bad.errors[0].message, "text must be a string");
        handle.shutdown().await;
    }

    pub async fn unknown_kind_is_dead_lettered_then_retried_once_handled(store: Arc<dyn Store>) {
        let client = client(&store);
        let job = client
            .enqueue_raw("mystery", json!({}), EnqueueOptions::new().max_attempts(2))
            .await
            .unwrap();
        let without_handler = worker(&store)
            .queue("default", 2)
            .register::<Add>()
            .build()
            .unwrap();
        // The job is already queued: subscribe before starting so its first attempt is seen.
        let mut events = without_handler.events();
        let handle = without_handler.start().await.unwrap();

        // First attempt fails and follows the retry path...
        let first = wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        assert_eq!(first[0].result, AttemptResult::Retried);
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Retryable);
        assert_eq!(row.errors[0].kind, ErrorKind::NoHandler);
        assert_eq!(
            row.errors[0].message,
            "no handler registered for kind \"mystery\""
        );
        assert!(
            row.run_at > row.attempted_at.unwrap(),
            "retry waits for its backoff"
        );

        // ...the last one ends in the dead-letter state, where it can be seen.
        client.retry(job.id).await.unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Discarded);
        assert_eq!(row.errors.len(), 2);
        let dead = client
            .list(&JobFilter::new().state(JobState::Discarded))
            .await
            .unwrap();
        assert_eq!(
            dead.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![job.id]
        );
        handle.shutdown().await;

        // Once a worker has a handler, a retry runs it.
        let handle = worker(&store)
            .queue("default", 2)
            .handler_fn("mystery", |_args, _ctx| async { Ok(json!("solved")) })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        client.retry(job.id).await.unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(row.result, Some(json!("solved")));
        assert_eq!(row.errors.len(), 2, "the error history is kept");
        handle.shutdown().await;
    }

    pub async fn retries_with_backoff_then_completes(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .register::<Flaky>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client.enqueue(Flaky { fail_times: 2 }).await.unwrap();
        let seen = wait_events(&mut events, 3, WAIT, |e| e.id == job.id).await;
        let results: Vec<_> = seen.iter().map(|e| e.result).collect();
        assert_eq!(
            results,
            vec![
                AttemptResult::Retried,
                AttemptResult::Retried,
                AttemptResult::Completed
            ]
        );
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(row.result, Some(json!(3)));
        let history: Vec<_> = row
            .errors
            .iter()
            .map(|e| (e.attempt, e.message.as_str()))
            .collect();
        assert_eq!(
            history,
            vec![(1, "boom on attempt 1"), (2, "boom on attempt 2")]
        );
        handle.shutdown().await;
    }

    pub async fn exhausted_attempts_end_discarded_with_history(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .register::<Flaky>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client
            .enqueue_with(
                Flaky { fail_times: 100 },
                EnqueueOptions::new().max_attempts(3),
            )
            .await
            .unwrap();
        let seen = wait_events(&mut events, 3, WAIT, |e| e.id == job.id).await;
        assert_eq!(seen[2].result, AttemptResult::Discarded);
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Discarded);
        assert_eq!(row.attempt, 3);
        assert_eq!(
            row.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(row.finished_at.is_some());
        handle.shutdown().await;
    }

    pub async fn fatal_error_discards_at_once(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .handler_fn("strict", |_args, _ctx| async {
                Err(JobError::fatal("the account is closed"))
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client
            .enqueue_raw("strict", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Discarded);
        assert_eq!(row.attempt, 1);
        assert_eq!(row.errors[0].message, "the account is closed");
        handle.shutdown().await;
    }

    pub async fn snooze_does_not_use_an_attempt(store: Arc<dyn Store>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let handle = worker(&store)
            .queue("default", 2)
            .handler_fn("sleepy", move |_args, ctx| {
                let counter = Arc::clone(&counter);
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Err(JobError::snooze(Duration::from_millis(20)));
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
        let client = client(&store);
        let job = client
            .enqueue_raw("sleepy", json!({}), EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        let seen = wait_events(&mut events, 3, WAIT, |e| e.id == job.id).await;
        assert_eq!(
            seen.iter().map(|e| e.result).collect::<Vec<_>>(),
            vec![
                AttemptResult::Snoozed,
                AttemptResult::Snoozed,
                AttemptResult::Completed
            ]
        );
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(row.attempt, 1, "snoozes used no attempt");
        assert_eq!(row.result, Some(json!(1)));
        assert!(row.errors.is_empty());
        handle.shutdown().await;
    }

    pub async fn panic_is_a_failed_attempt_with_backtrace(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .handler_fn("explode", |_args, _ctx| async {
                if true {
                    panic!("the flux capacitor melted");
                }
                Ok(Value::Null)
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client
            .enqueue_raw("explode", json!({}), EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Discarded);
        let error = &row.errors[0];
        assert_eq!(error.kind, ErrorKind::Panic);
        assert_eq!(error.message, "panicked: the flux capacitor melted");
        let backtrace = error.backtrace.as_deref().expect("a backtrace");
        assert!(!backtrace.is_empty());
        // The worker survived: it still runs jobs.
        let next = client
            .enqueue_raw("explode", json!({}), EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == next.id).await;
        handle.shutdown().await;
    }

    pub async fn timeouts_per_kind_and_per_job(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 4)
            .register::<Slow>()
            .handler_fn("stall", |_args, _ctx| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(Value::Null)
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let per_kind = client.enqueue(Slow).await.unwrap();
        let per_job = client
            .enqueue_raw(
                "stall",
                json!({}),
                EnqueueOptions::new()
                    .timeout(Duration::from_millis(150))
                    .max_attempts(1),
            )
            .await
            .unwrap();
        wait_events(&mut events, 2, WAIT, |e| {
            e.id == per_kind.id || e.id == per_job.id
        })
        .await;
        for (id, limit) in [(per_kind.id, "100ms"), (per_job.id, "150ms")] {
            let row = client.get(id).await.unwrap().unwrap();
            assert_eq!(row.state, JobState::Discarded);
            assert_eq!(row.errors[0].kind, ErrorKind::Timeout);
            assert_eq!(row.errors[0].message, format!("timed out after {limit}"));
        }
        handle.shutdown().await;
    }

    pub async fn cancel_waiting_and_running_jobs(store: Arc<dyn Store>) {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let handle = worker(&store)
            .queue("default", 2)
            .handler_fn("park", park_until_cancelled(started_tx))
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);

        let waiting = client
            .enqueue_raw(
                "park",
                json!({}),
                EnqueueOptions::new().delay(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        let row = client.cancel(waiting.id).await.unwrap();
        assert_eq!(row.state, JobState::Cancelled);
        assert!(row.finished_at.is_some());

        let running = client
            .enqueue_raw("park", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        assert_eq!(started.recv().await, Some(running.id.0));
        let row = client.cancel(running.id).await.unwrap();
        assert_eq!(row.state, JobState::Running);
        assert!(row.cancel_requested_at.is_some());
        let seen = wait_events(&mut events, 1, WAIT, |e| e.id == running.id).await;
        assert_eq!(seen[0].result, AttemptResult::Cancelled);
        let row = client.get(running.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Cancelled);
        assert_eq!(row.errors[0].kind, ErrorKind::Cancelled);
        handle.shutdown().await;
    }

    pub async fn progress_is_visible_while_running(store: Arc<dyn Store>) {
        let (reported_tx, mut reported) = mpsc::unbounded_channel::<()>();
        let (release_tx, release) = oneshot::channel::<()>();
        let release = Arc::new(Mutex::new(Some(release)));
        let handle = worker(&store)
            .queue("default", 1)
            .handler_fn("import", move |_args, ctx| {
                let reported_tx = reported_tx.clone();
                let release = release.lock().unwrap().take();
                async move {
                    ctx.progress(0.5, Some("halfway through rows".to_owned()))
                        .await
                        .map_err(JobError::retryable)?;
                    let _ = reported_tx.send(());
                    if let Some(release) = release {
                        let _ = release.await;
                    }
                    assert!(
                        ctx.progress(1.5, None).await.is_err(),
                        "fractions above 1 are refused"
                    );
                    Ok(json!("imported"))
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client
            .enqueue_raw("import", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        reported.recv().await.unwrap();
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Running);
        let progress = row.progress.expect("progress");
        assert_eq!(progress.fraction, 0.5);
        assert_eq!(progress.message.as_deref(), Some("halfway through rows"));
        release_tx.send(()).unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(
            row.progress.unwrap().fraction,
            0.5,
            "the last report is kept"
        );
        handle.shutdown().await;
    }

    /// A failed attempt of a job enqueued with its own backoff waits by it (a fixed 1,000 s),
    /// not by its kind's (the default, about 2 s).
    pub async fn a_jobs_own_backoff_overrides_its_kinds(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 1)
            .handler_fn("flaky", |_args, _ctx| async move {
                Err::<Value, _>(JobError::retryable("upstream down"))
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let own = Backoff {
            base: Duration::from_secs(1000),
            factor: 1.0,
            max: Duration::from_secs(1000),
            jitter: 0.0,
        };
        let job = client
            .enqueue_raw("flaky", json!({}), EnqueueOptions::new().backoff(own))
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Retryable);
        assert_eq!(row.backoff, Some(own.into()));
        let wait = (row.run_at - row.errors[0].at).num_microseconds().unwrap();
        assert!(
            (999_999_999..=1_000_000_000).contains(&wait),
            "waits by the job's own backoff: {wait} µs"
        );
        let bad = client
            .enqueue_raw(
                "flaky",
                json!({}),
                EnqueueOptions::new().backoff(Backoff { factor: 0.5, ..own }),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&bad, Error::Invalid(input) if input.field == "backoff.factor"),
            "{bad}"
        );
        handle.shutdown().await;
    }

    /// A handler's progress carries JSON details, kept with the fraction; details over the
    /// limit are refused and change nothing.
    pub async fn progress_carries_details(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 1)
            .handler_fn("import", |_args, ctx: JobContext| async move {
                ctx.progress_with(0.25, Some("rows".to_owned()), json!({"rows": 12}))
                    .await
                    .map_err(JobError::retryable)?;
                let huge = json!({"blob": "x".repeat(70 * 1024)});
                match ctx.progress_with(0.5, None, huge).await {
                    Err(Error::Invalid(input)) if input.field == "details" => {}
                    other => return Err(JobError::fatal(format!("expected a refusal: {other:?}"))),
                }
                Ok(json!("imported"))
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let job = client
            .enqueue_raw("import", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed, "{:?}", row.errors);
        let progress = row.progress.expect("progress");
        assert_eq!(progress.fraction, 0.25);
        assert_eq!(progress.details, Some(json!({"rows": 12})));
        handle.shutdown().await;
    }

    pub async fn follow_up_jobs_inherit_lineage(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .register::<Add>()
            .handler_fn("parent", |_args, ctx| async move {
                let child = ctx
                    .enqueue(Add { a: 1, b: 1 })
                    .await
                    .map_err(JobError::retryable)?;
                Ok(json!(child.id))
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let parent = client
            .enqueue_raw(
                "parent",
                json!({}),
                EnqueueOptions::new()
                    .correlation_id("req-42")
                    .tenant("acme")
                    .tag("signup"),
            )
            .await
            .unwrap();
        wait_events(&mut events, 2, WAIT, |_| true).await;
        let parent_row = client.get(parent.id).await.unwrap().unwrap();
        let child_id = stoker::JobId(parent_row.result.unwrap().as_i64().unwrap());
        let child = client.get(child_id).await.unwrap().unwrap();
        assert_eq!(child.metadata.correlation_id.as_deref(), Some("req-42"));
        assert_eq!(child.metadata.parent_id, Some(parent.id));
        assert_eq!(child.tenant.as_deref(), Some("acme"));
        assert_eq!(child.state, JobState::Completed);
        assert_eq!(child.result, Some(json!(2)));
        handle.shutdown().await;
    }

    pub async fn priority_then_run_time_order(store: Arc<dyn Store>) {
        let client = client(&store);
        client.pause("ordered").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&order);
        let handle = worker(&store)
            .queue("ordered", 1)
            .handler_fn("note", move |args, _ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(args["name"].as_str().unwrap().to_owned());
                    Ok(Value::Null)
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let opts = |p: Priority| EnqueueOptions::new().queue("ordered").priority(p);
        let jobs = client
            .enqueue_many([
                NewJob::raw("note", json!({"name": "low"}), opts(Priority::LOW)),
                NewJob::raw("note", json!({"name": "normal-1"}), opts(Priority::NORMAL)),
                NewJob::raw(
                    "note",
                    json!({"name": "critical"}),
                    opts(Priority::CRITICAL),
                ),
                NewJob::raw("note", json!({"name": "normal-2"}), opts(Priority::NORMAL)),
                NewJob::raw("note", json!({"name": "high"}), opts(Priority::HIGH)),
            ])
            .await
            .unwrap();
        assert_eq!(jobs.len(), 5);
        client.resume("ordered").await.unwrap();
        wait_events(&mut events, 5, WAIT, |_| true).await;
        assert_eq!(
            *order.lock().unwrap(),
            vec!["critical", "high", "normal-1", "normal-2", "low"]
        );
        handle.shutdown().await;
    }

    pub async fn pause_and_resume_are_honoured_by_a_running_worker(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 4)
            .register::<Add>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        client.pause("default").await.unwrap();
        assert!(client
            .queues()
            .await
            .unwrap()
            .iter()
            .any(|q| q.name == "default" && q.paused));
        let jobs = client
            .enqueue_many((0..5).map(|n| NewJob::new(Add { a: n, b: 0 })))
            .await
            .unwrap();
        // Absence can only be shown by waiting: ten poll intervals with nothing claimed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = client.stats().await.unwrap();
        assert_eq!(
            stats.queues["default"].available, 5,
            "a paused queue is not fetched"
        );
        client.resume("default").await.unwrap();
        wait_events(&mut events, 5, WAIT, |e| jobs.iter().any(|j| j.id == e.id)).await;
        assert_eq!(client.stats().await.unwrap().queues["default"].completed, 5);
        handle.shutdown().await;
    }

    pub async fn graceful_shutdown_lets_running_jobs_finish(store: Arc<dyn Store>) {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let handle = worker(&store)
            .queue("default", 3)
            .handler_fn("brief", move |_args, ctx| {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(ctx.id());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(json!("finished"))
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let client = client(&store);
        let jobs = client
            .enqueue_many((0..3).map(|_| NewJob::raw("brief", json!({}), EnqueueOptions::new())))
            .await
            .unwrap();
        for _ in 0..3 {
            started.recv().await.unwrap();
        }
        let report = handle.shutdown().await;
        assert_eq!(report.cancelled_at_deadline, 0);
        for job in jobs {
            let row = client.get(job.id).await.unwrap().unwrap();
            assert_eq!(
                row.state,
                JobState::Completed,
                "acknowledgements were flushed on shutdown"
            );
        }
        assert!(
            client.workers().await.unwrap().is_empty(),
            "the worker deregistered"
        );
    }

    pub async fn graceful_shutdown_hands_jobs_back(store: Arc<dyn Store>) {
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let stubborn_started = started_tx.clone();
        let handle = worker(&store)
            .queue("default", 4)
            .shutdown_grace(Duration::from_millis(200))
            .handler_fn("park", park_until_cancelled(started_tx))
            .handler_fn("stubborn", move |_args, ctx| {
                let started = stubborn_started.clone();
                async move {
                    let _ = started.send(ctx.id().0);
                    // Ignores cancellation: only the hard stop gets it back.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok(Value::Null)
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let client = client(&store);
        let mut jobs = client
            .enqueue_many((0..2).map(|_| NewJob::raw("park", json!({}), EnqueueOptions::new())))
            .await
            .unwrap();
        jobs.push(
            client
                .enqueue_raw("stubborn", json!({}), EnqueueOptions::new())
                .await
                .unwrap(),
        );
        for _ in 0..3 {
            started.recv().await.unwrap();
        }
        let report = handle.shutdown().await;
        assert_eq!(report.cancelled_at_deadline, 3);
        for job in jobs {
            let row = client.get(job.id).await.unwrap().unwrap();
            assert_eq!(row.state, JobState::Available, "handed back to the queue");
            assert_eq!(row.attempt, 0, "without using up an attempt");
            assert!(row.errors.is_empty());
        }
    }

    pub async fn rescues_jobs_of_a_dead_worker(store: Arc<dyn Store>) {
        let client = client(&store);
        let job = client.enqueue(Flaky { fail_times: 0 }).await.unwrap();
        // A worker that claims the job and dies at once: no heartbeat row, no acknowledgement.
        let claimed = store
            .job_claim(JobClaimParams {
                queue: "default".into(),
                kinds: vec![],
                limit: 10,
                worker_id: "ghost-1-deadbeef".into(),
                now: chrono::Utc::now(),
                lease: None,
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);

        let handle = worker(&store)
            .queue("default", 2)
            .register::<Flaky>()
            .rescuer(RescuerConfig {
                interval: Duration::from_millis(100),
                stale_after: Duration::from_millis(500),
                ..RescuerConfig::default()
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        let row = client.get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Completed);
        assert_eq!(row.attempt, 2);
        assert_eq!(row.errors.len(), 1);
        assert_eq!(row.errors[0].kind, ErrorKind::WorkerLost);
        assert!(
            row.errors[0].message.contains("ghost-1-deadbeef"),
            "{}",
            row.errors[0].message
        );
        handle.shutdown().await;
    }

    pub async fn leader_fails_over_when_it_stops(store: Arc<dyn Store>) {
        let start = || {
            worker(&store)
                .queue("default", 1)
                .register::<Add>()
                .build()
                .unwrap()
        };
        let (a, b) = (start(), start());
        let a = a.start().await.unwrap();
        let b = b.start().await.unwrap();
        let client = client(&store);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(a.is_leader() || b.is_leader()) {
            assert!(tokio::time::Instant::now() < deadline, "nobody was elected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
        assert_eq!(
            client.leader().await.unwrap().unwrap().leader_id,
            leader.id()
        );
        leader.shutdown().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !follower.is_leader() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the follower did not take over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            client.leader().await.unwrap().unwrap().leader_id,
            follower.id()
        );
        follower.shutdown().await;
    }

    pub async fn bad_input_changes_nothing(store: Arc<dyn Store>) {
        let mut registry = stoker::Registry::new();
        registry.register::<Add>().unwrap();
        let client = client(&store)
            .with_registry(Arc::new(registry))
            .max_args_bytes(100);
        fn field<T: std::fmt::Debug>(result: stoker::Result<T>) -> String {
            match result {
                Err(stoker::Error::Invalid(invalid)) => invalid.field,
                other => panic!("expected an invalid-input error, got {other:?}"),
            }
        }
        assert_eq!(field(client.enqueue(Add { a: -1, b: 0 }).await), "a");
        assert_eq!(
            field(
                client
                    .enqueue_raw("add", json!({"a": "two"}), EnqueueOptions::new())
                    .await
            ),
            "args"
        );
        assert_eq!(
            field(
                client
                    .enqueue_raw("", json!({}), EnqueueOptions::new())
                    .await
            ),
            "kind"
        );
        assert_eq!(
            field(
                client
                    .enqueue_raw("x", json!({}), EnqueueOptions::new().queue("has space"))
                    .await
            ),
            "queue"
        );
        assert_eq!(
            field(
                client
                    .enqueue_raw("x", json!({}), EnqueueOptions::new().max_attempts(0))
                    .await
            ),
            "max_attempts"
        );
        assert_eq!(
            field(
                client
                    .enqueue_raw("x", json!({"blob": "x".repeat(200)}), EnqueueOptions::new())
                    .await
            ),
            "args"
        );
        let both = EnqueueOptions::new()
            .delay(Duration::from_secs(1))
            .run_at(chrono::Utc::now());
        assert_eq!(
            field(client.enqueue_raw("x", json!({}), both).await),
            "run_at"
        );
        // One bad job in a batch rejects the batch.
        let batch = client
            .enqueue_many([
                NewJob::new(Add { a: 1, b: 1 }),
                NewJob::raw("x", json!({}), EnqueueOptions::new().queue("bad queue")),
            ])
            .await;
        assert_eq!(field(batch), "queue");
        assert_eq!(
            field(client.list(&JobFilter::new().limit(0)).await),
            "limit"
        );
        assert_eq!(
            field(client.list(&JobFilter::new().limit(1001)).await),
            "limit"
        );
        assert_eq!(
            field(
                client
                    .list(&JobFilter::new().queue("no spaces please"))
                    .await
            ),
            "queue"
        );
        assert_eq!(
            client.stats().await.unwrap().totals.total(),
            0,
            "nothing was written"
        );
        assert!(client
            .list(&JobFilter::new())
            .await
            .unwrap()
            .jobs
            .is_empty());

        let err = Worker::builder(Arc::clone(&store)).build().unwrap_err();
        assert!(err.to_string().contains("no queue"), "{err}");
        let err = Worker::builder(Arc::clone(&store))
            .queue("q", 0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
        let err = Worker::builder(Arc::clone(&store))
            .queue("q", 1)
            .register::<Add>()
            .register::<Add>()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("already registered"), "{err}");
    }

    pub async fn idempotency_key_returns_the_existing_job(store: Arc<dyn Store>) {
        let client = client(&store);
        let opts = || EnqueueOptions::new().unique_key("invoice-2026-11:acme");
        let first = client
            .enqueue_with(Add { a: 1, b: 2 }, opts())
            .await
            .unwrap();
        let again = client
            .enqueue_with(Add { a: 1, b: 2 }, opts())
            .await
            .unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(first.id, again.id);
        assert_eq!(client.stats().await.unwrap().totals.total(), 1);
    }

    pub async fn bulk_enqueue_10000_runs_each_exactly_once(store: Arc<dyn Store>) {
        let runs: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
        let counted = Arc::clone(&runs);
        let handle = worker(&store)
            .queue("bulk", 50)
            .handler_fn("count", move |_args, ctx| {
                let counted = Arc::clone(&counted);
                async move {
                    *counted.lock().unwrap().entry(ctx.id().0).or_default() += 1;
                    Ok(Value::Null)
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let jobs = client
            .enqueue_many((0..10_000).map(|n| {
                NewJob::raw(
                    "count",
                    json!({"n": n}),
                    EnqueueOptions::new().queue("bulk"),
                )
            }))
            .await
            .unwrap();
        assert_eq!(jobs.len(), 10_000);
        wait_events(&mut events, 10_000, Duration::from_secs(120), |e| {
            e.result == AttemptResult::Completed
        })
        .await;
        {
            let runs = runs.lock().unwrap();
            assert_eq!(runs.len(), 10_000);
            assert!(runs.values().all(|&n| n == 1), "a job ran twice");
            assert!(jobs.iter().all(|job| runs.contains_key(&job.id.0)));
        }
        assert_eq!(
            client.stats().await.unwrap().queues["bulk"].completed,
            10_000
        );
        handle.shutdown().await;
    }

    pub async fn worker_row_shows_heartbeat_and_counters(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 3)
            .queue("mail", 2)
            .register::<Add>()
            .register::<Flaky>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        client.enqueue(Add { a: 1, b: 1 }).await.unwrap();
        client
            .enqueue_with(
                Flaky { fail_times: 9 },
                EnqueueOptions::new().max_attempts(1),
            )
            .await
            .unwrap();
        wait_events(&mut events, 2, WAIT, |_| true).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let workers = client.workers().await.unwrap();
            assert_eq!(workers.len(), 1);
            let row = &workers[0];
            assert_eq!(row.id, handle.id());
            assert_eq!(row.pid, std::process::id());
            assert_eq!(row.queues, vec!["default".to_owned(), "mail".to_owned()]);
            assert_eq!(row.concurrency, 5);
            if row.jobs_done == 1 && row.jobs_failed == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "counters never arrived: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handle.shutdown().await;
    }

    /// `JobError::retry_in` retries after the given delay instead of the backoff.
    pub async fn retry_in_overrides_the_backoff(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 1)
            .handler_fn("rate-limited", |_args, _ctx| async {
                Err(JobError::retry_in(
                    "429 Too Many Requests",
                    Duration::from_secs(3600),
                ))
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let job = client(&store)
            .enqueue_raw("rate-limited", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        let seen = wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        assert_eq!(seen[0].result, AttemptResult::Retried);
        let row = client(&store).get(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Retryable);
        let wait = row.run_at - row.errors[0].at;
        assert!(
            (wait - chrono::Duration::seconds(3600)).num_seconds().abs() <= 1,
            "waits {wait}"
        );
        handle.shutdown().await;
    }

    /// A job scheduled for later waits in the schedule and starts once its `run_at` has
    /// passed, when the leader's stager moves it to the queue; not before.
    pub async fn scheduled_job_runs_once_due(store: Arc<dyn Store>) {
        let started = Arc::new(Mutex::new(None));
        let record = Arc::clone(&started);
        let handle = worker(&store)
            .queue("default", 2)
            .stager(StagerConfig {
                interval: Duration::from_millis(100),
                ..StagerConfig::default()
            })
            .handler_fn("reminder", move |_args, _ctx| {
                let record = Arc::clone(&record);
                async move {
                    *record.lock().unwrap() = Some(chrono::Utc::now());
                    Ok(Value::Null)
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let run_at = chrono::Utc::now() + chrono::Duration::milliseconds(700);
        let job = client(&store)
            .enqueue_raw("reminder", json!({}), EnqueueOptions::new().run_at(run_at))
            .await
            .unwrap();
        let row = client(&store).get(job.id).await.unwrap().unwrap();
        assert_eq!(
            row.state,
            JobState::Available,
            "scheduled is still available"
        );
        let seen = wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        assert_eq!(seen[0].result, AttemptResult::Completed);
        let started = started.lock().unwrap().expect("the handler ran");
        assert!(
            started >= run_at,
            "started at {started}, before its run_at {run_at}"
        );
        handle.shutdown().await;
    }

    /// A worker told to claim only its registered kinds leaves other kinds in its queues to
    /// other workers, instead of failing them for want of a handler.
    pub async fn registered_kinds_only_leaves_other_kinds(store: Arc<dyn Store>) {
        let handle = worker(&store)
            .queue("default", 2)
            .register::<Add>()
            .registered_kinds_only(true)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let foreign = client
            .enqueue_raw("resize", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        let mine = client.enqueue(Add { a: 1, b: 2 }).await.unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == mine.id).await;
        // Ten ticks of the worker's heartbeat, which reports the queue as holding a due job.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let row = client.get(foreign.id).await.unwrap().unwrap();
        assert_eq!(
            row.state,
            JobState::Available,
            "left for a worker that has the kind"
        );
        assert_eq!(row.attempt, 0);
        handle.shutdown().await;
        let err = worker(&store)
            .queue("default", 1)
            .registered_kinds_only(true)
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("at least one registered handler"),
            "{err}"
        );
    }

    /// Listing pages through every matching job, newest first, with the cursor of the page
    /// before; the last page has no cursor.
    pub async fn list_pages_with_a_cursor(store: Arc<dyn Store>) {
        let client = client(&store);
        let mut ids: Vec<_> = client
            .enqueue_many((0..25).map(|n| NewJob::new(Add { a: n, b: 0 })))
            .await
            .unwrap()
            .into_iter()
            .map(|job| job.id)
            .collect();
        client
            .enqueue_with(Add { a: 0, b: 0 }, EnqueueOptions::new().queue("elsewhere"))
            .await
            .unwrap();
        ids.reverse();
        let mut filter = JobFilter::new().queue("default").kind("add").limit(10);
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = client.list(&filter).await.unwrap();
            pages += 1;
            seen.extend(page.jobs.iter().map(|job| job.id));
            match page.next {
                Some(cursor) => filter = filter.before(cursor),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        assert_eq!(pages, 3);
    }

    /// An idle follower sends one statement per tick, its heartbeat, which also polls its
    /// queues and watches the leader's seat; and it still picks work up at once.
    pub async fn idle_follower_sends_one_statement_per_tick(store: Arc<dyn Store>) {
        let leader = worker(&store)
            .queue("default", 1)
            .register::<Add>()
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !leader.is_leader() {
            assert!(tokio::time::Instant::now() < deadline, "nobody was elected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let counting = Arc::new(stoker::testing::CountingStore::new(Arc::clone(&store)));
        let follower = Worker::builder(counting.clone())
            .queue("mail", 4)
            .queue("reports", 4)
            .register::<Add>()
            .poll_interval(Duration::from_millis(100))
            .heartbeat_interval(Duration::from_millis(100))
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = follower.events();
        // Let start-up (first claims, first election attempt) pass, then watch it idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        counting.reset();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calls = counting.calls();
        let beats = calls.get("worker_heartbeat").copied().unwrap_or(0);
        assert!(
            (1..=12).contains(&beats),
            "one heartbeat per 100 ms tick: {calls:?}"
        );
        assert_eq!(
            calls.values().sum::<u64>(),
            beats,
            "an idle follower sends only its heartbeat: {calls:?}"
        );

        let job = client(&store)
            .enqueue_with(Add { a: 4, b: 4 }, EnqueueOptions::new().queue("reports"))
            .await
            .unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == job.id).await;
        follower.shutdown().await;
        leader.shutdown().await;
    }

    /// Queues `count` jobs of kind `noop` on the queue `bulk`.
    async fn enqueue_noops(store: &Arc<dyn Store>, count: usize) {
        client(store)
            .enqueue_many(
                (0..count)
                    .map(|_| NewJob::raw("noop", json!({}), EnqueueOptions::new().queue("bulk"))),
            )
            .await
            .unwrap();
    }

    /// Claims fill the free slots in one statement and acknowledgements are written in
    /// batches: draining thousands of jobs costs far fewer statements than jobs.
    pub async fn claims_and_acks_are_batched(store: Arc<dyn Store>) {
        let counting = Arc::new(stoker::testing::CountingStore::new(Arc::clone(&store)));
        let handle = Worker::builder(counting.clone())
            .queue("bulk", 50)
            .handler_fn("noop", |_args, _ctx| async { Ok(Value::Null) })
            .maintenance(false)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        const JOBS: usize = 5_000;
        enqueue_noops(&store, JOBS).await;
        wait_events(&mut events, JOBS, Duration::from_secs(120), |e| {
            e.result == AttemptResult::Completed
        })
        .await;
        let calls = counting.calls();
        let claims = calls["job_claim"];
        let acks = calls["job_finish_many"];
        eprintln!("{JOBS} jobs: {claims} claims, {acks} acknowledgement batches");
        assert!(
            claims <= (JOBS / 5) as u64,
            "claims are not batched: {claims} for {JOBS} jobs"
        );
        assert!(
            acks <= (JOBS / 5) as u64,
            "acknowledgements are not batched: {acks} for {JOBS} jobs"
        );
        handle.shutdown().await;
    }

    /// When short jobs end, their slots free up within the fetch cooldown and the next claim
    /// takes them all at once: claims stay full (here at least half of the 50 slots each), and
    /// a queue whose slots are all free claims without waiting out the cooldown (an hour here,
    /// so a worker that waited it out would never finish).
    pub async fn short_jobs_are_claimed_in_full_batches(store: Arc<dyn Store>) {
        const JOBS: usize = 2_000;
        enqueue_noops(&store, JOBS).await;
        let counting = Arc::new(stoker::testing::CountingStore::new(Arc::clone(&store)));
        let worker = Worker::builder(counting.clone())
            .queue("bulk", 50)
            .handler_fn("noop", |_args, _ctx| async { Ok(Value::Null) })
            .fetch_cooldown(Duration::from_secs(3600))
            .maintenance(false)
            .build()
            .unwrap();
        // Subscribed before start: the first jobs may end before `start` returns.
        let mut events = worker.events();
        let handle = worker.start().await.unwrap();
        wait_events(&mut events, JOBS, Duration::from_secs(120), |e| {
            e.result == AttemptResult::Completed
        })
        .await;
        let claims = counting.calls()["job_claim"];
        assert!(
            claims <= (JOBS / 25 + 1) as u64,
            "claims went out with fewer than half the slots: {claims} for {JOBS} jobs"
        );
        handle.shutdown().await;
    }

    /// A subscription taken from the worker before it starts sees every job, even those that
    /// were queued already and ran before `start` returned.
    pub async fn events_subscribed_before_start_miss_no_job(store: Arc<dyn Store>) {
        let client = client(&store);
        let mut queued = Vec::new();
        for a in 0..20 {
            queued.push(client.enqueue(Add { a, b: 1 }).await.unwrap().id);
        }
        let worker = worker(&store)
            .queue("default", 20)
            .register::<Add>()
            .build()
            .unwrap();
        let mut events = worker.events();
        let handle = worker.start().await.unwrap();
        let seen = wait_events(&mut events, queued.len(), WAIT, |e| {
            e.result == AttemptResult::Completed
        })
        .await;
        let mut seen: Vec<_> = seen.into_iter().map(|e| e.id).collect();
        seen.sort();
        queued.sort();
        assert_eq!(seen, queued);
        handle.shutdown().await;
    }
}

macro_rules! scenario_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        scenario_tests!(@each $factory, [$(#[$attr])*],
            typed_job_runs_and_stores_result,
            dynamic_handler_and_registry_kinds,
            unknown_kind_is_dead_lettered_then_retried_once_handled,
            retries_with_backoff_then_completes,
            exhausted_attempts_end_discarded_with_history,
            fatal_error_discards_at_once,
            snooze_does_not_use_an_attempt,
            panic_is_a_failed_attempt_with_backtrace,
            timeouts_per_kind_and_per_job,
            cancel_waiting_and_running_jobs,
            progress_is_visible_while_running,
            follow_up_jobs_inherit_lineage,
            priority_then_run_time_order,
            pause_and_resume_are_honoured_by_a_running_worker,
            graceful_shutdown_lets_running_jobs_finish,
            graceful_shutdown_hands_jobs_back,
            rescues_jobs_of_a_dead_worker,
            leader_fails_over_when_it_stops,
            bad_input_changes_nothing,
            idempotency_key_returns_the_existing_job,
            bulk_enqueue_10000_runs_each_exactly_once,
            worker_row_shows_heartbeat_and_counters,
            idle_follower_sends_one_statement_per_tick,
            claims_and_acks_are_batched,
            short_jobs_are_claimed_in_full_batches,
            events_subscribed_before_start_miss_no_job,
            list_pages_with_a_cursor,
            retry_in_overrides_the_backoff,
            scheduled_job_runs_once_due,
            registered_kinds_only_leaves_other_kinds,
            a_jobs_own_backoff_overrides_its_kinds,
            progress_carries_details,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( scenario_tests!(@one $factory, $attrs, $name); )*
    };
    (@one $factory:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$attr])*
        async fn $name() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::$name(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    use sqlx::Connection;
    scenario_tests!(crate::common::sqlite);

    #[tokio::test]
    async fn enqueue_inside_a_transaction_commits_or_vanishes() {
        let store = crate::common::sqlite().await;
        let client = Client::new(Arc::clone(&store));
        let mut conn = store.write_connection().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let kept = client
            .enqueue_tx(&mut *tx, Add { a: 1, b: 1 }, EnqueueOptions::new())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        drop(conn);
        let mut conn = store.write_connection().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let dropped = client
            .enqueue_tx(&mut *tx, Add { a: 2, b: 2 }, EnqueueOptions::new())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        drop(conn);
        assert!(client.get(kept.id).await.unwrap().is_some());
        assert!(client.get(dropped.id).await.unwrap().is_none());
        assert_eq!(client.stats().await.unwrap().totals.total(), 1);
    }

    #[tokio::test]
    async fn start_refuses_an_unmigrated_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            stoker::sqlite::SqliteStore::open(dir.path().join("raw.db"))
                .await
                .unwrap(),
        );
        let err = Worker::builder(store)
            .queue("default", 1)
            .build()
            .unwrap()
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not migrated"), "{err}");
    }
}

mod postgres {
    use super::*;
    scenario_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );

    #[tokio::test]
    #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    async fn enqueue_inside_a_transaction_commits_or_vanishes() {
        let store = crate::common::postgres().await;
        let client = Client::new(Arc::clone(&store));
        let mut tx = store.pool().begin().await.unwrap();
        let kept = client
            .enqueue_tx(&mut *tx, Add { a: 1, b: 1 }, EnqueueOptions::new())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        let dropped = client
            .enqueue_tx(&mut *tx, Add { a: 2, b: 2 }, EnqueueOptions::new())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert!(client.get(kept.id).await.unwrap().is_some());
        assert!(client.get(dropped.id).await.unwrap().is_none());
        assert_eq!(client.stats().await.unwrap().totals.total(), 1);
    }

    /// Behind a transaction-pooling proxy there is no LISTEN: jobs are found by polling, and a
    /// cancel reaches the running job through the heartbeat.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    async fn poll_only_mode_runs_and_cancels_jobs() {
        let listening = crate::common::postgres().await;
        let store: Arc<dyn Store> = Arc::new(
            stoker::postgres::PgStore::from_pool(listening.pool().clone(), listening.schema())
                .listen(false)
                .build()
                .await
                .unwrap(),
        );
        assert!(store.subscribe().is_none());
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let handle = worker(&store)
            .queue("default", 2)
            .register::<Add>()
            .handler_fn("park", park_until_cancelled(started_tx))
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = client(&store);
        let add = client.enqueue(Add { a: 20, b: 22 }).await.unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == add.id).await;
        assert_eq!(
            client.get(add.id).await.unwrap().unwrap().result,
            Some(json!(42))
        );

        let park = client
            .enqueue_raw("park", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        assert_eq!(started.recv().await, Some(park.id.0));
        client.cancel(park.id).await.unwrap();
        wait_events(&mut events, 1, WAIT, |e| e.id == park.id).await;
        assert_eq!(
            client.get(park.id).await.unwrap().unwrap().state,
            JobState::Cancelled
        );
        handle.shutdown().await;
    }
}
