//! The workloads W1–W7.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stoker::core::{JobClaimParams, JobFinish, JobFinishParams, Outcome};
use stoker::testing::CountingStore;
use stoker::{
    AttemptResult, Client, EnqueueOptions, JobContext, JobError, NewJob, Store, Worker,
    WorkerEvent, WorkerHandle,
};
use tokio::sync::{broadcast, mpsc};

use super::report::{quantile, Figure, Report};
use super::store::{Fresh, Target};
use super::{bare, BenchArgs, BenchError, Workload};

/// The queue every workload uses.
pub(crate) const QUEUE: &str = "bench";
/// Jobs per bulk insert: the bulk API's natural batch.
const BULK_BATCH: usize = 10_000;
/// The longest any one drain may take before the bench gives up on it.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

pub(crate) async fn run(
    workload: Workload,
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    match workload {
        Workload::W1 => w1(target, args, report).await,
        Workload::W2 => w2(target, args, report).await,
        Workload::W3 => w3(target, args, report).await,
        Workload::W4 => w4(target, args, report).await,
        Workload::W5 => w5(target, args, report).await,
        Workload::W6 => super::http::w6(target, args, report).await,
        Workload::W7 => w7(target, args, report).await,
        Workload::Bare => bare::run(target, args, report).await,
        Workload::History => super::history::run(target, args, report).await,
        // --- stream events ---
        Workload::Events => super::events::run(target, args, report).await,
        // --- stream search ---
        Workload::Search => super::search::run(target, args, report).await,
        // --- stream counts ---
        Workload::Counts => super::counts::run(target, args, report).await,
        // --- stream ops ---
        Workload::Dashboard => super::dashboard::run(target, args, report).await,
        // --- stream flow ---
        Workload::Flow => super::flow::run(target, args, report).await,
        Workload::Fair => super::fair::run(target, args, report).await,
        // --- stream wf ---
        Workload::Workflows => super::workflows::run(target, args, report).await,
        // --- stream crypt ---
        Workload::Crypt => super::crypt::run(target, args, report).await,
    }
}

/// A job that does nothing, so the figures measure the queue and not the work.
fn noop(n: usize) -> NewJob {
    NewJob::raw(
        "noop",
        json!({ "n": n }),
        EnqueueOptions::new().queue(QUEUE),
    )
}

pub(crate) async fn enqueue_bulk(client: &Client, jobs: usize) -> Result<(), BenchError> {
    let mut start = 0;
    while start < jobs {
        let end = (start + BULK_BATCH).min(jobs);
        client.enqueue_many((start..end).map(noop)).await?;
        start = end;
    }
    Ok(())
}

/// A worker serving the bench queue with a no-op handler and no maintenance services, started,
/// with a subscription to its events taken before it started (so no completion is missed).
pub(crate) async fn noop_worker(
    store: &Arc<dyn Store>,
    concurrency: usize,
) -> Result<(WorkerHandle, broadcast::Receiver<WorkerEvent>), BenchError> {
    let worker = Worker::builder(Arc::clone(store))
        .queue(QUEUE, concurrency)
        .handler_fn("noop", |_args: Value, _ctx: JobContext| async {
            Ok::<_, JobError>(Value::Null)
        })
        .maintenance(false)
        .build()?;
    let events = worker.events();
    Ok((worker.start().await?, events))
}

/// Waits until `count` attempts of the worker completed. Noop jobs only ever complete, so
/// events lost to lag still count as completions.
pub(crate) async fn wait_completed(
    events: &mut broadcast::Receiver<WorkerEvent>,
    count: usize,
    what: &str,
) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let mut seen = 0;
    while seen < count {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if event.result == AttemptResult::Completed => seen += 1,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(missed))) => seen += missed as usize,
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                return Err(BenchError::Timeout {
                    what: what.to_owned(),
                    limit: DRAIN_LIMIT,
                })
            }
        }
    }
    Ok(())
}

/// Runs `measure` on a fresh store `runs` times and returns each run's value.
async fn per_run<F, Fut>(
    target: &Target,
    runs: usize,
    mut measure: F,
) -> Result<Vec<f64>, BenchError>
where
    F: FnMut(Fresh) -> Fut,
    Fut: std::future::Future<Output = Result<(f64, Fresh), BenchError>>,
{
    let mut values = Vec::with_capacity(runs);
    for _ in 0..runs {
        let fresh = target.fresh().await?;
        let (value, fresh) = measure(fresh).await?;
        fresh.remove().await?;
        values.push(value);
    }
    Ok(values)
}

