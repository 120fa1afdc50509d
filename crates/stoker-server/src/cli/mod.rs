//! The `stoker` command line: `stoker serve`, and the commands operators run against a
//! database (`--database-url`) or a running server (`--server` with `--token`).
//!
//! Output is a table or a detail view for people, or stable JSON on standard output with
//! `--json`. Errors go to standard error as `error: …`, with an exit code that tells scripts
//! what happened (see [`CliError::exit_code`]):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure: database or server unreachable, store error |
//! | 2 | bad input (a flag's value, args refused): nothing was changed |
//! | 3 | not found, e.g. `job 42 not found` |
//! | 4 | conflict: the job's state does not allow it (deleting a running job) |
//! | 5 | the server refused the API token |

mod backend;
// Recurring schedules (issue 15).
mod cron;
mod direct;
mod error;
// Failure groups, bulk operations and job logs (issue 13).
mod failures;
// History (issue 13).
mod history;
mod output;
mod parse;
mod remote;
// --- stream events ---
mod events;
pub use events::EventsArgs;
// --- stream alerts ---
mod alerts;
pub use alerts::AlertsCommand;
// --- stream tokens ---
mod tokens;
// --- stream flow ---
mod limits;
// --- stream wf ---
mod workflows;
// --- stream tenancy ---
mod audit;
// --- stream crypt ---
mod keys;
// --- stream workflows ---
mod batches;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use stoker::{JobId, JobState, Priority};

pub use cron::CronCommand;
pub use error::CliError;
pub use failures::{FailuresCommand, LogsArgs, OpsCommand};
// --- stream tokens ---
pub use tokens::TokensCommand;
// --- stream flow ---
pub use limits::LimitsCommand;
// --- stream wf ---
pub(crate) use workflows::draw as draw_workflow;
pub use workflows::WorkflowsCommand;
// --- stream tenancy ---
pub use audit::AuditCommand;
// --- stream crypt ---
pub use keys::KeysCommand;
// --- stream workflows ---
pub use batches::BatchesCommand;

use backend::{Backend, EnqueueInput, RetryProgress};
use direct::Direct;
use output::Table;
use remote::Remote;

use crate::api::model::{JobCounts, JobView, RetryJobsResponse};
use crate::bench::{BenchArgs, BenchWorkerArgs};
use crate::serve::ServeArgs;

/// The SQLite database commands use when neither `--database-url` nor `--server` is given:
/// the same file `stoker serve` uses by default.
pub const DATABASE_URL_DEFAULT: &str = crate::config::DATABASE_URL_DEFAULT;

/// Jobs one `job_retry_many` call retries in `stoker jobs retry --all-discarded`. Defaults to
/// 1,000.
pub const RETRY_BATCH_DEFAULT: u32 = 1000;

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 failure (database or server unreachable), 2 bad input (nothing \
changed), 3 not found, 4 conflict with the job's state, 5 API token refused.";

/// `stoker`: a durable background job queue, its server and its operators' tools.
#[derive(Debug, Parser)]
#[command(
    name = "stoker",
    version,
    about = "Stoker, a durable background job queue: run the job server, and manage jobs, \
             queues and workers on a database or through a server.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `stoker`.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start: boxing `serve`'s options buys nothing
