//! Alert rules: a rule watches the depth of the `reports` queue; when a backlog builds up the
//! leader's evaluator queues one "firing" message, and once the backlog is gone one
//! "resolved" message. Messages are jobs of kind `webhook`, so they are retried like any job.
//!
//! `stoker serve` delivers them with its built-in webhook handler; this example registers a
//! stand-in `webhook` handler that prints the body it would post.
//!
//! Run it with `cargo run --example alerts`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::alerts::{AlertEvaluatorConfig, AlertMetric, AlertRule};
use stoker::sqlite::SqliteStore;
use stoker::{Client, EnqueueOptions, JobContext, JobError, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path = std::env::temp_dir().join(format!("stoker-alerts-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    // Fire when more than 3 reports wait; resolve once the queue is back to 3 or fewer.
    let mut rule = AlertRule::new(
        "reports-backlog",
        AlertMetric::QueueDepth,
        3.0,
        "https://hooks.example.com/ops",
    );
    rule.scope.queue = Some("reports".into());
    client.alert_create(rule).await?;

    // Nothing serves `reports` in this example: the jobs wait there.
    let mut ids = Vec::new();
    for n in 0..5 {
        let opts = EnqueueOptions::new().queue("reports");
        ids.push(
            client
                .enqueue_raw("report", json!({ "n": n }), opts)
                .await?
                .id,
        );
    }

    let worker = Worker::builder(store)
        .queue("default", 2)
        .handler_fn("webhook", |args: Value, _ctx: JobContext| async move {
            println!("POST {} {}", args["url"], args["body"]);
            Ok::<_, JobError>(Value::Null)
        })
        .alert_evaluator(AlertEvaluatorConfig {
            interval: Duration::from_millis(500),
            ..AlertEvaluatorConfig::default()
        })
        .build()?;
    let handle = worker.start().await?;
    let mut events = handle.events();

    events.recv().await?; // the firing message, delivered
    for id in ids {
        client.delete(id).await?;
    }
    events.recv().await?; // the resolved message

    for event in client.alert_events("reports-backlog", 10).await? {
        println!(
            "event: {:?} at {} (value {})",
            event.kind, event.at, event.value
        );
    }
    handle.shutdown().await;
    std::fs::remove_file(&path).ok();
    Ok(())
}
