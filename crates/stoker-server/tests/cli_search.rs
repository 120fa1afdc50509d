//! `stoker jobs list --query` and `stoker ops create --query` (issue 14), built binary against
//! a SQLite database and against a server on it: the same query finds the same jobs either
//! way, counts, pages, and bad queries exit 2 naming the word.

mod cli_common;

use cli_common::{client, seed_discarded, sqlite_url, Cli, Server};
use serde_json::{json, Value};
use stoker::{EnqueueOptions, NewJob};

fn ids(list: &Value) -> Vec<i64> {
    list["jobs"]
        .as_array()
        .expect("a job list")
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn search_on_a_database_and_a_server() {
    let (_dir, url) = sqlite_url();
    let db = Cli::database(&url);
    db.run(&["migrate"]).ok();
    let discarded = seed_discarded(&url, "mail", "email", 2).await;
    let client = client(&url).await;
    let jobs = (0..3).map(|n| {
        NewJob::raw(
            "email",
            json!({"to": format!("user{n}@example.com")}),
            EnqueueOptions::new()
                .queue("mail")
                .correlation_id("order-9"),
        )
    });
    let waiting: Vec<i64> = client
        .enqueue_many(jobs)
        .await
        .unwrap()
        .iter()
        .map(|job| job.id.0)
        .collect();

    let server = Server::start(&url, &["--bulk-interval", "100ms"]);
    let remote = Cli::server(&server);
    for cli in [&db, &remote] {
        let failed = cli.json(&["jobs", "list", "--query", "state:failed queue:mail"]);
        assert_eq!(
            ids(&failed),
            discarded.iter().rev().map(|id| id.0).collect::<Vec<_>>()
        );
        let found = cli.json(&["jobs", "list", "-q", "corr:order-9 \"user1@\"", "--count"]);
        assert_eq!(ids(&found), vec![waiting[1]]);
        assert_eq!(found["count"], json!({"count": 1, "exact": true}));
        let joined = cli.json(&[
            "jobs",
            "list",
            "-q",
            "corr:order-9",
            "--state",
            "available",
            "--limit",
            "2",
        ]);
        assert_eq!(ids(&joined), vec![waiting[2], waiting[1]]);
        let next = joined["next_cursor"].as_i64().unwrap().to_string();
        let rest = cli.json(&["jobs", "list", "-q", "corr:order-9", "--before", &next]);
        assert_eq!(ids(&rest), vec![waiting[0]]);
        let table = cli
            .run(&["jobs", "list", "-q", "kind:email", "--count"])
            .ok();
        assert!(table.stderr.contains("5 matching jobs"), "{table:#?}");
        cli.run(&["jobs", "list", "-q", "stat:failed"])
            .fails(2, "unknown qualifier \"stat:\"");
        cli.run(&["jobs", "list", "--state", "faild"])
            .fails(2, "unknown job state \"faild\"");
    }

    // A bulk operation by query, run by the server's leader.
    let op = remote.json(&[
        "ops",
        "create",
        "cancel",
        "--query",
        "corr:order-9 state:available",
        "--wait",
    ]);
    assert_eq!(op["state"], "done", "{op}");
    assert_eq!(op["done"], 3);
    let cancelled = db.json(&["jobs", "list", "-q", "state:cancelled"]);
    assert_eq!(ids(&cancelled).len(), 3);
    db.run(&["ops", "create", "retry", "--query", "after:soon"])
        .fails(2, "bad time \"soon\"");
}