pub enum Command {
    /// Run the job server: HTTP API, pull protocol, built-in handlers, maintenance.
    Serve(ServeArgs),
    /// Create or upgrade the database schema (safe to repeat).
    Migrate(Target),
    /// Enqueue one job.
    Enqueue(EnqueueArgs),
    /// List, show, retry, cancel and delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// List queues, and pause or resume them in every worker.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// List worker processes, with their heartbeats and counters.
    Workers(Target),
    /// Count jobs by state: in total, per queue and per kind; with --since, the durable
    /// history (throughput, failures, wait and run percentiles) compared with the period before.
    Stats(history::StatsArgs),
    /// List the handlers built into the server (kinds it runs without any worker).
    Handlers(Target),
    /// Recurring schedules: list, add, update, pause, resume, run-now, delete, history, next.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Failure groups: failed attempts grouped by kind, error class and message; retry or
    /// discard a whole group.
    #[command(subcommand)]
    Failures(FailuresCommand),
    /// Bulk operations by filter (retry, cancel, delete, discard, set priority or run_at),
    /// run in the background in batches: start, follow, list, abort.
    #[command(subcommand)]
    Ops(OpsCommand),
    /// Measure Stoker: enqueue, drain, pickup latency, memory, on SQLite or PostgreSQL.
    Bench(BenchArgs),
    /// A worker process `stoker bench` starts (not for people).
    #[command(hide = true)]
    BenchWorker(BenchWorkerArgs),
    // --- stream events ---
    /// Live events: the current snapshot, or with --follow one line per job change and
    /// snapshot; --job ID follows a job until it is finished, then exits.
    Events(EventsArgs),
    // --- stream alerts ---
    /// Alert rules: list, create, show (state and recent events), delete. Messages are
    /// webhook jobs posted when a rule fires and when it resolves.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    // --- stream tokens ---
    /// Stored API tokens: create (the secret is shown once), list, revoke, rotate.
    #[command(subcommand)]
    Tokens(TokensCommand),
    // --- stream flow ---
    /// Flow-control limits: list (with usage), set (a rate, a concurrency, or both), delete.
    #[command(subcommand)]
    Limits(LimitsCommand),
    // --- stream wf ---
    /// Workflows: `show ID` prints a workflow's state and result and draws its graph.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    // --- stream tenancy ---
    /// The audit log of management actions: list (filter by tenant, action, actor, time),
    /// prune by age.
    #[command(subcommand)]
    Audit(AuditCommand),
    // --- stream crypt ---
    /// Encryption keys at rest: status per key id, and rotation to the active key.
    #[command(subcommand)]
    Keys(KeysCommand),
    // --- stream workflows ---
    /// Batches: list, show (counters by outcome), close, cancel.
    #[command(subcommand)]
    Batches(BatchesCommand),
}

/// Where a command goes, and how it prints. With neither `--database-url` nor `--server`,
/// commands use the SQLite file `stoker serve` uses by default.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// The database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB. [default:
    /// sqlite://stoker.sqlite3, as for `stoker serve`]
    #[arg(
        long,
        env = "STOKER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A running `stoker serve` to send the command to, e.g. http://127.0.0.1:7700.
    #[arg(long, env = "STOKER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The API token for --server.
    #[arg(
        long,
        env = "STOKER_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print JSON on standard output instead of tables.
    #[arg(long)]
    pub json: bool,
    // --- stream tenant ---
    /// The server's TOML configuration file: on a database, commands seal and open jobs with
    /// its `[encryption]` table, as the server does (keys from STOKER_ENCRYPTION_KEYS or the
    /// key file). Without it, the keys alone open sealed jobs and nothing new is sealed.
    #[arg(long, env = "STOKER_CONFIG", value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
}

/// Options of `stoker enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// The job's kind: the name of the handler that runs it, e.g. webhook.
    pub kind: String,
    /// The job's args: a JSON object, @FILE to read a file, or - to read standard input.
    #[arg(long, value_name = "JSON", default_value = "{}", value_parser = parse::json_args)]
    pub args: Value,
    /// The queue to wait in. [default: the default queue]
    #[arg(long)]
    pub queue: Option<String>,
    /// Higher runs first: low, normal, high, critical, or a number from -32768 to 32767.
    #[arg(long, value_parser = parse::priority, allow_hyphen_values = true)]
    pub priority: Option<Priority>,
    /// Run no earlier than this time: RFC 3339 (2025-01-31T09:00:00Z) or a UTC
    /// "2025-01-31 09:00".
    #[arg(long, value_name = "TIME", value_parser = parse::time, conflicts_with = "delay")]
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this long from now: 30s, 5m, 1h30m, 2d.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub delay: Option<Duration>,
    /// The most attempts the job gets. [default: 5]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<i32>,
    /// An idempotency key: while a job with this key exists, enqueueing another returns it.
    #[arg(long, value_name = "KEY", alias = "unique-key")]
    pub idempotency_key: Option<String>,
    /// The tenant the job belongs to.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Ties the job to a request or workflow; passed on to the jobs it enqueues.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// A tag; repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The time limit of one attempt: 30s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse::positive_duration)]
    pub timeout: Option<Duration>,
    /// Post the job's outcome to this http(s) URL when it completes, is discarded or is
    /// cancelled (a webhook job on the `default` queue, retried like any job).
    #[arg(long, value_name = "URL")]
    pub on_finish: Option<String>,
    /// Where to enqueue, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job: state, attempts, error history, result, progress.
    Show(JobArgs),
    /// Run a finished job again now, or every discarded job (--all-discarded).
    Retry(RetryArgs),
    /// Cancel a job: a waiting job at once, a running job at its next check.
    Cancel(JobArgs),
    /// Delete a job that is not running.
    Delete(JobArgs),
    /// Show the log lines a job's attempts wrote.
    Logs(LogsArgs),
    /// Delete finished jobs older than a given age, in batches (issue 13).
    Clean(history::CleanArgs),
}

