//! Failure groups, bulk operations and job logs: a handler logs to its job and fails; the
//! failures fall into groups by message (ids and numbers taken out); one bulk operation then
//! retries a whole group, run in batches by the leader's bulk runner.
//!
//! Run it with `cargo run --example failures`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoker::sqlite::SqliteStore;
use stoker::{
    BulkOpState, Client, FailureGroupListParams, Job, JobContext, JobError, NewJob, Worker,
};

/// Charges a customer; the payment provider is down, so every attempt fails.
#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    customer: u32,
}

impl Job for Charge {
    const KIND: &'static str = "charge";
    // One attempt, so each job is discarded at once (the dead letter).
    const MAX_ATTEMPTS: i32 = 1;
    type Output = ();

    async fn perform(self, ctx: JobContext) -> Result<(), JobError> {
        // Lines a handler logs are kept with the job (bounded per job), shown by get-job and
        // `stoker jobs logs ID`, and deleted with it.
        ctx.log(format!("charging customer {}", self.customer))
            .await?;
        ctx.log("calling the provider").await?;
        // Messages differ by customer and request id; the group is the same.
        Err(JobError::fatal(format!(
            "provider timeout for customer {} (request 0x{:x})",
            self.customer,
            self.customer * 7919
        )))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path = std::env::temp_dir().join(format!("stoker-failures-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    let jobs = client
        .enqueue_many((1..=5).map(|customer| NewJob::new(Charge { customer })))
        .await?;

    // The worker also leads maintenance, which includes the bulk runner.
    let worker = Worker::builder(store)
        .queue("default", 4)
        .register::<Charge>()
        .build()?;
    let handle = worker.start().await?;
    let mut events = handle.events();
    for _ in &jobs {
        events.recv().await?;
    }

    let groups = client
        .failure_groups(FailureGroupListParams {
            limit: 10,
            ..FailureGroupListParams::default()
        })
        .await?;
    for group in &groups {
        println!(
            "group {}: {} x {} ({:?}): {}",
            group.fingerprint, group.count, group.kind, group.error_kind, group.message
        );
    }
    // --- stream ops ---
    // How often each group failed in a range (here the last hour), per hour: the groups'
    // own hourly counts, kept with the history's hours, never a scan of the jobs.
    let hours = client
        .failure_group_hours(
            groups.iter().map(|g| g.fingerprint.clone()).collect(),
            chrono::Utc::now() - chrono::Duration::hours(1),
            None,
        )
        .await?;
    for hour in &hours {
        println!(
            "group {} failed {} times in the hour from {}",
            hour.fingerprint, hour.count, hour.hour
        );
    }
    let logs = client.job_logs(jobs[0].id).await?;
    for line in &logs {
        println!("job {} log #{}: {}", jobs[0].id, line.attempt, line.line);
    }

    // The provider is back: retry the whole group in the background, and follow it.
    let group = &groups[0];
    let mut op = client
        .retry_failure_group(&group.fingerprint, Some("example".into()))
        .await?;
    while op.state == BulkOpState::Running {
        tokio::time::sleep(Duration::from_millis(200)).await;
        op = client.bulk_op(op.id).await?.expect("the operation exists");
    }
    println!(
        "bulk operation {} {}: {} matched, {} retried, {} skipped",
        op.id,
        op.state.as_str(),
        op.matched,
        op.done,
        op.skipped
    );
    handle.shutdown().await;
    std::fs::remove_file(&path).ok();
    Ok(())
}
