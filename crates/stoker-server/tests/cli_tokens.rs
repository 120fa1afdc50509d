//! `stoker tokens` (issue 17) with the built binary, on a database and through a server: the
//! same commands, the same JSON, the same exit codes.

mod cli_common;

use cli_common::{sqlite_url, Cli, Server};

fn exercise(cli: &Cli) {
    let created = cli.json(&[
        "tokens",
        "create",
        "--name",
        "billing",
        "--scope",
        "enqueue",
        "--scope",
        "read",
        "--tenant",
        "acme",
        "--expires",
        "90d",
    ]);
    let id = created["token"]["id"].as_str().expect("an id").to_owned();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with(&format!("stk_{id}_")), "{created}");
    assert_eq!(
        created["token"]["scopes"],
        serde_json::json!(["enqueue", "read"])
    );
    assert_eq!(created["token"]["tenant"], "acme");
    assert!(!created["token"]["expires_at"].is_null());

    cli.run(&["tokens", "create", "--name", "x", "--scope", "root"])
        .fails(2, "scope");
    cli.run(&[
        "tokens", "create", "--name", "x", "--scope", "read", "--tenant", "a b",
    ])
    .fails(2, "tenant");
    cli.run(&[
        "tokens",
        "create",
        "--name",
        "x",
        "--scope",
        "read",
        "--expires",
        "soon",
    ])
    .fails(2, "expires");

    let list = cli.json(&["tokens", "list"]);
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");
    assert!(
        !list.to_string().contains(&secret[13..]),
        "no secret in the list"
    );
    let table = cli.run(&["tokens", "list"]).ok();
    assert!(table.stdout.contains("billing"), "{table:#?}");

    let rotated = cli.json(&["tokens", "rotate", &id]);
    let new_id = rotated["token"]["id"].as_str().expect("an id").to_owned();
    assert_ne!(new_id, id);
    assert_eq!(rotated["token"]["name"], "billing");
    let revoked = cli.json(&["tokens", "revoke", &new_id]);
    assert!(!revoked["revoked_at"].is_null());
    cli.run(&["tokens", "revoke", "zzzz9999"])
        .fails(3, "not found");
    let list = cli.json(&["tokens", "list"]);
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| !t["revoked_at"].is_null()), "{list}");
}

#[test]
fn token_commands_on_a_database_and_through_a_server() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    exercise(&cli);

    let (_dir2, url2) = sqlite_url();
    let server = Server::start(&url2, &[]);
    exercise(&Cli::server(&server));
}