// --- stream search ---
/// What one `--state` flag names: one state, or two for `failed` (retryable and discarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateViews(pub Vec<stoker::StateView>);

/// Options of `stoker jobs list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// A search-bar query, e.g. 'state:failed queue:mail after:1h "ada@example.com"'
    /// (qualifiers: state: queue: kind: tenant: id: key: corr: worker: parent: group: after:
    /// before: finished-after: finished-before:; other words search args and metadata).
    /// Joined with the flags.
    #[arg(long, short = 'q', value_name = "QUERY")]
    pub query: Option<String>,
    /// Only jobs in this state (available = due, scheduled, running, retryable, completed,
    /// discarded, cancelled, or failed = retryable and discarded); repeat for several.
    #[arg(long = "state", value_name = "STATE", value_parser = parse::state_views)]
    pub states: Vec<StateViews>,
    /// Only jobs of this kind; repeat for several.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Only jobs in this queue; repeat for several.
    #[arg(long = "queue", value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// Only this tenant's jobs.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The most jobs to list, 1 to 1000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only jobs older than this id: the cursor printed after a full page.
    #[arg(long, value_name = "ID", value_parser = parse::job_id, conflicts_with = "after")]
    pub before: Option<JobId>,
    /// Only jobs newer than this id (the page just above it, listed newest first).
    #[arg(long, value_name = "ID", value_parser = parse::job_id)]
    pub after: Option<JobId>,
    /// Also count the matching jobs (exact up to 10,000).
    #[arg(long)]
    pub count: bool,
    /// Where to look, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one job.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The job's id.
    #[arg(value_parser = parse::job_id)]
    pub id: JobId,
    /// Where the job is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Options of `stoker jobs retry`.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// The job to retry.
    #[arg(
        value_parser = parse::job_id,
        required_unless_present = "all_discarded",
        conflicts_with = "all_discarded"
    )]
    pub id: Option<JobId>,
    /// Retry every discarded job (the dead letters), in batches, with progress on stderr.
    #[arg(long)]
    pub all_discarded: bool,
    /// With --all-discarded: only jobs in this queue; repeat for several.
    #[arg(long = "queue", value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// With --all-discarded: only jobs of this kind; repeat for several.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// With --all-discarded on a database: jobs retried per statement (a server uses its own
    /// batches). [default: 1000]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub batch_size: Option<u32>,
    /// Where the jobs are, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker queues …`.
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// List queues with their job counts and whether they are paused.
    List(Target),
    /// Pause a queue: no worker fetches from it until it is resumed.
    Pause(QueueArgs),
    /// Resume a paused queue.
    Resume(QueueArgs),
}

/// A command on one queue.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// The queue's name.
    pub queue: String,
    /// Where the queue is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Parses the command line, runs the command, prints any error and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with exit code 0; usage errors to stderr with 2.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match &cli.command {
        // `stoker serve` sets up its own logging, at info.
        Command::Serve(_) => {}
        Command::Bench(_) | Command::BenchWorker(_) => init_tracing("info"),
        _ => init_tracing("warn"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", describe_error(&err));
            err.exit_code()
        }
    }
}

