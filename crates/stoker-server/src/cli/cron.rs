//! `stoker cron`: recurring schedules (issue 15), on a database or through a server. Both
//! paths answer with the API's views, so the output (and `--json`) is the same either way.

use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use stoker::cron::CronSchedule;
use stoker::Priority;

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::cron::{
    apply_update, schedule_from, CatchUpPolicy, CronCreateRequest, CronHistory, CronList,
    CronRunView, CronUpdateRequest, CronView, OverlapPolicy,
};
use crate::api::model::{EnqueueResponse, PriorityLevel};

/// The commands of `stoker cron`.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// List schedules with their next slot.
    List(Target),
    /// Create a schedule.
    Add(CronAddArgs),
    /// Change a schedule: only the options given. A new expression takes effect from now.
    Update(CronUpdateArgs),
    /// Pause a schedule: no slot fires until it is resumed.
    Pause(CronNameArgs),
    /// Resume a paused schedule from now (missed slots do not fire).
    Resume(CronNameArgs),
    /// Enqueue the schedule's job now (never collides with a scheduled slot).
    RunNow(CronNameArgs),
    /// Delete a schedule and its history (its jobs stay).
    Delete(CronNameArgs),
    /// A schedule's recent runs: slot, outcome, duration.
    History(CronHistoryArgs),
    /// The next fire times of any expression, e.g. `stoker cron next "0 9 * * MON" --tz
    /// Europe/London`.
    Next(CronNextArgs),
}

/// The options shared by `add` and `update`.
#[derive(Debug, Clone, Default, Args)]
pub struct CronOptions {
    /// The IANA time zone the expression is read in, e.g. Europe/London. [default: UTC]
    #[arg(long)]
    pub tz: Option<String>,
    /// The job's args: a JSON object, @FILE or - for standard input. [default: {}]
    #[arg(long, value_name = "JSON", value_parser = parse::json_args)]
    pub args: Option<Value>,
    /// The job's queue. [default: default]
    #[arg(long)]
    pub queue: Option<String>,
    /// The job's priority: low, normal, high, critical, or a number.
    #[arg(long, value_parser = parse::priority)]
    pub priority: Option<Priority>,
    /// The job's max attempts. [default: 5]
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// The job's tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Missed slots after an outage: skip, latest or all. [default: latest]
    #[arg(long, value_parser = catch_up)]
    pub catch_up: Option<CatchUpPolicy>,
    /// How far back latest and all reach, e.g. 1h (at most 7d). [default: 1h]
    #[arg(long, value_parser = parse::positive_duration)]
    pub catch_up_window: Option<Duration>,
    /// The most missed slots `all` fires (1 to 1000). [default: 10]
    #[arg(long)]
    pub catch_up_max: Option<u32>,
    /// allow, or skip a slot while the previous run is unfinished. [default: allow]
    #[arg(long, value_parser = overlap)]
    pub overlap: Option<OverlapPolicy>,
}

