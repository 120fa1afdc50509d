//! The built `stoker` binary against a SQLite database URL: every operator command, its JSON,
//! its exit codes and messages, and bulk retry progress.

mod cli_common;

use cli_common::{run_in, seed_discarded, seed_running, sqlite_url, Cli};
use serde_json::json;
use stoker::core::WorkerHeartbeatParams;

/// A CLI on a fresh, migrated SQLite file.
fn migrated() -> (tempfile::TempDir, Cli) {
    let (dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    let run = cli.run(&["migrate"]).ok();
    assert!(run.stdout.contains("schema is current"), "{run:#?}");
    (dir, cli)
}

#[tokio::test]
async fn every_command_works_on_sqlite() {
    let (_dir, cli) = migrated();
    cli_common::exercise(&cli).await;
}

#[test]
fn migrate_is_repeatable_and_commands_need_it() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["jobs", "list"])
        .fails(2, "no database at")
        .stderr
        .contains("stoker migrate")
        .then_some(())
        .expect("the hint names stoker migrate");
    let first = cli.json(&["migrate"]);
    assert_eq!(first["migrated"], true);
    cli.run(&["migrate"]).ok();
    let list = cli.json(&["jobs", "list"]);
    // A search page also says whether it stopped at its scan budget, and how far it read.
    assert_eq!(list, json!({"jobs": [], "partial": false, "scanned": 0}));
}

#[test]
fn an_unmigrated_database_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sqlite3");
    std::fs::write(&path, b"").unwrap();
    let cli = Cli::database(&format!("sqlite://{}", path.display()));
    cli.run(&["stats"]).fails(
        1,
        "does not have Stoker's current schema: run `stoker migrate`",
    );
}

#[test]
fn without_a_url_commands_use_the_serve_default_file_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &[], &["migrate"]).ok();
    assert!(run.stdout.contains("stoker.sqlite3"), "{run:#?}");
    assert!(dir.path().join("stoker.sqlite3").exists());
    run_in(dir.path(), &[], &["enqueue", "noop"]).ok();
    let list = run_in(dir.path(), &[], &["jobs", "list", "--json"])
        .ok()
        .json();
    assert_eq!(list["jobs"][0]["kind"], "noop");
}

#[test]
fn the_environment_names_the_database_and_both_targets_conflict() {
    let (_dir, url) = sqlite_url();
    let dir = tempfile::tempdir().unwrap();
    let env = [("STOKER_DATABASE_URL", url.as_str())];
    run_in(dir.path(), &env, &["migrate"]).ok();
    let enqueued = run_in(dir.path(), &env, &["enqueue", "noop", "--json"])
        .ok()
        .json();
    assert_eq!(enqueued["duplicate"], false);
    let env = [
        ("STOKER_DATABASE_URL", url.as_str()),
        ("STOKER_SERVER", "http://127.0.0.1:9"),
    ];
    run_in(dir.path(), &env, &["stats"]).fails(2, "use one");
    run_in(dir.path(), &[], &["stats", "--database-url", "mysql://x/y"])
        .fails(2, "unsupported database URL");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &[], &["jobs", "frobnicate"]);
    assert_eq!(run.code, 2, "{run:#?}");
    let run = run_in(dir.path(), &[], &["--help"]).ok();
    assert!(run.stdout.contains("Exit codes"), "{run:#?}");
    for command in [
        "enqueue", "jobs", "queues", "workers", "stats", "handlers", "serve",
    ] {
        assert!(run.stdout.contains(command), "{command} in {run:#?}");
    }
    let run = run_in(dir.path(), &[], &["jobs", "retry"]);
    assert_eq!(run.code, 2, "{run:#?}");
}

#[tokio::test]
async fn running_jobs_conflict_with_delete_and_retry_and_cancel_is_a_request() {
    let (_dir, cli) = migrated();
    let id = seed_running(&cli.database_url, "cli", "resize")
        .await
        .to_string();
    cli.run(&["jobs", "delete", &id]).fails(4, "running");
    cli.run(&["jobs", "retry", &id]).fails(4, "is running");
    let human = cli.run(&["jobs", "cancel", &id]).ok();
    assert!(human.stdout.contains("cancel requested"), "{human:#?}");
    let job = cli.json(&["jobs", "show", &id]);
    assert_eq!(job["state"], "running");
    assert!(job["cancel_requested_at"].is_string());
    let human = cli.run(&["jobs", "show", &id]).ok();
    assert!(
        human.stdout.contains("running (cancel requested)"),
        "{human:#?}"
    );
}

