//! Stored API tokens (issue 17): create one bound to a tenant, check a presented secret the
//! way `stoker serve` does, rotate it, revoke it.
//!
//! Run it with `cargo run --example tokens`. It keeps its data in an SQLite file in the
//! system's temporary directory.

use std::sync::Arc;

use stoker::sqlite::SqliteStore;
use stoker::{Client, NewToken};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("stoker-tokens-{}.sqlite3", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).await?);
    let client = Client::new(store);
    client.migrate().await?;

    let created = client
        .token_create(NewToken {
            name: "billing".to_owned(),
            scopes: vec!["enqueue".to_owned(), "read".to_owned()],
            tenant: Some("acme".to_owned()),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(90)),
        })
        .await?;
    // The full token is shown only now; the database keeps SHA-256 of its secret.
    println!(
        "created {} ({}): {}",
        created.row.id, created.row.name, created.token
    );

    let row = client
        .token_verify(&created.token)
        .await?
        .expect("it matches");
    println!("verified: scopes {:?}, tenant {:?}", row.scopes, row.tenant);
    assert!(client.token_verify("stk_aaaa1111_wrong").await?.is_none());

    let rotated = client.token_rotate(&row.id).await?;
    println!("rotated to {}", rotated.row.id);
    let old = client
        .token_verify(&created.token)
        .await?
        .expect("still its row");
    assert!(
        !old.is_active(chrono::Utc::now()),
        "the old token is revoked"
    );

    client.token_revoke(&rotated.row.id).await?;
    for token in client.token_list().await? {
        println!(
            "{} {} revoked at {:?}",
            token.id, token.name, token.revoked_at
        );
    }
    drop(client);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