/// W1: enqueue one at a time (sequential awaits), then with the bulk API.
async fn w1(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let one = per_run(target, args.runs, |fresh| async move {
        let client = Client::new(Arc::clone(&fresh.store));
        let started = Instant::now();
        for n in 0..jobs {
            client.enqueue_many([noop(n)]).await?;
        }
        Ok((jobs as f64 / started.elapsed().as_secs_f64(), fresh))
    })
    .await?;
    report.add(Figure::new(
        "W1",
        format!("enqueue {jobs} one at a time"),
        "jobs/s",
        one,
    ));
    let bulk = per_run(target, args.runs, |fresh| async move {
        let client = Client::new(Arc::clone(&fresh.store));
        let started = Instant::now();
        enqueue_bulk(&client, jobs).await?;
        Ok((jobs as f64 / started.elapsed().as_secs_f64(), fresh))
    })
    .await?;
    report.add(Figure::new(
        "W1",
        format!("enqueue {jobs} in bulk ({BULK_BATCH} per call)"),
        "jobs/s",
        bulk,
    ));
    Ok(())
}

/// Drains `jobs` queued jobs with one worker of `concurrency`; returns jobs/s.
async fn drain(fresh: &Fresh, jobs: usize, concurrency: usize) -> Result<f64, BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    enqueue_bulk(&client, jobs).await?;
    let started = Instant::now();
    let (handle, mut events) = noop_worker(&fresh.store, concurrency).await?;
    wait_completed(&mut events, jobs, "drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// W2: drain a full queue at several concurrencies, and with two worker processes.
async fn w2(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let jobs = args.jobs;
    for concurrency in [1, 8, 50, 200] {
        // At concurrency 1 every job is a round trip of its own: keep that run short.
        let jobs = if concurrency == 1 {
            jobs.min(5_000)
        } else {
            jobs
        };
        let values = per_run(target, args.runs, |fresh| async move {
            Ok((drain(&fresh, jobs, concurrency).await?, fresh))
        })
        .await?;
        report.add(Figure::new(
            "W2",
            format!("drain {jobs}, concurrency {concurrency}"),
            "jobs/s",
            values,
        ));
    }
    let values = per_run(target, args.runs, |fresh| async move {
        let client = Client::new(Arc::clone(&fresh.store));
        enqueue_bulk(&client, jobs).await?;
        let started = Instant::now();
        let children = [
            child::spawn(&fresh, 50, jobs, true)?,
            child::spawn(&fresh, 50, jobs, true)?,
        ];
        wait_store_completed(&client, jobs).await?;
        let elapsed = started.elapsed();
        for child in children {
            child::stop(child).await?;
        }
        Ok((jobs as f64 / elapsed.as_secs_f64(), fresh))
    })
    .await?;
    report.add(Figure::new(
        "W2",
        format!("drain {jobs}, two worker processes × concurrency 50"),
        "jobs/s",
        values,
    ));
    Ok(())
}

/// Waits until the store counts `jobs` completed jobs (for workers in other processes).
async fn wait_store_completed(client: &Client, jobs: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        if client.stats().await?.totals.completed >= jobs as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout {
                what: "drain by worker processes".into(),
                limit: DRAIN_LIMIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Pickup latencies, in milliseconds, of `jobs` jobs enqueued one at a time at about 200/s
/// into a running, idle worker: from the job's insert to its handler starting.
async fn pickup_latencies(fresh: &Fresh, jobs: usize) -> Result<Vec<f64>, BenchError> {
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<f64>();
    let worker = Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, 50)
        .handler_fn("noop", move |_args: Value, ctx: JobContext| {
            let started_tx = started_tx.clone();
            async move {
                let waited = chrono::Utc::now() - ctx.job().created_at;
                let _ =
                    started_tx.send(waited.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
                Ok::<_, JobError>(Value::Null)
            }
        })
        .maintenance(false)
        .build()?;
    let handle = worker.start().await?;
    // Let the worker settle into idle before the first job.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = Client::new(Arc::clone(&fresh.store));
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..jobs {
        tick.tick().await;
        client.enqueue_many([noop(n)]).await?;
    }
    let mut latencies = Vec::with_capacity(jobs);
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    while latencies.len() < jobs {
        match tokio::time::timeout_at(deadline, started_rx.recv()).await {
            Ok(Some(ms)) => latencies.push(ms),
            _ => {
                return Err(BenchError::Timeout {
                    what: "pickup latency".into(),
                    limit: DRAIN_LIMIT,
                })
            }
        }
    }
    handle.shutdown().await;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn add_latency_figures(report: &mut Report, workload: &str, label: &str, runs: &[Vec<f64>]) {
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let values = runs.iter().map(|sorted| quantile(sorted, q)).collect();
        report.add(Figure::new(
            workload,
            format!("{label} pickup {name}"),
            "ms",
            values,
        ));
    }
}

/// W3: pickup latency at about 200 jobs/s into an idle, running worker.
async fn w3(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let jobs = args.jobs.min(2_000);
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        runs.push(pickup_latencies(&fresh, jobs).await?);
        fresh.remove().await?;
    }
    add_latency_figures(report, "W3", &format!("{jobs} jobs at 200/s,"), &runs);
    Ok(())
}

/// Puts `rows` other jobs in the table: half scheduled a day ahead in the very queue the
/// workload drains, half completed but not pruned.
pub(crate) async fn fill(fresh: &Fresh, rows: usize) -> Result<(), BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    let scheduled = rows / 2;
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let mut start = 0;
    while start < scheduled {
        let end = (start + BULK_BATCH).min(scheduled);
        client
            .enqueue_many((start..end).map(|n| {
                NewJob::raw(
                    "noop",
                    json!({ "n": n }),
                    EnqueueOptions::new().queue(QUEUE).run_at(later),
                )
            }))
            .await?;
        start = end;
    }
    let completed = rows - scheduled;
    let filler_queue = "bench-done";
    let mut start = 0;
    while start < completed {
        let end = (start + BULK_BATCH).min(completed);
        client
            .enqueue_many((start..end).map(|n| {
                NewJob::raw(
                    "noop",
                    json!({ "n": n }),
                    EnqueueOptions::new().queue(filler_queue),
                )
            }))
            .await?;
        start = end;
    }
    // Complete them through the store, a batch at a time, as a worker would.
    loop {
        let now = chrono::Utc::now();
        let claimed = fresh
            .store
            .job_claim(JobClaimParams {
                queue: filler_queue.into(),
                kinds: Vec::new(),
                limit: 5_000,
                worker_id: "bench-filler".into(),
                now,
                lease: None,
            })
            .await?;
        if claimed.is_empty() {
            return Ok(());
        }
        let finishes = claimed
            .iter()
            .map(|job| JobFinish {
                id: job.id,
                fence: job.fence,
                outcome: Outcome::Completed { result: None },
            })
            .collect();
        fresh
            .store
            .job_finish_many(JobFinishParams::new(finishes, now))
            .await?;
    }
}

/// W4: W2 (concurrency 50) and W3 with a large table of other jobs.
async fn w4(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let rows = args.scale_rows;
    let jobs = args.jobs;
    let drains = per_run(target, args.runs, |fresh| async move {
        fill(&fresh, rows).await?;
        Ok((drain(&fresh, jobs, 50).await?, fresh))
    })
    .await?;
    report.add(Figure::new(
        "W4",
        format!("drain {jobs}, concurrency 50, {rows} other rows"),
        "jobs/s",
        drains,
    ));
    let latency_jobs = jobs.min(2_000);
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        fill(&fresh, rows).await?;
        runs.push(pickup_latencies(&fresh, latency_jobs).await?);
        fresh.remove().await?;
    }
    add_latency_figures(
        report,
        "W4",
        &format!("{latency_jobs} jobs at 200/s, {rows} other rows,"),
        &runs,
    );
    Ok(())
}

