//! Failure groups, bulk operations and job logs end to end (issue 13): a worker's handler
//! logs to its job and fails; its failures fall into one group whatever the ids in their
//! messages; retrying the group is a bulk operation the leader's bulk runner carries out.
//! Each scenario runs against every store.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stoker::maintenance::BulkRunnerConfig;
use stoker::{
    BulkAction, BulkFilter, BulkOpState, BulkRequest, Client, EnqueueOptions, Error,
    FailureGroupListParams, JobError, JobState, Store, Worker,
};

use common::wait_events;

const WAIT: Duration = Duration::from_secs(20);

mod scenarios {
    use super::*;

    pub async fn failed_jobs_grouped_logged_and_retried_as_a_group(store: Arc<dyn Store>) {
        // Fails the first five runs, then succeeds: the retried group completes.
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let handle = Worker::builder(Arc::clone(&store))
            .poll_interval(Duration::from_millis(50))
            .heartbeat_interval(Duration::from_millis(100))
            .bulk_runner(BulkRunnerConfig {
                interval: Duration::from_millis(50),
                batch: 2,
                ..BulkRunnerConfig::default()
            })
            .queue("default", 2)
            .handler_fn("charge", move |args, ctx| {
                let counter = Arc::clone(&counter);
                async move {
                    ctx.log(format!("charging {}", args["customer"])).await?;
                    if counter.fetch_add(1, Ordering::SeqCst) < 5 {
                        return Err(JobError::fatal(format!(
                            "provider timeout for customer {} (request 0x{:x})",
                            args["customer"],
                            ctx.id().0 * 7919
                        )));
                    }
                    Ok(json!("charged"))
                }
            })
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let mut events = handle.events();
        let client = Client::new(Arc::clone(&store));
        let mut ids = Vec::new();
        for customer in 0..5 {
            let job = client
                .enqueue_raw(
                    "charge",
                    json!({ "customer": customer }),
                    EnqueueOptions::new(),
                )
                .await
                .unwrap();
            ids.push(job.id);
        }
        wait_events(&mut events, 5, WAIT, |_| true).await;

        let groups = client
            .failure_groups(FailureGroupListParams {
                limit: 10,
                ..FailureGroupListParams::default()
            })
            .await
            .unwrap();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].count, 5);
        assert_eq!(
            groups[0].message,
            "provider timeout for customer <n> (request <hex>)"
        );
        let logs = client.job_logs(ids[0]).await.unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].line, "charging 0");
        assert_eq!(logs[0].attempt, 1);

        let op = client
            .retry_failure_group(&groups[0].fingerprint, Some("test".into()))
            .await
            .unwrap();
        let started = Instant::now();
        let op = loop {
            let op = client.bulk_op(op.id).await.unwrap().unwrap();
            if op.state != BulkOpState::Running {
                break op;
            }
            assert!(
                started.elapsed() < WAIT,
                "the bulk runner never ran: {op:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(op.state, BulkOpState::Done);
        assert_eq!((op.matched, op.done, op.skipped), (5, 5, 0));
        wait_events(&mut events, 5, WAIT, |_| true).await;
        for id in &ids {
            let row = client.get(*id).await.unwrap().unwrap();
            assert_eq!(row.state, JobState::Completed);
        }
        // Two attempts logged a line each.
        assert_eq!(client.job_logs(ids[0]).await.unwrap().len(), 2);

        // Nothing left in the group to retry: a clear refusal, nothing written.
        match client
            .retry_failure_group(&groups[0].fingerprint, None)
            .await
        {
            Err(Error::NotFound(what)) => assert_eq!(what, "job matching the filter"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        handle.shutdown().await;
    }

    pub async fn tenant_scoped_clients_stay_in_their_tenant(store: Arc<dyn Store>) {
        let admin = Client::new(Arc::clone(&store));
        let acme = admin.for_tenant("acme");
        let theirs = admin
            .enqueue_raw("k", json!({}), EnqueueOptions::new().tenant("globex"))
            .await
            .unwrap();
        let own = acme
            .enqueue_raw("k", json!({}), EnqueueOptions::new())
            .await
            .unwrap();
        // --- stream tenant ---
        // Its failure groups are its own (issue 17): none failed yet.
        assert!(acme
            .failure_groups(FailureGroupListParams {
                limit: 10,
                ..FailureGroupListParams::default()
            })
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            acme.failure_groups(FailureGroupListParams {
                limit: 10,
                tenant: Some("globex".into()),
                ..FailureGroupListParams::default()
            })
            .await,
            Err(Error::TenantForbidden { .. })
        ));
        // A scoped operation covers only its tenant's jobs.
        let op = acme
            .bulk_start(BulkRequest::new(
                BulkAction::Cancel,
                BulkFilter {
                    kinds: vec!["k".into()],
                    ..BulkFilter::default()
                },
            ))
            .await
            .unwrap();
        assert_eq!(op.filter.tenant.as_deref(), Some("acme"));
        assert!(matches!(
            acme.bulk_start(BulkRequest::new(
                BulkAction::Cancel,
                BulkFilter {
                    tenant: Some("globex".into()),
                    ..BulkFilter::default()
                },
            ))
            .await,
            Err(Error::TenantForbidden { .. })
        ));
        // Run it here, as the leader's runner would.
        stoker::maintenance::BulkRunner::new(
            Arc::clone(&store),
            Arc::new(stoker::SystemClock),
            BulkRunnerConfig::default(),
        )
        .run_once()
        .await
        .unwrap();
        assert_eq!(
            admin.get(own.id).await.unwrap().unwrap().state,
            JobState::Cancelled
        );
        assert_eq!(
            admin.get(theirs.id).await.unwrap().unwrap().state,
            JobState::Available
        );
        // Another tenant's job's logs are not found.
        assert!(matches!(
            acme.job_logs(theirs.id).await,
            Err(Error::NotFound(_))
        ));
    }
}

macro_rules! failure_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        failure_tests!(@each $factory, [$(#[$attr])*],
            failed_jobs_grouped_logged_and_retried_as_a_group,
            tenant_scoped_clients_stay_in_their_tenant,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( failure_tests!(@one $factory, $attrs, $name); )*
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
    failure_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    failure_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
