//! `stoker failures`, `stoker ops` and `stoker jobs logs ID` (issue 13): failure groups, bulk
//! operations by filter, and job logs, on a database or through a server.
//!
//! A bulk operation is only recorded by these commands; the bulk runner of the server's
//! elected leader (`stoker serve`) runs it in batches. `--wait` follows its progress.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use stoker::{
    BulkAction, BulkFilter, BulkOpListParams, BulkOpState, BulkRequest, FailureGroupListParams,
    JobId, Priority,
};

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::failures::{
    BulkOpList, BulkOpView, CreateBulkOpRequest, FailureGroupList, FailureGroupView, JobLogList,
    ListFailuresQuery, ListOpsQuery,
};
// --- stream ops ---
use crate::api::failures::{FailureHourView, GetFailureQuery};

/// `stoker failures …`: failed attempts grouped by kind, error class and normalized message.
#[derive(Debug, Subcommand)]
pub enum FailuresCommand {
    /// List failure groups, most recently seen first.
    List(FailuresListArgs),
    /// Show one group.
    Show(GroupArgs),
    /// Retry every failed job of a group (discarded or waiting to retry): a bulk operation.
    Retry(GroupOpArgs),
    /// Discard every job of a group still waiting to retry: a bulk operation.
    Discard(GroupOpArgs),
}

/// Options of `stoker failures list`.
#[derive(Debug, Clone, Args)]
pub struct FailuresListArgs {
    /// Only groups seen within this long: 30m, 24h, 7d. Adds an IN RANGE column: each
    /// group's failed attempts in that time (counted by the hour).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub since: Option<Duration>,
    /// Only groups of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// The most groups, 1 to 500.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Where to look, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one failure group.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// The group's fingerprint (16 hex digits, from `stoker failures list`).
    pub fingerprint: String,
    // --- stream ops ---
    /// Also show the group's failed attempts within this long (30m, 24h, 7d), per hour.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub since: Option<Duration>,
    /// Where to look, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A bulk operation over one failure group.
#[derive(Debug, Clone, Args)]
pub struct GroupOpArgs {
    /// The group's fingerprint (16 hex digits, from `stoker failures list`).
    pub fingerprint: String,
    /// Follow the operation until it ends, with progress on standard error.
    #[arg(long)]
    pub wait: bool,
    /// Where the jobs are, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker ops …`: bulk operations by filter, run in the background in bounded batches.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Start a bulk operation on every job matching a filter.
    Create(OpsCreateArgs),
    /// List operations, newest first.
    List(OpsListArgs),
    /// Show one operation and its progress.
    Show(OpArgs),
    /// Stop a running operation (batches already run stay applied).
    Abort(OpArgs),
}

/// The actions of `stoker ops create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Run again now; running jobs are skipped.
    Retry,
    /// Cancel; a running job gets a cancel request.
    Cancel,
    /// Delete; running jobs are skipped.
    Delete,
    /// Waiting jobs become discarded.
    Discard,
    /// Set the priority of waiting jobs (--priority).
    SetPriority,
    /// Set the run_at of waiting jobs (--run-at).
    SetRunAt,
}

impl From<ActionArg> for BulkAction {
    fn from(action: ActionArg) -> Self {
        match action {
            ActionArg::Retry => BulkAction::Retry,
            ActionArg::Cancel => BulkAction::Cancel,
            ActionArg::Delete => BulkAction::Delete,
            ActionArg::Discard => BulkAction::Discard,
            ActionArg::SetPriority => BulkAction::SetPriority,
            ActionArg::SetRunAt => BulkAction::SetRunAt,
        }
    }
}