/// W5: peak memory of a worker process draining a queue, and of `stoker serve` idle.
async fn w5(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    let jobs = (args.jobs * 10).min(100_000);
    let values = per_run(target, args.runs, |fresh| async move {
        let client = Client::new(Arc::clone(&fresh.store));
        enqueue_bulk(&client, jobs).await?;
        let child = child::spawn(&fresh, 50, jobs, false)?;
        let result = child::finish(child).await?;
        Ok((result.peak_rss_kb as f64 / 1024.0, fresh))
    })
    .await?;
    report.add(Figure::new(
        "W5",
        format!("worker peak RSS draining {jobs}, concurrency 50"),
        "MB",
        values,
    ));
    let values = per_run(target, args.runs, |fresh| async move {
        Ok((super::http::serve_idle_rss_mb(&fresh).await?, fresh))
    })
    .await?;
    report.add(Figure::new("W5", "stoker serve idle RSS", "MB", values));
    Ok(())
}

/// W7 (PostgreSQL): statements and WAL bytes per job while draining, and the statements of
/// ten idle workers. Statements are counted on the client, as store round trips (each one SQL
/// statement on PostgreSQL); `pg_stat_database` would report them seconds late.
async fn w7(target: &Target, args: &BenchArgs, report: &mut Report) -> Result<(), BenchError> {
    if !matches!(target, Target::Postgres { .. }) {
        report.note("W7 measures PostgreSQL statements and WAL; skipped on SQLite");
        return Ok(());
    }
    let jobs = args.jobs;
    let mut statements = Vec::new();
    let mut wal = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let pool = fresh.postgres().expect("a PostgreSQL run").pool().clone();
        let client = Client::new(Arc::clone(&fresh.store));
        enqueue_bulk(&client, jobs).await?;
        let counting = Arc::new(CountingStore::new(Arc::clone(&fresh.store)));
        let wal_before = wal_position(&pool).await?;
        let (handle, mut events) = noop_worker(&(counting.clone() as Arc<dyn Store>), 50).await?;
        wait_completed(&mut events, jobs, "drain").await?;
        handle.shutdown().await;
        let wal_after = wal_position(&pool).await?;
        let calls: u64 = counting.calls().values().sum();
        statements.push(calls as f64 / jobs as f64);
        wal.push((wal_after - wal_before) as f64 / jobs as f64);
        fresh.remove().await?;
    }
    report.add(Figure::new(
        "W7",
        "statements per job, drain at concurrency 50",
        "statements",
        statements,
    ));
    report.add(Figure::new(
        "W7",
        "WAL per job, drain at concurrency 50",
        "bytes",
        wal,
    ));

    let mut idle = Vec::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let counting = Arc::new(CountingStore::new(Arc::clone(&fresh.store)));
        let shared: Arc<dyn Store> = counting.clone();
        let mut handles = Vec::new();
        for _ in 0..10 {
            let worker = Worker::builder(Arc::clone(&shared))
                .queue(QUEUE, 10)
                .handler_fn("noop", |_args: Value, _ctx: JobContext| async {
                    Ok::<_, JobError>(Value::Null)
                })
                .build()?;
            handles.push(worker.start().await?);
        }
        // Start-up (first claims, the election) is not idling.
        tokio::time::sleep(Duration::from_secs(2)).await;
        counting.reset();
        let window = Duration::from_secs(5);
        tokio::time::sleep(window).await;
        let calls: u64 = counting.calls().values().sum();
        idle.push(calls as f64 / window.as_secs_f64());
        for handle in handles {
            handle.shutdown().await;
        }
        fresh.remove().await?;
    }
    report.add(Figure::new(
        "W7",
        "statements per second, 10 idle workers (1 s poll), leader included",
        "statements/s",
        idle,
    ));
    Ok(())
}

