//! Live events (issue 13) through the runtime: a job followed to its end, whether this
//! process or another runs it; filters; one snapshot task however many subscriptions; and
//! nothing left running once the last one leaves. Each scenario runs on every store.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::maintenance::{Rescuer, RescuerConfig};
use stoker::testing::CountingStore;
use stoker::{
    Client, EnqueueOptions, Event, EventFilter, EventHub, EventStream, Failure, JobContext,
    JobError, JobEvent, JobState, Registry, Reservation, Store, StubClock, Worker,
};

/// How long any one event may take before the test fails (a guard, not a measurement).
const WAIT: Duration = Duration::from_secs(20);

/// The next event, or a failure naming what was expected.
async fn next(events: &mut EventStream, what: &str) -> Option<Event> {
    match tokio::time::timeout(WAIT, events.next()).await {
        Ok(event) => event,
        Err(_) => panic!("no event within {WAIT:?} while waiting for {what}"),
    }
}

/// The job events until the stream's end, and whether `End` came before it closed.
async fn until_end(events: &mut EventStream) -> (Vec<JobEvent>, bool) {
    let mut jobs = Vec::new();
    while let Some(event) = next(events, "the end").await {
        match event {
            Event::Job(job) => jobs.push(job),
            Event::End => {
                assert!(
                    events.next().await.is_none(),
                    "the stream goes on after End"
                );
                return (jobs, true);
            }
            Event::Snapshot(_) => {}
        }
    }
    (jobs, false)
}

/// A hub that reads followed jobs every 50 ms, so tests need not wait a second.
fn fast_hub() -> EventHub {
    EventHub::with_interval(Duration::from_millis(50))
}

mod scenarios {
    use super::*;
    // --- stream history ---
    pub use crate::bulk_scenarios::bulk_changes_are_published;

    /// An embedded worker sharing the client's hub: the followed job shows available,
    /// running, completed, then the stream ends; a job event carries the correlation id.
    pub async fn a_job_run_here_is_followed_to_its_end(store: Arc<dyn Store>) {
        let hub = fast_hub();
        let client = Client::new(Arc::clone(&store)).with_event_hub(hub.clone());
        let job = client
            .enqueue_raw(
                "echo",
                json!({"n": 1}),
                EnqueueOptions::new().correlation_id("req-1"),
            )
            .await
            .unwrap();
        let mut events = client
            .events(EventFilter::new().job(job.id).snapshot(false))
            .await
            .unwrap();
        let worker = Worker::builder(Arc::clone(&store))
            .queue("default", 2)
            .handler_fn("echo", |args: Value, _ctx: JobContext| async move {
                Ok::<_, JobError>(args)
            })
            .event_hub(hub.clone())
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let (jobs, ended) = until_end(&mut events).await;
        assert!(ended, "the stream closed without End: {jobs:?}");
        let states: Vec<JobState> = jobs.iter().map(|job| job.state).collect();
        assert_eq!(states.first(), Some(&JobState::Available), "{jobs:?}");
        assert_eq!(states.last(), Some(&JobState::Completed), "{jobs:?}");
        assert!(jobs.iter().all(|event| event.id == job.id));
        assert!(jobs
            .iter()
            .all(|event| event.correlation_id.as_deref() == Some("req-1")));
        worker.shutdown().await;
        drop(events);
        assert_eq!(hub.subscribers(), 0);
        assert!(!hub.is_running(), "the task outlived its last subscription");
    }

