//! Job-completion callbacks: a job enqueued with `on_finish(url)` posts its outcome to the URL
//! when it completes, is discarded or is cancelled. The post is a job of kind `webhook`,
//! written in the same transaction as the final state, so it is retried like any job and never
//! lost.
//!
//! `stoker serve` delivers it with its built-in webhook handler; this example registers a
//! stand-in `webhook` handler that prints the body it would post.
//!
//! Run it with `cargo run --example on_finish`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{Client, EnqueueOptions, JobContext, JobError, Worker};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path =
        std::env::temp_dir().join(format!("stoker-on-finish-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    // One job that completes, one that nothing serves and is cancelled: both post.
    let hook = "https://hooks.example.com/thumbnails";
    let resize = client
        .enqueue_raw(
            "resize",
            json!({ "image": "cat.png", "width": 320 }),
            EnqueueOptions::new().on_finish(hook),
        )
        .await?
        .id;
    let held = client
        .enqueue_raw(
            "archive",
            json!({ "image": "cat.png" }),
            EnqueueOptions::new().queue("held").on_finish(hook),
        )
        .await?
        .id;
    client.cancel(held).await?;

    let (posted, mut bodies) = mpsc::unbounded_channel::<Value>();
    let worker = Worker::builder(store)
        .queue("default", 2)
        .handler_fn("resize", |args: Value, _ctx: JobContext| async move {
            let image = args["image"].as_str().unwrap_or_default();
            Ok::<_, JobError>(json!({ "thumbnail": format!("{}-{image}", args["width"]) }))
        })
        .handler_fn("webhook", move |args: Value, _ctx: JobContext| {
            let posted = posted.clone();
            async move {
                println!("POST {} {}", args["url"], args["body"]);
                posted.send(args["body"].clone()).ok();
                Ok::<_, JobError>(Value::Null)
            }
        })
        .build()?;
    let handle = worker.start().await?;

    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        let body = bodies.recv().await.ok_or("the worker stopped")?;
        outcomes.push((body["id"].as_i64(), body["state"].clone()));
    }
    outcomes.sort_by_key(|(id, _)| *id);
    assert_eq!(
        outcomes,
        vec![
            (Some(resize.0), json!("completed")),
            (Some(held.0), json!("cancelled")),
        ]
    );
    handle.shutdown().await;
    std::fs::remove_file(&path).ok();
    Ok(())
}
