//! `stoker audit` (issue 17) with the built binary, on a database and through a server: the
//! actions of other commands are listed newest first with their actor and face, filtered, and
//! pruned by age on the database only.

mod cli_common;

use cli_common::{sqlite_url, Cli, Server};

fn exercise(cli: &Cli, actor: &str, via: &str) {
    let created = cli.json(&["tokens", "create", "--name", "audited", "--scope", "read"]);
    let id = created["token"]["id"].as_str().expect("an id").to_owned();
    cli.json(&["tokens", "revoke", &id]);

    let listed = cli.json(&["audit", "list"]);
    let entries = listed["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .map(|entry| entry["action"].as_str().expect("an action"))
        .collect();
    assert_eq!(actions[..2], ["token.revoke", "token.create"], "{listed}");
    assert_eq!(entries[0]["target"], format!("token {id}"));
    assert!(
        entries[0]["actor"].as_str().unwrap().starts_with(actor),
        "{listed}"
    );
    assert_eq!(entries[0]["via"], via);
    if via == "api" {
        assert!(
            entries[0]["source"]
                .as_str()
                .is_some_and(|source| source.starts_with("127.0.0.1:")),
            "{listed}"
        );
    }

    let only = cli.json(&["audit", "list", "--action", "token.create"]);
    assert_eq!(only["entries"].as_array().unwrap().len(), 1, "{only}");
    let table = cli.run(&["audit", "list", "--action", "token."]).ok();
    assert!(table.stdout.contains("token.revoke"), "{table:#?}");
    cli.run(&["audit", "list", "--limit", "0"])
        .fails(2, "limit");
}

#[test]
fn audit_commands_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    exercise(&cli, "cli", "cli");
    // Pruning by age: nothing is a day old yet, and the prune is itself recorded.
    let pruned = cli.json(&["audit", "prune", "--older-than", "1d"]);
    assert_eq!(pruned["deleted"], 0);
    let newest = cli.json(&["audit", "list", "--limit", "1"]);
    assert_eq!(newest["entries"][0]["action"], "audit.prune", "{newest}");
    cli.run(&["audit", "prune", "--older-than", "1h"])
        .fails(2, "older_than");

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    let remote = Cli::server(&server);
    exercise(&remote, "admin", "api");
    remote
        .run(&["audit", "prune", "--older-than", "1d"])
        .fails(2, "--database-url");
}
