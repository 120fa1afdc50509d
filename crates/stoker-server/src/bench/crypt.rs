//! The encryption workload (issue 17 item 4): bulk enqueue and drain of 1 KB jobs, plain and
//! sealed with XChaCha20-Poly1305, as A/B pairs in one run (the order alternates between runs
//! so drift hits both sides). The handler echoes its args, so the encrypted side also seals a
//! 1 KB result per job: the whole cost of encryption at rest, enqueue to result.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use stoker::{Client, Encryption, EnqueueOptions, JobContext, JobError, KeyRing, NewJob, Worker};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::{wait_completed, QUEUE};
use super::{BenchArgs, BenchError};

const CONCURRENCY: usize = 50;
/// Jobs per bulk insert.
const BATCH: usize = 10_000;
/// The payload's padding: about 1 KB of args per job.
const PAD: usize = 1000;

fn encryption() -> Encryption {
    Encryption::all(KeyRing::new().with_key(1, rand::random()))
}

/// Enqueues and drains `jobs`, sealed if `sealed`; returns enqueue jobs/s and drain jobs/s.
async fn pass(fresh: &Fresh, jobs: usize, sealed: bool) -> Result<(f64, f64), BenchError> {
    let key = sealed.then(encryption);
    let mut client = Client::new(Arc::clone(&fresh.store));
    if let Some(encryption) = &key {
        client = client.with_encryption(encryption.clone());
    }
    let pad = "x".repeat(PAD);
    let started = Instant::now();
    let mut start = 0;
    while start < jobs {
        let end = (start + BATCH).min(jobs);
        client
            .enqueue_many((start..end).map(|n| {
                NewJob::raw(
                    "echo",
                    json!({"n": n, "pad": pad}),
                    EnqueueOptions::new().queue(QUEUE),
                )
            }))
            .await?;
        start = end;
    }
    let enqueue = jobs as f64 / started.elapsed().as_secs_f64();
    let mut builder = Worker::builder(Arc::clone(&fresh.store))
        .queue(QUEUE, CONCURRENCY)
        .handler_fn("echo", |args: Value, _ctx: JobContext| async move {
            Ok::<_, JobError>(args)
        })
        .maintenance(false);
    if let Some(encryption) = key {
        builder = builder.encryption(encryption);
    }
    let worker = builder.build()?;
    let mut events = worker.events();
    let started = Instant::now();
    let handle = worker.start().await?;
    wait_completed(&mut events, jobs, "drain").await?;
    let drain = jobs as f64 / started.elapsed().as_secs_f64();
    handle.shutdown().await;
    Ok((enqueue, drain))
}

/// Runs the A/B pairs and adds their figures.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let jobs = args.jobs;
    let mut figures: [Vec<f64>; 6] = Default::default();
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [(0.0, 0.0); 2];
        for sealed in order {
            let fresh = target.fresh().await?;
            let measured = pass(&fresh, jobs, sealed).await;
            fresh.remove().await?;
            pair[usize::from(sealed)] = measured?;
        }
        figures[0].push(pair[0].0);
        figures[1].push(pair[1].0);
        figures[2].push(pair[1].0 / pair[0].0);
        figures[3].push(pair[0].1);
        figures[4].push(pair[1].1);
        figures[5].push(pair[1].1 / pair[0].1);
    }
    let [enq_plain, enq_sealed, enq_ratio, drain_plain, drain_sealed, drain_ratio] = figures;
    let name = |what: &str| format!("{jobs} jobs of 1 KB, {what}");
    report.add(Figure::new(
        "E",
        name("bulk enqueue, plain"),
        "jobs/s",
        enq_plain,
    ));
    report.add(Figure::new(
        "E",
        name("bulk enqueue, encrypted"),
        "jobs/s",
        enq_sealed,
    ));
    report.add(Figure::new(
        "E",
        name("enqueue encrypted ÷ plain, per pair"),
        "ratio",
        enq_ratio,
    ));
    report.add(Figure::new(
        "E",
        name(&format!("drain at concurrency {CONCURRENCY}, plain")),
        "jobs/s",
        drain_plain,
    ));
    report.add(Figure::new(
        "E",
        name(&format!(
            "drain at concurrency {CONCURRENCY}, encrypted (args and result)"
        )),
        "jobs/s",
        drain_sealed,
    ));
    report.add(Figure::new(
        "E",
        name("drain encrypted ÷ plain, per pair"),
        "ratio",
        drain_ratio,
    ));
    Ok(())
}
