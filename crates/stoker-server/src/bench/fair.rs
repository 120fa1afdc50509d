//! The fair-queuing workload (issue 16, item 3): the W2 drain at concurrency 50 with its jobs
//! spread over 1,000 tenants, in plain priority order and under fair queuing, as A/B pairs in
//! one run (the order alternating between runs so drift hits both sides). What fair queuing
//! costs a claim is reading the ready tenants it can serve in virtual-time order, a bounded
//! discovery walk of at most 32 tenants, and one index lookup per chosen tenant: the same
//! with 10 tenants or 10,000.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use stoker::{Client, EnqueueOptions, Fair, LimitKey, LimitSpec, NewJob};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{noop_worker, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;
const TENANTS: usize = 1_000;
const BATCH: usize = 10_000;

/// Fair queuing on the bench queue.
fn fair() -> LimitSpec {
    LimitSpec {
        name: "bench-fair".into(),
        queue: Some(QUEUE.into()),
        kind: None,
        key: LimitKey::Global,
        rate: None,
        concurrency: None,
        fair: Some(Fair::default()),
        quota: None,
    }
}

/// Enqueues `jobs` no-op jobs, job `n` for tenant `n % 1000`.
async fn enqueue(client: &Client, jobs: usize) -> Result<(), BenchError> {
    let mut start = 0;
    while start < jobs {
        let end = (start + BATCH).min(jobs);
        client
            .enqueue_many((start..end).map(|n| {
                NewJob::raw(
                    "noop",
                    json!({ "n": n }),
                    EnqueueOptions::new()
                        .queue(QUEUE)
                        .tenant(format!("t{}", n % TENANTS)),
                )
            }))
            .await?;
        start = end;
    }
    Ok(())
}

/// Drains `jobs` over 1,000 tenants with a worker of concurrency 50, fairly if `fair`;
/// returns jobs/s.
async fn drain(fresh: &Fresh, jobs: usize, fair_queuing: bool) -> Result<f64, BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    if fair_queuing {
        client.limit_set(fair()).await?;
    }
    enqueue(&client, jobs).await?;
    let started = Instant::now();
    let (handle, mut events) = noop_worker(&fresh.store, CONCURRENCY).await?;
    wait_completed(&mut events, jobs, "drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// Runs the A/B pairs and adds their figures.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let (mut off, mut on, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for fair_queuing in order {
            let fresh = target.fresh().await?;
            let measured = drain(&fresh, jobs, fair_queuing).await;
            fresh.remove().await?;
            pair[usize::from(fair_queuing)] = measured?;
        }
        off.push(pair[0]);
        on.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    let name = |what: &str| {
        format!("drain {jobs} over {TENANTS} tenants, concurrency {CONCURRENCY}, {what}")
    };
    report.add(Figure::new("F", name("priority order"), "jobs/s", off));
    report.add(Figure::new("F", name("fair queuing"), "jobs/s", on));
    report.add(Figure::new(
        "F",
        name("fair ÷ plain, per pair"),
        "ratio",
        ratio,
    ));
    Ok(())
}
