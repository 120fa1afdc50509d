//! Workflows through the client and a running worker (issue 18), on every store: a chain
//! whose handlers read the previous result, dynamic fan-out from inside a job with a fan-in
//! that reads every result, tenant scoping of workflows, and cancel through the client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::{
    Client, DepPolicy, Dependency, EnqueueOptions, Error, JobContext, JobError, NewJob, Store,
    Worker, Workflow, WorkflowState,
};

use common::wait_events;

fn job(kind: &str, args: Value) -> NewJob {
    NewJob::raw(kind, args, EnqueueOptions::new())
}

mod scenarios {
    use super::*;

    /// A chain (each step adds to the previous result) and a fan-out of 20 jobs added by a
    /// running job, joined by one job that reads all 20 results; both workflows complete with
    /// their final jobs' results.
    pub async fn chain_and_dynamic_fan_out_run_to_completion(store: Arc<dyn Store>) {
        let client = Client::new(Arc::clone(&store));
        let worker = Worker::builder(Arc::clone(&store))
            .queue("default", 4)
            .poll_interval(Duration::from_millis(20))
            .handler_fn("step", |args: Value, ctx: JobContext| async move {
                let previous = ctx
                    .dependency_results()
                    .await
                    .map_err(JobError::retryable)?;
                let input = previous
                    .first()
                    .and_then(|dep| dep.result.as_ref())
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                Ok(json!(input * 10 + args["n"].as_i64().unwrap_or(0)))
            })
            .handler_fn("split", |_args: Value, ctx: JobContext| async move {
                let mut more = Workflow::new("ignored");
                let mut all = Vec::new();
                for i in 0..20 {
                    let name = format!("part{i}");
                    more = more.job_after(
                        name.clone(),
                        job("part", json!({ "i": i })),
                        [Dependency::node("split")],
                    );
                    all.push(Dependency::node(name).policy(DepPolicy::Run));
                }
                more = more.job_after("join", job("join", json!({})), all);
                ctx.add_to_workflow(more)
                    .await
                    .map_err(JobError::retryable)?;
                Ok(json!("split"))
            })
            .handler_fn("part", |args: Value, _ctx: JobContext| async move {
                Ok(args["i"].clone())
            })
            .handler_fn("join", |_args: Value, ctx: JobContext| async move {
                let deps = ctx
                    .dependency_results()
                    .await
                    .map_err(JobError::retryable)?;
                let sum: i64 = deps
                    .iter()
                    .filter_map(|dep| dep.result.as_ref().and_then(Value::as_i64))
                    .sum();
                Ok(json!({ "parts": deps.len(), "sum": sum }))
            })
            .build()
            .expect("worker");
        let handle = worker.start().await.expect("start");
        let mut events = handle.events();

        let chain = client
            .enqueue_workflow(Workflow::chain(
                "chain",
                [
                    ("one", job("step", json!({ "n": 1 }))),
                    ("two", job("step", json!({ "n": 2 }))),
                    ("three", job("step", json!({ "n": 3 }))),
                ],
            ))
            .await
            .expect("chain");
        let fan = client
            .enqueue_workflow(Workflow::new("fan").job("split", job("split", json!({}))))
            .await
            .expect("fan");
        // 3 steps + split + 20 parts + join.
        wait_events(&mut events, 25, Duration::from_secs(60), |_| true).await;
        handle.shutdown().await;

        let chain = client.workflow(chain.workflow).await.unwrap().unwrap();
        assert_eq!(chain.state, WorkflowState::Completed);
        assert_eq!(chain.result, Some(json!({ "three": 123 })));
        let fan = client.workflow(fan.workflow).await.unwrap().unwrap();
        assert_eq!(fan.state, WorkflowState::Completed);
        assert_eq!(fan.counts.completed, 22);
        assert_eq!(
            fan.result,
            Some(json!({ "join": { "parts": 20, "sum": 190 } }))
        );
    }

