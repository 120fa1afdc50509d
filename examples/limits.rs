//! Flow control: a rate limit on a kind (an AI provider allowing 5 calls a second), a
//! concurrency limit per shop (`args.shop`), a handler that pushes its limiter back when
//! the provider answers 429, an enqueue quota per tenant, and fair queuing across tenants. Limits live in the store, so every worker process shares them.
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
            fair: None,
            quota: None,
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
            fair: None,
            quota: None,
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
            fair: None,
            quota: None,
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

    // Each tenant may submit 3 uploads a minute (3 at once at most): a fourth is refused,
    // nothing written, with the time until it would fit.
    client
        .limit_set(LimitSpec {
            name: "upload-quota".into(),
            queue: Some("uploads".into()),
            kind: None,
            key: LimitKey::Tenant,
            rate: None,
            concurrency: None,
            fair: None,
            quota: Some(Rate {
                count: 3,
                period_ms: 60_000,
                burst: 3,
            }),
        })
        .await?;
    for i in 0..4 {
        let options = EnqueueOptions::new().queue("uploads").tenant("acme");
        match client
            .enqueue_raw("upload", json!({ "n": i }), options)
            .await
        {
            Ok(_) => println!("acme upload {i}: accepted"),
            Err(stoker::Error::QuotaExceeded { retry_after, .. }) => {
                println!("acme upload {i}: over its quota, retry in {retry_after:?}")
            }
            Err(err) => return Err(err.into()),
        }
    }
    // The `reports` queue serves its tenants in turn: `big` queued 6 reports before `small`
    // queued 2, yet small's start second and fourth, not after big's backlog.
    client
        .limit_set(LimitSpec {
            name: "reports-fair".into(),
            queue: Some("reports".into()),
            kind: None,
            key: LimitKey::Global,
            rate: None,
            concurrency: None,
            fair: Some(stoker::Fair::default()),
            quota: None,
        })
        .await?;
    for (tenant, count) in [("big", 6), ("small", 2)] {
        for i in 0..count {
            let options = EnqueueOptions::new().queue("reports").tenant(tenant);
            client
                .enqueue_raw("report", json!({ "n": i }), options)
                .await?;
        }
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
        .queue("reports", 1)
        .handler_fn("report", move |args: Value, ctx: JobContext| async move {
            println!(
                "{:>5} ms  report {} of tenant {}",
                started.elapsed().as_millis(),
                args["n"],
                ctx.tenant().unwrap_or("-")
            );
            Ok::<_, JobError>(json!("done"))
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