#[tokio::test]
async fn show_prints_the_error_history_of_a_discarded_job() {
    let (_dir, cli) = migrated();
    let ids = seed_discarded(&cli.database_url, "cli", "charge", 1).await;
    let id = ids[0].to_string();
    let job = cli.json(&["jobs", "show", &id]);
    assert_eq!(job["state"], "discarded");
    assert_eq!(job["errors"][0]["message"], "upstream refused");
    assert_eq!(job["errors"][0]["kind"], "error");
    let human = cli.run(&["jobs", "show", &id]).ok();
    assert!(
        human.stdout.contains("attempt 1 at ")
            && human.stdout.contains("(error): upstream refused"),
        "{human:#?}"
    );
    cli.run(&["jobs", "cancel", &id])
        .fails(4, "already discarded");
}

#[tokio::test]
async fn bulk_retry_reports_progress_per_batch_on_stderr() {
    let (_dir, cli) = migrated();
    seed_discarded(&cli.database_url, "cli", "charge", 25).await;
    seed_discarded(&cli.database_url, "other", "charge", 5).await;
    seed_discarded(&cli.database_url, "cli", "refund", 3).await;

    // Only one queue and kind, ten per batch: progress after each batch, JSON on stdout.
    let run = cli
        .run(&[
            "jobs",
            "retry",
            "--all-discarded",
            "--queue",
            "cli",
            "--kind",
            "charge",
            "--batch-size",
            "10",
            "--json",
        ])
        .ok();
    assert_eq!(run.json(), json!({"retried": 25, "remaining": 0}));
    let progress: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        progress,
        [
            "retried 10 of 25 discarded jobs",
            "retried 20 of 25 discarded jobs",
            "retried 25 of 25 discarded jobs",
        ],
        "{run:#?}"
    );
    let stats = cli.json(&["stats"]);
    assert_eq!(stats["queues"]["cli"]["available"], 25);
    assert_eq!(stats["queues"]["cli"]["discarded"], 3);
    assert_eq!(stats["queues"]["other"]["discarded"], 5);
    let job = &cli.json(&[
        "jobs", "list", "--queue", "cli", "--kind", "charge", "--limit", "1",
    ])["jobs"][0];
    assert_eq!(job["state"], "available");
    assert_eq!(job["max_attempts"], 2, "one more attempt");
    assert_eq!(
        job["errors"][0]["message"], "upstream refused",
        "history kept"
    );

    // Everything else, for people.
    let run = cli.run(&["jobs", "retry", "--all-discarded"]).ok();
    assert_eq!(run.stdout.trim(), "retried 8 discarded jobs");
    assert!(
        run.stderr.contains("retried 8 of 8 discarded jobs"),
        "{run:#?}"
    );
    let run = cli.run(&["jobs", "retry", "--all-discarded"]).ok();
    assert_eq!(run.stdout.trim(), "retried 0 discarded jobs");
}

#[tokio::test]
async fn workers_lists_heartbeat_rows() {
    let (_dir, cli) = migrated();
    let run = cli.run(&["workers"]).ok();
    assert!(run.stdout.starts_with("no workers are running"), "{run:#?}");
    assert_eq!(cli.json(&["workers"]), json!([]));
    let client = cli_common::client(&cli.database_url).await;
    let now = client.clock().now();
    client
        .store()
        .worker_heartbeat(WorkerHeartbeatParams {
            details: Default::default(),
            id: "host-a-1234".into(),
            host: "host-a".into(),
            pid: 1234,
            queues: vec!["default".into(), "mail".into()],
            concurrency: 12,
            started_at: now,
            done_delta: 40,
            failed_delta: 2,
            running: Vec::new(),
            now,
        })
        .await
        .unwrap();
    let workers = cli.json(&["workers"]);
    assert_eq!(workers[0]["id"], "host-a-1234");
    assert_eq!(workers[0]["queues"], json!(["default", "mail"]));
    assert_eq!(workers[0]["jobs_done"], 40);
    assert_eq!(workers[0]["alive"], true);
    assert_eq!(workers[0]["pull"], false);
    let run = cli.run(&["workers"]).ok();
    assert!(run.stdout.contains("host-a-1234"), "{run:#?}");
    assert!(run.stdout.contains("default,mail"), "{run:#?}");
}
