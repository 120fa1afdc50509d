//! `stoker keys` (issue 17 item 4) with the built binary on a database: status per key id,
//! rotation to the highest key, and the errors for missing keys and a server target.

mod cli_common;

use std::sync::Arc;

use cli_common::{run_in, sqlite_url, Cli};
use serde_json::json;
use stoker::{Client, Encryption, EnqueueOptions, KeyRing};

const KEY1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_rotation_on_a_database() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    let store = stoker::connect(&url).await.unwrap();
    let client = Client::new(Arc::clone(&store)).with_encryption(Encryption::kinds(
        KeyRing::new().with_key(1, [1; 32]),
        ["charge"],
    ));
    for _ in 0..3 {
        client
            .enqueue_raw("charge", json!({"card": "4242"}), EnqueueOptions::new())
            .await
            .unwrap();
    }
    let both = format!("1={KEY1},2={KEY2}");
    let env = [("STOKER_ENCRYPTION_KEYS", both.as_str())];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database-url", url.as_str()]);
        run_in(cli.dir.path(), &env, &all)
    };

    let status = run(&["keys", "status", "--json"]).ok().json();
    assert_eq!(status["active"], 2, "{status}");
    assert_eq!(status["values_by_key"], json!({"1": 3}));
    let table = run(&["keys", "status"]).ok();
    assert!(table.stdout.contains("active key: 2"), "{table:#?}");

    let report = run(&["keys", "rotate", "--batch", "2", "--json"])
        .ok()
        .json();
    assert_eq!(
        (report["resealed"].as_u64(), report["unreadable"].as_u64()),
        (Some(3), Some(0))
    );
    let status = run(&["keys", "status", "--json"]).ok().json();
    assert_eq!(status["values_by_key"], json!({"2": 3}));

    // Only key 1 now: nothing opens, rotation says so and fails.
    let only_old = format!("1={KEY1}");
    let mut args = vec!["keys", "rotate", "--database-url", url.as_str()];
    let failed = run_in(
        cli.dir.path(),
        &[("STOKER_ENCRYPTION_KEYS", only_old.as_str())],
        &args,
    );
    failed.fails(2, "could not be opened");
    args[1] = "status";
    run_in(cli.dir.path(), &[], &args).fails(2, "STOKER_ENCRYPTION_KEYS");
    run_in(
        cli.dir.path(),
        &[("STOKER_ENCRYPTION_KEYS", "1=AAAA")],
        &args,
    )
    .fails(2, "32");
    run_in(
        cli.dir.path(),
        &env,
        &[
            "keys",
            "status",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ],
    )
    .fails(2, "--database-url");
}

// --- stream tenant ---
/// A command on the database (issue 17) uses the server's key configuration: with the
/// server's config file (`--config`, its `[encryption]` table) and keys, an enqueue of an
/// encrypted kind is sealed in the row, and `jobs show` opens it; without keys it shows the
/// job sealed, never failing or losing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_the_database_seals_as_the_server_does() {
    let (_dir, url) = sqlite_url();
    let cli = Cli::database(&url);
    cli.run(&["migrate"]).ok();
    let config = cli.dir.path().join("stoker.toml");
    std::fs::write(&config, "[encryption]\nkinds = [\"charge\"]\n").unwrap();
    let config = config.display().to_string();
    let keys = format!("1={KEY1}");
    let env = [("STOKER_ENCRYPTION_KEYS", keys.as_str())];
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database-url", url.as_str(), "--config", config.as_str()]);
        run_in(cli.dir.path(), env, &all)
    };

    let enqueued = run(
        &env,
        &[
            "enqueue",
            "charge",
            "--args",
            r#"{"card":"4242"}"#,
            "--json",
        ],
    )
    .ok()
    .json();
    let id = enqueued["id"].as_i64().expect("an id");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let raw: String = sqlx::query_scalar("SELECT args FROM stoker_jobs WHERE id = ?1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(raw.contains("$enc"), "sealed in the row: {raw}");
    assert!(!raw.contains("4242"), "no plaintext in the row: {raw}");

    let shown = run(&env, &["jobs", "show", &id.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(shown["args"]["card"], "4242", "{shown}");

    // A kind the configuration does not name stays plain.
    let plain = run(
        &env,
        &["enqueue", "report", "--args", r#"{"n":1}"#, "--json"],
    )
    .ok()
    .json();
    let raw: String = sqlx::query_scalar("SELECT args FROM stoker_jobs WHERE id = ?1")
        .bind(plain["id"].as_i64().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!raw.contains("$enc"), "{raw}");

    // Without keys, an encrypted kind is refused rather than written in plaintext.
    let refused = run(
        &[],
        &[
            "enqueue",
            "charge",
            "--args",
            r#"{"card":"4242"}"#,
            "--json",
        ],
    );
    assert_ne!(refused.code, 0, "{refused:?}");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stoker_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2, "nothing written");
}
