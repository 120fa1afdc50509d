//! `stoker bench`: measures Stoker the way a user comparing job queues would, on either store.
//!
//! Every workload runs on a fresh store (a new SQLite file, or a new PostgreSQL schema that is
//! dropped afterwards), `--runs` times; each figure is the median of its runs with the min–max
//! range. Small `--jobs` make it a smoke test; CI runs it that way and never asserts a speed.

mod bare;
// --- stream counts ---
mod counts;
// --- stream ops ---
mod dashboard;
// --- stream crypt ---
mod crypt;
// History (issue 13).
mod history;
mod http;
mod report;
// --- stream search ---
mod search;
mod store;
mod workloads;
// --- stream events ---
mod events;
// --- stream flow ---
mod fair;
mod flow;
// --- stream wf ---
mod workflows;

use std::time::Duration;

use clap::{Args, ValueEnum};

pub use report::{Figure, Report};

/// Options of `stoker bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The store to measure: `sqlite://PATH` (the file is replaced by a fresh one per run, in
    /// a temporary directory beside it) or `postgres://…` (a fresh schema per run, dropped
    /// afterwards). Defaults to SQLite files in a temporary directory.
    #[arg(long, env = "STOKER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Jobs per workload (W1, W2, W6); W3 uses at most 2,000, and W5 ten times this, at
    /// most 100,000.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,

    /// Runs per figure: the median is reported, with the min–max range.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    /// Workloads to run, comma-separated. Defaults to all.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub workloads: Vec<Workload>,

    /// Other jobs placed in the table for W4 (half scheduled in the future, half completed),
    /// and the jobs the Counts workload writes before it times its queries.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_rows: usize,

    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Commit acknowledgements without waiting for PostgreSQL's WAL flush
    /// (`PgStoreBuilder::async_ack_commit`) in the bench's stores, its worker processes and
    /// the `stoker serve` it starts, to measure what the setting gives. PostgreSQL only.
    #[arg(long)]
    pub async_ack_commit: bool,
}

/// A workload of `stoker bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// Enqueue one at a time, then in bulk.
    W1,
    /// Drain a full queue at concurrency 1, 8, 50 and 200, and with two worker processes.
    W2,
    /// Pickup latency of jobs enqueued one at a time at about 200/s.
    W3,
    /// W2 and W3 again with a large table of other jobs.
    W4,
    /// Peak memory of a worker draining a queue, and of `stoker serve` idle.
    W5,
    /// W1 and W2 through `stoker serve`'s HTTP API and pull protocol.
    W6,
    /// Statements and WAL bytes per job, and the statements of idle workers (PostgreSQL).
    W7,
    /// The bare-SQL ceiling: the same lifecycle in the fewest statements the database allows.
    Bare,
    /// History (issue 13): the W2 drain at concurrency 50 with history off and on, in A/B
    /// pairs, and the stats and series query times. Not in the default set.
    History,
    // --- stream events ---
    /// Live events (issue 13): the W2 drain at concurrency 50 with no event subscriber and
    /// with one taking every event, in A/B pairs. Not in the default set.
    Events,
    // --- stream search ---
    /// Job search (issue 14): the dashboard's searches and counts on `--scale-rows` jobs, in
    /// milliseconds per call. Not in the default set.
    Search,
    // --- stream counts ---
    /// Counts (issue 13): on PostgreSQL the W2 drain at concurrency 50 with the old and the
    /// new counting in A/B pairs; on either store the stats, series and failure-group
    /// queries with `--scale-rows` jobs in the table. Not in the default set.
    Counts,
    // --- stream ops ---
    /// Dashboard (issue 14): each page's answer time over HTTP with `--scale-rows` jobs in
    /// the table, in milliseconds. Not in the default set.
    Dashboard,
    // --- stream flow ---
    /// Flow control (issue 16): the W2 drain at concurrency 50 without limits and with
    /// limits that never bind, in A/B pairs. Not in the default set.
    Flow,
    /// Fair queuing (issue 16): the W2 drain at concurrency 50 over 1,000 tenants, in
    /// priority order and under fair queuing, in A/B pairs. Not in the default set.
    Fair,
    // --- stream wf ---
    /// Workflows (issue 18): the W2 drain at concurrency 50 without and with the edge
    /// trigger, in A/B pairs, and a fan-out and fan-in of `--jobs` jobs (jobs/s, and the time
    /// from the last middle job to the fan-in job's start); the same pairs for the batch
    /// trigger, and a batch of `--jobs` jobs drained with its callback (jobs/s, and the time
    /// from the last member to the callback's start). Not in the default set.
    Workflows,
    // --- stream crypt ---
    /// Encryption at rest (issue 17): bulk enqueue and drain at concurrency 50 of 1 KB jobs,
    /// plain and encrypted (args and results), in A/B pairs. Not in the default set.
    Crypt,
}

