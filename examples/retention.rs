//! Counts and retention: per-tenant counts with scheduled jobs apart from due ones, and a
//! queue that keeps only its newest completed jobs (BullMQ's `removeOnComplete: 10`).
//!
//! Run it with `cargo run --example retention`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoker::maintenance::{Pruner, PrunerConfig, QueueRetention, StateRetention};
use stoker::sqlite::SqliteStore;
use stoker::{
    Client, EnqueueOptions, Job, JobContext, JobError, NewJob, StateCounts, Store, SystemClock,
    Worker,
};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
}

impl Job for Email {
    const KIND: &'static str = "email";
    type Output = ();

    async fn perform(self, _ctx: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn show(what: &str, counts: &StateCounts) {
    println!(
        "{what:>16}: {} due, {} scheduled, {} running, {} completed",
        counts.available, counts.scheduled, counts.running, counts.completed
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let path =
        std::env::temp_dir().join(format!("stoker-retention-{}.sqlite3", std::process::id()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await?);

    // Keep the newest 10 completed emails, and failed ones for 30 days, whatever the global
    // retention says. A worker's leader applies it on every pruner pass (`.pruner(config)`);
    // here one pass is run by hand below.
    let mut pruner = PrunerConfig::default();
    pruner.queues.insert(
        "emails".to_owned(),
        QueueRetention {
            completed: StateRetention {
                keep_last: Some(10),
                ..StateRetention::default()
            },
            discarded: StateRetention {
                max_age: Some(Duration::from_secs(30 * 86_400)),
                ..StateRetention::default()
            },
            ..QueueRetention::default()
        },
    );
    let worker = Worker::builder(Arc::clone(&store))
        .queue("emails", 8)
        .register::<Email>()
        .pruner(pruner.clone())
        .build()?;
    let client: Client = worker.client();
    client.migrate().await?;
    let handle = worker.start().await?;
    let mut events = handle.events();

    // 30 emails now, for two tenants, and 5 for tomorrow.
    let now = (0..30).map(|n| {
        let tenant = if n % 3 == 0 { "acme" } else { "globex" };
        NewJob::with(
            Email {
                to: format!("user{n}@example.com"),
            },
            EnqueueOptions::new().queue("emails").tenant(tenant),
        )
    });
    let later = (0..5).map(|n| {
        NewJob::with(
            Email {
                to: format!("later{n}@example.com"),
            },
            EnqueueOptions::new()
                .queue("emails")
                .delay(Duration::from_secs(86_400)),
        )
    });
    client.enqueue_many(now.chain(later)).await?;
    for _ in 0..30 {
        events.recv().await?;
    }

    // Counts come from counters, per queue, kind and tenant; none of it counts rows.
    let stats = client.stats().await?;
    show("every job", &stats.totals);
    for (tenant, counts) in &stats.tenants {
        show(&format!("tenant {tenant}"), counts);
    }
    // A client scoped to a tenant sees its own counts only.
    show(
        "acme's own view",
        &client.for_tenant("acme").stats().await?.totals,
    );

    let report = Pruner::new(Arc::clone(&store), Arc::new(SystemClock), pruner)
        .run_once()
        .await?;
    println!("pruner: {report}");
    show("after the prune", &client.stats().await?.totals);

    handle.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
