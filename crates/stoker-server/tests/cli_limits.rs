//! `stoker limits` (issue 16) with the built binary, on a database and through a server: the
//! same commands, the same JSON, the same exit codes.

mod cli_common;

use cli_common::{sqlite_url, Cli, Server};

fn exercise(cli: &Cli) {
    let set = cli.json(&[
        "limits", "set", "openai", "--kind", "generate", "--key", "tenant", "--rate", "100/60s",
        "--burst", "10",
    ]);
    assert_eq!(set["name"], "openai");
    assert_eq!(set["key"], "tenant");
    assert_eq!(set["rate"]["count"], 100);
    assert_eq!(set["rate"]["period_ms"], 60000);
    assert_eq!(set["rate"]["burst"], 10);
    let set = cli.json(&[
        "limits",
        "set",
        "shops",
        "--key",
        "args.shop",
        "--concurrency",
        "2",
    ]);
    assert_eq!(set["concurrency"], 2);

    cli.run(&["limits", "set", "bad", "--rate", "0/1s"])
        .fails(2, "count");
    cli.run(&["limits", "set", "bad", "--rate", "5/1s", "--burst", "0"])
        .fails(2, "burst");
    cli.run(&[
        "limits",
        "set",
        "bad",
        "--key",
        "job.x",
        "--concurrency",
        "1",
    ])
    .fails(2, "key");
    cli.run(&["limits", "set", "bad"]).fails(2, "rate");

    let list = cli.json(&["limits", "list"]);
    let limits = list["limits"].as_array().expect("limits");
    assert_eq!(limits.len(), 2, "nothing else written: {list}");
    let table = cli.run(&["limits", "list"]).ok();
    assert!(
        table.stdout.contains("openai") && table.stdout.contains("args.shop"),
        "{table:#?}"
    );

    let deleted = cli.json(&["limits", "delete", "openai"]);
    assert_eq!(deleted["name"], "openai");
    cli.run(&["limits", "delete", "openai"])
        .fails(3, "not found");
    let list = cli.json(&["limits", "list"]);
    assert_eq!(list["limits"].as_array().unwrap().len(), 1);
}

#[test]
fn limit_commands_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    exercise(&cli);

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    exercise(&Cli::server(&server));
}
