//! Workflows: a campaign plans its audience, fans out one delivery per recipient from inside
//! the planning job (dynamic fan-out), and a report waits for every delivery, reading their
//! results; one delivery fails, and its edge's policy (`run`) lets the report run anyway.
//! Then a chain: extract, then transform, then load, each reading the previous result.
//!
//! Run it with `cargo run --example workflows`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{
    Client, DepPolicy, Dependency, EnqueueOptions, JobContext, JobError, NewJob, Worker, Workflow,
    WorkflowState,
};

fn job(kind: &str, args: Value) -> NewJob {
    NewJob::raw(kind, args, EnqueueOptions::new())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path =
        std::env::temp_dir().join(format!("stoker-workflows-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    let worker = Worker::builder(store)
        .queue("default", 4)
        .handler_fn("plan", |_args: Value, ctx: JobContext| async move {
            // Fan out from inside the job: one delivery per recipient, and a report that
            // waits for all of them (running even if some fail).
            let recipients = ["ada", "grace", "edsger"];
            let mut more = Workflow::new("campaign");
            let mut waits = Vec::new();
            for name in recipients {
                let node = format!("deliver-{name}");
                more = more.job_after(
                    node.clone(),
                    job("deliver", json!({ "to": name })),
                    [Dependency::node("plan")],
                );
                waits.push(Dependency::node(node).policy(DepPolicy::Run));
            }
            more = more.job_after("report", job("report", json!({})), waits);
            ctx.add_to_workflow(more)
                .await
                .map_err(JobError::retryable)?;
            Ok(json!({ "recipients": recipients.len() }))
        })
        .handler_fn("deliver", |args: Value, _ctx: JobContext| async move {
            if args["to"] == "edsger" {
                return Err(JobError::fatal("mailbox full"));
            }
            Ok(json!({ "delivered": args["to"] }))
        })
        .handler_fn("report", |_args: Value, ctx: JobContext| async move {
            let deps = ctx
                .dependency_results()
                .await
                .map_err(JobError::retryable)?;
            let delivered = deps.iter().filter(|dep| dep.result.is_some()).count();
            println!("report: {delivered} of {} delivered", deps.len());
            Ok(json!({ "delivered": delivered, "of": deps.len() }))
        })
        .handler_fn("step", |args: Value, ctx: JobContext| async move {
            let previous = ctx
                .dependency_results()
                .await
                .map_err(JobError::retryable)?;
            let input = previous
                .first()
                .and_then(|dep| dep.result.clone())
                .unwrap_or(json!(0));
            let out = input.as_i64().unwrap_or(0) + args["add"].as_i64().unwrap_or(0);
            println!("{}: {input} -> {out}", args["name"]);
            Ok(json!(out))
        })
        .build()?;
    let handle = worker.start().await?;
    let mut events = handle.events();

    let campaign = client
        .enqueue_workflow(Workflow::new("campaign").job("plan", job("plan", json!({}))))
        .await?;
    let chain = client
        .enqueue_workflow(Workflow::chain(
            "etl",
            [
                (
                    "extract",
                    job("step", json!({ "name": "extract", "add": 1 })),
                ),
                (
                    "transform",
                    job("step", json!({ "name": "transform", "add": 10 })),
                ),
                ("load", job("step", json!({ "name": "load", "add": 100 }))),
            ],
        ))
        .await?;

    // Wait until both workflows are finished: each acknowledgement is an event.
    loop {
        events.recv().await?;
        let a = client.workflow(campaign.workflow).await?.map(|w| w.state);
        let b = client.workflow(chain.workflow).await?.map(|w| w.state);
        if a != Some(WorkflowState::Running) && b != Some(WorkflowState::Running) {
            break;
        }
    }
    for id in [campaign.workflow, chain.workflow] {
        if let Some(workflow) = client.workflow(id).await? {
            println!(
                "workflow {} {}: {} (result {})",
                workflow.id,
                workflow.name,
                workflow.state,
                workflow.result.unwrap_or(Value::Null)
            );
        }
    }
    handle.shutdown().await;
    std::fs::remove_file(&path).ok();
    Ok(())
}
