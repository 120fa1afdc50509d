//! `stoker cron` (issue 15) with the built binary, on a database and through a server: the
//! same commands, the same JSON, the same exit codes.

mod cli_common;

use cli_common::{run_in, sqlite_url, Cli, Server};

fn exercise(cli: &Cli) {
    let created = cli.json(&[
        "cron",
        "add",
        "nightly",
        "30 1 * * *",
        "cleanup",
        "--tz",
        "Europe/London",
        "--args",
        r#"{"days": 30}"#,
        "--catch-up",
        "all",
        "--catch-up-window",
        "6h",
        "--overlap",
        "skip",
    ]);
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["catch_up_window_seconds"], 21600);
    assert_eq!(created["upcoming"].as_array().unwrap().len(), 5);
    cli.run(&["cron", "add", "nightly", "@daily", "cleanup"])
        .fails(4, "already exists");
    cli.run(&["cron", "add", "bad", "61 * * * *", "cleanup"])
        .fails(2, "expr");
    cli.run(&[
        "cron",
        "add",
        "bad",
        "* * * * *",
        "cleanup",
        "--tz",
        "Nowhere/Land",
    ])
    .fails(2, "tz");

    let updated = cli.json(&["cron", "update", "nightly", "--expr", "0 2 * * *"]);
    assert_eq!(updated["expr"], "0 2 * * *");
    assert_eq!(updated["args"]["days"], 30, "other fields kept");
    assert_eq!(cli.json(&["cron", "pause", "nightly"])["enabled"], false);
    assert_eq!(cli.json(&["cron", "resume", "nightly"])["enabled"], true);
    let list = cli.json(&["cron", "list"]);
    assert_eq!(list["schedules"][0]["name"], "nightly");

    let job = cli.json(&["cron", "run-now", "nightly"]);
    assert_eq!(job["kind"], "cleanup");
    let history = cli.json(&["cron", "history", "nightly"]);
    assert_eq!(history["runs"][0]["run_now"], true);
    assert_eq!(history["runs"][0]["job_id"], job["id"]);

    let table = cli.run(&["cron", "list"]).ok();
    assert!(table.stdout.contains("nightly"), "{table:#?}");
    cli.json(&["cron", "delete", "nightly"]);
    cli.run(&["cron", "history", "nightly"])
        .fails(3, "not found");
}

#[test]
fn cron_commands_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    exercise(&cli);

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    exercise(&Cli::server(&server));
}

#[test]
fn next_shows_fire_times_of_any_expression() {
    // Needs no database nor server.
    let dir = tempfile::tempdir().unwrap();
    let next = run_in(
        dir.path(),
        &[],
        &[
            "cron",
            "next",
            "30 1 * * *",
            "--tz",
            "America/New_York",
            "--count",
            "3",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(next["slots"].as_array().unwrap().len(), 3);
    let table = run_in(
        dir.path(),
        &[],
        &["cron", "next", "@daily", "--tz", "Europe/London"],
    )
    .ok();
    assert_eq!(table.stdout.lines().count(), 5, "{table:#?}");
    run_in(dir.path(), &[], &["cron", "next", "nope"]).fails(2, "expr");
}
