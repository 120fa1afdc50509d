//! Workers killed with SIGKILL in the middle of a 1,000-job workflow and a 1,000-job batch on
//! PostgreSQL lose nothing (issue 18): every job runs, the workflow's fan-in job and the
//! batch's callback each run exactly once (one job, completed), and nothing is left blocked,
//! waiting or running.
//!
//! As `crash.rs`, the test re-runs its own binary as the child worker (the ignored test
//! `crash_workflows_child`, which does nothing unless the parent's environment variables are
//! set), waits until the child is in the middle of the jobs, kills it with SIGKILL, then
//! starts a worker of its own with a fast rescuer. Skipped without `STOKER_TEST_DATABASE_URL`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::maintenance::RescuerConfig;
use stoker::postgres::PgStore;
use stoker::{
    Batch, BatchState, Client, Dependency, EnqueueOptions, JobContext, JobError, JobFilter,
    JobState, NewJob, Store, Worker, WorkerBuilder, Workflow, WorkflowState,
};

const CHILD_URL: &str = "STOKER_CRASH_WF_CHILD_URL";
const CHILD_SCHEMA: &str = "STOKER_CRASH_WF_CHILD_SCHEMA";
/// Leaves of the workflow's fan-out, and jobs of the batch.
const LEAVES: usize = 1_000;

async fn open_store(url: &str, schema: &str) -> Arc<dyn Store> {
    Arc::new(
        PgStore::builder(url)
            .schema(schema)
            .max_connections(8)
            .build()
            .await
            .expect("connect postgres"),
    )
}

async fn effects_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("connect postgres")
}

/// Records a job's side effect, idempotent by job id as a handler's should be, and (for the
/// fan-in and the callback) what it saw.
async fn apply(pool: &sqlx::PgPool, schema: &str, id: i64, seen: Value) -> Result<(), JobError> {
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".effects (job_id, seen) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    ))
    .bind(id)
    .bind(seen)
    .execute(pool)
    .await
    .map_err(JobError::retryable)?;
    Ok(())
}

/// The handlers, on a pool for the side effects.
fn handlers(builder: WorkerBuilder, pool: sqlx::PgPool, schema: String) -> WorkerBuilder {
    let leaf = (pool.clone(), schema.clone());
    let fanin = (pool.clone(), schema.clone());
    let done = (pool, schema);
    builder
        .handler_fn("leaf", move |_args: Value, ctx: JobContext| {
            let (pool, schema) = leaf.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                apply(&pool, &schema, ctx.id().0, Value::Null).await?;
                Ok(json!(ctx.id().0))
            }
        })
        .handler_fn("fanin", move |_args: Value, ctx: JobContext| {
            let (pool, schema) = fanin.clone();
            async move {
                let deps = ctx
                    .dependency_results()
                    .await
                    .map_err(JobError::retryable)?;
                let completed = deps
                    .iter()
                    .filter(|dep| dep.state == JobState::Completed)
                    .count();
                apply(&pool, &schema, ctx.id().0, json!({"completed": completed})).await?;
                Ok(json!({"completed": completed}))
            }
        })
        .handler_fn("batch_done", move |args: Value, ctx: JobContext| {
            let (pool, schema) = done.clone();
            async move {
                apply(&pool, &schema, ctx.id().0, args["batch"].clone()).await?;
                Ok(json!({}))
            }
        })
}

/// The child: a worker that runs the jobs until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the workflow crash test runs this as its child process"]
async fn crash_workflows_child() {
    let (Ok(url), Ok(schema)) = (std::env::var(CHILD_URL), std::env::var(CHILD_SCHEMA)) else {
        return;
    };
    let store = open_store(&url, &schema).await;
    let pool = effects_pool(&url).await;
    let builder = Worker::builder(store)
        .queue("default", 8)
        .maintenance(false)
        .poll_interval(Duration::from_millis(50));
    let _handle = handlers(builder, pool, schema)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    std::future::pending::<()>().await;
}

fn spawn_child(url: &str, schema: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_workflows_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_SCHEMA, schema)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child worker")
}