/// Logs go to standard error, at `level` and worse unless `RUST_LOG` says otherwise, so
/// standard output holds only the command's output.
fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The error's message followed by any causes it does not already mention.
fn describe_error(err: &CliError) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Runs one command.
///
/// # Errors
///
/// A [`CliError`] saying what failed; its [`CliError::exit_code`] is the process's.
pub async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => Ok(crate::serve::run(args).await?),
        Command::Migrate(target) => migrate(&target).await,
        Command::Enqueue(args) => enqueue(args).await,
        Command::Jobs(JobsCommand::List(args)) => list(args).await,
        Command::Jobs(JobsCommand::Show(args)) => show(args).await,
        Command::Jobs(JobsCommand::Retry(args)) => retry(args).await,
        Command::Jobs(JobsCommand::Cancel(args)) => cancel(args).await,
        Command::Jobs(JobsCommand::Delete(args)) => delete(args).await,
        Command::Jobs(JobsCommand::Logs(args)) => failures::logs(args).await,
        Command::Failures(command) => failures::failures(command).await,
        Command::Ops(command) => failures::ops(command).await,
        Command::Jobs(JobsCommand::Clean(args)) => history::clean(&args).await,
        Command::Queues(QueuesCommand::List(target)) => queues(&target).await,
        Command::Queues(QueuesCommand::Pause(args)) => pause(args, true).await,
        Command::Queues(QueuesCommand::Resume(args)) => pause(args, false).await,
        Command::Workers(target) => workers(&target).await,
        Command::Stats(args) => match args.since {
            Some(since) => history::stats_since(&args, since).await,
            None => stats(&args.target).await,
        },
        Command::Handlers(target) => handlers(&target).await,
        Command::Cron(command) => cron::run(command).await,
        Command::Bench(args) => crate::bench::run(args)
            .await
            .map(drop)
            .map_err(CliError::from),
        Command::BenchWorker(args) => crate::bench::bench_worker(args)
            .await
            .map_err(CliError::from),
        // --- stream events ---
        Command::Events(args) => events::events(args).await,
        // --- stream alerts ---
        Command::Alerts(command) => alerts::run(command).await,
        // --- stream tokens ---
        Command::Tokens(command) => tokens::run(command).await,
        // --- stream flow ---
        Command::Limits(command) => limits::run(command).await,
        // --- stream wf ---
        Command::Workflows(command) => workflows::run(command).await,
        // --- stream tenancy ---
        Command::Audit(command) => audit::run(command).await,
        // --- stream crypt ---
        Command::Keys(command) => keys::run(command).await,
        // --- stream workflows ---
        Command::Batches(command) => batches::run(command).await,
    }
}

/// Where the target flags point.
enum Destination {
    Database(String),
    Server(String),
}

impl Target {
    fn destination(&self) -> Result<Destination, CliError> {
        let database = self.database_url.as_deref().filter(|url| !url.is_empty());
        let server = self.server.as_deref().filter(|url| !url.is_empty());
        match (database, server) {
            (Some(_), Some(_)) => Err(CliError::Invalid(
                "both a database (--database-url or STOKER_DATABASE_URL) and a server \
                 (--server or STOKER_SERVER) are set; use one"
                    .to_owned(),
            )),
            (Some(url), None) => Ok(Destination::Database(url.to_owned())),
            (None, Some(url)) => Ok(Destination::Server(url.to_owned())),
            (None, None) => Ok(Destination::Database(DATABASE_URL_DEFAULT.to_owned())),
        }
    }

    async fn connect(&self) -> Result<Backend, CliError> {
        match self.destination()? {
            Destination::Database(url) => {
                // The server's key configuration, so an enqueue here is sealed as one through
                // the server would be, and a sealed job reads opened (issue 17).
                let direct = Direct::connect(&url, false).await?;
                Ok(Backend::Direct(
                    match direct_encryption(self.config.as_deref())? {
                        Some(encryption) => direct.with_encryption(encryption),
                        None => direct,
                    },
                ))
            }
            Destination::Server(url) => {
                Ok(Backend::Remote(Remote::new(&url, self.token.as_deref())?))
            }
        }
    }
}

