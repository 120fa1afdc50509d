//! Tenants and the audit log (issue 17): one store shared by two customers. A client limited
//! to a tenant sees, reserves and changes only its own jobs and schedules; another tenant's job
//! is simply not found. Every management action lands in the audit log with who did it.
//!
//! Run it with `cargo run --example tenancy`. It keeps its data in an SQLite file in the
//! system's temporary directory.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stoker::cron::CronSchedule;
use stoker::sqlite::SqliteStore;
use stoker::{Actor, AuditListParams, Client, EnqueueOptions, Reservation};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-tenancy-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let operator = Client::new(store).with_actor(Actor::new("operator", "library"));
    operator.migrate().await?;

    // Each customer's code gets a client limited to its tenant.
    let acme = operator
        .for_tenant("acme")
        .with_actor(Actor::new("acme-app", "library"));
    let globex = operator
        .for_tenant("globex")
        .with_actor(Actor::new("globex-app", "library"));
    let ours = acme
        .enqueue_raw("invoice", json!({"n": 1}), EnqueueOptions::new())
        .await?;
    let theirs = globex
        .enqueue_raw("invoice", json!({"n": 2}), EnqueueOptions::new())
        .await?;

    // Another tenant's job does not exist for acme: reads are None, changes are NotFound.
    assert!(acme.get(theirs.id).await?.is_none());
    assert!(matches!(
        acme.cancel(theirs.id).await,
        Err(stoker::Error::NotFound(_))
    ));
    println!("acme sees {} job(s)", acme.stats().await?.totals.total());

    // A worker for acme only reserves acme's jobs, however many others wait.
    let reserved = acme
        .reserve(&Reservation {
            worker: "acme-worker".to_owned(),
            queues: vec!["default".to_owned()],
            kinds: Vec::new(),
            limit: 10,
            lease: Duration::from_secs(30),
        })
        .await?;
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].id, ours.id);
    println!("acme's worker reserved job {}", reserved[0].id);

    // Schedules are the tenant's too.
    acme.cron_create(CronSchedule::new(
        "acme-nightly",
        "0 3 * * *",
        "report",
        json!({}),
    ))
    .await?;
    assert_eq!(globex.cron_list().await?.len(), 0);
    globex.cancel(theirs.id).await?;

    // The audit log: who did what, newest first; each tenant reads only its own rows.
    for row in operator
        .audit_list(AuditListParams {
            limit: 10,
            ..AuditListParams::default()
        })
        .await?
    {
        let entry = row.entry;
        println!(
            "{} {} {} by {} ({})",
            entry.at.format("%H:%M:%S"),
            entry.action,
            entry.target.unwrap_or_default(),
            entry.actor,
            entry.tenant.unwrap_or_default(),
        );
    }
    let own = acme
        .audit_list(AuditListParams {
            limit: 10,
            ..AuditListParams::default()
        })
        .await?;
    assert!(own
        .iter()
        .all(|row| row.entry.tenant.as_deref() == Some("acme")));

    drop((operator, acme, globex));
    let _ = std::fs::remove_file(&path);
    Ok(())
}
