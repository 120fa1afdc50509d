//! A job released by its last dependency runs at once on a worker that polls only once an
//! hour (issue 18): the store wakes the released job's queue as an insert into it does, on
//! every store. Without the wake-up the job would wait for the hourly poll and the test fail
//! when its generous bound runs out; it does not depend on how fast the machine is.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::{
    Client, Dependency, EnqueueOptions, JobContext, NewJob, Store, Worker, WorkerEvent, Workflow,
};

use common::wait_events;

/// Longer than any test runs: the worker's poll never fires.
const HOUR: Duration = Duration::from_secs(3600);

/// Generous: only a missing wake-up takes this long.
const BOUND: Duration = Duration::from_secs(20);

fn job_in(queue: &str, kind: &str) -> NewJob {
    NewJob::raw(kind, json!({}), EnqueueOptions::new().queue(queue))
}

mod scenarios {
    use super::*;

    /// The dependency runs in one queue and the job it releases waits in another, whose
    /// producer has gone idle (it ran a marker job first); the released job still runs.
    pub async fn released_job_runs_without_a_poll(store: Arc<dyn Store>) {
        let client = Client::new(Arc::clone(&store));
        let worker = Worker::builder(Arc::clone(&store))
            .queue("wake-first", 1)
            .queue("wake-then", 1)
            .poll_interval(HOUR)
            .heartbeat_interval(HOUR)
            .handler_fn("k", |_args: Value, _ctx: JobContext| async move {
                Ok(Value::Null)
            })
            .build()
            .expect("worker");
        let handle = worker.start().await.expect("start");
        let mut events = handle.events();

        // The released job's queue has claimed, run and gone idle before the release.
        let marker = client
            .enqueue_raw("k", json!({}), EnqueueOptions::new().queue("wake-then"))
            .await
            .expect("marker");
        wait_events(&mut events, 1, BOUND, |e: &WorkerEvent| e.id == marker.id).await;

        let flow = client
            .enqueue_workflow(
                Workflow::new("wake")
                    .job("first", job_in("wake-first", "k"))
                    .job_after(
                        "then",
                        job_in("wake-then", "k"),
                        [Dependency::node("first")],
                    ),
            )
            .await
            .expect("enqueue_workflow");
        let then = flow.jobs[1].1;
        wait_events(&mut events, 1, BOUND, |e: &WorkerEvent| e.id == then).await;
        handle.shutdown().await;
    }
}

macro_rules! wake_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn released_job_runs_without_a_poll() {
            let store: Arc<dyn Store> = $factory().await;
            crate::scenarios::released_job_runs_without_a_poll(store).await;
        }
    };
}

mod sqlite {
    use super::*;
    wake_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    wake_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
