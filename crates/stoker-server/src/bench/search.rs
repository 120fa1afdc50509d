//! The search workload (issue 14): how long the dashboard's job searches and counts take on a
//! large table: `--scale-rows` other jobs (half scheduled, half completed, as W4 puts them),
//! plus one discarded job in a hundred with a correlation id and a recognisable text. Each
//! query runs `--runs` times on the same table; the figures are milliseconds per call.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use stoker::core::{JobClaimParams, JobFinish, JobFinishParams, Outcome};
use stoker::{
    AttemptError, Client, EnqueueOptions, ErrorKind, JobSearchParams, NewJob, SearchDirection,
};

use super::report::{Figure, Report};
use super::store::{Fresh, Target};
use super::workloads::fill;
use super::{BenchArgs, BenchError};

const QUEUE: &str = "bench-failing";

/// Adds `rows` discarded jobs in their own queue, every tenth with a correlation id.
async fn discarded(fresh: &Fresh, rows: usize) -> Result<(), BenchError> {
    let client = Client::new(Arc::clone(&fresh.store));
    let job = |n: usize| {
        let mut opts = EnqueueOptions::new().queue(QUEUE);
        if n % 10 == 0 {
            opts = opts.correlation_id(format!("order-{}", n / 10));
        }
        NewJob::raw(
            "charge",
            json!({"customer": format!("user{n}@example.com")}),
            opts,
        )
    };
    let mut start = 0;
    while start < rows {
        let end = (start + 5_000).min(rows);
        client.enqueue_many((start..end).map(job)).await?;
        start = end;
    }
    loop {
        let now = chrono::Utc::now();
        let claimed = fresh
            .store
            .job_claim(JobClaimParams {
                queue: QUEUE.into(),
                kinds: Vec::new(),
                limit: 5_000,
                worker_id: "bench-search".into(),
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
                outcome: Outcome::Discard {
                    error: AttemptError {
                        attempt: 1,
                        at: now,
                        kind: ErrorKind::Error,
                        message: format!("card declined ({})", job.id),
                        backtrace: None,
                    },
                },
            })
            .collect();
        fresh
            .store
            .job_finish_many(JobFinishParams::new(finishes, now))
            .await?;
    }
}

/// Runs the searches and counts and adds their figures.
pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    report: &mut Report,
) -> Result<(), BenchError> {
    let rows = args.scale_rows;
    let fresh = target.fresh().await?;
    fill(&fresh, rows).await?;
    discarded(&fresh, rows / 100).await?;
    let client = Client::new(Arc::clone(&fresh.store));
    let queries = [
        "",
        "state:failed",
        "state:failed queue:bench-failing",
        "state:completed kind:noop",
        "state:scheduled",
        "queue:bench-failing",
        "corr:order-7",
        "state:failed \"user4242@\"",
        "\"no such text\"",
    ];
    for query in queries {
        let criteria = client.parse_query(query)?;
        let (mut first, mut deep, mut count) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let started = Instant::now();
            let page = client
                .search(JobSearchParams::new(criteria.clone(), 50))
                .await?;
            first.push(started.elapsed().as_secs_f64() * 1000.0);
            // A page from the middle of the table, newer jobs first.
            let mut params = JobSearchParams::new(criteria.clone(), 50);
            params.cursor = page.older.or(Some(stoker::core::JobId(1)));
            params.direction = SearchDirection::Older;
            let started = Instant::now();
            client.search(params).await?;
            deep.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            client.count(criteria.clone()).await?;
            count.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let shown = if query.is_empty() { "(all)" } else { query };
        for (what, values) in [("first page", first), ("next page", deep), ("count", count)] {
            report.add(Figure::new(
                "Search",
                format!("{shown}: {what}, {rows} rows"),
                "ms",
                values,
            ));
        }
    }
    fresh.remove().await?;
    Ok(())
}
