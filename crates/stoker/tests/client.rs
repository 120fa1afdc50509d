//! The client as every face of the server uses it: tenant scoping, bulk retry counted in its
//! own scope, the overviews and their one liveness rule, and the bounds on what it is given.
//! Each scenario runs against every store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker::core::{JobClaimParams, JobStuckParams, WorkerHeartbeatParams};
use stoker::{
    Client, EnqueueOptions, Error, JobFilter, JobId, JobState, NewJob, RetryFilter, Store,
    StubClock,
};

fn client(store: &Arc<dyn Store>) -> Client {
    Client::new(Arc::clone(store))
}

async fn enqueue(client: &Client, tenant: Option<&str>, queue: &str) -> JobId {
    let mut opts = EnqueueOptions::new().queue(queue);
    if let Some(tenant) = tenant {
        opts = opts.tenant(tenant);
    }
    client
        .enqueue_raw("report", json!({}), opts)
        .await
        .expect("enqueue")
        .id
}

#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(result: stoker::Result<T>) {
    match result {
        Err(Error::TenantForbidden { .. }) => {}
        other => panic!("expected TenantForbidden, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: stoker::Result<T>) {
    match result {
        Err(Error::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

mod scenarios {
    use super::*;

    pub async fn a_scoped_client_sees_and_touches_only_its_tenant(store: Arc<dyn Store>) {
        let admin = client(&store);
        let theirs = enqueue(&admin, Some("globex"), "t").await;
        let nobody = enqueue(&admin, None, "t").await;
        let acme = admin.for_tenant("acme");
        assert_eq!(acme.tenant(), Some("acme"));
        let own = enqueue(&acme, None, "t").await;
        assert_eq!(
            acme.get(own).await.unwrap().unwrap().tenant.as_deref(),
            Some("acme")
        );
        let named = enqueue(&acme, Some("acme"), "t").await;
        assert_ne!(named, own);

        // Another tenant's job does not exist for it, and stays as it was.
        assert!(acme.get(theirs).await.unwrap().is_none());
        assert!(acme.get(nobody).await.unwrap().is_none());
        assert_not_found(acme.cancel(theirs).await);
        assert_not_found(acme.retry(theirs).await);
        assert_not_found(acme.delete(nobody).await);
        assert_eq!(
            admin.get(theirs).await.unwrap().unwrap().state,
            JobState::Available
        );
        assert!(admin.get(nobody).await.unwrap().is_some());

        // Naming another tenant is refused, and writes nothing.
        let before = admin.stats().await.unwrap().totals.total();
        assert_forbidden(
            acme.enqueue_raw("report", json!({}), EnqueueOptions::new().tenant("globex"))
                .await,
        );
        assert_forbidden(
            acme.enqueue_many([
                NewJob::raw("report", json!({}), EnqueueOptions::new()),
                NewJob::raw("report", json!({}), EnqueueOptions::new().tenant("globex")),
            ])
            .await,
        );
        assert_eq!(admin.stats().await.unwrap().totals.total(), before);
        assert_forbidden(acme.list(&JobFilter::new().tenant("globex")).await);

        // Its list holds only its own jobs.
        let listed: Vec<JobId> = acme
            .list(&JobFilter::new())
            .await
            .unwrap()
            .jobs
            .iter()
            .map(|job| job.id)
            .collect();
        assert_eq!(listed, vec![named, own]);
        assert_eq!(acme.cancel(own).await.unwrap().state, JobState::Cancelled);

        // Its stats count only its own jobs, from the store's per-tenant counters.
        let stats = acme.stats().await.unwrap();
        assert_eq!(
            (stats.totals.available, stats.totals.cancelled),
            (1, 1),
            "{stats:?}"
        );
        assert_eq!(stats.totals.total(), 2);
        assert_eq!(stats.tenants.keys().collect::<Vec<_>>(), vec!["acme"]);
        let every = admin.stats().await.unwrap();
        assert_eq!(every.totals.total(), 4);
        assert_eq!(every.tenants["globex"].available, 1);

        // Its queue overview holds the queues of its own jobs, with their counts only.
        enqueue(&admin, Some("globex"), "globex-only").await;
        let overview = acme.queue_overview().await.unwrap();
        let names: Vec<&str> = overview.iter().map(|queue| queue.name.as_str()).collect();
        assert_eq!(names, vec!["t"]);
        // No worker is bound to acme, so none is shown (issue 17).
        assert!(overview.iter().all(|queue| queue.workers.is_empty()));
        let total: i64 = overview.iter().map(|queue| queue.counts.total()).sum();
        assert_eq!(total, 2, "{overview:?}");

        // --- stream tenant ---
        // Its queue settings are those of its own jobs' queues, and its workers those bound
        // to it: none here (issue 17).
        admin.pause("globex-only").await.unwrap();
        admin.resume("globex-only").await.unwrap();
        assert!(acme.queues().await.unwrap().is_empty());
        assert!(admin
            .queues()
            .await
            .unwrap()
            .iter()
            .any(|queue| queue.name == "globex-only"));
        assert!(acme.workers().await.unwrap().is_empty());
        assert!(acme.worker_overview().await.unwrap().is_empty());
        // Calls changing every tenant are refused.
        assert_forbidden(acme.pause("t").await);
        assert_forbidden(acme.resume("t").await);
        assert_forbidden(acme.leader().await);
        assert!(!admin
            .queues()
            .await
            .unwrap()
            .iter()
            .any(|queue| queue.paused));
    }

    pub async fn bulk_retry_counts_what_remains_in_its_own_scope(store: Arc<dyn Store>) {
        let admin = client(&store);
        let mut globex = Vec::new();
        for _ in 0..3 {
            globex.push(enqueue(&admin, Some("globex"), "q").await);
        }
        let acme = admin.for_tenant("acme");
        for _ in 0..2 {
            enqueue(&acme, None, "q").await;
        }
        for job in admin.list(&JobFilter::new()).await.unwrap().jobs {
            admin.cancel(job.id).await.unwrap();
        }

        let filter = RetryFilter::new().state(JobState::Cancelled).limit(1);
        let mut steps = Vec::new();
        let report = acme
            .retry_many(&filter, |step| steps.push((step.retried, step.total)))
            .await
            .unwrap();
        assert_eq!((report.retried, report.remaining), (1, 1));
        assert_eq!(steps, vec![(0, 1), (1, 1)]);
        let report = acme.retry_many(&filter, |_| {}).await.unwrap();
        assert_eq!((report.retried, report.remaining), (1, 0));
        let report = acme.retry_many(&filter, |_| {}).await.unwrap();
        assert_eq!((report.retried, report.remaining), (0, 0));
        for id in &globex {
            assert_eq!(
                admin.get(*id).await.unwrap().unwrap().state,
                JobState::Cancelled,
                "another tenant's jobs stay as they were"
            );
        }
        // An unscoped retry naming a tenant counts in that tenant too.
        let report = admin
            .retry_many(&filter.clone().tenant("globex"), |_| {})
            .await
            .unwrap();
        assert_eq!((report.retried, report.remaining), (1, 2));
        let report = admin
            .retry_many(&RetryFilter::new().state(JobState::Cancelled), |_| {})
            .await
            .unwrap();
        assert_eq!((report.retried, report.remaining), (2, 0));
        assert_forbidden(
            acme.retry_many(&RetryFilter::new().tenant("globex"), |_| {})
                .await,
        );
    }

    pub async fn a_worker_is_alive_exactly_while_the_rescuer_leaves_its_jobs(
        store: Arc<dyn Store>,
    ) {
        let t0: chrono::DateTime<chrono::Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let clock = StubClock::new(t0);
        let stale_after = Duration::from_secs(3);
        let client = Client::new(Arc::clone(&store))
            .with_clock(Arc::new(clock.clone()))
            .with_stale_after(stale_after);
        let job = client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().queue("live"))
            .await
            .unwrap()
            .id;
        store
            .worker_heartbeat(WorkerHeartbeatParams {
                details: Default::default(),
                id: "w1".into(),
                host: "h".into(),
                pid: 1,
                queues: vec!["live".into(), "other".into()],
                concurrency: 1,
                started_at: t0,
                done_delta: 0,
                failed_delta: 0,
                running: Vec::new(),
                now: t0,
            })
            .await
            .unwrap();
        let claimed = store
            .job_claim(JobClaimParams {
                queue: "live".into(),
                kinds: Vec::new(),
                limit: 1,
                worker_id: "w1".into(),
                now: t0,
                lease: None,
            })
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);

        let stuck = |now: chrono::DateTime<chrono::Utc>| {
            let store = Arc::clone(&store);
            async move {
                store
                    .job_list_stuck(JobStuckParams {
                        stale_before: now - chrono::Duration::from_std(stale_after).unwrap(),
                        now,
                        limit: 10,
                    })
                    .await
                    .unwrap()
                    .len()
            }
        };
        // At the edge: alive, and the rescuer leaves its job.
        let edge = t0 + chrono::Duration::seconds(3);
        clock.set(edge);
        let workers = client.worker_overview().await.unwrap();
        assert_eq!(workers.len(), 1);
        assert!(workers[0].alive);
        assert_eq!(stuck(edge).await, 0);
        let queues = client.queue_overview().await.unwrap();
        let live = queues.iter().find(|queue| queue.name == "live").unwrap();
        assert_eq!(live.counts.running, 1);
        assert_eq!(live.workers.len(), 1);
        assert!(live.workers[0].alive);
        let other = queues.iter().find(|queue| queue.name == "other");
        assert!(
            other.is_none(),
            "a queue with no jobs nor settings is not listed"
        );

        // A microsecond later: gone, and the rescuer takes its job.
        let past = edge + chrono::Duration::microseconds(1);
        clock.set(past);
        assert!(!client.worker_overview().await.unwrap()[0].alive);
        assert_eq!(stuck(past).await, 1);
        assert!(
            !client.queue_overview().await.unwrap()[0].workers[0].alive,
            "{job}"
        );
    }

    pub async fn schedules_and_filters_are_bounded(store: Arc<dyn Store>) {
        let client = client(&store);
        let huge = Duration::from_secs_f64(1e15);
        match client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().delay(huge))
            .await
        {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "delay"),
            other => panic!("expected an invalid delay, got {other:?}"),
        }
        for run_at in ["+10000-01-01T00:00:00Z", "-0001-12-31T00:00:00Z"] {
            let run_at: chrono::DateTime<chrono::Utc> = run_at.parse().unwrap();
            match client
                .enqueue_raw("k", json!({}), EnqueueOptions::new().run_at(run_at))
                .await
            {
                Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "run_at"),
                other => panic!("expected an invalid run_at, got {other:?}"),
            }
        }
        assert_eq!(client.stats().await.unwrap().totals.total(), 0);

        let mut filter = JobFilter::new();
        filter.queues = (0..=stoker::FILTER_MAX).map(|n| format!("q{n}")).collect();
        match client.list(&filter).await {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "queues"),
            other => panic!("expected too many queues, got {other:?}"),
        }
        match client.list(&JobFilter::new().before(JobId(0))).await {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "before"),
            other => panic!("expected a bad cursor, got {other:?}"),
        }
        let mut retry = RetryFilter::new();
        retry.kinds = (0..=stoker::FILTER_MAX).map(|n| format!("k{n}")).collect();
        match client.retry_many(&retry, |_| {}).await {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "kinds"),
            other => panic!("expected too many kinds, got {other:?}"),
        }
    }

    pub async fn enqueue_returning_answers_the_job_as_it_is(store: Arc<dyn Store>) {
        let client = client(&store);
        let at: chrono::DateTime<chrono::Utc> = chrono::Utc::now() + chrono::Duration::hours(1);
        let jobs = client
            .enqueue_many_returning([
                NewJob::raw("k", json!({}), EnqueueOptions::new().unique_key("one")),
                NewJob::raw(
                    "k",
                    json!({}),
                    EnqueueOptions::new().queue("later").run_at(at),
                ),
                NewJob::raw("k", json!({}), EnqueueOptions::new().unique_key("one")),
            ])
            .await
            .unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(!jobs[0].duplicate && !jobs[1].duplicate);
        assert!(jobs[2].duplicate);
        assert_eq!(jobs[2].id, jobs[0].id);
        for job in &jobs[..2] {
            let stored = client.get(job.id).await.unwrap().unwrap();
            assert_eq!(job.state, stored.state);
            assert_eq!(
                job.run_at, stored.run_at,
                "to the microsecond the store keeps"
            );
            assert_eq!(job.queue, stored.queue);
        }
        client.cancel(jobs[0].id).await.unwrap();
        let again = client
            .enqueue_many_returning([NewJob::raw(
                "k",
                json!({}),
                EnqueueOptions::new().unique_key("one"),
            )])
            .await
            .unwrap();
        assert!(again[0].duplicate);
        assert_eq!(again[0].id, jobs[0].id);
        assert_eq!(again[0].state, JobState::Cancelled);
    }

    /// Jobs resolved by the caller still meet the client's rules: its tenant scope and the
    /// schedule's range refuse them before anything is written.
    pub async fn resolved_jobs_keep_the_clients_rules(store: Arc<dyn Store>) {
        let resolved = |tenant: Option<&str>, run_at| stoker::core::JobInsert {
            kind: "k".into(),
            queue: "default".into(),
            args: json!({}),
            priority: stoker::Priority(0),
            max_attempts: 3,
            run_at,
            unique_key: None,
            tenant: tenant.map(str::to_owned),
            metadata: Default::default(),
            timeout_ms: None,
            backoff: None,
        };
        let scoped = client(&store).for_tenant("acme");
        assert_forbidden(
            scoped
                .enqueue_resolved_returning(vec![
                    resolved(None, None),
                    resolved(Some("other"), None),
                ])
                .await,
        );
        let too_late = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        match scoped
            .enqueue_resolved_returning(vec![resolved(None, Some(too_late))])
            .await
        {
            Err(Error::Invalid(invalid)) => assert_eq!(invalid.field, "run_at"),
            other => panic!("expected an invalid run_at, got {other:?}"),
        }
        assert_eq!(client(&store).stats().await.unwrap().totals.total(), 0);

        let jobs = scoped
            .enqueue_resolved_returning(vec![resolved(None, None), resolved(Some("acme"), None)])
            .await
            .unwrap();
        for job in jobs {
            assert!(!job.duplicate);
            let stored = scoped.get(job.id).await.unwrap().unwrap();
            assert_eq!(stored.tenant.as_deref(), Some("acme"));
            assert_eq!((job.state, job.run_at), (stored.state, stored.run_at));
        }
    }
}

macro_rules! client_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        client_tests!(@each $factory, [$(#[$attr])*],
            a_scoped_client_sees_and_touches_only_its_tenant,
            bulk_retry_counts_what_remains_in_its_own_scope,
            a_worker_is_alive_exactly_while_the_rescuer_leaves_its_jobs,
            schedules_and_filters_are_bounded,
            enqueue_returning_answers_the_job_as_it_is,
            resolved_jobs_keep_the_clients_rules,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( client_tests!(@one $factory, $attrs, $name); )*
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
    client_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    client_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