/// Runs the benchmark and prints its report.
///
/// # Errors
///
/// A store or I/O error that stopped a workload.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let workloads = if args.workloads.is_empty() {
        vec![
            Workload::W1,
            Workload::W2,
            Workload::W3,
            Workload::W4,
            Workload::W5,
            Workload::W6,
            Workload::W7,
            Workload::Bare,
        ]
    } else {
        let mut workloads = args.workloads.clone();
        workloads.sort();
        workloads.dedup();
        workloads
    };
    if args.jobs == 0 || args.runs == 0 {
        return Err(BenchError::Usage(
            "--jobs and --runs must be at least 1".into(),
        ));
    }
    let target = store::Target::from_url(args.database_url.as_deref(), args.async_ack_commit)?;
    // The store's name in the report says the setting was on, so its figures are not taken
    // for the default's.
    let mut report = if args.async_ack_commit {
        Report::new(&format!("{} (async_ack_commit)", target.name()))
    } else {
        Report::new(target.name())
    };
    for workload in workloads {
        tracing::info!(?workload, "running");
        workloads::run(workload, &target, &args, &mut report).await?;
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(report)
}

/// What stopped a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options make no sense.
    #[error("{0}")]
    Usage(String),
    /// A store call failed.
    #[error(transparent)]
    Stoker(#[from] stoker::Error),
    /// A store call made directly (not through the client) failed.
    #[error(transparent)]
    Store(#[from] stoker::StoreError),
    /// A raw SQL call (bare-SQL ceiling, WAL counters) failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A child process or file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A workload did not finish in time.
    #[error("{what} did not finish within {limit:?}")]
    Timeout {
        /// The workload.
        what: String,
        /// How long it was given.
        limit: Duration,
    },
}

/// Options of `stoker bench-worker`: a worker process the bench starts (not for people).
#[derive(Debug, Clone, Args)]
pub struct BenchWorkerArgs {
    /// The run's store.
    #[arg(long)]
    pub database_url: String,
    /// The run's PostgreSQL schema.
    #[arg(long)]
    pub schema: Option<String>,
    /// Concurrency of the bench queue.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Exit after this many completions, printing a JSON report with the peak RSS; without
    /// it, work until killed.
    #[arg(long)]
    pub exit_after: Option<usize>,
    /// Commit acknowledgements without waiting for PostgreSQL's WAL flush, as the bench
    /// that started this worker does.
    #[arg(long)]
    pub async_ack_commit: bool,
}

/// Runs a bench worker process: a no-op worker on the bench queue.
///
/// # Errors
///
/// If the store cannot be opened or the worker cannot start.
pub async fn bench_worker(args: BenchWorkerArgs) -> Result<(), BenchError> {
    let store: std::sync::Arc<dyn stoker::Store> = match &args.schema {
        Some(schema) => std::sync::Arc::new(
            stoker::postgres::PgStore::builder(&args.database_url)
                .schema(schema)
                .async_ack_commit(args.async_ack_commit)
                .build()
                .await?,
        ),
        None => stoker::connect(&args.database_url).await?,
    };
    let (handle, mut events) = workloads::noop_worker(&store, args.concurrency).await?;
    match args.exit_after {
        Some(jobs) => {
            workloads::wait_completed(&mut events, jobs, "bench worker drain").await?;
            handle.shutdown().await;
            let report = serde_json::json!({ "peak_rss_kb": peak_rss_kb()? });
            println!("{report}");
            Ok(())
        }
        None => {
            stoker::shutdown_signal().await;
            handle.shutdown().await;
            Ok(())
        }
    }
}

/// This process's peak resident set size, from the kernel (`VmHWM`), in KiB.
fn peak_rss_kb() -> Result<u64, BenchError> {
    status_kb("/proc/self/status", "VmHWM:")
}

/// A `KiB` field of a `/proc/…/status` file.
pub(crate) fn status_kb(path: &str, field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(path)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .ok_or_else(|| BenchError::Io(std::io::Error::other(format!("no {field} in {path}"))))
}
