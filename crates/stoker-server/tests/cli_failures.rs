//! `stoker failures`, `stoker ops` and `stoker jobs logs` (issue 13), built binary against a
//! SQLite database and against a server on it: groups listed and shown, a group retried as a
//! bulk operation the server's leader runs, operations listed, followed and refused.

mod cli_common;

use cli_common::{client, seed_discarded, seed_running, sqlite_url, Cli, Server};
use stoker::core::JobLogParams;

#[tokio::test]
async fn failures_ops_and_logs_on_a_database_and_a_server() {
    let (_dir, url) = sqlite_url();
    let db = Cli::database(&url);
    db.run(&["migrate"]).ok();
    let ids = seed_discarded(&url, "cli", "mail", 3).await;
    let running = seed_running(&url, "cli", "mail").await;
    let store = client(&url).await.store().clone();
    let job = store.job_get(running).await.unwrap().unwrap();
    store
        .job_log_append(JobLogParams {
            id: running,
            fence: job.fence,
            lines: vec!["connecting".into(), "sent 3 of 5".into()],
            now: chrono::Utc::now(),
        })
        .await
        .unwrap()
        .unwrap();

    // On the database.
    let groups = db.json(&["failures", "list", "--since", "1h"]);
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 3);
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let table = db.run(&["failures", "list"]).ok();
    assert!(table.stdout.contains("upstream refused"), "{table:#?}");
    let shown = db.run(&["failures", "show", &fingerprint]).ok();
    assert!(shown.stdout.contains("count           3"), "{shown:#?}");
    // --- stream ops ---
    // With a range, each group's failed attempts in it (from its hourly counts).
    assert_eq!(groups[0]["count_in_range"], 3);
    let ranged = db.run(&["failures", "list", "--since", "24h"]).ok();
    assert!(ranged.stdout.contains("IN RANGE"), "{ranged:#?}");
    assert!(!table.stdout.contains("IN RANGE"), "{table:#?}");
    let shown = db
        .run(&["failures", "show", &fingerprint, "--since", "1h"])
        .ok();
    assert!(shown.stdout.contains("in range        3"), "{shown:#?}");
    db.run(&["failures", "show", "0000000000000000"])
        .fails(3, "failure group 0000000000000000 not found");
    db.run(&["failures", "show", "nothex"])
        .fails(2, "fingerprint");
    let logs = db.run(&["jobs", "logs", &running.to_string()]).ok();
    assert!(logs.stdout.contains("sent 3 of 5"), "{logs:#?}");
    assert_eq!(
        db.json(&["jobs", "logs", &running.to_string()])["lines"][0]["line"],
        "connecting"
    );
    db.run(&["ops", "create", "cancel"]).fails(2, "--all");
    db.run(&["ops", "create", "cancel", "--kind", "nothing-like-it"])
        .fails(3, "job matching the filter not found");

    // Through a server, whose leader runs the operation.
    let server = Server::start(&url, &["--bulk-interval", "100ms"]);
    let remote = Cli::server(&server);
    let listed = remote.json(&["failures", "list"]);
    assert_eq!(listed[0]["fingerprint"], fingerprint.as_str());
    // --- stream ops ---
    let ranged = remote.json(&["failures", "list", "--since", "1h"]);
    assert_eq!(ranged[0]["count_in_range"], 3, "{ranged}");
    let shown = remote.json(&["failures", "show", &fingerprint, "--since", "1h"]);
    assert_eq!(shown["count_in_range"], 3, "{shown}");
    assert_eq!(shown["hours"].as_array().map(Vec::len), Some(1), "{shown}");
    let done = remote.json(&["failures", "retry", &fingerprint, "--wait"]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["matched"], 3);
    assert_eq!(done["done"], 3);
    for id in &ids {
        let job = remote.json(&["jobs", "show", &id.to_string()]);
        assert_eq!(job["state"], "available");
    }
    let op = done["id"].as_i64().unwrap().to_string();
    remote.run(&["ops", "abort", &op]).fails(4, "already done");
    let ops = remote.json(&["ops", "list"]);
    assert_eq!(ops.as_array().unwrap().len(), 1);
    let shown = remote.run(&["ops", "show", &op]).ok();
    assert!(
        shown.stdout.contains("3 matched, 3 done, 0 skipped"),
        "{shown:#?}"
    );
    let logs = remote.json(&["jobs", "logs", &running.to_string()]);
    assert_eq!(logs["lines"][1]["line"], "sent 3 of 5");
    let set = remote.json(&[
        "ops",
        "create",
        "set-priority",
        "--priority",
        "high",
        "--queue",
        "cli",
        "--state",
        "available",
        "--wait",
    ]);
    assert_eq!(set["done"], 3, "{set}");
}
