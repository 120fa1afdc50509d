//! Flow control (issue 16) across processes on PostgreSQL: four worker processes of
//! concurrency 50 each share one rate limit and one concurrency limit, enforced by the claim
//! in the database, even while workers are killed with SIGKILL.
//!
//! The test drains a kind limited to 100 per second for 20 s; this one drains it for
//! about 5 s (500 jobs), so CI stays fast: the window and average checks are the same.
//!
//! The test re-runs its own binary as the child workers (the ignored test
//! `flow_child_worker`, which does nothing unless the parent's environment variables are set).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stoker::maintenance::RescuerConfig;
use stoker::{
    Client, EnqueueOptions, JobError, JobFilter, JobState, LimitKey, LimitSpec, NewJob, Rate,
    Store, Worker,
};

const CHILD_URL: &str = "STOKER_FLOW_CHILD_URL";
const CHILD_SCHEMA: &str = "STOKER_FLOW_CHILD_SCHEMA";
const PROCESSES: usize = 4;
const CONCURRENCY: usize = 50;

/// The rate: 100 per second, bursts of 10.
const RATE: u32 = 100;
const BURST: u32 = 10;
/// About 5 s of work at the rate.
const RATE_JOBS: usize = 500;

/// The concurrency cap of the `slow` kind, and how many of its jobs there are.
const CAP: i64 = 5;
const SLOW_JOBS: usize = 40;

async fn open_store(url: &str, schema: &str) -> Arc<dyn Store> {
    Arc::new(
        stoker::postgres::PgStore::builder(url)
            .schema(schema)
            .max_connections(4)
            .build()
            .await
            .unwrap(),
    )
}

/// The child: a worker of concurrency 50 that runs `tick` (instant) and `slow` (300 ms) jobs
/// until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the multi-process flow tests run this as their child process"]
async fn flow_child_worker() {
    let (Ok(url), Ok(schema)) = (std::env::var(CHILD_URL), std::env::var(CHILD_SCHEMA)) else {
        return;
    };
    let store = open_store(&url, &schema).await;
    let _handle = Worker::builder(store)
        .queue("default", CONCURRENCY)
        .handler_fn("tick", |_args, _ctx| async {
            Ok::<_, JobError>(json!(null))
        })
        .handler_fn("slow", |_args, _ctx| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, JobError>(json!(null))
        })
        .maintenance(false)
        .poll_interval(Duration::from_millis(200))
        .heartbeat_interval(Duration::from_millis(100))
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
            "flow_child_worker",
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
        .expect("spawn a child worker")
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

async fn migrated() -> (Arc<dyn Store>, String, String) {
    let url = common::postgres_url();
    let schema = common::new_schema("stoker_crash").await;
    let store = open_store(&url, &schema).await;
    store.migrate().await.unwrap();
    (store, url, schema)
}