/// The server's WAL position in bytes.
async fn wal_position(pool: &sqlx::PgPool) -> Result<i64, BenchError> {
    Ok(
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
            .fetch_one(pool)
            .await?,
    )
}

/// Worker processes started by the bench: `stoker bench-worker`.
pub(crate) mod child {
    use std::process::Stdio;

    use serde::Deserialize;
    use tokio::process::{Child, Command};

    use super::super::store::Fresh;
    use super::super::BenchError;

    /// What a finished child worker reports.
    #[derive(Debug, Deserialize)]
    pub(crate) struct ChildReport {
        pub(crate) peak_rss_kb: u64,
    }

    /// Starts a worker process on the run's store. With `keep_running`, it works until
    /// stopped; otherwise it exits after `jobs` completions and reports.
    pub(crate) fn spawn(
        fresh: &Fresh,
        concurrency: usize,
        jobs: usize,
        keep_running: bool,
    ) -> Result<Child, BenchError> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("bench-worker")
            .arg("--database-url")
            .arg(&fresh.url)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(schema) = &fresh.schema {
            command.arg("--schema").arg(schema);
        }
        if fresh.async_ack_commit {
            command.arg("--async-ack-commit");
        }
        if !keep_running {
            command.arg("--exit-after").arg(jobs.to_string());
        }
        Ok(command.spawn()?)
    }

    /// Stops a worker process that runs until stopped.
    pub(crate) async fn stop(mut child: Child) -> Result<(), BenchError> {
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// Waits for a worker process with `--exit-after` and reads its report.
    pub(crate) async fn finish(child: Child) -> Result<ChildReport, BenchError> {
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            return Err(BenchError::Io(std::io::Error::other(format!(
                "bench worker exited with {}",
                output.status
            ))));
        }
        serde_json::from_slice(&output.stdout).map_err(|err| {
            BenchError::Io(std::io::Error::other(format!(
                "bench worker printed no report: {err}"
            )))
        })
    }
}
