//! `stoker batches` (issue 18): list batches, show one's counters, close and cancel, on a
//! database or through a server. Both paths answer with the API's views, so the output (and
//! `--json`) is the same either way.

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use stoker::core::BatchListParams;
use stoker::{BatchId, BatchState};

use super::backend::Backend;
use super::output::{self, Table};
use super::{CliError, Target};
use crate::api::batches::{BatchList, BatchView};

/// The commands of `stoker batches`.
#[derive(Debug, Subcommand)]
pub enum BatchesCommand {
    /// List batches, newest first, with their counters.
    List(BatchesListArgs),
    /// Show a batch: its state, counters by outcome and callback.
    Show(BatchesIdArgs),
    /// Close a batch: no job can be added any more, and its callback runs once nothing is
    /// pending.
    Close(BatchesIdArgs),
    /// Cancel a batch: its waiting jobs and its callback are cancelled, its running jobs
    /// asked to stop.
    Cancel(BatchesIdArgs),
}

/// A batch's state, as the list filter takes it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BatchStateArg {
    /// Jobs can be added.
    Open,
    /// Closed, with jobs pending.
    Running,
    /// Every job finished; the callback was enqueued.
    Finished,
    /// Cancelled.
    Cancelled,
}

impl From<BatchStateArg> for BatchState {
    fn from(state: BatchStateArg) -> Self {
        match state {
            BatchStateArg::Open => BatchState::Open,
            BatchStateArg::Running => BatchState::Running,
            BatchStateArg::Finished => BatchState::Finished,
            BatchStateArg::Cancelled => BatchState::Cancelled,
        }
    }
}

/// `stoker batches list`.
#[derive(Debug, Clone, Args)]
pub struct BatchesListArgs {
    /// Only batches in this state.
    #[arg(long, value_enum)]
    pub state: Option<BatchStateArg>,
    /// Only this tenant's batches.
    #[arg(long)]
    pub tenant: Option<String>,
    /// At most this many, 1 to 500.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Where the batches are, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// A command on one batch.
#[derive(Debug, Clone, Args)]
pub struct BatchesIdArgs {
    /// The batch's id.
    pub id: i64,
    /// Where the batch is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Runs a `stoker batches` command.
pub(crate) async fn run(command: BatchesCommand) -> Result<(), CliError> {
    match command {
        BatchesCommand::List(args) => {
            let backend = args.target.connect().await?;
            let list: BatchList = match &backend {
                Backend::Direct(direct) => {
                    let rows = direct
                        .client()
                        .batches(BatchListParams {
                            tenant: args.tenant.clone(),
                            state: args.state.map(Into::into),
                            before: None,
                            limit: args.limit,
                        })
                        .await?;
                    let next_cursor = (rows.len() == args.limit as usize)
                        .then(|| rows.last().map(|row| row.id.0))
                        .flatten();
                    BatchList {
                        batches: rows.into_iter().map(Into::into).collect(),
                        next_cursor,
                    }
                }
                Backend::Remote(remote) => {
                    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
                    if let Some(state) = args.state {
                        query.push(("state", BatchState::from(state).as_str().to_owned()));
                    }
                    if let Some(tenant) = &args.tenant {
                        query.push(("tenant", tenant.clone()));
                    }
                    remote.get_query("v1/batches", &query).await?
                }
            };
            if args.target.json {
                output::json(&list);
            } else {
                print!("{}", table(&list.batches));
            }
            Ok(())
        }
        BatchesCommand::Show(args) => {
            let backend = args.target.connect().await?;
            let shown: BatchView = match &backend {
                Backend::Direct(direct) => direct
                    .client()
                    .batch(BatchId(args.id))
                    .await?
                    .ok_or_else(|| CliError::NotFound(format!("batch {} not found", args.id)))?
                    .into(),
                Backend::Remote(remote) => {
                    remote
                        .call(Method::GET, &format!("v1/batches/{}", args.id), None)
                        .await?
                }
            };
            print_one(&args.target, &shown);
            Ok(())
        }
        BatchesCommand::Close(args) => change(args, "close").await,
        BatchesCommand::Cancel(args) => change(args, "cancel").await,
    }
}

/// Closes (`action` "close") or cancels a batch and prints it as it is after.
async fn change(args: BatchesIdArgs, action: &str) -> Result<(), CliError> {
    let backend = args.target.connect().await?;
    let id = BatchId(args.id);
    let shown: BatchView = match &backend {
        Backend::Direct(direct) => {
            let client = direct.client();
            let row = if action == "close" {
                client.batch_close(id).await?
            } else {
                client.cancel_batch(id).await?
            };
            row.into()
        }
        Backend::Remote(remote) => {
            remote
                .call(
                    Method::POST,
                    &format!("v1/batches/{}/{action}", args.id),
                    None,
                )
                .await?
        }
    };
    print_one(&args.target, &shown);
    Ok(())
}

fn state_name(view: &BatchView) -> String {
    serde_json::to_value(view.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_one(target: &Target, view: &BatchView) {
    if target.json {
        output::json(view);
    } else {
        print!("{}", detail(view));
    }
}

/// Batches as a table: id, name, state, counters, created.
fn table(batches: &[BatchView]) -> String {
    if batches.is_empty() {
        return "no batches\n".to_owned();
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "STATE",
        "TOTAL",
        "PENDING",
        "COMPLETED",
        "DISCARDED",
        "CANCELLED",
        "CREATED",
    ]);
    for batch in batches {
        table.row(vec![
            batch.id.to_string(),
            output::clip(&batch.name, 40),
            state_name(batch),
            batch.total.to_string(),
            batch.pending.to_string(),
            batch.completed.to_string(),
            batch.discarded.to_string(),
            batch.cancelled.to_string(),
            output::time(batch.created_at),
        ]);
    }
    table.render()
}

/// One batch: a header line, its counters and its times.
fn detail(batch: &BatchView) -> String {
    let mut out = format!(
        "batch {} {:?}: {}\n",
        batch.id,
        batch.name,
        state_name(batch)
    );
    if let Some(tenant) = &batch.tenant {
        out.push_str(&format!("tenant:    {tenant}\n"));
    }
    out.push_str(&format!(
        "jobs:      {} total, {} pending, {} completed, {} discarded, {} cancelled\n",
        batch.total, batch.pending, batch.completed, batch.discarded, batch.cancelled
    ));
    match batch.callback_id {
        Some(id) => out.push_str(&format!("callback:  job {id}\n")),
        None => out.push_str("callback:  none\n"),
    }
    out.push_str(&format!("created:   {}\n", output::time(batch.created_at)));
    out.push_str(&format!(
        "closed:    {}\n",
        output::time_or_dash(batch.closed_at)
    ));
    out.push_str(&format!(
        "finished:  {}\n",
        output::time_or_dash(batch.finished_at)
    ));
    if batch.cancelled_at.is_some() {
        out.push_str(&format!(
            "cancelled: {}\n",
            output::time_or_dash(batch.cancelled_at)
        ));
    }
    out
}