/// Four processes × concurrency 50 drain a kind limited to 100 per second (bursts of 10):
/// no 1-second window starts more than 110, and the average is within 5 % of 100 per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn postgres_processes_share_one_rate_limit() {
    let (store, url, schema) = migrated().await;
    let client = Client::new(Arc::clone(&store));
    let mut spec = limit("ticks", "tick");
    spec.rate = Some(Rate {
        count: RATE,
        period_ms: 1000,
        burst: BURST,
    });
    client.limit_set(spec).await.unwrap();
    client
        .enqueue_many(
            (0..RATE_JOBS).map(|n| NewJob::raw("tick", json!({ "n": n }), EnqueueOptions::new())),
        )
        .await
        .unwrap();
    let mut children: Vec<Child> = (0..PROCESSES).map(|_| spawn_child(&url, &schema)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = client.stats().await.unwrap();
        if stats.totals.completed == RATE_JOBS as i64 {
            break;
        }
        for child in &mut children {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("a child worker exited: {status}");
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drain did not finish: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    // Each job's start is its claim time, the instant the limit admitted it.
    let mut starts: Vec<DateTime<Utc>> = client
        .list(
            &JobFilter::new()
                .state(JobState::Completed)
                .limit(RATE_JOBS as u32),
        )
        .await
        .unwrap()
        .jobs
        .iter()
        .map(|job| job.attempted_at.expect("started"))
        .collect();
    assert_eq!(starts.len(), RATE_JOBS);
    starts.sort();
    let mut busiest = 0;
    let mut end = 0;
    for (i, start) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < *start + chrono::Duration::seconds(1) {
            end += 1;
        }
        busiest = busiest.max(end - i);
    }
    assert!(
        busiest <= (RATE + BURST) as usize,
        "{busiest} started within one second: above the limit + burst"
    );
    // After the burst, one start per interval: (jobs - burst) intervals from first to last.
    let span = (*starts.last().unwrap() - starts[0])
        .num_microseconds()
        .unwrap() as f64
        / 1e6;
    let rate = (RATE_JOBS as f64 - f64::from(BURST)) / span;
    assert!(
        (rate - f64::from(RATE)).abs() <= f64::from(RATE) * 0.05,
        "average {rate:.1} per second over {span:.2} s, not within 5 % of {RATE}"
    );
}

/// A kind capped at 5 running, drained by four processes of concurrency 50 while two of them
/// are killed mid-run: at no sample are more than 5 running (the killed workers' jobs hold
/// their slots until they are rescued), every job completes, and no slot leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn postgres_concurrency_limit_holds_while_workers_are_killed() {
    let (store, url, schema) = migrated().await;
    let client = Client::new(Arc::clone(&store));
    let mut spec = limit("slots", "slow");
    spec.concurrency = Some(CAP as u32);
    client.limit_set(spec).await.unwrap();
    client
        .enqueue_many(
            (0..SLOW_JOBS).map(|n| NewJob::raw("slow", json!({ "n": n }), EnqueueOptions::new())),
        )
        .await
        .unwrap();
    let mut children: Vec<Child> = (0..PROCESSES).map(|_| spawn_child(&url, &schema)).collect();
    // The parent's own worker (one slot, under the same cap) runs the rescuer, which hands
    // the killed workers' jobs back once their heartbeats are a second stale.
    let rescuer = Worker::builder(Arc::clone(&store))
        .queue("default", 1)
        .handler_fn("slow", |_args, _ctx| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, JobError>(json!(null))
        })
        .poll_interval(Duration::from_millis(100))
        .rescuer(RescuerConfig {
            interval: Duration::from_millis(200),
            stale_after: Duration::from_secs(1),
            ..RescuerConfig::default()
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let running_sql =
        format!("SELECT count(*) FROM \"{schema}\".stoker_jobs WHERE state = 'running'");
    let mut peak = 0;
    let mut killed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = sqlx::query_scalar(&running_sql)
            .fetch_one(&pool)
            .await
            .unwrap();
        peak = peak.max(running);
        assert!(running <= CAP, "{running} running under a cap of {CAP}");
        let completed = client.stats().await.unwrap().totals.completed;
        // Kill two workers once the drain is going, while they hold jobs.
        if killed < 2 && completed >= 5 * (killed + 1) && running > 0 {
            let mut child = children.remove(0);
            child.kill().expect("SIGKILL a child worker");
            child.wait().unwrap();
            killed += 1;
        }
        if completed == SLOW_JOBS as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drain did not finish ({completed} completed)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(killed, 2);
    assert_eq!(peak, CAP, "the cap was reached, and never passed");
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    rescuer.shutdown().await;
    // Every slot was given back, by completion or rescue: nothing to reconcile.
    assert_eq!(client.limit_reconcile().await.unwrap(), 0, "no slot leaked");
    assert!(client
        .limit_usage()
        .await
        .unwrap()
        .iter()
        .all(|usage| usage.running == 0));
}
