//! The flow-control workload (issue 16): the W2 drain at concurrency 50 with no limit, and
//! with a rate and a concurrency limit on the queue that never bind (so every claim takes the
//! limited path: its limiter row locked, admitted, written back, and every acknowledgement
//! releases slots), as A/B pairs in one run, the order alternating between runs so drift hits
//! both sides. The issue asks the limited side for at least 0.9× the other.

use std::sync::Arc;
use std::time::Instant;

use stoker::{Client, LimitKey, LimitSpec, Rate};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{enqueue_bulk, noop_worker, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;

/// A limit on the bench queue far above anything a drain reaches.
fn not_binding() -> LimitSpec {
    LimitSpec {
        name: "bench-not-binding".into(),
        queue: Some(QUEUE.into()),
        kind: None,
        key: LimitKey::Global,
        rate: Some(Rate {
            count: 1_000_000,
            period_ms: 1000,
            burst: 1_000_000,
        }),
        concurrency: Some(100_000),
        fair: None,
        quota: None,
    }
}

/// Drains `jobs` with a worker of concurrency 50, with the limit set if `limited`; returns
/// jobs/s.
async fn drain(fresh: &Fresh, jobs: usize, limited: bool) -> Result<f64, BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    if limited {
        client.limit_set(not_binding()).await?;
    }
    enqueue_bulk(&client, jobs).await?;
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
        for limited in order {
            let fresh = target.fresh().await?;
            let measured = drain(&fresh, jobs, limited).await;
            fresh.remove().await?;
            pair[usize::from(limited)] = measured?;
        }
        off.push(pair[0]);
        on.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    let name = |what: &str| format!("drain {jobs}, concurrency {CONCURRENCY}, {what}");
    report.add(Figure::new("F", name("no limits"), "jobs/s", off));
    report.add(Figure::new(
        "F",
        name("rate and concurrency limits not binding"),
        "jobs/s",
        on,
    ));
    report.add(Figure::new(
        "F",
        name("limited ÷ not, per pair"),
        "ratio",
        ratio,
    ));
    Ok(())
}
