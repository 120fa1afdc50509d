//! The built `stoker` binary with `--server` and `--token` against a `stoker serve` child
//! process on a free port: the same commands and output as against a database, plus the
//! server's own errors (refused token, unreachable server).

mod cli_common;

use cli_common::{run_in, seed_discarded, seed_running, sqlite_url, Cli, Server};
use serde_json::json;

#[tokio::test]
async fn every_command_works_through_a_server() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let cli = Cli::server(&server);
    cli_common::exercise(&cli).await;

    // The server's built-in worker shows up with its heartbeat.
    let workers = cli.json(&["workers"]);
    assert!(
        workers
            .as_array()
            .unwrap()
            .iter()
            .any(|worker| worker["alive"] == true),
        "{workers:#}"
    );
    let stats = cli.json(&["stats"]);
    assert!(stats["throughput"]["minutes"].is_array(), "{stats:#}");
    let run = cli.run(&["stats"]).ok();
    assert!(run.stdout.contains("completed,"), "{run:#?}");
}

#[tokio::test]
async fn running_jobs_and_bulk_retry_through_a_server() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let cli = Cli::server(&server);
    let id = seed_running(&url, "cli", "resize").await.to_string();
    cli.run(&["jobs", "delete", &id]).fails(4, "running");
    cli.run(&["jobs", "retry", &id]).fails(4, "is running");
    let run = cli.run(&["jobs", "cancel", &id]).ok();
    assert!(run.stdout.contains("cancel requested"), "{run:#?}");

    seed_discarded(&url, "cli", "charge", 30).await;
    seed_discarded(&url, "cli", "refund", 4).await;
    let run = cli
        .run(&[
            "jobs",
            "retry",
            "--all-discarded",
            "--kind",
            "charge",
            "--batch-size",
            "10",
            "--json",
        ])
        .ok();
    assert_eq!(run.json(), json!({"retried": 30, "remaining": 0}));
    // Progress through the server, one request per batch.
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "retried 10 of 30 discarded jobs",
            "retried 20 of 30 discarded jobs",
            "retried 30 of 30 discarded jobs",
        ],
        "{run:#?}"
    );
    let run = cli.run(&["jobs", "retry", "--all-discarded"]).ok();
    assert_eq!(run.stdout.trim(), "retried 4 discarded jobs");
    let stats = cli.json(&["stats"]);
    assert_eq!(stats["queues"]["cli"]["discarded"], 0);
}

#[test]
fn a_wrong_token_and_an_unreachable_server_fail_clearly() {
    let (_dir, url) = sqlite_url();
    let server = Server::start(&url, &[]);
    let dir = tempfile::tempdir().unwrap();
    let wrong = [
        ("STOKER_SERVER", server.url.as_str()),
        ("STOKER_API_TOKEN", "not-the-token-at-all"),
    ];
    run_in(dir.path(), &wrong, &["stats"]).fails(5, "--token");
    let none = [("STOKER_SERVER", server.url.as_str())];
    run_in(dir.path(), &none, &["jobs", "list"]).fails(5, "STOKER_API_TOKEN");
    let right = [
        ("STOKER_SERVER", server.url.as_str()),
        ("STOKER_API_TOKEN", server.token.as_str()),
    ];
    run_in(dir.path(), &right, &["jobs", "show", "4242"]).fails(3, "job 4242 not found");
    run_in(dir.path(), &right, &["migrate"]).fails(2, "migrate works on a database");
    run_in(dir.path(), &right, &["handlers", "--json"]).ok();
    drop(server);

    // Nothing listens there any more.
    let gone = [
        ("STOKER_SERVER", "http://127.0.0.1:9"),
        ("STOKER_API_TOKEN", "x"),
    ];
    run_in(dir.path(), &gone, &["stats"])
        .fails(1, "could not reach the server at http://127.0.0.1:9");
    run_in(dir.path(), &[], &["stats", "--server", "localhost:7700"]).fails(2, "--server");
}
