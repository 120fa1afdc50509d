//! Stoker in one file: define a job, enqueue a few, run a worker, print the results.
//!
//! Run it with `cargo run --example quickstart`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoker::sqlite::SqliteStore;
use stoker::{
    Backoff, Client, EnqueueOptions, Job, JobContext, JobError, NewJob, Priority, Worker,
};

/// A job is a serde struct: its fields are the job's args, stored as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

impl Job for Resize {
    const KIND: &'static str = "resize";
    const MAX_ATTEMPTS: i32 = 3;
    type Output = String;

    async fn perform(self, ctx: JobContext) -> Result<String, JobError> {
        // Progress is a fraction, a message and, optionally, any JSON a dashboard can show.
        ctx.progress_with(
            0.5,
            format!("resizing {}", self.image),
            serde_json::json!({ "width": self.width }),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(100)).await; // the real work goes here
        Ok(format!(
            "{} resized to {}px (attempt {})",
            self.image,
            self.width,
            ctx.attempt()
        ))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path =
        std::env::temp_dir().join(format!("stoker-quickstart-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;
    println!("queue file: {}", path.display());

    // Enqueue a few jobs in one statement; the logo goes first.
    let images = ["cat.png", "dog.png", "logo.svg"];
    let jobs = client
        .enqueue_many(images.iter().map(|image| {
            let priority = if image.ends_with(".svg") {
                Priority::HIGH
            } else {
                Priority::NORMAL
            };
            NewJob::with(
                Resize {
                    image: (*image).to_owned(),
                    width: 640,
                },
                // Each job may carry its own retry backoff, instead of its kind's.
                EnqueueOptions::new().priority(priority).backoff(Backoff {
                    base: Duration::from_secs(1),
                    factor: 3.0,
                    max: Duration::from_secs(60),
                    jitter: 0.1,
                }),
            )
        }))
        .await?;

    // Run a worker with up to 4 jobs at a time, and wait until all three are done.
    let worker = Worker::builder(store)
        .queue("default", 4)
        .register::<Resize>()
        .build()?;
    let handle = worker.start().await?;
    let mut events = handle.events();
    for _ in &jobs {
        events.recv().await?;
    }
    handle.shutdown().await;

    for job in jobs {
        let row = client.get(job.id).await?.expect("the job exists");
        println!(
            "job {} {}: {}",
            row.id,
            row.state,
            row.result.unwrap_or_default()
        );
    }
    std::fs::remove_file(&path).ok();
    Ok(())
}