    /// Jobs enqueued one by one while a worker of the same process waits for them: each is
    /// shown `available` before `running`, though the store can hand a job to the waiting
    /// worker between the insert's commit and the enqueuer's publish.
    pub async fn a_job_is_shown_available_before_running(store: Arc<dyn Store>) {
        const JOBS: usize = 200;
        let hub = fast_hub();
        let client = Client::new(Arc::clone(&store)).with_event_hub(hub.clone());
        let mut events = client
            .events(EventFilter::new().queue("race").snapshot(false))
            .await
            .unwrap();
        let worker = Worker::builder(Arc::clone(&store))
            .queue("race", 4)
            .handler_fn("race", |_args: Value, _ctx: JobContext| async move {
                Ok::<_, JobError>(Value::Null)
            })
            .event_hub(hub.clone())
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        for n in 0..JOBS {
            client
                .enqueue_raw("race", json!({"n": n}), EnqueueOptions::new().queue("race"))
                .await
                .unwrap();
        }
        let mut seen: std::collections::HashMap<stoker::JobId, Vec<JobState>> = Default::default();
        let mut completed = 0;
        while completed < JOBS {
            match next(&mut events, "the jobs' events").await {
                Some(Event::Job(job)) => {
                    completed += usize::from(job.state == JobState::Completed);
                    seen.entry(job.id).or_default().push(job.state);
                }
                Some(_) => {}
                None => panic!("the stream closed"),
            }
        }
        worker.shutdown().await;
        for (id, states) in seen {
            assert_eq!(
                states,
                [JobState::Available, JobState::Running, JobState::Completed],
                "job {id}"
            );
        }
    }

    /// Another process (a client with a hub of its own) reserves and fails the job for good:
    /// the follower sees it through its reads, error included, and the end.
    pub async fn a_job_run_elsewhere_is_followed_to_its_end(store: Arc<dyn Store>) {
        let here = Client::new(Arc::clone(&store)).with_event_hub(fast_hub());
        let elsewhere = Client::new(Arc::clone(&store));
        let job = here
            .enqueue_raw("remote", json!({}), EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        let mut events = here
            .events(EventFilter::new().job(job.id).snapshot(false))
            .await
            .unwrap();
        let reserved = elsewhere
            .reserve(&Reservation {
                worker: "pull:elsewhere".into(),
                queues: vec!["default".into()],
                kinds: Vec::new(),
                limit: 1,
                lease: Duration::from_secs(60),
            })
            .await
            .unwrap();
        assert_eq!(reserved.len(), 1);
        elsewhere
            .fail_reserved(
                job.id,
                reserved[0].fence,
                Failure {
                    message: "boom".into(),
                    retry_in: None,
                    discard: false,
                },
            )
            .await
            .unwrap();
        let (jobs, ended) = until_end(&mut events).await;
        assert!(ended, "{jobs:?}");
        let last = jobs.last().expect("job events");
        assert_eq!(last.state, JobState::Discarded);
        assert_eq!(last.error.as_deref(), Some("boom"));
    }

    /// Queue and kind filters hold; a cancel through the client is published; a job already
    /// finished ends the stream at once; a job that does not exist is refused.
    pub async fn filters_hold_and_finished_jobs_end_at_once(store: Arc<dyn Store>) {
        let client = Client::new(Arc::clone(&store)).with_event_hub(fast_hub());
        let mut mailers = client
            .events(EventFilter::new().queue("mailers").snapshot(false))
            .await
            .unwrap();
        client
            .enqueue_raw("other", json!({}), EnqueueOptions::new().queue("other"))
            .await
            .unwrap();
        let mail = client
            .enqueue_raw("email", json!({}), EnqueueOptions::new().queue("mailers"))
            .await
            .unwrap();
        client.cancel(mail.id).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next(&mut mailers, "the mailers' events").await {
                Some(Event::Job(job)) => seen.push((job.id, job.state, job.queue)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (mail.id, JobState::Available, "mailers".to_owned()),
                (mail.id, JobState::Cancelled, "mailers".to_owned()),
            ]
        );

        let mut done = client
            .events(EventFilter::new().job(mail.id).snapshot(false))
            .await
            .unwrap();
        let (jobs, ended) = until_end(&mut done).await;
        assert!(ended);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].state, JobState::Cancelled);

