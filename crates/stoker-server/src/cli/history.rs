//! `stoker stats --since 24h` and `stoker jobs clean` (issue 13): the durable history and
//! cleaning finished jobs, on a database or through a server.

use std::time::Duration;

use clap::Args;
use reqwest::Method;
use stoker::{CleanRequest, HistoryScope, JobState, SeriesRequest};

use super::backend::Backend;
use super::error::CliError;
use super::output::{self, Table};
use super::{parse, Target};
use crate::api::history::{
    CleanJobsRequest, CleanJobsResponse, LatencyView, SeriesPointView, SeriesQuery, SeriesResponse,
};

/// Options of `stoker stats`.
#[derive(Debug, Clone, Default, Args)]
pub struct StatsArgs {
    /// Where to send the command.
    #[command(flatten)]
    pub target: Target,
    /// Show the durable history of this long ago until now (e.g. 1h, 24h, 7d, 90d), compared
    /// with the period before it, instead of the current counts.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub since: Option<Duration>,
    /// With --since: one row per this long (whole minutes; default: an hour up to 2 days, a
    /// day beyond, a minute up to 2 hours).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration, requires = "since")]
    pub step: Option<Duration>,
    /// With --since: only this queue.
    #[arg(long, value_name = "QUEUE", requires = "since")]
    pub queue: Option<String>,
    /// With --since: only this kind.
    #[arg(long, value_name = "KIND", requires = "since")]
    pub kind: Option<String>,
    /// With --since: only this tenant.
    #[arg(long, value_name = "TENANT", requires = "since")]
    pub tenant: Option<String>,
}

/// Options of `stoker jobs clean`.
#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    /// Where to send the command.
    #[command(flatten)]
    pub target: Target,
    /// Delete jobs that finished longer ago than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub older_than: Duration,
    /// The finished states to delete (completed, discarded, cancelled); repeat for several.
    /// Defaults to completed.
    #[arg(long = "state", value_name = "STATE", value_parser = parse::state)]
    pub states: Vec<JobState>,
    /// Jobs deleted per request (1 to 10,000); the command repeats until none are left.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch: u32,
}

/// A step for a range when none is given: rows of a minute up to 2 hours, an hour up to 2
/// days, a day beyond.
fn default_step(range: Duration) -> Duration {
    let secs = range.as_secs();
    Duration::from_secs(if secs <= 2 * 3600 {
        60
    } else if secs <= 2 * 86_400 {
        3600
    } else {
        86_400
    })
}

async fn series(
    backend: &Backend,
    args: &StatsArgs,
    since: Duration,
) -> Result<SeriesResponse, CliError> {
    let step = args.step.unwrap_or_else(|| default_step(since));
    match backend {
        Backend::Direct(direct) => {
            let series = direct
                .client()
                .series(&SeriesRequest {
                    range: since,
                    step,
                    end: None,
                    scope: HistoryScope {
                        queue: args.queue.clone(),
                        kind: args.kind.clone(),
                        tenant: args.tenant.clone(),
                    },
                    compare: true,
                })
                .await?;
            Ok(SeriesResponse {
                from: series.from,
                to: series.to,
                step_seconds: series.step_seconds,
                grain: series.grain,
                points: series.points.into_iter().map(Into::into).collect(),
                total: series.total.into(),
                previous: series.previous.map(Into::into),
            })
        }
        Backend::Remote(remote) => {
            let query = SeriesQuery {
                range_seconds: Some(since.as_secs()),
                step_seconds: Some(step.as_secs()),
                end: None,
                queue: args.queue.clone(),
                kind: args.kind.clone(),
                tenant: args.tenant.clone(),
                compare: Some(true),
            };
            remote
                .send(
                    remote
                        .request(Method::GET, "v1/stats/series")?
                        .query(&query),
                )
                .await
        }
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms"))
}

fn latency(l: &LatencyView) -> String {
    format!("{}/{}/{}", ms(l.p50_ms), ms(l.p95_ms), ms(l.p99_ms))
}

fn cells(label: String, point: &SeriesPointView) -> Vec<String> {
    vec![
        label,
        point.enqueued.to_string(),
        point.completed.to_string(),
        point.failed.to_string(),
        point.discarded.to_string(),
        point.cancelled.to_string(),
        latency(&point.wait),
        latency(&point.run),
        point
            .depth
            .map_or_else(|| "-".to_owned(), |d| d.to_string()),
    ]
}

/// A change in percent, or `new` when the previous period had none.
fn change(now: i64, before: i64) -> String {
    if before == 0 {
        if now == 0 {
            "±0%".to_owned()
        } else {
            "new".to_owned()
        }
    } else {
        format!("{:+.0}%", (now - before) as f64 * 100.0 / before as f64)
    }
}

/// `stoker stats --since DURATION`.
pub(crate) async fn stats_since(args: &StatsArgs, since: Duration) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let series = series(&backend, args, since).await?;
    if args.target.json {
        output::json(&series);
        return Ok(());
    }
    let mut table = Table::new(&[
        "FROM",
        ">ENQUEUED",
        ">COMPLETED",
        ">FAILED",
        ">DISCARDED",
        ">CANCELLED",
        ">WAIT p50/95/99",
        ">RUN p50/95/99",
        ">DEPTH",
    ]);
    for point in &series.points {
        table.row(cells(output::time(point.at), point));
    }
    table.row(cells("total".to_owned(), &series.total));
    if let Some(previous) = &series.previous {
        table.row(cells("previous period".to_owned(), previous));
    }
    print!("{}", table.render());
    if let Some(previous) = &series.previous {
        println!(
            "vs previous period: completed {}, failed {}, enqueued {}",
            change(series.total.completed, previous.completed),
            change(series.total.failed, previous.failed),
            change(series.total.enqueued, previous.enqueued),
        );
    }
    Ok(())
}

/// `stoker jobs clean --older-than DURATION`.
pub(crate) async fn clean(args: &CleanArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let states = if args.states.is_empty() {
        vec![JobState::Completed]
    } else {
        args.states.clone()
    };
    let mut total = 0;
    loop {
        let deleted = match &backend {
            Backend::Direct(direct) => {
                direct
                    .client()
                    .clean(&CleanRequest {
                        states: states.clone(),
                        older_than: args.older_than,
                        limit: args.batch,
                    })
                    .await?
            }
            Backend::Remote(remote) => {
                let answer: CleanJobsResponse = remote
                    .post(
                        "v1/jobs/clean",
                        &CleanJobsRequest {
                            older_than_seconds: args.older_than.as_secs(),
                            states: Some(states.clone()),
                            limit: Some(args.batch),
                        },
                    )
                    .await?;
                answer.deleted
            }
        };
        total += deleted;
        if deleted < u64::from(args.batch) {
            break;
        }
    }
    if args.target.json {
        output::json(&serde_json::json!({ "deleted": total }));
    } else {
        println!(
            "deleted {total} finished {} older than {}",
            if total == 1 { "job" } else { "jobs" },
            output::duration(args.older_than)
        );
    }
    Ok(())
}
