//! `stoker workflows` (issue 18): a workflow's state and its graph drawn as text, on a
//! database or through a server. Both paths answer with the API's view, so the output (and
//! `--json`) is the same either way.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use reqwest::Method;
use stoker::WorkflowId;

use super::backend::Backend;
use super::output;
use super::{CliError, Target};
use crate::api::workflows::{view, DepPolicySchema, WorkflowView};

/// The commands of `stoker workflows`.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Show a workflow: its state, counts and result, and its jobs drawn as a graph, one
    /// layer per line group, each job with what it waits for.
    Show(WorkflowsShowArgs),
}

/// `stoker workflows show`.
#[derive(Debug, Clone, Args)]
pub struct WorkflowsShowArgs {
    /// The workflow's id.
    pub id: i64,
    /// Where the workflow is, and how to print.
    #[command(flatten)]
    pub target: Target,
}

/// Runs a `stoker workflows` command.
pub(crate) async fn run(command: WorkflowsCommand) -> Result<(), CliError> {
    match command {
        WorkflowsCommand::Show(args) => {
            let backend = args.target.connect().await?;
            let shown: WorkflowView = match &backend {
                Backend::Direct(direct) => {
                    let client = direct.client();
                    let id = WorkflowId(args.id);
                    let row = client
                        .workflow(id)
                        .await?
                        .ok_or_else(|| CliError::NotFound(format!("workflow {id} not found")))?;
                    view(row, client.workflow_jobs(id).await?)
                }
                Backend::Remote(remote) => {
                    remote
                        .call(Method::GET, &format!("v1/workflows/{}", args.id), None)
                        .await?
                }
            };
            if args.target.json {
                output::json(&shown);
            } else {
                print!("{}", draw(&shown));
            }
            Ok(())
        }
    }
}

/// The workflow as text: a header, then its jobs in layers (a job sits one layer below the
/// deepest job of the workflow it waits for), each as `name #id kind [state]` and, after
/// `<-`, what it waits for (`(run)` or `(hold)` for those policies, `*` once resolved).
pub(crate) fn draw(workflow: &WorkflowView) -> String {
    let mut out = String::new();
    let state = serde_json::to_value(workflow.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    out.push_str(&format!(
        "workflow {} {:?}: {state}, {} jobs",
        workflow.id,
        workflow.name,
        workflow.jobs.len()
    ));
    if workflow.held > 0 {
        out.push_str(&format!(", {} held", workflow.held));
    }
    out.push('\n');
    if let Some(result) = &workflow.result {
        out.push_str(&format!("result: {result}\n"));
    }
    let names: HashMap<i64, &str> = workflow
        .jobs
        .iter()
        .map(|job| (job.id, job.name.as_str()))
        .collect();
    // Jobs come by id and a job's dependencies in the workflow were inserted before it or in
    // the same call, so one pass in id order settles most depths; repeat until stable.
    let mut depth: HashMap<i64, usize> = workflow.jobs.iter().map(|job| (job.id, 0)).collect();
    for _ in 0..workflow.jobs.len() {
        let mut changed = false;
        for job in &workflow.jobs {
            let deepest = job
                .depends_on
                .iter()
                .filter_map(|edge| depth.get(&edge.id).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            if depth[&job.id] != deepest {
                depth.insert(job.id, deepest);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let layers = depth.values().copied().max().unwrap_or(0);
    for layer in 0..=layers {
        out.push_str(&format!("{layer:>3} "));
        let mut first = true;
        for job in workflow.jobs.iter().filter(|job| depth[&job.id] == layer) {
            if !first {
                out.push_str("    ");
            }
            first = false;
            let state = serde_json::to_value(job.state)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!("{} #{} {} [{state}]", job.name, job.id, job.kind));
            if !job.depends_on.is_empty() {
                let deps: Vec<String> = job
                    .depends_on
                    .iter()
                    .map(|edge| {
                        let mut text = match names.get(&edge.id) {
                            Some(name) => (*name).to_owned(),
                            None => format!("#{}", edge.id),
                        };
                        match edge.policy {
                            DepPolicySchema::Cancel => {}
                            DepPolicySchema::Run => text.push_str(" (run)"),
                            DepPolicySchema::Hold => text.push_str(" (hold)"),
                        }
                        if edge.resolved {
                            text.push('*');
                        }
                        text
                    })
                    .collect();
                out.push_str(&format!("  <- {}", deps.join(", ")));
            }
            out.push('\n');
        }
    }
    out
}
