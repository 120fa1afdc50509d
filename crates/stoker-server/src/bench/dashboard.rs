//! The dashboard workload (issue 14): how long each page of the dashboard takes to answer
//! with `--scale-rows` jobs in the table, written as the Counts workload writes them (90 %
//! completed, 5 % discarded, 1 % cancelled, 3 % available of which a third scheduled, 1 %
//! retryable; 5 queues, 20 kinds, 10 tenants). A `stoker serve` server runs in this process
//! on the run's store, and each page is loaded over HTTP on loopback: once to warm up (the
//! first read folds PostgreSQL's counter deltas, as a server's first seconds do), then
//! timed five times, the median kept. Figures are milliseconds per page, the whole answer
//! (the page's reads, rendering, and the transfer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use stoker::core::JobListParams;

use super::counts::fill;
use super::report::{Figure, Report};
use super::store::Target;
use super::{BenchArgs, BenchError};
use crate::config::Config;

/// Timed loads per page per run: the median is kept.
const LOADS: usize = 5;

fn serve_error(err: impl std::fmt::Display) -> BenchError {
    BenchError::Io(std::io::Error::other(format!("stoker serve: {err}")))
}

/// Loads `path` once and returns how long the answer took, in milliseconds.
async fn load(http: &reqwest::Client, base: &str, path: &str) -> Result<f64, BenchError> {
    let started = Instant::now();
    let response = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(serve_error)?;
    let status = response.status();
    let body = response.text().await.map_err(serve_error)?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        return Err(serve_error(format!("GET {path} answered {status}: {body}")));
    }
    Ok(elapsed)
}

/// Runs the workload on `target`.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let rows = args.scale_rows;
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..args.runs {
        let fresh = target.fresh().await?;
        let measured = async {
            fill(&fresh, rows).await?;
            let newest = fresh
                .store
                .job_list(JobListParams {
                    limit: 1,
                    ..JobListParams::default()
                })
                .await?;
            let job = newest.first().map_or(1, |job| job.id.0);
            let mut config = Config {
                bind: "127.0.0.1:0".parse().expect("a loopback address"),
                ..Config::default()
            };
            // The built-in worker serves a queue of its own, so the table stays as filled.
            config.worker.queues = [("bench-dashboard".to_owned(), 1)].into();
            let server = crate::serve::Server::start_with_store(config, Arc::clone(&fresh.store))
                .await
                .map_err(serve_error)?;
            let base = server.url();
            let http = reqwest::Client::new();
            let pages = [
                ("overview", "/".to_owned()),
                ("overview, 30 d", "/?range=30d".to_owned()),
                ("queues", "/queues".to_owned()),
                ("queue", "/queues/queue1".to_owned()),
                ("jobs, newest", "/jobs".to_owned()),
                ("jobs, state:failed", "/jobs?q=state%3Afailed".to_owned()),
                (
                    "jobs, queue:queue3 kind:kind7",
                    "/jobs?q=queue%3Aqueue3+kind%3Akind7".to_owned(),
                ),
                ("job", format!("/jobs/{job}")),
                ("failures", "/failures".to_owned()),
                ("workers", "/workers".to_owned()),
                ("operations", "/ops".to_owned()),
                ("cron", "/cron".to_owned()),
                ("limits", "/limits".to_owned()),
                ("audit", "/audit".to_owned()),
                ("workflows", "/workflows".to_owned()),
                ("batches", "/batches".to_owned()),
            ];
            let mut times = Vec::with_capacity(pages.len());
            let timed = async {
                for (name, path) in &pages {
                    load(&http, &base, path).await?;
                    let mut loads = Vec::with_capacity(LOADS);
                    for _ in 0..LOADS {
                        loads.push(load(&http, &base, path).await?);
                    }
                    loads.sort_by(f64::total_cmp);
                    times.push((*name, loads[LOADS / 2]));
                }
                Ok::<_, BenchError>(())
            }
            .await;
            server.shutdown().await.map_err(serve_error)?;
            timed?;
            Ok::<_, BenchError>(times)
        }
        .await;
        fresh.remove().await?;
        for (name, ms) in measured? {
            figures
                .entry(format!("{name} with {rows} jobs"))
                .or_default()
                .push(ms);
        }
    }
    for (name, runs) in figures {
        report.add(Figure::new("D", name, "ms", runs));
    }
    Ok(())
}
