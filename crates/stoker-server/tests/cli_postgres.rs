//! The built `stoker` binary against PostgreSQL (a database of its own per test), directly and
//! through a `stoker serve` on it. Skipped, and listed as ignored with the reason, when
//! `STOKER_TEST_DATABASE_URL` is unset.

mod cli_common;

use cli_common::{seed_discarded, seed_running, Cli, PgDatabase, Server};
use serde_json::json;

#[tokio::test]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn every_command_works_on_postgres() {
    let database = PgDatabase::create().await;
    let cli = Cli::database(&database.url);
    let run = cli.run(&["migrate"]).ok();
    assert!(run.stdout.contains("schema is current"), "{run:#?}");
    assert!(!run.stdout.contains(":***@") || database.url.contains('@'));
    cli_common::exercise(&cli).await;

    let id = seed_running(&database.url, "cli", "resize")
        .await
        .to_string();
    cli.run(&["jobs", "delete", &id]).fails(4, "running");

    seed_discarded(&database.url, "cli", "charge", 12).await;
    let run = cli
        .run(&[
            "jobs",
            "retry",
            "--all-discarded",
            "--batch-size",
            "5",
            "--json",
        ])
        .ok();
    assert_eq!(run.json(), json!({"retried": 12, "remaining": 0}));
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "retried 5 of 12 discarded jobs",
            "retried 10 of 12 discarded jobs",
            "retried 12 of 12 discarded jobs",
        ]
    );
}

#[tokio::test]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn every_command_works_through_a_server_on_postgres() {
    let database = PgDatabase::create().await;
    let server = Server::start(&database.url, &[]);
    let cli = Cli::server(&server);
    cli_common::exercise(&cli).await;
    drop(server);
}
