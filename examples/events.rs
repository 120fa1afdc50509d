//! Live events: follow one job to its end, and watch the once-a-second snapshot, with an
//! embedded worker sharing the client's event hub.
//!
//! Run it with `cargo run --example events`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoker::sqlite::SqliteStore;
use stoker::{
    Client, EnqueueOptions, Event, EventFilter, EventHub, Job, JobContext, JobError, Store, Worker,
};

#[derive(Debug, Serialize, Deserialize)]
struct Render {
    frames: u64,
}

impl Job for Render {
    const KIND: &'static str = "render";
    type Output = u64;

    async fn perform(self, _ctx: JobContext) -> Result<u64, JobError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(self.frames)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let path = std::env::temp_dir().join(format!("stoker-events-{}.sqlite3", std::process::id()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await?);

    // One hub per process, shared by the worker and its client: claims, acknowledgements and
    // enqueues are published there, and cost nothing while nobody subscribes.
    let hub = EventHub::new();
    let worker = Worker::builder(Arc::clone(&store))
        .queue("media", 4)
        .register::<Render>()
        .event_hub(hub.clone())
        .build()?;
    let client: Client = worker.client();
    client.migrate().await?;
    let handle = worker.start().await?;

    let job = client
        .enqueue_with(
            Render { frames: 24 },
            EnqueueOptions::new()
                .queue("media")
                .correlation_id("order-7"),
        )
        .await?;

    // Follow the job: its state now, each change, then `End` once it is finished.
    let mut events = client
        .events(EventFilter::new().job(job.id).snapshot(false))
        .await?;
    while let Some(event) = events.next().await {
        match event {
            Event::Job(change) => println!(
                "job {} is {} (attempt {}, correlation {:?})",
                change.id, change.state, change.attempt, change.correlation_id
            ),
            Event::End => println!("job {} is finished", job.id),
            Event::Snapshot(_) => {}
        }
    }

    // The snapshot: one task computes it each second for every subscriber of the hub.
    let mut snapshots = client.events(EventFilter::new().job_events(false)).await?;
    if let Some(Event::Snapshot(snapshot)) = snapshots.next().await {
        println!(
            "snapshot at {}: {} completed, {} workers alive, {} enqueued this minute",
            snapshot.at,
            snapshot.states.completed,
            snapshot.workers_alive,
            snapshot.minute.enqueued
        );
    }
    drop(snapshots);

    handle.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
