//! Job search through the client (issue 14), on every store: counts of states, queues and kinds
//! come exactly from the store's counts past the store count's cap, other criteria from the
//! bounded count; a tenant-scoped client searches and counts its own tenant only.

mod common;

use std::sync::Arc;

use serde_json::json;
use stoker::{
    Client, EnqueueOptions, Error, JobCriteria, JobSearchParams, NewJob, StateView, Store,
    JOB_COUNT_CAP,
};

mod scenarios {
    use super::*;

    pub async fn counts_are_exact_from_counters(store: Arc<dyn Store>) {
        let client = Client::new(store);
        let many = JOB_COUNT_CAP as usize + 10;
        let jobs = (0..many)
            .map(|n| NewJob::raw("tiny", json!({"n": n}), EnqueueOptions::new().queue("bulk")));
        client.enqueue_many(jobs).await.unwrap();
        client
            .enqueue_raw("tiny", json!({}), EnqueueOptions::new().tenant("acme"))
            .await
            .unwrap();
        // States, queues and kinds alone: exact, past the cap.
        let by_queue = client
            .count(
                client
                    .parse_query("queue:bulk state:available,scheduled")
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!((by_queue.count, by_queue.exact), (many as u64, true));
        // `available` alone needs the schedule flag: the bounded count.
        let due = client
            .count(JobCriteria {
                states: vec![StateView::Available],
                ..JobCriteria::default()
            })
            .await
            .unwrap();
        assert_eq!((due.count, due.exact), (JOB_COUNT_CAP, false));
        // A tenant-scoped client counts and searches its own tenant.
        let acme = client.for_tenant("acme");
        let own = acme.count(JobCriteria::default()).await.unwrap();
        assert_eq!((own.count, own.exact), (1, true));
        let page = acme
            .search(JobSearchParams::new(JobCriteria::default(), 10))
            .await
            .unwrap();
        assert_eq!(page.jobs.len(), 1);
        let other = acme
            .count(client.parse_query("tenant:globex").unwrap())
            .await;
        assert!(
            matches!(other, Err(Error::TenantForbidden { .. })),
            "{other:?}"
        );
    }
}

macro_rules! search_tests {
    ($factory:path $(, #[$attr:meta])* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn counts_are_exact_from_counters() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::counts_are_exact_from_counters(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    search_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    search_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
