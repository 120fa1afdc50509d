//! The workflows workload (issue 18), on either store:
//!
//! - the W2 drain at concurrency 50 with the edge-resolving trigger dropped (as before
//!   workflows) and in place, as A/B pairs in one run (the order alternates between runs so
//!   drift hits both sides): what ordinary jobs pay for workflows existing;
//! - a fan-out and fan-in, one job, then `--jobs` jobs waiting for it, then one job waiting
//!   for all of them (under `run`, so it runs whatever they come to): jobs per second over the
//!   whole workflow (at most 9,998 in the middle: a workflow holds 10,000 jobs), and the time from the last of the middle jobs finishing to the fan-in
//!   job starting;
//! - the same W2 drain with the batch-counting trigger dropped and in place, as A/B pairs:
//!   what ordinary jobs pay for batches existing;
//! - a batch of `--jobs` jobs (added 10,000 per call) drained with its callback: jobs per
//!   second from the batch's insert to the callback's completion, and the time from the last
//!   member finishing to the callback starting.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sqlx::Executor;
use stoker::core::{BATCH_MAX_JOBS_PER_CALL, WORKFLOW_MAX_JOBS_DEFAULT};
use stoker::{
    Batch, Client, DepPolicy, Dependency, EnqueueOptions, JobContext, JobError, NewJob, Worker,
    Workflow,
};

use super::report::{Figure, Report};
use super::store::{Fresh, FreshKind, Target};
use super::workloads::{enqueue_bulk, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;

/// The trigger that resolves workflow edges.
const EDGE_TRIGGER: &str = "stoker_jobs_resolve_deps";
/// The trigger that counts batch members' outcomes and releases a batch's callback.
const BATCH_TRIGGER: &str = "stoker_jobs_batch_count";

/// Drops `trigger` from a fresh store (the "before" side of a pair).
async fn drop_trigger(fresh: &Fresh, trigger: &str) -> Result<(), BenchError> {
    let sql = |table: &str| format!("DROP TRIGGER {trigger} ON {table}");
    let failed = |err: sqlx::Error| BenchError::Usage(format!("cannot drop the trigger: {err}"));
    match &fresh.kind {
        FreshKind::Postgres(store) => {
            let schema = fresh.schema.clone().unwrap_or_else(|| "public".to_owned());
            store
                .pool()
                .execute(sql(&format!("\"{schema}\".stoker_jobs")).as_str())
                .await
                .map_err(failed)?;
        }
        FreshKind::Sqlite(store, _) => {
            let mut conn = store.write_connection().await?;
            conn.execute(format!("DROP TRIGGER {trigger}").as_str())
                .await
                .map_err(failed)?;
        }
    }
    Ok(())
}

fn worker(fresh: &Fresh) -> Result<Worker, BenchError> {
    let noop = |_args: Value, _ctx: JobContext| async { Ok::<_, JobError>(Value::Null) };
    Ok(Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, CONCURRENCY)
        .handler_fn("noop", noop)
        .maintenance(false)
        .build()?)
}