async fn migrate(target: &Target) -> Result<(), CliError> {
    let url = match target.destination()? {
        Destination::Database(url) => url,
        Destination::Server(_) => {
            return Err(CliError::Invalid(
                "migrate works on a database (--database-url); a server migrates its own \
                 database when it starts"
                    .to_owned(),
            ))
        }
    };
    let direct = Direct::connect(&url, true).await?;
    direct.migrate().await?;
    if target.json {
        output::json(&json!({ "database": direct.display_url(), "migrated": true }));
    } else {
        println!("{}: schema is current", direct.display_url());
    }
    Ok(())
}

async fn enqueue(args: EnqueueArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let input = EnqueueInput {
        kind: args.kind.clone(),
        args: args.args,
        queue: args.queue,
        priority: args.priority,
        run_at: args.run_at,
        delay: args.delay,
        max_attempts: args.max_attempts,
        idempotency_key: args.idempotency_key,
        tenant: args.tenant,
        correlation_id: args.correlation_id,
        tags: args.tags,
        timeout: args.timeout,
        on_finish: args.on_finish,
    };
    let inserted = backend.enqueue(input).await?;
    if args.target.json {
        output::json(&inserted);
    } else if inserted.duplicate {
        println!(
            "job {} already exists with that idempotency key: nothing enqueued (duplicate)",
            inserted.id
        );
    } else {
        println!("enqueued job {} ({})", inserted.id, args.kind);
    }
    Ok(())
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let (cursor, direction) = match (args.before, args.after) {
        (_, Some(after)) => (Some(after), stoker::SearchDirection::Newer),
        (before, None) => (before, stoker::SearchDirection::Older),
    };
    let input = backend::SearchInput {
        query: args.query,
        criteria: stoker::JobCriteria {
            states: args.states.into_iter().flat_map(|views| views.0).collect(),
            kinds: args.kinds,
            queues: args.queues,
            tenant: args.tenant,
            ..stoker::JobCriteria::default()
        },
        cursor,
        direction,
        limit: args.limit,
        count: args.count,
    };
    let page = backend.search(input).await?;
    if args.target.json {
        output::json(&page);
        return Ok(());
    }
    if page.jobs.is_empty() {
        println!("no jobs");
    } else {
        print!("{}", output::jobs_table(&page.jobs));
    }
    if let Some(count) = page.count {
        let plus = if count.exact { "" } else { "+" };
        eprintln!("{}{plus} matching jobs", count.count);
    }
    if page.partial {
        eprintln!(
            "searched {} jobs without filling the page; more may match further on",
            page.scanned
        );
    }
    if let Some(next) = page.next_cursor {
        eprintln!("more jobs may follow: add --before {next}");
    }
    Ok(())
}

async fn show(args: JobArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let job = backend.get(args.id).await?;
    if args.target.json {
        output::json(&job);
    } else {
        print!("{}", output::job_detail(&job));
    }
    Ok(())
}

async fn retry(args: RetryArgs) -> Result<(), CliError> {
    if !args.all_discarded
        && (!args.queues.is_empty() || !args.kinds.is_empty() || args.batch_size.is_some())
    {
        return Err(CliError::Invalid(
            "--queue, --kind and --batch-size go with --all-discarded; to retry one job, \
             name only its id"
                .to_owned(),
        ));
    }
    let backend = args.target.connect().await?;
    if args.all_discarded {
        let mut progress = StderrProgress::new();
        let batch = args.batch_size.unwrap_or(RETRY_BATCH_DEFAULT);
        let retried = backend
            .retry_discarded(&args.queues, &args.kinds, batch, &mut progress)
            .await;
        progress.finish();
        let retried = retried?;
        if args.target.json {
            output::json(&RetryJobsResponse {
                retried,
                remaining: 0,
            });
        } else {
            println!("retried {retried} discarded {}", plural(retried, "job"));
        }
        return Ok(());
    }
    let Some(id) = args.id else {
        return Err(CliError::Invalid(
            "name a job id, or pass --all-discarded".to_owned(),
        ));
    };
    let job = backend.retry(id).await?;
    if job.state == JobState::Running {
        return Err(CliError::Conflict(format!(
            "job {id} is running; it can be retried once it finishes"
        )));
    }
    if args.target.json {
        output::json(&job);
    } else {
        println!(
            "job {id} is {} again: attempt {} of {} runs now",
            job.state,
            job.attempt + 1,
            job.max_attempts
        );
    }
    Ok(())
}