    /// A tenant's client enqueues workflows for its tenant only, and cannot see, cancel or
    /// read the dependencies of another tenant's.
    pub async fn workflows_are_scoped_by_tenant(store: Arc<dyn Store>) {
        let admin = Client::new(Arc::clone(&store));
        let acme = admin.for_tenant("acme");
        let globex = admin.for_tenant("globex");
        let wf = acme
            .enqueue_workflow(
                Workflow::new("a")
                    .job("first", job("k", json!({})))
                    .job_after("second", job("k", json!({})), [Dependency::node("first")]),
            )
            .await
            .expect("enqueue");
        let second = wf.jobs[1].1;
        assert_eq!(
            admin.get(second).await.unwrap().unwrap().tenant.as_deref(),
            Some("acme")
        );
        assert!(globex.workflow(wf.workflow).await.unwrap().is_none());
        assert!(matches!(
            globex.cancel_workflow(wf.workflow).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            globex.dependency_results(second).await,
            Err(Error::NotFound(_))
        ));
        // A dependency on another tenant's job is refused naming it.
        let err = globex
            .enqueue_workflow(Workflow::new("b").job_after(
                "x",
                job("k", json!({})),
                [Dependency::job(second)],
            ))
            .await
            .unwrap_err();
        match err {
            Error::Invalid(invalid) => assert_eq!(invalid.field, "nodes[0].depends_on[0]"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let cancelled = acme.cancel_workflow(wf.workflow).await.expect("cancel");
        assert_eq!(cancelled.state, WorkflowState::Cancelled);
        assert_eq!(acme.dependency_results(second).await.unwrap().len(), 1);
    }

    // --- stream workflows ---
    /// A parent that waits for its children through a running worker: its handler enqueues
    /// three children with `ctx.enqueue_child` and returns; it is `blocked` with its result
    /// until they finish, then `completed` with that result, having run once; the children
    /// carry its lineage and tenant. A parent whose child is discarded under `cancel` ends
    /// cancelled.
    pub async fn parent_waits_for_its_children(store: Arc<dyn Store>) {
        let client = Client::new(Arc::clone(&store));
        // The children wait for permits, so the parent is seen waiting.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (gate_in, runs_in) = (Arc::clone(&gate), Arc::clone(&runs));
        let worker = Worker::builder(Arc::clone(&store))
            .queue("default", 8)
            .poll_interval(Duration::from_millis(20))
            .handler_fn("parent", move |args: Value, ctx: JobContext| {
                let runs = Arc::clone(&runs_in);
                async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let failing = args["failing"].as_bool().unwrap_or(false);
                    for i in 0..3 {
                        let kind = if failing && i == 0 { "bad" } else { "slow" };
                        ctx.enqueue_child(job(kind, json!({ "i": i })))
                            .await
                            .map_err(JobError::retryable)?;
                    }
                    Ok(json!("parent result"))
                }
            })
            .handler_fn("slow", move |args: Value, _ctx: JobContext| {
                let gate = Arc::clone(&gate_in);
                async move {
                    gate.acquire().await.expect("gate").forget();
                    Ok(args["i"].clone())
                }
            })
            .handler_fn("bad", |_args: Value, _ctx: JobContext| async move {
                Err::<Value, _>(JobError::fatal("no"))
            })
            .build()
            .expect("worker");
        let handle = worker.start().await.expect("start");
        let tenant = client.for_tenant("acme");
        let enqueue = |args: Value| {
            let tenant = tenant.clone();
            async move {
                tenant
                    .enqueue_many([job("parent", args)])
                    .await
                    .expect("enqueue")[0]
                    .id
            }
        };
        let until = |id: stoker::JobId, state: stoker::JobState| {
            let client = client.clone();
            async move {
                for _ in 0..1500 {
                    let row = client.get(id).await.unwrap().unwrap();
                    if row.state == state {
                        return row;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("job {id} never became {state:?}");
            }
        };

        let parent = enqueue(json!({})).await;
        let blocked = until(parent, stoker::JobState::Blocked).await;
        assert_eq!(blocked.result, Some(json!("parent result")));
        let wait = client.job_children(parent).await.unwrap().unwrap();
        assert_eq!((wait.pending, wait.states.total()), (3, 3));
        for kid in &wait.unresolved {
            let row = client.get(kid.id).await.unwrap().unwrap();
            assert_eq!(row.tenant.as_deref(), Some("acme"));
            assert_eq!(row.metadata.parent_id, Some(parent));
        }
        gate.add_permits(3);
        let done = until(parent, stoker::JobState::Completed).await;
        assert_eq!(done.result, Some(json!("parent result")));
        assert_eq!(done.attempt, 1);
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "it ran once"
        );

        // A child discarded under the default policy cancels its parent.
        let failing = enqueue(json!({ "failing": true })).await;
        gate.add_permits(2);
        let cancelled = until(failing, stoker::JobState::Cancelled).await;
        assert_eq!(cancelled.attempt, 1);
        handle.shutdown().await;
    }
}

macro_rules! workflow_tests {
    ($factory:path $(, #[$attr:meta])*) => {
        workflow_tests!(@each $factory, [$(#[$attr])*],
            chain_and_dynamic_fan_out_run_to_completion,
            workflows_are_scoped_by_tenant,
            parent_waits_for_its_children,
        );
    };
    (@each $factory:path, $attrs:tt, $($name:ident),* $(,)?) => {
        $( workflow_tests!(@one $factory, $attrs, $name); )*
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
    workflow_tests!(crate::common::sqlite);
}

mod postgres {
    use super::*;
    workflow_tests!(
        crate::common::postgres,
        #[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
    );
}
