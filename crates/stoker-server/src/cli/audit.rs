//! `stoker audit` (issue 17): read the audit log, on a database or through a server, and prune
//! it by age (on the database only: the API never deletes rows). Both paths answer with the
//! API's view, so the output (and `--json`) is the same either way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::backend::Backend;
use super::output::{self, Table};
use super::{parse, CliError, Target};
use crate::api::audit::{AuditEntryView, AuditList};

/// The commands of `stoker audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest management actions first: who, what, on what, how many, from where.
    List(AuditListArgs),
    /// Delete rows older than an age (the only way rows leave the log); on the database.
    Prune(AuditPruneArgs),
}

/// `stoker audit list`.
#[derive(Debug, Clone, Args)]
pub struct AuditListArgs {
    /// Only this tenant's actions.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this action, e.g. job.cancel; `job.` for every job action.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this actor (a token's name, cli:USER, library).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only actions at or after this time (RFC 3339, or 2025-01-31 09:00 in UTC).
    #[arg(long, value_parser = parse::time)]
    pub since: Option<DateTime<Utc>>,
    /// Only actions before this time.
    #[arg(long, value_parser = parse::time)]
    pub until: Option<DateTime<Utc>>,
    /// The most rows, 1 to 1000.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Where the log is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// `stoker audit prune`.
#[derive(Debug, Clone, Args)]
pub struct AuditPruneArgs {
    /// Delete rows older than this, e.g. 90d (at least a day).
    #[arg(long, value_parser = parse::positive_duration)]
    pub older_than: Duration,
    /// Where the log is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Runs a `stoker audit` command.
pub(crate) async fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::List(args) => {
            let backend = args.target.connect().await?;
            let entries: Vec<AuditEntryView> = match &backend {
                Backend::Direct(direct) => direct
                    .client()
                    .audit_list(stoker::AuditListParams {
                        tenant: args.tenant,
                        action: args.action,
                        actor: args.actor,
                        since: args.since,
                        until: args.until,
                        before_id: None,
                        limit: args.limit,
                    })
                    .await?
                    .into_iter()
                    .map(AuditEntryView::from)
                    .collect(),
                Backend::Remote(remote) => {
                    let mut query = form_urlencoded::Serializer::new(String::new());
                    query.append_pair("limit", &args.limit.to_string());
                    for (key, value) in [
                        ("tenant", args.tenant),
                        ("action", args.action),
                        ("actor", args.actor),
                        ("since", args.since.map(|at| at.to_rfc3339())),
                        ("until", args.until.map(|at| at.to_rfc3339())),
                    ] {
                        if let Some(value) = value {
                            query.append_pair(key, &value);
                        }
                    }
                    let path = format!("v1/audit?{}", query.finish());
                    remote
                        .call::<AuditList>(Method::GET, &path, None)
                        .await?
                        .entries
                }
            };
            print_list(&entries, args.target.json);
            Ok(())
        }
        AuditCommand::Prune(args) => {
            let backend = args.target.connect().await?;
            let Backend::Direct(direct) = &backend else {
                return Err(CliError::Invalid(
                    "the API never deletes audit rows: prune on the database with \
                     --database-url"
                        .to_owned(),
                ));
            };
            let deleted = direct.client().audit_prune(args.older_than).await?;
            if args.target.json {
                output::json(&json!({ "deleted": deleted }));
            } else {
                println!("deleted {deleted} audit rows");
            }
            Ok(())
        }
    }
}

fn print_list(entries: &[AuditEntryView], json: bool) {
    if json {
        output::json(&json!({ "entries": entries }));
        return;
    }
    if entries.is_empty() {
        println!("no audit rows");
        return;
    }
    let mut table = Table::new(&[
        "ID", "AT", "ACTOR", "VIA", "TENANT", "ACTION", "TARGET", "AFFECTED", "SOURCE",
    ]);
    for entry in entries {
        let target = match (&entry.target, &entry.filter) {
            (Some(target), _) => target.clone(),
            (None, Some(filter)) => output::clip(&output::compact(filter), 60),
            (None, None) => "-".to_owned(),
        };
        table.row(vec![
            entry.id.to_string(),
            output::time(entry.at),
            entry.actor.clone(),
            entry.via.clone(),
            entry.tenant.clone().unwrap_or_else(|| "-".to_owned()),
            entry.action.clone(),
            target,
            entry
                .affected
                .map_or_else(|| "-".to_owned(), |count| count.to_string()),
            entry.source.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    print!("{}", table.render());
}