        let missing = client
            .events(EventFilter::new().job(stoker::JobId(9_999_999)))
            .await
            .unwrap_err();
        assert!(matches!(missing, stoker::Error::NotFound(_)), "{missing}");
        let too_many = EventFilter {
            jobs: (1..=101).map(stoker::JobId).collect(),
            ..EventFilter::new()
        };
        let refused = client.events(too_many).await.unwrap_err();
        assert!(
            matches!(refused, stoker::Error::Invalid(ref i) if i.field == "job"),
            "{refused}"
        );
    }

    /// A hundred subscriptions share one snapshot task: each sees the same snapshots, and the
    /// store answers one set of reads per snapshot, not one per subscription.
    pub async fn one_snapshot_serves_every_subscription(store: Arc<dyn Store>) {
        let counting = Arc::new(CountingStore::new(Arc::clone(&store)));
        let hub = fast_hub();
        let client = Client::new(counting.clone()).with_event_hub(hub.clone());
        client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().queue("q"))
            .await
            .unwrap();
        counting.reset();
        let mut streams = Vec::new();
        for _ in 0..100 {
            streams.push(client.events(EventFilter::new()).await.unwrap());
        }
        assert_eq!(hub.subscribers(), 100);
        let mut seen = HashSet::new();
        for stream in &mut streams {
            let mut got = 0;
            while got < 3 {
                if let Some(Event::Snapshot(snapshot)) = next(stream, "a snapshot").await {
                    assert_eq!(snapshot.states.available, 1);
                    assert!(snapshot.queues.iter().any(|q| q.name == "q"));
                    seen.insert(snapshot.at);
                    got += 1;
                }
            }
        }
        drop(streams);
        assert!(!hub.is_running());
        let calls = counting.calls();
        let stats = calls.get("job_stats").copied().unwrap_or(0);
        // Every snapshot computed was one set of reads; a snapshot is at most one interval
        // old when a subscription reads it, so the 100 streams saw at most a few.
        assert!(stats >= 1, "{calls:?}");
        assert!(
            stats <= seen.len() as u64 + 2,
            "{stats} job_stats calls for {} snapshots: {calls:?}",
            seen.len()
        );
        assert_eq!(
            calls.get("job_stats"),
            calls.get("worker_list"),
            "{calls:?}"
        );
    }

    /// The leader's rescuer publishes what it rescues: a job whose pull worker's lease
    /// lapsed shows `retryable` with the "worker lost" error on a queue stream.
    pub async fn rescues_are_published(store: Arc<dyn Store>) {
        let clock = Arc::new(StubClock::new(chrono::Utc::now()));
        let hub = fast_hub();
        let client = Client::new(Arc::clone(&store))
            .with_clock(clock.clone())
            .with_event_hub(hub.clone());
        let mut events = client
            .events(EventFilter::new().queue("lost").snapshot(false))
            .await
            .unwrap();
        let job = client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().queue("lost"))
            .await
            .unwrap();
        // A worker of another process reserves it, then goes quiet.
        let elsewhere = Client::new(Arc::clone(&store)).with_clock(clock.clone());
        let reserved = elsewhere
            .reserve(&Reservation {
                worker: "pull:quiet".into(),
                queues: vec!["lost".into()],
                kinds: Vec::new(),
                limit: 1,
                lease: Duration::from_secs(1),
            })
            .await
            .unwrap();
        assert_eq!(reserved.len(), 1);
        clock.advance(chrono::Duration::seconds(60));
        let rescuer = Rescuer::new(
            Arc::clone(&store),
            clock.clone(),
            Arc::new(Registry::new()),
            RescuerConfig::default(),
        )
        .with_event_hub(hub);
        assert_eq!(rescuer.run_once().await.unwrap().retried, 1);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next(&mut events, "the rescue").await {
                Some(Event::Job(event)) => seen.push(event),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen[0].state, JobState::Available);
        assert_eq!(seen[1].id, job.id);
        assert_eq!(seen[1].state, JobState::Retryable);
        let error = seen[1].error.as_deref().unwrap_or_default();
        assert!(error.contains("worker lost"), "{error}");
    }

    /// A correlation stream: a job enqueued here with the correlation id, then run and
    /// finished by another process, shows its changes through the reads, correlation id
    /// included; a job of another correlation does not show.
    pub async fn a_correlation_is_followed_across_processes(store: Arc<dyn Store>) {
        let here = Client::new(Arc::clone(&store)).with_event_hub(fast_hub());
        let elsewhere = Client::new(Arc::clone(&store));
        let mut events = here
            .events(EventFilter::new().correlation_id("order-9").snapshot(false))
            .await
            .unwrap();
        let other = here
            .enqueue_raw(
                "k",
                json!({}),
                EnqueueOptions::new().correlation_id("order-1"),
            )
            .await
            .unwrap();
        let job = here
            .enqueue_raw(
                "k",
                json!({}),
                EnqueueOptions::new().correlation_id("order-9"),
            )
            .await
            .unwrap();
        elsewhere.cancel(other.id).await.unwrap();
        elsewhere.cancel(job.id).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next(&mut events, "the correlation's events").await {
                Some(Event::Job(event)) => seen.push(event),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.iter().all(|event| event.id == job.id), "{seen:?}");
        assert_eq!(seen[0].state, JobState::Available);
        assert_eq!(seen[1].state, JobState::Cancelled);
        assert_eq!(seen[1].correlation_id.as_deref(), Some("order-9"));
    }

    /// Nobody listening: publishing builds nothing and the hub starts no task.
    pub async fn without_subscribers_nothing_runs(store: Arc<dyn Store>) {
        let hub = fast_hub();
        let counting = Arc::new(CountingStore::new(Arc::clone(&store)));
        let client = Client::new(counting.clone()).with_event_hub(hub.clone());
        for _ in 0..5 {
            client
                .enqueue_raw("k", json!({}), EnqueueOptions::new())
                .await
                .unwrap();
        }
        assert!(!hub.is_running());
        assert_eq!(hub.subscribers(), 0);
        let calls = counting.calls();
        assert_eq!(calls.get("job_stats"), None, "{calls:?}");
        assert_eq!(calls.get("job_get"), None, "{calls:?}");
    }

    // --- stream ops ---
    /// A polled snapshot (the dashboard's fallback when its stream fails): callers within an
    /// interval share one computation, concurrent ones included; the next interval computes
    /// anew and sees what changed; a tenant-scoped client is refused.
    pub async fn polled_snapshots_are_shared_within_an_interval(store: Arc<dyn Store>) {
        let clock = StubClock::new(chrono::Utc::now());
        let counting = Arc::new(CountingStore::new(Arc::clone(&store)));
        let client = Client::new(counting.clone())
            .with_clock(Arc::new(clock.clone()))
            .with_event_hub(EventHub::with_interval(Duration::from_secs(5)));
        client
            .enqueue_raw("k", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        let first = client.events_snapshot().await.unwrap();
        assert_eq!(first.states.available, 1);
        let together = futures::future::join_all((0..8).map(|_| client.events_snapshot())).await;
        assert!(together.iter().all(|s| s.as_ref().unwrap().at == first.at));
        assert_eq!(counting.calls().get("job_stats"), Some(&1));

        client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().queue("other"))
            .await
            .unwrap();
        clock.advance(chrono::Duration::seconds(4));
        assert_eq!(client.events_snapshot().await.unwrap().states.available, 1);
        clock.advance(chrono::Duration::seconds(2));
        let later = client.events_snapshot().await.unwrap();
        assert_eq!(later.states.available, 2);
        assert!(later
            .queues
            .iter()
            .any(|q| q.name == "other" && q.states.available == 1));
        assert_eq!(counting.calls().get("job_stats"), Some(&2));

        // --- stream tenant ---
        // A scoped client's snapshot is its tenant's, computed for the call (issue 17).
        client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().tenant("acme"))
            .await
            .unwrap();
        let scoped = client.for_tenant("acme");
        let own = scoped.events_snapshot().await.unwrap();
        assert_eq!(own.states.available, 1);
        assert_eq!(own.queues.len(), 1);
        assert_eq!(counting.calls().get("job_stats"), Some(&3));
    }

    // --- stream history ---
    use stoker::cron::CronSchedule;
    use stoker::{Dependency, NewJob, Workflow};

    /// The jobs a cron schedule fires (due slots and a manual run) and a workflow's jobs
    /// without dependencies are published as `available`, like any enqueue; a workflow job
    /// waiting for another is not (the store alone knows whether it is blocked).
    pub async fn cron_and_workflow_inserts_are_published(store: Arc<dyn Store>) {
        let clock = Arc::new(StubClock::new(
            "2030-01-01T00:00:30Z".parse().expect("an instant"),
        ));
        let client = Client::new(Arc::clone(&store))
            .with_clock(clock.clone())
            .with_event_hub(fast_hub());
        client.migrate().await.unwrap();
        let mut events = client
            .events(EventFilter::new().snapshot(false))
            .await
            .unwrap();

        client
            .cron_create(CronSchedule::new("tick", "* * * * *", "tick", json!({})))
            .await
            .unwrap();
        clock.advance(chrono::Duration::seconds(60));
        let report = client.cron_fire_due().await.unwrap();
        assert_eq!(report.fired, 1, "{report:?}");
        let fired = report.jobs[0].id;
        let manual = client.cron_run_now("tick").await.unwrap().id;

        let fetch = NewJob::raw("fetch", json!({}), EnqueueOptions::new());
        let merge = NewJob::raw("merge", json!({}), EnqueueOptions::new());
        let flow = client
            .enqueue_workflow(Workflow::new("report").job("fetch", fetch).job_after(
                "merge",
                merge,
                [Dependency::node("fetch")],
            ))
            .await
            .unwrap();
        let fetch_id = flow
            .jobs
            .iter()
            .find(|(node, _)| node == "fetch")
            .unwrap()
            .1;

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match next(&mut events, "the inserts").await {
                Some(Event::Job(job)) => seen.push((job.id, job.kind, job.state)),
                Some(_) => {}
                None => panic!("the stream closed after {seen:?}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                (fired, "tick".to_owned(), JobState::Available),
                (manual, "tick".to_owned(), JobState::Available),
                (fetch_id, "fetch".to_owned(), JobState::Available),
            ]
        );
    }
}

