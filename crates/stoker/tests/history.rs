//! Durable history through the runtime (issue 13): pull workers' and embedded workers' jobs
//! are recorded alike, flushed in one statement, sampled and rolled up by the keeper, and read
//! back as series with percentiles and the previous period. Each scenario runs on every store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use stoker::{
    Client, Clock, EnqueueOptions, Error, History, HistoryGrain, HistoryKeeper,
    HistoryKeeperConfig, HistoryScope, Job, JobContext, JobError, Reservation, SeriesRequest,
    Store, StubClock, Worker,
};

fn t0() -> DateTime<Utc> {
    "2030-01-01T10:00:30Z".parse().unwrap()
}

fn request(range: u64, step: u64, end: DateTime<Utc>) -> SeriesRequest {
    SeriesRequest {
        range: Duration::from_secs(range),
        step: Duration::from_secs(step),
        end: Some(end),
        scope: HistoryScope::default(),
        compare: true,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Echo;

impl Job for Echo {
    const KIND: &'static str = "echo";
    type Output = ();

    async fn perform(self, _ctx: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

mod scenarios {
    use super::*;

    /// A pull worker's reservations and reports, through the client, land in the history
    /// with their labels; the keeper samples depth and rolls up to hours; the series merges it.
    pub async fn pull_workers_are_recorded_and_rolled_up(store: Arc<dyn Store>) {
        let clock = Arc::new(StubClock::new(t0()));
        let history = History::new(Arc::clone(&store));
        let client = Client::new(Arc::clone(&store))
            .with_clock(clock.clone())
            .with_history(history.clone());
        for tenant in [None, None, Some("acme")] {
            let mut opts = EnqueueOptions::new().queue("q");
            if let Some(tenant) = tenant {
                opts = opts.tenant(tenant);
            }
            client.enqueue_raw("k", json!({}), opts).await.unwrap();
        }
        // A duplicate is not a new job.
        let opts = || EnqueueOptions::new().queue("q").unique_key("once");
        client.enqueue_raw("k", json!({}), opts()).await.unwrap();
        client.enqueue_raw("k", json!({}), opts()).await.unwrap();

        clock.advance(chrono::Duration::seconds(2));
        let reserved = client
            .reserve(&Reservation {
                worker: "pull:test".into(),
                queues: vec!["q".into()],
                kinds: Vec::new(),
                limit: 2,
                lease: Duration::from_secs(60),
            })
            .await
            .unwrap();
        assert_eq!(reserved.len(), 2);
        clock.advance(chrono::Duration::milliseconds(300));
        for job in &reserved {
            client
                .complete_reserved(job.id, job.fence, None)
                .await
                .unwrap();
        }
        assert!(history.flush().await.unwrap() > 0);
        assert_eq!(
            history.flush().await.unwrap(),
            0,
            "a flush drains the recorder"
        );

        let keeper = HistoryKeeper::new(
            Arc::clone(&store),
            clock.clone(),
            HistoryKeeperConfig::default(),
        );
        keeper.run_once().await.unwrap();

        let now = clock.now();
        let series = client.series(&request(3600, 60, now)).await.unwrap();
        assert_eq!(series.grain, HistoryGrain::Minute);
        assert_eq!(series.points.len(), 61);
        let total = &series.total;
        assert_eq!(
            (total.enqueued, total.started, total.completed, total.failed),
            (4, 2, 2, 0)
        );
        assert_eq!(total.wait.count, 2);
        assert_eq!(total.run.count, 2);
        // 300 ms run time: the bucket [256, 512) ms.
        assert_eq!(total.run.p50_ms, Some(512));
        assert_eq!(total.depth, Some(2), "two due jobs were sampled");
        let previous = series.previous.as_ref().expect("compare asked for");
        assert_eq!(previous.enqueued, 0);
        let last = series.points.last().unwrap();
        assert_eq!(last.at, HistoryGrain::Minute.truncate(now));
        assert_eq!(last.completed, 2);

        // The same range at an hour's step reads the hour the keeper rolled up.
        let hourly = client.series(&request(3600, 3600, now)).await.unwrap();
        assert_eq!(hourly.grain, HistoryGrain::Hour);
        assert_eq!(hourly.total.completed, 2);
        assert_eq!(hourly.total.enqueued, 4);

        // Scoped to a tenant, and a tenant-scoped client sees only its own.
        let mut scoped = request(3600, 60, now);
        scoped.scope.tenant = Some("acme".into());
        assert_eq!(client.series(&scoped).await.unwrap().total.enqueued, 1);
        let acme = client.for_tenant("acme");
        assert_eq!(
            acme.series(&request(3600, 60, now))
                .await
                .unwrap()
                .total
                .enqueued,
            1
        );
        scoped.scope.tenant = Some("globex".into());
        assert!(matches!(
            acme.series(&scoped).await,
            Err(Error::TenantForbidden { .. })
        ));

        // Bad input names its field and reads nothing.
        for (range, step, field) in [(3600, 90, "step"), (10, 60, "range")] {
            match client.series(&request(range, step, now)).await {
                Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, field),
                other => panic!("expected Invalid({field}), got {other:?}"),
            }
        }
    }

    /// An embedded worker's claims and acknowledgements are recorded, and its last outcomes are
    /// flushed at shutdown.
    pub async fn embedded_workers_are_recorded(store: Arc<dyn Store>) {
        let history = History::new(Arc::clone(&store));
        let worker = Worker::builder(Arc::clone(&store))
            .queue("e", 4)
            .register::<Echo>()
            .poll_interval(Duration::from_millis(50))
            .heartbeat_interval(Duration::from_millis(100))
            .maintenance(false)
            .history_every(history.clone(), Duration::from_secs(3600))
            .build()
            .unwrap();
        let client = worker.client();
        let handle = worker.start().await.unwrap();
        let mut events = handle.events();
        for _ in 0..5 {
            client
                .enqueue_with(Echo, EnqueueOptions::new().queue("e"))
                .await
                .unwrap();
        }
        common::wait_events(&mut events, 5, Duration::from_secs(30), |_| true).await;
        handle.shutdown().await;

        let series = client.series(&request(3600, 60, Utc::now())).await.unwrap();
        let total = &series.total;
        assert_eq!(
            (total.enqueued, total.started, total.completed),
            (5, 5, 5),
            "{total:?}"
        );
        assert_eq!(total.run.count, 5);
    }

    // --- stream counts ---
    /// Attempts the rescuer ends (a worker that died mid-job) are recorded as failed attempts,
    /// retried or discarded, like a worker's own failures; before issue 13's item 4 they were
    /// missing from the history.
    pub async fn rescued_attempts_are_recorded(store: Arc<dyn Store>) {
        use stoker::core::JobClaimParams;
        use stoker::maintenance::{Rescuer, RescuerConfig};

        let clock = Arc::new(StubClock::new(t0()));
        let history = History::new(Arc::clone(&store));
        let client = Client::new(Arc::clone(&store))
            .with_clock(clock.clone())
            .with_history(history.clone());
        for attempts in [1, 5] {
            client
                .enqueue_raw(
                    "k",
                    json!({}),
                    EnqueueOptions::new().queue("r").max_attempts(attempts),
                )
                .await
                .unwrap();
        }
        // Claimed by a worker that never heartbeats: it has no row, so it is lost at once.
        let claimed = store
            .job_claim(JobClaimParams {
                queue: "r".into(),
                kinds: Vec::new(),
                limit: 10,
                worker_id: "gone".into(),
                now: clock.now(),
                lease: None,
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        clock.advance(chrono::Duration::seconds(10));
        let rescuer = Rescuer::new(
            Arc::clone(&store),
            clock.clone(),
            Arc::new(stoker::Registry::new()),
            RescuerConfig::default(),
        )
        .with_history(history.clone());
        let report = rescuer.run_once().await.unwrap();
        assert_eq!((report.retried, report.discarded), (1, 1), "{report}");
        history.flush().await.unwrap();

        let series = client
            .series(&request(3600, 60, clock.now()))
            .await
            .unwrap();
        let total = &series.total;
        assert_eq!(
            (total.enqueued, total.failed, total.retried, total.discarded),
            (2, 2, 1, 1),
            "{total:?}"
        );
        // Run from the claim to the rescue: 10 s, the bucket [8.192, 16.384) s.
        assert_eq!(total.run.count, 2);
    }
}

macro_rules! history_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        history_tests!(@each $factory, [$(#[$attr])*],
            pull_workers_are_recorded_and_rolled_up,
            embedded_workers_are_recorded,
            rescued_attempts_are_recorded,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( history_tests!(@one $factory, $attrs, $name); )*
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
    history_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    history_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