fn leaf() -> NewJob {
    NewJob::raw("leaf", json!({}), EnqueueOptions::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn postgres_workers_killed_mid_workflow_and_batch_lose_nothing() {
    let url = common::postgres_url();
    let schema = common::new_schema("stoker_crash").await;
    let store = open_store(&url, &schema).await;
    store.migrate().await.unwrap();
    let pool = effects_pool(&url).await;
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".effects (job_id BIGINT PRIMARY KEY, seen JSONB)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let client = Client::new(Arc::clone(&store));

    // 1 -> 1,000 -> 1, and a batch of 1,000 with its callback.
    let mut workflow = Workflow::new("crash").job("root", leaf());
    let mut all = Vec::with_capacity(LEAVES);
    for i in 0..LEAVES {
        let node = format!("leaf-{i}");
        workflow = workflow.job_after(node.clone(), leaf(), [Dependency::node("root")]);
        all.push(Dependency::node(node));
    }
    workflow = workflow.job_after(
        "fanin",
        NewJob::raw("fanin", json!({}), EnqueueOptions::new()),
        all,
    );
    let workflow = client.enqueue_workflow(workflow).await.unwrap();
    let batch = client
        .enqueue_batch(
            Batch::new("crash")
                .callback(NewJob::raw("batch_done", json!({}), EnqueueOptions::new()))
                .jobs((0..LEAVES).map(|_| leaf())),
        )
        .await
        .unwrap();
    let total = (LEAVES + 2 + LEAVES + 1) as i64;

    let count = |pool: sqlx::PgPool, schema: String| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{schema}\".effects"))
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    // Two kills: each child is killed once it has done some of the work, with jobs running.
    for round in 1..=2_i64 {
        let mut child = spawn_child(&url, &schema);
        let start = count(pool.clone(), schema.clone()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let running = client
                .list(&JobFilter::new().state(JobState::Running))
                .await
                .unwrap()
                .jobs
                .len();
            if count(pool.clone(), schema.clone()).await >= start + 200 && running > 0 {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the child worker exited early: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "child {round} never got going"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().expect("SIGKILL the child"); // std's kill is SIGKILL on Unix
        child.wait().unwrap();
    }
    let at_kill = count(pool.clone(), schema.clone()).await;
    assert!(at_kill < total, "the children finished everything first");

    // A worker of our own rescues the dead ones' jobs and finishes everything.
    let builder = Worker::builder(Arc::clone(&store))
        .queue("default", 8)
        .poll_interval(Duration::from_millis(50))
        .rescuer(RescuerConfig {
            interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            ..RescuerConfig::default()
        });
    let handle = handlers(builder, pool.clone(), schema.clone())
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let flow = client.workflow(workflow.workflow).await.unwrap().unwrap();
        let group = client.batch(batch.batch).await.unwrap().unwrap();
        let callback = client.get(batch.callback.unwrap()).await.unwrap().unwrap();
        if flow.state == WorkflowState::Completed
            && group.state == BatchState::Finished
            && callback.state == JobState::Completed
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: workflow {flow:?}, batch {group:?}, callback {:?}",
            callback.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.shutdown().await;

    assert_eq!(
        count(pool.clone(), schema.clone()).await,
        total,
        "every job's side effect, once"
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.totals.completed, total, "{stats:?}");
    for state in [
        JobState::Blocked,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
    ] {
        let left = client
            .list(&JobFilter::new().state(state))
            .await
            .unwrap()
            .jobs;
        assert!(left.is_empty(), "{} jobs left {state}", left.len());
    }
    for kind in ["fanin", "batch_done"] {
        let jobs = client
            .list(&JobFilter::new().kind(kind))
            .await
            .unwrap()
            .jobs;
        assert_eq!(jobs.len(), 1, "exactly one {kind} job");
        assert_eq!(jobs[0].state, JobState::Completed);
    }
    let seen: Value = sqlx::query_scalar(&format!(
        "SELECT seen FROM \"{schema}\".effects WHERE job_id = $1"
    ))
    .bind(batch.callback.unwrap().0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(seen["total"], json!(LEAVES));
    assert_eq!(seen["completed"], json!(LEAVES));
    let row = client.batch(batch.batch).await.unwrap().unwrap();
    assert_eq!(
        (row.total, row.pending, row.completed),
        (LEAVES as i64, 0, LEAVES as i64)
    );
    let fanin: Value = sqlx::query_scalar(&format!(
        "SELECT seen FROM \"{schema}\".effects AS e JOIN \"{schema}\".stoker_jobs AS j \
         ON j.id = e.job_id WHERE j.kind = 'fanin'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(fanin["completed"], json!(LEAVES));
}