// --- stream history ---
mod bulk_scenarios {
    use super::*;
    use stoker::maintenance::{BulkRunner, BulkRunnerConfig};
    use stoker::{BulkAction, BulkFilter, BulkRequest, RetryFilter};

    /// The events of `count` jobs from `events`, skipping nothing else (snapshots are off).
    async fn take(events: &mut EventStream, count: usize, what: &str) -> Vec<JobEvent> {
        let mut seen = Vec::new();
        while seen.len() < count {
            match next(events, what).await {
                Some(Event::Job(event)) => seen.push(event),
                other => panic!("unexpected {other:?} while waiting for {what}"),
            }
        }
        seen
    }

    /// Bulk operations and bulk retries publish each job they move (issue 13, item 7): a
    /// queue stream sees every job a bulk cancel cancels and a bulk retry retries, with its
    /// correlation id; a stream following a job by id sees its cancel and ends; a stream
    /// following a job a bulk delete deletes ends. The hub reads followed jobs only once (an
    /// hour-long interval), so what the streams see is what the runner and the retry
    /// published.
    pub async fn bulk_changes_are_published(store: Arc<dyn Store>) {
        let hub = EventHub::with_interval(Duration::from_secs(3600));
        let clock = Arc::new(StubClock::new(chrono::Utc::now()));
        let client = Client::new(Arc::clone(&store))
            .with_clock(clock.clone())
            .with_event_hub(hub.clone());
        let a = client
            .enqueue_raw(
                "bulk-k",
                json!({}),
                EnqueueOptions::new().queue("bulk").correlation_id("req-b"),
            )
            .await
            .unwrap();
        let b = client
            .enqueue_raw("bulk-k", json!({}), EnqueueOptions::new().queue("bulk"))
            .await
            .unwrap();
        let mut queue_events = client
            .events(EventFilter::new().queue("bulk").snapshot(false))
            .await
            .unwrap();
        // The task's first (immediate) read of followed jobs passes before anything moves.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut a_events = client
            .events(EventFilter::new().job(a.id).snapshot(false))
            .await
            .unwrap();
        let runner = BulkRunner::new(
            Arc::clone(&store),
            clock.clone(),
            BulkRunnerConfig {
                batch: 1,
                ..BulkRunnerConfig::default()
            },
        )
        .with_event_hub(hub.clone());
        let filter = BulkFilter {
            kinds: vec!["bulk-k".to_owned()],
            ..BulkFilter::default()
        };
        client
            .bulk_start(BulkRequest::new(BulkAction::Cancel, filter.clone()))
            .await
            .unwrap();
        runner.run_once().await.unwrap();
        let seen = take(&mut queue_events, 2, "the bulk cancel").await;
        assert_eq!(
            seen.iter().map(|e| (e.id, e.state)).collect::<Vec<_>>(),
            vec![(a.id, JobState::Cancelled), (b.id, JobState::Cancelled)]
        );
        assert_eq!(seen[0].correlation_id.as_deref(), Some("req-b"));
        assert_eq!(seen[0].queue, "bulk");
        assert_eq!(seen[0].kind, "bulk-k");
        let (jobs, ended) = until_end(&mut a_events).await;
        assert!(ended, "the followed job's stream did not end: {jobs:?}");
        assert_eq!(
            jobs.iter().map(|e| e.state).collect::<Vec<_>>(),
            vec![JobState::Available, JobState::Cancelled]
        );

        let report = client
            .retry_many(
                &RetryFilter {
                    states: vec![JobState::Cancelled],
                    kinds: vec!["bulk-k".to_owned()],
                    ..RetryFilter::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(report.retried, 2);
        let seen = take(&mut queue_events, 2, "the bulk retry").await;
        assert_eq!(
            seen.iter().map(|e| (e.id, e.state)).collect::<Vec<_>>(),
            vec![(a.id, JobState::Available), (b.id, JobState::Available)]
        );

        let mut b_events = client
            .events(EventFilter::new().job(b.id).snapshot(false))
            .await
            .unwrap();
        client
            .bulk_start(BulkRequest::new(BulkAction::Delete, filter))
            .await
            .unwrap();
        runner.run_once().await.unwrap();
        let (jobs, ended) = until_end(&mut b_events).await;
        assert!(ended, "a deleted job's stream did not end: {jobs:?}");
        assert_eq!(
            jobs.iter().map(|e| e.state).collect::<Vec<_>>(),
            vec![JobState::Available]
        );
    }
}

macro_rules! events_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        events_tests!(@each $factory, [$(#[$attr])*],
            a_job_run_here_is_followed_to_its_end,
            a_job_run_elsewhere_is_followed_to_its_end,
            a_job_is_shown_available_before_running,
            filters_hold_and_finished_jobs_end_at_once,
            one_snapshot_serves_every_subscription,
            without_subscribers_nothing_runs,
            rescues_are_published,
            a_correlation_is_followed_across_processes,
            // --- stream ops ---
            polled_snapshots_are_shared_within_an_interval,
            // --- stream history ---
            cron_and_workflow_inserts_are_published,
            bulk_changes_are_published,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( events_tests!(@one $factory, $attrs, $name); )*
    };
    (@one $factory:path, [$(#[$attr:meta])*], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::$name(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    events_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    events_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