async fn cancel(args: JobArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let id = args.id;
    let before = backend.get(id).await?;
    if matches!(before.state, JobState::Completed | JobState::Discarded) {
        return Err(CliError::Conflict(format!(
            "job {id} is already {}; only waiting or running jobs can be cancelled",
            before.state
        )));
    }
    let job = backend.cancel(id).await?;
    if args.target.json {
        output::json(&job);
    } else {
        print_cancelled(&before, &job);
    }
    Ok(())
}

fn print_cancelled(before: &JobView, job: &JobView) {
    let id = job.id;
    match job.state {
        JobState::Cancelled if before.state == JobState::Cancelled => {
            println!("job {id} was already cancelled")
        }
        JobState::Cancelled => println!("cancelled job {id}"),
        JobState::Running => {
            println!("cancel requested: job {id} is running and stops when its handler next checks")
        }
        state => println!("job {id} is {state}"),
    }
}

async fn delete(args: JobArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let job = backend.delete(args.id).await?;
    if args.target.json {
        output::json(&job);
    } else {
        println!("deleted job {} ({}, {})", job.id, job.kind, job.state);
    }
    Ok(())
}

async fn queues(target: &Target) -> Result<(), CliError> {
    let backend = target.connect().await?;
    let queues = backend.queues().await?;
    if target.json {
        output::json(&queues);
        return Ok(());
    }
    if queues.is_empty() {
        println!("no queues yet: a queue appears with its first job");
        return Ok(());
    }
    let mut headers = vec!["QUEUE", "PAUSED"];
    headers.extend(output::COUNT_HEADERS);
    let mut table = Table::new(&headers);
    for queue in &queues {
        let mut cells = vec![
            queue.name.clone(),
            if queue.paused { "yes" } else { "no" }.to_owned(),
        ];
        cells.extend(output::count_cells(&queue.counts));
        table.row(cells);
    }
    print!("{}", table.render());
    Ok(())
}

async fn pause(args: QueueArgs, paused: bool) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    if paused {
        backend.pause(&args.queue).await?;
    } else {
        backend.resume(&args.queue).await?;
    }
    if args.target.json {
        output::json(&json!({ "queue": args.queue, "paused": paused }));
    } else if paused {
        println!("paused queue {}", args.queue);
    } else {
        println!("resumed queue {}", args.queue);
    }
    Ok(())
}

