//! Durable history: run jobs with a history recorder, then read the last hour back as a time
//! series with wait and run percentiles, compared with the hour before, and each queue's
//! waiting work.
//!
//! Run it with `cargo run --example history`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoker::sqlite::SqliteStore;
use stoker::{
    Client, EnqueueOptions, History, HistoryScope, Job, JobContext, JobError, NewJob,
    SeriesRequest, Store, Worker,
};

#[derive(Debug, Serialize, Deserialize)]
struct Thumbnail {
    n: u64,
}

impl Job for Thumbnail {
    const KIND: &'static str = "thumbnail";
    type Output = ();

    async fn perform(self, _ctx: JobContext) -> Result<(), JobError> {
        // Run times of 0 to 40 ms, so the percentiles have something to show.
        tokio::time::sleep(Duration::from_millis(self.n % 5 * 10)).await;
        if self.n % 10 == 0 {
            return Err(JobError::fatal("corrupt image"));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let path = std::env::temp_dir().join(format!("stoker-history-{}.sqlite3", std::process::id()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await?);

    // One recorder per process, shared by the worker and its client: every claim, outcome and
    // enqueue bumps a counter in memory, written in one statement every few seconds.
    let history = History::new(Arc::clone(&store));
    let worker = Worker::builder(Arc::clone(&store))
        .queue("media", 8)
        .register::<Thumbnail>()
        .history(history)
        .build()?;
    let client: Client = worker.client();
    client.migrate().await?;
    let handle = worker.start().await?;
    let mut events = handle.events();
    client
        .enqueue_many(
            (0..50).map(|n| NewJob::with(Thumbnail { n }, EnqueueOptions::new().queue("media"))),
        )
        .await?;
    for _ in 0..50 {
        events.recv().await?;
    }
    // Shutting down writes the last counts.
    handle.shutdown().await;

    let series = client
        .series(&SeriesRequest {
            range: Duration::from_secs(3600),
            step: Duration::from_secs(600),
            end: None,
            scope: HistoryScope {
                queue: Some("media".into()),
                ..HistoryScope::default()
            },
            compare: true,
        })
        .await?;
    println!(
        "last hour of queue media, read from the {:?} rows:",
        series.grain
    );
    for point in &series.points {
        println!(
            "  {}  enqueued {:3}  completed {:3}  discarded {:3}  run p50 {:?} ms p99 {:?} ms",
            point.at.format("%H:%M"),
            point.enqueued,
            point.completed,
            point.discarded,
            point.run.p50_ms,
            point.run.p99_ms
        );
    }
    let previous = series.previous.unwrap_or_default();
    println!(
        "total: {} completed, {} failed (the hour before: {} completed)",
        series.total.completed, series.total.failed, previous.completed
    );
    for depth in client.queue_depths().await? {
        println!(
            "queue {}: {} due, {} scheduled",
            depth.queue, depth.due, depth.scheduled
        );
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
