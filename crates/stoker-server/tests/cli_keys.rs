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
