//! `stoker alerts` (issue 13, item 8) with the built binary, on a database and through a
//! server: the same commands, the same JSON, the same exit codes.

mod cli_common;

use cli_common::{sqlite_url, Cli, Server};

fn exercise(cli: &Cli) {
    let created = cli.json(&[
        "alerts",
        "create",
        "mail-backlog",
        "queue_depth",
        "https://hooks.example.com/ops",
        "--queue",
        "mail",
        "--threshold",
        "1000",
        "--resolve-threshold",
        "100",
        "--for",
        "2m",
        "--resolve-after",
        "5m",
        "--slack",
        "--header",
        "Authorization: Bearer secret",
    ]);
    assert_eq!(created["name"], "mail-backlog");
    assert_eq!(created["metric"], "queue_depth");
    assert_eq!(created["scope"]["queue"], "mail");
    assert_eq!(created["for_seconds"], 120);
    assert_eq!(created["resolve_seconds"], 300);
    assert_eq!(created["format"], "slack");
    assert_eq!(created["state"], "ok");
    assert_eq!(created["header_names"][0], "Authorization");

    let discarded = cli.json(&[
        "alerts",
        "create",
        "dead-render",
        "discarded",
        "http://127.0.0.1:9/hook",
        "--kind",
        "render",
    ]);
    assert_eq!(discarded["threshold"], 0.0, "discarded defaults to any");

    cli.run(&[
        "alerts",
        "create",
        "mail-backlog",
        "queue_depth",
        "http://x.test/h",
        "--threshold",
        "1",
    ])
    .fails(4, "already exists");
    cli.run(&["alerts", "create", "r", "cpu_heat", "http://x.test/h"])
        .fails(2, "cpu_heat");
    cli.run(&[
        "alerts",
        "create",
        "r",
        "failure_rate",
        "http://x.test/h",
        "--threshold",
        "1.5",
    ])
    .fails(2, "threshold");
    cli.run(&[
        "alerts",
        "create",
        "r",
        "failure_rate",
        "http://x.test/h",
        "--threshold",
        "0.5",
        "--window",
        "10s",
    ])
    .fails(2, "window_seconds");

    let list = cli.json(&["alerts", "list"]);
    let names: Vec<&str> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dead-render", "mail-backlog"],
        "nothing else written"
    );
    let shown = cli.json(&["alerts", "show", "mail-backlog"]);
    assert_eq!(shown["alert"]["threshold"], 1000.0);
    assert_eq!(shown["events"], serde_json::json!([]));
    let table = cli.run(&["alerts", "list"]).ok();
    assert!(table.stdout.contains("mail-backlog"), "{table:#?}");
    let detail = cli.run(&["alerts", "show", "mail-backlog"]).ok();
    assert!(detail.stdout.contains("no events yet"), "{detail:#?}");

    cli.json(&["alerts", "delete", "mail-backlog"]);
    cli.run(&["alerts", "show", "mail-backlog"])
        .fails(3, "not found");
    cli.run(&["alerts", "delete", "mail-backlog"])
        .fails(3, "not found");
}

#[test]
fn alert_commands_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    exercise(&cli);

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    exercise(&Cli::server(&server));
}
