//! Recurring schedules: a job every two seconds and a weekly report in London time, fired
//! exactly once per slot however many processes run this.
//!
//! Run it with `cargo run --example cron`. It keeps its queue in an SQLite file in the system's
//! temporary directory, runs for about five seconds, then prints the schedule's history.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::cron::{next_slots, CatchUp, CronSchedule, Overlap};
use stoker::sqlite::SqliteStore;
use stoker::{Client, JobContext, JobError, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-cron-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    // Six fields: seconds first. Skip a slot while the previous run is still going.
    let mut heartbeat = CronSchedule::new("heartbeat", "*/2 * * * * *", "ping", json!({}));
    heartbeat.overlap = Overlap::Skip;
    // Mondays 09:00 in London, whatever the season; after an outage, only the latest missed
    // report runs (the default), at most a day late.
    let mut report = CronSchedule::new("weekly-report", "0 9 * * MON", "report", json!({}));
    report.tz = "Europe/London".into();
    report.catch_up = CatchUp::Latest;
    report.catch_up_window_seconds = 86_400;

    println!("weekly-report fires next at:");
    for slot in next_slots("0 9 * * MON", "Europe/London", chrono::Utc::now(), 3)? {
        println!("  {slot}");
    }

    let worker = Worker::builder(store)
        .queue("default", 4)
        .handler_fn("ping", |_args: Value, ctx: JobContext| async move {
            let cron = ctx.metadata().cron.clone();
            let slot = cron.map(|c| c.slot.to_string()).unwrap_or_default();
            println!("ping for slot {slot}");
            Ok::<_, JobError>(json!({ "slot": slot }))
        })
        .handler_fn("report", |_args: Value, _ctx: JobContext| async move {
            Ok::<_, JobError>(json!("sent"))
        })
        // Upserted by name at start; a schedule paused by an operator stays paused.
        .cron(heartbeat)
        .cron(report)
        .build()?;
    let handle = worker.start().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    handle.shutdown().await;

    for run in client.cron_history("heartbeat", 10).await? {
        println!(
            "slot {} -> job {:?} {:?}{}",
            run.slot,
            run.job_id,
            run.state,
            if run.skipped {
                " (skipped: still running)"
            } else {
                ""
            }
        );
    }
    drop(client);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
