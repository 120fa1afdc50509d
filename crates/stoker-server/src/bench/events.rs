//! The live-events workload (issue 13): the W2 drain at concurrency 50 with nobody
//! subscribed to the worker's event hub, and with one subscription taking every job event and
//! the snapshots, as A/B pairs in one run (the order alternates between runs so drift hits
//! both sides). Without a subscriber, publishing is one atomic load per claim or
//! acknowledgement batch; the pair shows what a subscriber costs on top.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use stoker::{Client, Event, EventFilter, EventHub, JobContext, JobError, Worker};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{enqueue_bulk, wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;

/// Drains `jobs` with a worker of concurrency 50 publishing on a hub, with one subscription
/// reading every event if `subscribed`; returns jobs/s and the job events the subscription
/// saw.
async fn drain(fresh: &Fresh, jobs: usize, subscribed: bool) -> Result<(f64, u64), BenchError> {
    let hub = EventHub::new();
    let client = Client::new(Arc::clone(&fresh.store)).with_event_hub(hub.clone());
    enqueue_bulk(&client, jobs).await?;
    let reader = if subscribed {
        let mut events = client.events(EventFilter::new()).await?;
        Some(tokio::spawn(async move {
            let mut seen = 0u64;
            while let Some(event) = events.next().await {
                if matches!(event, Event::Job(_)) {
                    seen += 1;
                }
            }
            seen
        }))
    } else {
        None
    };
    let worker = Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, CONCURRENCY)
        .handler_fn("noop", |_args: Value, _ctx: JobContext| async {
            Ok::<_, JobError>(Value::Null)
        })
        .maintenance(false)
        .event_hub(hub)
        .build()?;
    let mut finished = worker.events();
    let started = Instant::now();
    let handle = worker.start().await?;
    wait_completed(&mut finished, jobs, "drain").await?;
    let elapsed = started.elapsed();
    handle.shutdown().await;
    let seen = match reader {
        Some(reader) => {
            reader.abort();
            reader.await.unwrap_or(0)
        }
        None => 0,
    };
    Ok((jobs as f64 / elapsed.as_secs_f64(), seen))
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
        for subscribed in order {
            let fresh = target.fresh().await?;
            let measured = drain(&fresh, jobs, subscribed).await;
            fresh.remove().await?;
            pair[usize::from(subscribed)] = measured?.0;
        }
        off.push(pair[0]);
        on.push(pair[1]);
        ratio.push(pair[1] / pair[0]);
    }
    let name = |what: &str| format!("drain {jobs}, concurrency {CONCURRENCY}, {what}");
    report.add(Figure::new("E", name("no subscriber"), "jobs/s", off));
    report.add(Figure::new(
        "E",
        name("one subscriber, every event"),
        "jobs/s",
        on,
    ));
    report.add(Figure::new(
        "E",
        name("subscribed ÷ not, per pair"),
        "ratio",
        ratio,
    ));
    Ok(())
}
