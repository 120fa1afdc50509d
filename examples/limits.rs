//! Flow control: a rate limit on a kind (an AI provider allowing 5 calls a second), a
//! concurrency limit per shop (`args.shop`), and a handler that pushes its limiter back when
//! the provider answers 429. Limits live in the store, so every worker process shares them.
//!
//! Run it with `cargo run --example limits`. It keeps its queue in an SQLite file in the
//! system's temporary directory and runs for about four seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{Client, EnqueueOptions, JobContext, JobError, LimitKey, LimitSpec, Rate, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-limits-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    // At most 5 `generate` jobs start per second, one every 200 ms (burst 1).
    client
        .limit_set(LimitSpec {
            name: "provider".into(),
            queue: None,
            kind: Some("generate".into()),
            key: LimitKey::Global,
            rate: Some(Rate {
                count: 5,
                period_ms: 1000,
                burst: 1,
            }),
            concurrency: None,
        })
        .await?;
    // At most one `sync` job per shop runs at a time, across every worker.
    client
        .limit_set(LimitSpec {
            name: "per-shop".into(),
            queue: None,
            kind: Some("sync".into()),
            key: LimitKey::parse("args.shop")?,
            rate: None,
            concurrency: Some(1),
        })
        .await?;
    // Bad input names the field and writes nothing.
    let refused = client
        .limit_set(LimitSpec {
            name: "broken".into(),
            queue: None,
            kind: None,
            key: LimitKey::Global,
            rate: Some(Rate {
                count: 0,
                period_ms: 1000,
                burst: 1,
            }),
            concurrency: None,
        })
        .await;
    println!("a rate of 0: {}", refused.expect_err("refused"));

    for i in 0..10 {
        client
            .enqueue_raw("generate", json!({ "prompt": i }), EnqueueOptions::new())
            .await?;
    }
    for shop in [1, 1, 1, 2, 2, 2] {
        client
            .enqueue_raw("sync", json!({ "shop": shop }), EnqueueOptions::new())
            .await?;
    }

    let started = Instant::now();
    let told_to_slow_down = Arc::new(AtomicBool::new(false));
    let worker = Worker::builder(store)
        .queue("default", 8)
        .handler_fn("generate", {
            let told = told_to_slow_down.clone();
            move |args: Value, ctx: JobContext| {
                let told = told.clone();
                async move {
                    // The provider answers 429 once: every node holds the limiter back for
                    // 500 ms, and this job is snoozed without using an attempt.
                    if !told.swap(true, Ordering::SeqCst) {
                        println!(
                            "{:>5} ms  generate {}: 429, backing off",
                            started.elapsed().as_millis(),
                            args["prompt"]
                        );
                        return Err(ctx
                            .rate_limited("provider", Duration::from_millis(500))
                            .await);
                    }
                    println!(
                        "{:>5} ms  generate {}",
                        started.elapsed().as_millis(),
                        args["prompt"]
                    );
                    Ok::<_, JobError>(json!("ok"))
                }
            }
        })
        .handler_fn("sync", move |args: Value, _ctx: JobContext| async move {
            println!(
                "{:>5} ms  sync shop {} (alone for its shop)",
                started.elapsed().as_millis(),
                args["shop"]
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, JobError>(json!("synced"))
        })
        .build()?;
    let handle = worker.start().await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for usage in client.limit_usage().await? {
        println!(
            "in use: {} {:?}: {} running",
            usage.name, usage.key, usage.running
        );
    }
    handle.shutdown().await;
    drop(client);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