async fn workers(target: &Target) -> Result<(), CliError> {
    let backend = target.connect().await?;
    let workers = backend.workers().await?;
    if target.json {
        output::json(&workers);
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers are running on {}", backend.describe());
        return Ok(());
    }
    let mut table = Table::new(&[
        "WORKER",
        "HOST",
        ">PID",
        "QUEUES",
        ">CONCURRENCY",
        "STARTED",
        "HEARTBEAT",
        ">DONE",
        ">FAILED",
        // The registry (issue 13).
        "STATUS",
        "VERSION",
        ">IN FLIGHT",
        ">MEAN RUN",
        ">RSS",
    ]);
    for worker in &workers {
        table.row(vec![
            worker.id.clone(),
            worker.host.clone(),
            worker.pid.to_string(),
            output::clip(&worker.queues.join(","), 40),
            worker.concurrency.to_string(),
            output::time(worker.started_at),
            output::time(worker.heartbeat_at),
            worker.jobs_done.to_string(),
            worker.jobs_failed.to_string(),
            worker.status.clone(),
            worker.version.clone().unwrap_or_else(|| "-".to_owned()),
            worker.running.len().to_string(),
            worker
                .mean_run_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
            worker
                .rss_bytes
                .map_or_else(|| "-".to_owned(), |b| format!("{}MiB", b / (1 << 20))),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn stats(target: &Target) -> Result<(), CliError> {
    let backend = target.connect().await?;
    let stats = backend.stats().await?;
    if target.json {
        output::json(&stats);
        return Ok(());
    }
    let mut headers = vec![""];
    headers.extend(output::COUNT_HEADERS);
    headers.push(">TOTAL");
    let mut table = Table::new(&headers);
    let mut row = |name: String, counts: &JobCounts| {
        let mut cells = vec![name];
        cells.extend(output::count_cells(counts));
        cells.push(
            JobState::ALL
                .iter()
                .map(|state| counts.get(*state))
                .sum::<i64>()
                .to_string(),
        );
        table.row(cells);
    };
    row("all jobs".to_owned(), &stats.totals);
    for (queue, counts) in &stats.queues {
        row(format!("queue {queue}"), counts);
    }
    for (kind, counts) in &stats.kinds {
        row(format!("kind {kind}"), counts);
    }
    for (tenant, counts) in &stats.tenants {
        row(format!("tenant {tenant}"), counts);
    }
    print!("{}", table.render());
    // --- stream flow ---
    // The limiters in use (issue 16): running under each, and throttled until when. A token
    // that may not read limits (a tenant's) just does not see them.
    if let Ok(usage) = limits::usage(&backend).await {
        if !usage.is_empty() {
            println!();
            limits::print_usage(&usage);
        }
    }
    if let Some(throughput) = &stats.throughput {
        let (completed, discarded, failed) =
            throughput
                .minutes
                .iter()
                .fold((0, 0, 0), |(c, d, f), minute| {
                    (
                        c + minute.completed,
                        d + minute.discarded,
                        f + minute.failed,
                    )
                });
        println!(
            "last {} {}: {completed} completed, {discarded} discarded, {failed} failed attempts",
            throughput.minutes.len(),
            plural(throughput.minutes.len() as u64, "minute"),
        );
    }
    Ok(())
}

async fn handlers(target: &Target) -> Result<(), CliError> {
    // The built-in set is compiled in: only a server needs asking.
    let handlers = match target.destination()? {
        Destination::Database(_) => crate::handlers::describe(),
        Destination::Server(_) => target.connect().await?.handlers().await?,
    };
    if target.json {
        output::json(&handlers);
        return Ok(());
    }
    let mut table = Table::new(&["KIND", "DESCRIPTION"]);
    for handler in &handlers {
        table.row(vec![handler.kind.clone(), handler.description.clone()]);
    }
    print!("{}", table.render());
    Ok(())
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        noun.to_owned()
    } else {
        format!("{noun}s")
    }
}

/// Bulk retry progress on standard error: one line rewritten in place on a terminal, a line
/// per batch otherwise (logs, pipes). Standard output stays clean for `--json`.
struct StderrProgress {
    terminal: bool,
    total: Option<u64>,
    started: bool,
}

impl StderrProgress {
    fn new() -> Self {
        StderrProgress {
            terminal: std::io::stderr().is_terminal(),
            total: None,
            started: false,
        }
    }

    fn finish(&mut self) {
        if self.terminal && self.started {
            eprintln!();
        }
    }
}

impl RetryProgress for StderrProgress {
    fn start(&mut self, total: Option<u64>) {
        self.total = total;
        if total.is_none() {
            // A server retries in one request: say something is happening.
            eprintln!("retrying discarded jobs…");
        }
    }

    fn update(&mut self, done: u64) {
        self.started = true;
        let line = match self.total {
            Some(total) => format!("retried {done} of {total} discarded jobs"),
            None => format!("retried {done} discarded jobs"),
        };
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r{line}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }
}

// --- stream tenant ---
/// The encryption a command on the database uses: the `[encryption]` table of the server's
/// configuration file when given, with the keys from the environment or the key file, as
/// `stoker serve` reads them; `None` without any key.
fn direct_encryption(
    config: Option<&std::path::Path>,
) -> Result<Option<stoker::Encryption>, CliError> {
    let mut settings = match config {
        Some(path) => {
            let mut config = crate::config::Config::default();
            config
                .apply_file(path)
                .map_err(|err| CliError::Invalid(err.to_string()))?;
            config.encryption
        }
        None => crate::config::EncryptionSettings::default(),
    };
    settings
        .read_keys(
            std::env::var(stoker::KEYS_ENV).ok().as_deref(),
            std::env::var_os(crate::config::KEY_FILE_ENV)
                .map(std::path::PathBuf::from)
                .as_deref(),
        )
        .map_err(|err| CliError::Invalid(err.to_string()))?;
    Ok(settings.encryption())
}
