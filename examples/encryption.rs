//! Encryption at rest and redaction (issue 17): a `charge` kind whose args and results are
//! sealed with XChaCha20-Poly1305 before they reach the database, a handler that still gets
//! plaintext, a key rotation, and a redacted view for readers below admin.
//!
//! Run it with `cargo run --example encryption`. It keeps its data in an SQLite file in the
//! system's temporary directory. Real keys come from `STOKER_ENCRYPTION_KEYS`
//! (`1=<base64>,2=<base64>`, each from `openssl rand -base64 32`) or a key file.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stoker::sqlite::SqliteStore;
use stoker::{
    Client, Encryption, EnqueueOptions, JobContext, JobError, KeyRing, KindRedaction, Redaction,
    Store, Worker,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-crypt-{}.sqlite3", std::process::id()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await?);

    // Key 1 only, for now. (Fixed bytes for the example; never do this for real.)
    let ring = KeyRing::new().with_key(1, [1; 32]);
    let client = Client::new(Arc::clone(&store))
        .with_encryption(Encryption::kinds(ring.clone(), ["charge"]));
    client.migrate().await?;

    let job = client
        .enqueue_raw(
            "charge",
            json!({"card": {"number": "4242424242424242", "brand": "visa"}, "cents": 700}),
            EnqueueOptions::new().tenant("acme"),
        )
        .await?;
    let stored = Client::new(Arc::clone(&store))
        .get(job.id)
        .await?
        .expect("the job");
    println!("what the database holds: {}", stored.args);

    // The worker opens the args for the handler and seals its result.
    let worker = Worker::builder(Arc::clone(&store))
        .queue("default", 2)
        .poll_interval(Duration::from_millis(50))
        .encryption(Encryption::kinds(ring, ["charge"]))
        .handler_fn("charge", |args: Value, _ctx: JobContext| async move {
            println!("the handler sees: {args}");
            Ok::<_, JobError>(json!({"charged": args["cents"], "last4": "4242"}))
        })
        .build()?;
    let mut events = worker.events();
    let handle = worker.start().await?;
    events.recv().await?;
    handle.shutdown().await;
    println!(
        "the client shows: {:?}",
        client.get(job.id).await?.expect("the job").result
    );

    // Rotation: key 2 joins (the highest id seals), everything is resealed under it, and key
    // 1 can go once the status shows it seals nothing.
    let both = KeyRing::new().with_key(1, [1; 32]).with_key(2, [2; 32]);
    let rotating =
        Client::new(Arc::clone(&store)).with_encryption(Encryption::kinds(both, ["charge"]));
    let report = rotating
        .keys_rotate(stoker::ROTATE_BATCH_DEFAULT, |_| {})
        .await?;
    println!("rotation: {report}");
    println!(
        "values by key: {:?}",
        rotating.keys_status().await?.values_by_key
    );

    // What a reader below admin sees: the card number redacted, in args and in error messages.
    let reader = rotating.with_redaction(Redaction::new().kind(
        "charge",
        KindRedaction {
            args: vec!["card.number".into()],
            result: vec!["last4".into()],
            hide_args: false,
        },
    ));
    let shown = reader.get(job.id).await?.expect("the job");
    println!("a reader sees: {} -> {:?}", shown.args, shown.result);

    let _ = std::fs::remove_file(&path);
    Ok(())
}
