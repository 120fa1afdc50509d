//! Job search: find jobs with the search-bar language the dashboard, the CLI
//! (`stoker jobs list -q '...'`) and the API (`GET /v1/jobs?q=...`) share, page through them,
//! count them, follow a job's children, and act on exactly what a search found with a bulk
//! operation.
//!
//! Run it with `cargo run --example search`. It keeps its queue in an SQLite file in the
//! system's temporary directory; no database server is needed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker::sqlite::SqliteStore;
use stoker::{BulkAction, BulkRequest, Client, EnqueueOptions, JobSearchParams, NewJob};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-search-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store);
    client.migrate().await?;

    // An order: one job now, its emails, and a reminder scheduled for tomorrow.
    let order = client
        .enqueue_raw(
            "order",
            json!({"order": 7, "customer": "ada@example.com"}),
            EnqueueOptions::new().correlation_id("order-7"),
        )
        .await?;
    let emails = (1..=3).map(|n| {
        NewJob::raw(
            "email",
            json!({"to": "ada@example.com", "template": format!("step-{n}")}),
            EnqueueOptions::new()
                .queue("mail")
                .correlation_id("order-7")
                .parent_id(order.id),
        )
    });
    client.enqueue_many(emails).await?;
    client
        .enqueue_raw(
            "email",
            json!({"to": "ada@example.com", "template": "reminder"}),
            EnqueueOptions::new()
                .queue("mail")
                .correlation_id("order-7")
                .delay(Duration::from_secs(86_400)),
        )
        .await?;

    // The search bar: qualifiers and free text, parsed with the client's clock.
    let criteria = client.parse_query(r#"queue:mail corr:order-7 "step-""#)?;
    println!("query as stored: {}", stoker::format_query(&criteria));
    let page = client
        .search(JobSearchParams::new(criteria.clone(), 2))
        .await?;
    for job in &page.jobs {
        println!("job {} {} {}", job.id, job.kind, job.args["template"]);
    }
    if let Some(cursor) = page.older {
        // The next page goes on from the cursor.
        let mut next = JobSearchParams::new(criteria.clone(), 2);
        next.cursor = Some(cursor);
        let rest = client.search(next).await?;
        println!("next page: {} more", rest.jobs.len());
    }
    println!("{} matching", client.count(criteria).await?);

    // `scheduled` is available work not yet due; `available` is due work.
    let scheduled = client.parse_query("state:scheduled corr:order-7")?;
    println!("scheduled: {}", client.count(scheduled.clone()).await?);

    // A job's parent and children, for its detail page.
    let lineage = client.lineage(order.id).await?.expect("the order exists");
    println!("order {} has {} children", order.id, lineage.children.len());

    // Cancel exactly what the search found, as a bulk operation (run in batches by the
    // leader's bulk runner when a worker or `stoker serve` leads).
    let mut request = BulkRequest::new(BulkAction::Cancel, scheduled);
    request.created_by = Some("example".into());
    let op = client.bulk_start(request).await?;
    println!("bulk operation {} recorded: {}", op.id, op.state.as_str());

    std::fs::remove_file(&path).ok();
    Ok(())
}
