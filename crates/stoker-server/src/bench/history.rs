//! The history workload (issue 13): the W2 drain at concurrency 50 with history off and on,
//! as A/B pairs in one run (the order alternates between runs so drift hits both sides), and
//! how long the stats and series queries take on what the drain left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stoker::{Client, History, HistoryScope, JobContext, JobError, SeriesRequest, Worker};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{enqueue_bulk, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;

/// Drains `jobs` with a worker of concurrency 50, recording history if `history`; returns
/// jobs/s, and the stats and series query times (ms) afterwards.
async fn drain(fresh: &Fresh, jobs: usize, history: bool) -> Result<(f64, f64, f64), BenchError> {
    let recorder = History::new(Arc::clone(&fresh.store));
    let mut client = Client::new(Arc::clone(&fresh.store));
    if history {
        client = client.with_history(recorder.clone());
    }
    enqueue_bulk(&client, jobs).await?;
    let mut builder = Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, CONCURRENCY)
        .handler_fn("noop", |_args: Value, _ctx: JobContext| async {
            Ok::<_, JobError>(Value::Null)
        })
        .maintenance(false);
    if history {
        builder = builder.history(recorder);
    }
    let worker = builder.build()?;
    let mut events = worker.events();
    let started = Instant::now();
    let handle = worker.start().await?;
    wait_completed(&mut events, jobs, "drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;

    let started = Instant::now();
    client.stats().await?;
    let stats_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    client
        .series(&SeriesRequest {
            range: Duration::from_secs(86_400),
            step: Duration::from_secs(3600),
            end: None,
            scope: HistoryScope::default(),
            compare: true,
        })
        .await?;
    let series_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok((jobs as f64 / elapsed.as_secs_f64(), stats_ms, series_ms))
}

/// Runs the A/B pairs and adds their figures.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let (mut off, mut on, mut ratio, mut stats_ms, mut series_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for history in order {
            let fresh = target.fresh().await?;
            let measured = drain(&fresh, jobs, history).await;
            fresh.remove().await?;
            let (rate, stats, series) = measured?;
            pair[usize::from(history)] = rate;
            if history {
                stats_ms.push(stats);
                series_ms.push(series);
            }
        }
        off.push(pair[0]);
        on.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    let name = |what: &str| format!("drain {jobs}, concurrency {CONCURRENCY}, {what}");
    report.add(Figure::new("H", name("history off"), "jobs/s", off));
    report.add(Figure::new("H", name("history on"), "jobs/s", on));
    report.add(Figure::new("H", name("on ÷ off, per pair"), "ratio", ratio));
    report.add(Figure::new(
        "H",
        format!("stats query after a {jobs}-job drain"),
        "ms",
        stats_ms,
    ));
    report.add(Figure::new(
        "H",
        "series query, 24 h at 1 h steps with the previous period",
        "ms",
        series_ms,
    ));
    Ok(())
}