/// `stoker cron add`.
#[derive(Debug, Clone, Args)]
pub struct CronAddArgs {
    /// The schedule's name: letters, digits, '_', '-', '.'.
    pub name: String,
    /// The cron expression: 5 fields, 6 with seconds first, or @daily, @hourly...
    pub expr: String,
    /// The job's kind.
    pub kind: String,
    /// The job's options and the policies.
    #[command(flatten)]
    pub options: CronOptions,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Where to create it, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker cron update`.
#[derive(Debug, Clone, Args)]
pub struct CronUpdateArgs {
    /// The schedule's name.
    pub name: String,
    /// A new cron expression.
    #[arg(long)]
    pub expr: Option<String>,
    /// A new kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// The options to change.
    #[command(flatten)]
    pub options: CronOptions,
    /// Where the schedule is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one schedule.
#[derive(Debug, Clone, Args)]
pub struct CronNameArgs {
    /// The schedule's name.
    pub name: String,
    /// Where the schedule is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker cron history`.
#[derive(Debug, Clone, Args)]
pub struct CronHistoryArgs {
    /// The schedule's name.
    pub name: String,
    /// The most runs to show (1 to 100).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Where the schedule is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker cron next`.
#[derive(Debug, Clone, Args)]
pub struct CronNextArgs {
    /// The cron expression.
    pub expr: String,
    /// The IANA time zone. [default: UTC]
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// How many fire times (1 to 100).
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn catch_up(raw: &str) -> Result<CatchUpPolicy, String> {
    stoker::cron::CatchUp::parse(raw)
        .map(CatchUpPolicy::from)
        .map_err(|err| err.reason)
}

fn overlap(raw: &str) -> Result<OverlapPolicy, String> {
    stoker::cron::Overlap::parse(raw)
        .map(OverlapPolicy::from)
        .map_err(|err| err.reason)
}

fn check_name(name: &str) -> Result<(), CliError> {
    stoker::core::cron::validate_name(name).map_err(|err| CliError::Invalid(err.to_string()))
}

fn window_seconds(window: Option<Duration>) -> Result<Option<u32>, CliError> {
    window
        .map(|w| {
            u32::try_from(w.as_secs()).map_err(|_| {
                CliError::Invalid("invalid catch_up_window_seconds: too long".to_owned())
            })
        })
        .transpose()
}

fn update_request(
    expr: Option<String>,
    kind: Option<String>,
    o: CronOptions,
) -> Result<CronUpdateRequest, CliError> {
    Ok(CronUpdateRequest {
        expr,
        tz: o.tz,
        kind,
        args: o.args,
        queue: o.queue,
        priority: o.priority.map(PriorityLevel),
        max_attempts: o.max_attempts,
        tenant: o.tenant,
        metadata: None,
        catch_up: o.catch_up,
        catch_up_window_seconds: window_seconds(o.catch_up_window)?,
        catch_up_max: o.catch_up_max,
        overlap: o.overlap,
    })
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, CliError> {
    serde_json::to_value(value).map_err(|err| CliError::Invalid(err.to_string()))
}

/// Runs a `stoker cron` command.
pub(crate) async fn run(command: CronCommand) -> Result<(), CliError> {
    match command {
        CronCommand::List(target) => {
            let backend = target.connect().await?;
            let schedules = match &backend {
                Backend::Direct(direct) => {
                    let now = Utc::now();
                    direct
                        .client()
                        .cron_list()
                        .await?
                        .into_iter()
                        .map(|row| CronView::new(row, now))
                        .collect()
                }
                Backend::Remote(remote) => {
                    remote
                        .call::<CronList>(Method::GET, "v1/cron", None)
                        .await?
                        .schedules
                }
            };
            print_list(&schedules, target.json);
            Ok(())
        }
        CronCommand::Add(args) => {
            check_name(&args.name)?;
            let o = args.options;
            let request = CronCreateRequest {
                name: args.name,
                expr: args.expr,
                tz: o.tz,
                kind: args.kind,
                args: o.args,
                queue: o.queue,
                priority: o.priority.map(PriorityLevel),
                max_attempts: o.max_attempts,
                tenant: o.tenant,
                metadata: None,
                catch_up: o.catch_up,
                catch_up_window_seconds: window_seconds(o.catch_up_window)?,
                catch_up_max: o.catch_up_max,
                overlap: o.overlap,
                enabled: args.paused.then_some(false),
            };
            let backend = args.target.connect().await?;
            let view = match &backend {
                Backend::Direct(direct) => {
                    let row = direct.client().cron_create(schedule_from(request)).await?;
                    CronView::new(row, Utc::now())
                }
                Backend::Remote(remote) => {
                    remote
                        .call(Method::POST, "v1/cron", Some(&to_json(&request)?))
                        .await?
                }
            };
            print_one(&view, "created", args.target.json);
            Ok(())
        }
        CronCommand::Update(args) => {
            check_name(&args.name)?;
            let request = update_request(args.expr, args.kind, args.options)?;
            let backend = args.target.connect().await?;
            let view = match &backend {
                Backend::Direct(direct) => {
                    let client = direct.client();
                    let mut schedule: CronSchedule = client.cron_get(&args.name).await?.schedule;
                    apply_update(&mut schedule, request);
                    CronView::new(client.cron_update(schedule).await?, Utc::now())
                }
                Backend::Remote(remote) => {
                    let path = format!("v1/cron/{}", args.name);
                    remote
                        .call(Method::PATCH, &path, Some(&to_json(&request)?))
                        .await?
                }
            };
            print_one(&view, "updated", args.target.json);
            Ok(())
        }
        CronCommand::Pause(args) => simple(args, "pause").await,
        CronCommand::Resume(args) => simple(args, "resume").await,
        CronCommand::Delete(args) => simple(args, "delete").await,
        CronCommand::RunNow(args) => {
            check_name(&args.name)?;
            let backend = args.target.connect().await?;
            let job: EnqueueResponse = match &backend {
                Backend::Direct(direct) => {
                    let client = direct.client();
                    let inserted = client.cron_run_now(&args.name).await?;
                    let job = client.get(inserted.id).await?.ok_or_else(|| {
                        CliError::NotFound(format!("job {} not found", inserted.id))
                    })?;
                    EnqueueResponse {
                        id: job.id,
                        duplicate: inserted.duplicate,
                        kind: job.kind,
                        queue: job.queue,
                        state: job.state,
                        run_at: job.run_at,
                    }
                }
                Backend::Remote(remote) => {
                    let path = format!("v1/cron/{}/run-now", args.name);
                    remote.call(Method::POST, &path, None).await?
                }
            };
            if args.target.json {
                output::json(&job);
            } else {
                println!("enqueued job {} ({}) for {}", job.id, job.kind, args.name);
            }
            Ok(())
        }
        CronCommand::History(args) => {
            check_name(&args.name)?;
            let backend = args.target.connect().await?;
            let runs: Vec<CronRunView> = match &backend {
                Backend::Direct(direct) => direct
                    .client()
                    .cron_history(&args.name, args.limit)
                    .await?
                    .into_iter()
                    .map(CronRunView::from)
                    .collect(),
                Backend::Remote(remote) => {
                    let path = format!("v1/cron/{}/history?limit={}", args.name, args.limit);
                    remote
                        .call::<CronHistory>(Method::GET, &path, None)
                        .await?
                        .runs
                }
            };
            print_history(&runs, args.target.json);
            Ok(())
        }
        CronCommand::Next(args) => {
            let slots = stoker::cron::next_slots(&args.expr, &args.tz, Utc::now(), args.count)?;
            if args.json {
                output::json(&json!({ "slots": slots }));
            } else {
                let tz = stoker::core::cron::parse_tz(&args.tz).map_err(stoker::Error::from)?;
                for slot in slots {
                    println!(
                        "{}  ({})",
                        slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        slot.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
                    );
                }
            }
            Ok(())
        }
    }
}

/// pause, resume or delete.
async fn simple(args: CronNameArgs, action: &str) -> Result<(), CliError> {
    check_name(&args.name)?;
    let backend = args.target.connect().await?;
    let view: CronView = match &backend {
        Backend::Direct(direct) => {
            let client = direct.client();
            let row = match action {
                "pause" => client.cron_pause(&args.name).await?,
                "resume" => client.cron_resume(&args.name).await?,
                _ => client.cron_delete(&args.name).await?,
            };
            CronView::new(row, Utc::now())
        }
        Backend::Remote(remote) => match action {
            "delete" => {
                let path = format!("v1/cron/{}", args.name);
                remote.call(Method::DELETE, &path, None).await?
            }
            _ => {
                let path = format!("v1/cron/{}/{action}", args.name);
                remote.call(Method::POST, &path, None).await?
            }
        },
    };
    let done = match action {
        "pause" => "paused",
        "resume" => "resumed",
        _ => "deleted",
    };
    print_one(&view, done, args.target.json);
    Ok(())
}

fn print_list(schedules: &[CronView], json: bool) {
    if json {
        output::json(&json!({ "schedules": schedules }));
        return;
    }
    if schedules.is_empty() {
        println!("no cron schedules");
        return;
    }
    let mut table = Table::new(&["NAME", "EXPR", "TZ", "KIND", "QUEUE", "ENABLED", "NEXT"]);
    for s in schedules {
        table.row(vec![
            s.name.clone(),
            s.expr.clone(),
            s.tz.clone(),
            s.kind.clone(),
            s.queue.clone(),
            if s.enabled { "yes" } else { "paused" }.to_owned(),
            if s.enabled {
                s.next_slot
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            } else {
                "-".to_owned()
            },
        ]);
    }
    print!("{}", table.render());
}

fn print_one(view: &CronView, done: &str, json: bool) {
    if json {
        output::json(view);
        return;
    }
    println!(
        "{done} schedule {} ({} in {}, kind {})",
        view.name, view.expr, view.tz, view.kind
    );
    for slot in &view.upcoming {
        println!(
            "  next: {}",
            slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}

fn print_history(runs: &[CronRunView], json: bool) {
    if json {
        output::json(&json!({ "runs": runs }));
        return;
    }
    if runs.is_empty() {
        println!("no runs yet");
        return;
    }
    let mut table = Table::new(&["SLOT", "OUTCOME", "JOB", "DURATION", "NOTE"]);
    for run in runs {
        let note = match (run.catch_up, run.run_now) {
            (_, true) => "run-now",
            (true, _) => "catch-up",
            _ => "",
        };
        table.row(vec![
            run.slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            run.outcome.clone(),
            run.job_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into()),
            run.duration_seconds
                .map(|d| format!("{d:.3}s"))
                .unwrap_or_else(|| "-".into()),
            note.to_owned(),
        ]);
    }
    print!("{}", table.render());
}