/// Options of `stoker ops create`.
#[derive(Debug, Clone, Args)]
pub struct OpsCreateArgs {
    /// What to do to each matching job.
    #[arg(value_enum)]
    pub action: ActionArg,
    /// Only jobs in this state (available = due, scheduled, running, retryable, completed,
    /// discarded, cancelled, or failed = retryable and discarded); repeat for several.
    #[arg(long = "state", value_name = "STATE", value_parser = parse::state_views)]
    pub states: Vec<super::StateViews>,
    /// Only jobs in this queue; repeat for several.
    #[arg(long = "queue", value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// Only jobs of this kind; repeat for several.
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Only this tenant's jobs.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A search-bar query, as `stoker jobs list --query` takes it (e.g. 'state:failed
    /// kind:email after:1h'), joined with the other filter flags.
    #[arg(long, short = 'q', value_name = "QUERY")]
    pub query: Option<String>,
    /// Only jobs whose latest failure is in this group.
    #[arg(long, value_name = "FINGERPRINT")]
    pub failure_group: Option<String>,
    /// Only jobs created at or after this time (RFC 3339 or "2025-01-31 09:00" UTC).
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub created_before: Option<DateTime<Utc>>,
    /// The new priority, for set-priority: low, normal, high, critical or a number.
    #[arg(long, value_parser = parse::priority, allow_hyphen_values = true)]
    pub priority: Option<Priority>,
    /// The new run_at, for set-run-at.
    #[arg(long, value_name = "TIME", value_parser = parse::time)]
    pub run_at: Option<DateTime<Utc>>,
    /// Apply it to every job: needed when no filter flag is given, so "every job" is never
    /// one forgotten flag away.
    #[arg(long)]
    pub all: bool,
    /// Follow the operation until it ends, with progress on standard error.
    #[arg(long)]
    pub wait: bool,
    /// Where the jobs are, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Options of `stoker ops list`.
#[derive(Debug, Clone, Args)]
pub struct OpsListArgs {
    /// Only running operations.
    #[arg(long)]
    pub running: bool,
    /// The most operations, 1 to 500.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Where to look, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one operation.
#[derive(Debug, Clone, Args)]
pub struct OpArgs {
    /// The operation's id.
    pub id: i64,
    /// With show: follow the operation until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Where it is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker jobs logs ID`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The job's id.
    #[arg(value_parser = parse::job_id)]
    pub id: JobId,
    /// Where the job is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

// ---------------------------------------------------------------------------------------------
// Backend calls: a database through `stoker::Client`, or a server through the HTTP API.
// ---------------------------------------------------------------------------------------------

async fn list_groups(
    backend: &Backend,
    params: FailureGroupListParams,
) -> Result<Vec<FailureGroupView>, CliError> {
    match backend {
        Backend::Direct(direct) => {
            let client = direct.client();
            let since = params.since;
            let mut groups: Vec<FailureGroupView> = client
                .failure_groups(params)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            // --- stream ops ---
            if let Some(since) = since {
                let fingerprints = groups.iter().map(|g| g.fingerprint.clone()).collect();
                let hours = client
                    .failure_group_hours(fingerprints, since, None)
                    .await?;
                for group in &mut groups {
                    group.count_in_range = Some(
                        hours
                            .iter()
                            .filter(|h| h.fingerprint == group.fingerprint)
                            .map(|h| h.count)
                            .sum(),
                    );
                }
            }
            Ok(groups)
        }
        Backend::Remote(remote) => {
            let query = ListFailuresQuery {
                since: params.since,
                until: params.until,
                kind: params.kind,
                limit: Some(params.limit),
            };
            let list: FailureGroupList = remote.get_query("v1/failures", &query).await?;
            Ok(list.groups)
        }
    }
}

async fn get_group(
    backend: &Backend,
    fingerprint: &str,
    since: Option<DateTime<Utc>>,
) -> Result<FailureGroupView, CliError> {
    let group = match backend {
        Backend::Direct(direct) => {
            let client = direct.client();
            let group = client.failure_group(fingerprint).await?;
            match (group, since) {
                // --- stream ops ---
                (Some(group), Some(since)) => {
                    let hours = client
                        .failure_group_hours(vec![fingerprint.to_owned()], since, None)
                        .await?;
                    let mut view = FailureGroupView::from(group);
                    view.count_in_range = Some(hours.iter().map(|h| h.count).sum());
                    view.hours = Some(
                        hours
                            .into_iter()
                            .map(|h| FailureHourView {
                                hour: h.hour,
                                count: h.count,
                            })
                            .collect(),
                    );
                    Some(view)
                }
                (group, _) => group.map(Into::into),
            }
        }
        Backend::Remote(remote) => Some(
            remote
                .get_query::<FailureGroupView, _>(
                    &format!("v1/failures/{fingerprint}"),
                    &GetFailureQuery { since, until: None },
                )
                .await?,
        ),
    };
    group.ok_or_else(|| CliError::NotFound(format!("failure group {fingerprint} not found")))
}

async fn group_op(
    backend: &Backend,
    fingerprint: &str,
    retry: bool,
) -> Result<BulkOpView, CliError> {
    match backend {
        Backend::Direct(direct) => {
            let client = direct.client();
            let op = if retry {
                client
                    .retry_failure_group(fingerprint, Some("cli".into()))
                    .await?
            } else {
                client
                    .discard_failure_group(fingerprint, Some("cli".into()))
                    .await?
            };
            Ok(op.into())
        }
        Backend::Remote(remote) => {
            let verb = if retry { "retry" } else { "discard" };
            remote
                .post_empty(&format!("v1/failures/{fingerprint}/{verb}"))
                .await
        }
    }
}

async fn create_op(backend: &Backend, request: BulkRequest) -> Result<BulkOpView, CliError> {
    match backend {
        Backend::Direct(direct) => Ok(direct.client().bulk_start(request).await?.into()),
        Backend::Remote(remote) => {
            let body = CreateBulkOpRequest {
                action: request.action,
                filter: request.filter.into(),
                q: None,
                priority: request.priority.map(|p| p.0),
                run_at: request.run_at,
            };
            remote.post("v1/ops", &body).await
        }
    }
}

async fn list_ops(
    backend: &Backend,
    params: BulkOpListParams,
) -> Result<Vec<BulkOpView>, CliError> {
    match backend {
        Backend::Direct(direct) => Ok(direct
            .client()
            .bulk_ops(params)
            .await?
            .into_iter()
            .map(Into::into)
            .collect()),
        Backend::Remote(remote) => {
            let query = ListOpsQuery {
                state: params.states.first().copied(),
                cursor: params.before_id,
                limit: Some(params.limit),
            };
            let list: BulkOpList = remote.get_query("v1/ops", &query).await?;
            Ok(list.ops)
        }
    }
}

async fn get_op(backend: &Backend, id: i64) -> Result<BulkOpView, CliError> {
    let op = match backend {
        Backend::Direct(direct) => direct.client().bulk_op(id).await?.map(Into::into),
        Backend::Remote(remote) => Some(remote.get(&format!("v1/ops/{id}")).await?),
    };
    op.ok_or_else(|| CliError::NotFound(format!("bulk operation {id} not found")))
}

async fn abort_op(backend: &Backend, id: i64) -> Result<BulkOpView, CliError> {
    match backend {
        Backend::Direct(direct) => Ok(direct.client().bulk_abort(id).await?.into()),
        Backend::Remote(remote) => remote.post_empty(&format!("v1/ops/{id}/abort")).await,
    }
}

async fn job_logs(backend: &Backend, id: JobId) -> Result<JobLogList, CliError> {
    match backend {
        Backend::Direct(direct) => Ok(JobLogList {
            lines: direct
                .client()
                .job_logs(id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        }),
        Backend::Remote(remote) => remote.get(&format!("v1/jobs/{id}/logs")).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Runs `stoker failures …`.
pub(crate) async fn failures(command: FailuresCommand) -> Result<(), CliError> {
    match command {
        FailuresCommand::List(args) => {
            let backend = args.target.connect().await?;
            let since = since_instant(args.since)?;
            let groups = list_groups(
                &backend,
                FailureGroupListParams {
                    since,
                    until: None,
                    kind: args.kind,
                    limit: args.limit,
                    tenant: None,
                },
            )
            .await?;
            if args.target.json {
                output::json(&groups);
            } else if groups.is_empty() {
                println!("no failures recorded in that range");
            } else {
                let ranged = since.is_some();
                let mut headers = vec!["FINGERPRINT", "KIND", "CLASS", ">COUNT"];
                if ranged {
                    headers.push(">IN RANGE");
                }
                headers.extend(["FIRST SEEN", "LAST SEEN", "MESSAGE"]);
                let mut table = Table::new(&headers);
                for group in &groups {
                    let mut row = vec![
                        group.fingerprint.clone(),
                        group.kind.clone(),
                        stoker::core::error_class(group.error_kind).to_owned(),
                        group.count.to_string(),
                    ];
                    if ranged {
                        row.push(group.count_in_range.unwrap_or_default().to_string());
                    }
                    row.extend([
                        output::time(group.first_seen),
                        output::time(group.last_seen),
                        output::clip(&group.message, 60),
                    ]);
                    table.row(row);
                }
                print!("{}", table.render());
            }
            Ok(())
        }
        FailuresCommand::Show(args) => {
            let backend = args.target.connect().await?;
            let group = get_group(&backend, &args.fingerprint, since_instant(args.since)?).await?;
            if args.target.json {
                output::json(&group);
            } else {
                println!("fingerprint     {}", group.fingerprint);
                println!("kind            {}", group.kind);
                println!(
                    "class           {}",
                    stoker::core::error_class(group.error_kind)
                );
                println!("message         {}", group.message);
                println!("count           {}", group.count);
                println!("first seen      {}", output::time(group.first_seen));
                println!("last seen       {}", output::time(group.last_seen));
                println!("sample job      {}", group.sample_job_id);
                println!("sample message  {}", group.sample_message);
                // --- stream ops ---
                if let Some(in_range) = group.count_in_range {
                    println!("in range        {in_range}");
                    for hour in group.hours.iter().flatten() {
                        println!("  {}  {}", output::time(hour.hour), hour.count);
                    }
                }
            }
            Ok(())
        }
        FailuresCommand::Retry(args) => group_command(args, true).await,
        FailuresCommand::Discard(args) => group_command(args, false).await,
    }
}

// --- stream ops ---
/// The instant `--since` names: that long before now.
fn since_instant(since: Option<Duration>) -> Result<Option<DateTime<Utc>>, CliError> {
    since
        .map(|since| {
            chrono::Duration::from_std(since)
                .ok()
                .and_then(|since| Utc::now().checked_sub_signed(since))
                .ok_or_else(|| CliError::Invalid("--since is too long".to_owned()))
        })
        .transpose()
}

async fn group_command(args: GroupOpArgs, retry: bool) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let op = group_op(&backend, &args.fingerprint, retry).await?;
    report_started(&backend, op, args.wait, args.target.json).await
}

/// Runs `stoker ops …`.
pub(crate) async fn ops(command: OpsCommand) -> Result<(), CliError> {
    match command {
        OpsCommand::Create(args) => {
            let backend = args.target.connect().await?;
            let mut filter = BulkFilter {
                states: args.states.into_iter().flat_map(|views| views.0).collect(),
                queues: args.queues,
                kinds: args.kinds,
                tenant: args.tenant,
                failure_group: args.failure_group,
                created_after: args.created_after,
                created_before: args.created_before,
                ..BulkFilter::default()
            };
            // Job search (issue 14): the query, parsed here with the local clock so the
            // operation records absolute times whichever backend runs it.
            if let Some(query) = args.query.as_deref() {
                let parsed = stoker::parse_query(query, chrono::Utc::now())
                    .map_err(|err| CliError::Invalid(format!("--query: {}", err.reason)))?;
                filter = stoker::merge_criteria(parsed, filter)
                    .map_err(|err| CliError::Invalid(err.to_string()))?;
            }
            if filter == BulkFilter::default() && !args.all {
                return Err(CliError::Invalid(
                    "give at least one filter (--query, --state, --queue, --kind, --tenant, \
                     --failure-group, --created-after, --created-before), or --all to apply it \
                     to every job"
                        .to_owned(),
                ));
            }
            let mut request = BulkRequest::new(args.action.into(), filter);
            request.priority = args.priority;
            request.run_at = args.run_at;
            request.created_by = Some("cli".to_owned());
            let op = create_op(&backend, request).await?;
            report_started(&backend, op, args.wait, args.target.json).await
        }
        OpsCommand::List(args) => {
            let backend = args.target.connect().await?;
            let ops = list_ops(
                &backend,
                BulkOpListParams {
                    states: if args.running {
                        vec![BulkOpState::Running]
                    } else {
                        Vec::new()
                    },
                    before_id: None,
                    limit: args.limit,
                },
            )
            .await?;
            if args.target.json {
                output::json(&ops);
            } else if ops.is_empty() {
                println!("no bulk operations");
            } else {
                let mut table = Table::new(&[
                    ">ID", "ACTION", "STATE", ">MATCHED", ">DONE", ">SKIPPED", "BY", "CREATED",
                ]);
                for op in &ops {
                    table.row(vec![
                        op.id.to_string(),
                        op.action.as_str().to_owned(),
                        op.state.as_str().to_owned(),
                        op.matched.to_string(),
                        op.done.to_string(),
                        op.skipped.to_string(),
                        op.created_by.clone().unwrap_or_else(|| "-".to_owned()),
                        output::time(op.created_at),
                    ]);
                }
                print!("{}", table.render());
            }
            Ok(())
        }
        OpsCommand::Show(args) => {
            let backend = args.target.connect().await?;
            let mut op = get_op(&backend, args.id).await?;
            if args.wait {
                op = follow(&backend, op).await?;
            }
            print_op(&op, args.target.json);
            Ok(())
        }
        OpsCommand::Abort(args) => {
            let backend = args.target.connect().await?;
            let op = abort_op(&backend, args.id).await?;
            if args.target.json {
                output::json(&op);
            } else {
                println!(
                    "aborted bulk operation {}: {} done, {} skipped of {} matched so far",
                    op.id, op.done, op.skipped, op.matched
                );
            }
            Ok(())
        }
    }
}

/// Runs `stoker jobs logs ID`.
pub(crate) async fn logs(args: LogsArgs) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let logs = job_logs(&backend, args.id).await?;
    if args.target.json {
        output::json(&logs);
    } else if logs.lines.is_empty() {
        println!("job {} has no log lines", args.id);
    } else {
        for line in &logs.lines {
            println!("{} #{} {}", output::time(line.at), line.attempt, line.line);
        }
    }
    Ok(())
}

async fn report_started(
    backend: &Backend,
    op: BulkOpView,
    wait: bool,
    json: bool,
) -> Result<(), CliError> {
    if wait {
        let op = follow(backend, op).await?;
        print_op(&op, json);
        return Ok(());
    }
    if json {
        output::json(&op);
    } else {
        println!(
            "started bulk operation {} ({}): the server's leader runs it in batches; follow it \
             with `stoker ops show {} --wait`",
            op.id,
            op.action.as_str(),
            op.id
        );
    }
    Ok(())
}

/// Polls an operation until it ends, with its progress on standard error.
async fn follow(backend: &Backend, mut op: BulkOpView) -> Result<BulkOpView, CliError> {
    while op.state == BulkOpState::Running {
        eprintln!(
            "operation {}: {} matched, {} done, {} skipped so far",
            op.id, op.matched, op.done, op.skipped
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        op = get_op(backend, op.id).await?;
    }
    Ok(op)
}

fn print_op(op: &BulkOpView, json: bool) {
    if json {
        output::json(op);
        return;
    }
    println!("operation   {}", op.id);
    println!("action      {}", op.action.as_str());
    if let Some(priority) = op.priority {
        println!("priority    {priority}");
    }
    if let Some(run_at) = op.run_at {
        println!("run at      {}", output::time(run_at));
    }
    println!(
        "filter      {}",
        serde_json::to_string(&op.filter).unwrap_or_default()
    );
    println!("state       {}", op.state.as_str());
    println!(
        "progress    {} matched, {} done, {} skipped (ids up to {} of {} visited)",
        op.matched, op.done, op.skipped, op.cursor, op.max_id
    );
    println!(
        "created     {} by {}",
        output::time(op.created_at),
        op.created_by.as_deref().unwrap_or("-")
    );
    println!("finished    {}", output::time_or_dash(op.finished_at));
}