/// Drains `jobs` ordinary jobs at concurrency 50, with `trigger` in place or dropped; jobs/s.
async fn drain(
    fresh: &Fresh,
    jobs: usize,
    trigger: &str,
    in_place: bool,
) -> Result<f64, BenchError> {
    if !in_place {
        drop_trigger(fresh, trigger).await?;
    }
    let client = Client::new(Arc::clone(&fresh.store));
    enqueue_bulk(&client, jobs).await?;
    let worker = worker(fresh)?;
    let mut finished = worker.events();
    let started = Instant::now();
    let handle = worker.start().await?;
    wait_completed(&mut finished, jobs, "drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// Runs 1 → `width` → 1; returns jobs/s and the milliseconds from the last middle job's
/// finish to the fan-in job's start.
async fn fan(fresh: &Fresh, width: usize) -> Result<(f64, f64), BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    let job = || NewJob::raw("noop", json!({}), EnqueueOptions::new().queue(QUEUE));
    let mut workflow = Workflow::new("fan").job("root", job());
    let mut all = Vec::with_capacity(width);
    for i in 0..width {
        let name = format!("m{i}");
        workflow = workflow.job_after(name.clone(), job(), [Dependency::node("root")]);
        all.push(Dependency::node(name).policy(DepPolicy::Run));
    }
    workflow = workflow.job_after("join", job(), all);
    let worker = worker(fresh)?;
    let mut finished = worker.events();
    let handle = worker.start().await?;
    let started = Instant::now();
    let inserted = client.enqueue_workflow(workflow).await?;
    wait_completed(&mut finished, width + 2, "fan-out and fan-in").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    let join = inserted.jobs.last().map(|(_, id)| *id);
    let mut last_middle = None;
    for (_, id) in &inserted.jobs[1..inserted.jobs.len() - 1] {
        if let Some(row) = client.get(*id).await? {
            last_middle = last_middle.max(row.finished_at);
        }
    }
    let join_started = match join {
        Some(id) => client.get(id).await?.and_then(|row| row.attempted_at),
        None => None,
    };
    let gap = match (last_middle, join_started) {
        (Some(last), Some(start)) => (start - last).num_microseconds().unwrap_or(0) as f64 / 1e3,
        _ => f64::NAN,
    };
    Ok(((width + 2) as f64 / elapsed.as_secs_f64(), gap))
}

/// Runs a batch of `size` jobs with a callback: jobs/s from the insert to the callback's
/// completion, and the milliseconds from the last member's finish to the callback's start.
async fn batch(fresh: &Fresh, size: usize) -> Result<(f64, f64), BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    let job = || NewJob::raw("noop", json!({}), EnqueueOptions::new().queue(QUEUE));
    let worker = worker(fresh)?;
    let mut finished = worker.events();
    let handle = worker.start().await?;
    let started = Instant::now();
    let first = size.min(BATCH_MAX_JOBS_PER_CALL);
    let inserted = client
        .enqueue_batch(
            Batch::new("bench")
                .callback(job())
                .jobs((0..first).map(|_| job()))
                .keep_open(),
        )
        .await?;
    let mut members = inserted.jobs;
    let mut added = first;
    while added < size {
        let n = (size - added).min(BATCH_MAX_JOBS_PER_CALL);
        members.extend(
            client
                .batch_add(inserted.batch, (0..n).map(|_| job()))
                .await?
                .jobs,
        );
        added += n;
    }
    client.batch_close(inserted.batch).await?;
    wait_completed(&mut finished, size + 1, "batch drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    let mut last_member = None;
    for id in &members {
        if let Some(row) = client.get(*id).await? {
            last_member = last_member.max(row.finished_at);
        }
    }
    let callback_started = match inserted.callback {
        Some(id) => client.get(id).await?.and_then(|row| row.attempted_at),
        None => None,
    };
    let gap = match (last_member, callback_started) {
        (Some(last), Some(start)) => (start - last).num_microseconds().unwrap_or(0) as f64 / 1e3,
        _ => f64::NAN,
    };
    Ok(((size + 1) as f64 / elapsed.as_secs_f64(), gap))
}

/// Runs `runs` A/B pairs of the W2 drain with `trigger` dropped and in place, alternating
/// the order; returns (dropped, in place, in place ÷ dropped) per pair.
async fn pairs(
    target: &Target,
    jobs: usize,
    runs: usize,
    trigger: &str,
) -> Result<[Vec<f64>; 3], BenchError> {
    let (mut before, mut after, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for in_place in order {
            let fresh = target.fresh().await?;
            let measured = drain(&fresh, jobs, trigger, in_place).await;
            fresh.remove().await?;
            pair[usize::from(in_place)] = measured?;
        }
        before.push(pair[0]);
        after.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    Ok([before, after, ratio])
}

/// Runs the A/B pairs and the fan-out and fan-in, and adds their figures.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    // A workflow holds at most 10,000 jobs.
    let width = jobs.min(WORKFLOW_MAX_JOBS_DEFAULT - 2);
    let [before, after, ratio] = pairs(target, jobs, args.runs, EDGE_TRIGGER).await?;
    let (mut rate, mut gap) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let measured = fan(&fresh, width).await;
        fresh.remove().await?;
        let (jobs_per_second, ms) = measured?;
        rate.push(jobs_per_second);
        gap.push(ms);
    }
    let name = |what: &str| format!("drain {jobs}, concurrency {CONCURRENCY}, {what}");
    report.add(Figure::new("WF", name("no edge trigger"), "jobs/s", before));
    report.add(Figure::new("WF", name("edge trigger"), "jobs/s", after));
    report.add(Figure::new(
        "WF",
        name("trigger ÷ none, per pair"),
        "ratio",
        ratio,
    ));
    report.add(Figure::new(
        "WF",
        format!("1 → {width} → 1, concurrency {CONCURRENCY}"),
        "jobs/s",
        rate,
    ));
    report.add(Figure::new(
        "WF",
        format!("1 → {width} → 1, last middle job finished → fan-in started"),
        "ms",
        gap,
    ));

    // --- stream workflows ---
    // Batches: what ordinary jobs pay for the batch trigger, and a batch drained with its
    // callback.
    let [before, after, ratio] = pairs(target, jobs, args.runs, BATCH_TRIGGER).await?;
    let (mut rate, mut gap) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let measured = batch(&fresh, jobs).await;
        fresh.remove().await?;
        let (jobs_per_second, ms) = measured?;
        rate.push(jobs_per_second);
        gap.push(ms);
    }
    report.add(Figure::new(
        "WF",
        name("no batch trigger"),
        "jobs/s",
        before,
    ));
    report.add(Figure::new("WF", name("batch trigger"), "jobs/s", after));
    report.add(Figure::new(
        "WF",
        name("batch trigger ÷ none, per pair"),
        "ratio",
        ratio,
    ));
    report.add(Figure::new(
        "WF",
        format!("batch of {jobs} + callback, concurrency {CONCURRENCY}"),
        "jobs/s",
        rate,
    ));
    report.add(Figure::new(
        "WF",
        format!("batch of {jobs}, last member finished → callback started"),
        "ms",
        gap,
    ));
    Ok(())
}
