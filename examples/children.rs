//! A parent that waits for its children: a report job fans out one render job per page with
//! `ctx.enqueue_child` and returns its summary at once. It is not completed then: it waits
//! `blocked`, its result kept, and is completed (without running again) by the transaction
//! that finishes its last page. A second report with a page that fails for good ends
//! cancelled, as the default policy says.
//!
//! Run it with `cargo run --example children`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{Client, EnqueueOptions, JobContext, JobError, JobState, NewJob, Worker};

fn job(kind: &str, args: Value) -> NewJob {
    NewJob::raw(kind, args, EnqueueOptions::new())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();

    let path = std::env::temp_dir().join(format!("stoker-children-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store.clone());
    client.migrate().await?;

    let worker = Worker::builder(store)
        .queue("default", 4)
        .poll_interval(Duration::from_millis(50))
        .handler_fn("report", |args: Value, ctx: JobContext| async move {
            let pages = args["pages"].as_i64().unwrap_or(0);
            for page in 0..pages {
                ctx.enqueue_child(job("render", json!({ "page": page, "of": args["name"] })))
                    .await
                    .map_err(JobError::retryable)?;
            }
            Ok(json!({ "report": args["name"], "pages": pages }))
        })
        .handler_fn("render", |args: Value, _ctx: JobContext| async move {
            if args["of"] == "broken" && args["page"] == 1 {
                return Err(JobError::fatal("page 1 cannot be drawn"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(json!({ "rendered": args["page"] }))
        })
        .build()?;
    let handle = worker.start().await?;

    let enqueue = |name: &str| {
        let client = client.clone();
        let args = json!({ "name": name, "pages": 3 });
        async move { Ok::<_, stoker::Error>(client.enqueue_many([job("report", args)]).await?[0].id) }
    };
    let report = enqueue("quarterly").await?;
    let broken = enqueue("broken").await?;

    for id in [report, broken] {
        let mut seen_waiting = false;
        let row = loop {
            let row = client.get(id).await?.expect("the report");
            if row.state == JobState::Blocked && !seen_waiting {
                let wait = client.job_children(id).await?.expect("a parent");
                println!(
                    "report {id} waits for {} of its {} pages",
                    wait.pending,
                    wait.states.total()
                );
                seen_waiting = true;
            }
            if row.state.is_finished() {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!(
            "report {id}: {} after attempt {}, result {}",
            row.state.as_str(),
            row.attempt,
            row.result.unwrap_or(Value::Null)
        );
    }

    handle.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
