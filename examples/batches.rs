//! Batches: a campaign enqueues one delivery per recipient as a batch, with a callback that
//! runs once when every delivery has finished, reading the counts by outcome from its args.
//! One delivery fails for good and one adds a follow-up delivery to its own batch (the batch
//! is kept open until the sender closes it, so the callback cannot run early). Progress is
//! read from the batch's counters while it runs, without scanning its jobs.
//!
//! Run it with `cargo run --example batches`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{Batch, BatchState, Client, EnqueueOptions, JobContext, JobError, NewJob, Worker};

fn job(kind: &str, args: Value) -> NewJob {
    NewJob::raw(kind, args, EnqueueOptions::new())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path = std::env::temp_dir().join(format!("stoker-batches-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let worker = Worker::builder(store)
        .queue("default", 4)
        .handler_fn("deliver", |args: Value, ctx: JobContext| async move {
            match args["to"].as_str() {
                Some("edsger") => return Err(JobError::fatal("mailbox full")),
                // Delivering to a list adds one more delivery to the same batch.
                Some("team") => {
                    ctx.add_to_batch([job("deliver", json!({ "to": "team-lead" }))])
                        .await
                        .map_err(JobError::retryable)?;
                }
                _ => {}
            }
            Ok(json!({ "delivered": args["to"] }))
        })
        .handler_fn("campaign_done", move |args: Value, _ctx: JobContext| {
            let done_tx = done_tx.clone();
            async move {
                let _ = done_tx.send(args);
                Ok(json!({}))
            }
        })
        .build()?;
    let handle = worker.start().await?;

    let recipients = ["ada", "grace", "edsger", "team"];
    let inserted = client
        .enqueue_batch(
            Batch::new("campaign-7")
                .callback(job("campaign_done", json!({ "campaign": 7 })))
                .jobs(recipients.map(|to| job("deliver", json!({ "to": to }))))
                .keep_open(),
        )
        .await?;
    println!(
        "batch {} of {} deliveries",
        inserted.batch,
        inserted.jobs.len()
    );

    // Close it once the team's follow-up has been added (a job may add to an open batch).
    loop {
        let batch = client.batch(inserted.batch).await?.expect("the batch");
        println!(
            "progress: {} of {} finished",
            batch.total - batch.pending,
            batch.total
        );
        if batch.total > recipients.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = client.batch_close(inserted.batch).await?;
    println!("closed: {}", closed.state);

    let args = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
        .await?
        .expect("the callback ran");
    println!("callback args: {args}");
    let batch = client.batch(inserted.batch).await?.expect("the batch");
    assert_eq!(batch.state, BatchState::Finished);
    println!(
        "batch {}: {} completed, {} discarded, {} cancelled",
        batch.id, batch.completed, batch.discarded, batch.cancelled
    );
    handle.shutdown().await;
    std::fs::remove_file(&path).ok();
    Ok(())
}
