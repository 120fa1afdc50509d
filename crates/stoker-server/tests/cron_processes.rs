//! Cron across real processes (issue 15): four `stoker serve` processes on one PostgreSQL
//! schema, each with the same every-second `[[cron]]` table in its config, so each tries to
//! fire every slot. One is killed (SIGKILL) midway and started again. Every slot from the
//! first fired to the last must have exactly one job: none twice, none missing.
//!
//! Nothing here asserts on timing: the waits are bounded polls for slots to appear.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

fn postgres_url() -> String {
    std::env::var("STOKER_TEST_DATABASE_URL").expect("STOKER_TEST_DATABASE_URL is set")
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stoker"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("STOKER_DATABASE_URL")
        .env_remove("STOKER_API_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stoker serve")
}

/// The slots fired so far, with how many jobs each got.
async fn slots(pool: &sqlx::PgPool, schema: &str) -> BTreeMap<DateTime<Utc>, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT metadata->'cron'->>'slot', COUNT(*) FROM \"{schema}\".stoker_jobs \
         GROUP BY 1 ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    rows.into_iter()
        .map(|(slot, count)| (slot.parse().expect("an RFC 3339 slot"), count))
        .collect()
}

/// Waits (at most a minute) until `more` new slots have fired.
async fn wait_for_slots(pool: &sqlx::PgPool, schema: &str, more: usize) {
    let start = slots(pool, schema).await.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while slots(pool, schema).await.len() < start + more {
        assert!(Instant::now() < deadline, "no slot fired for a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn four_processes_one_killed_every_slot_exactly_once() {
    let schema = format!("stoker_cron_{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stoker.toml");
    std::fs::write(
        &config,
        format!(
            r#"
database_url = "{url}"
database_schema = "{schema}"
bind = "127.0.0.1:0"

[worker]
queues = {{ builtin = 1 }}

[[cron]]
name = "every-second"
expr = "* * * * * *"
kind = "nobody-runs-this"
queue = "cron"
catch_up = "all"
catch_up_window = "1m"
catch_up_max = 100
"#,
            url = postgres_url()
        ),
    )
    .unwrap();

    let mut processes: Vec<Child> = (0..4).map(|_| spawn(&config)).collect();
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    wait_for_slots(&pool, &schema, 3).await;
    processes[2].kill().expect("kill process 2");
    processes[2].wait().unwrap();
    wait_for_slots(&pool, &schema, 3).await;
    processes[2] = spawn(&config);
    wait_for_slots(&pool, &schema, 3).await;
    for process in &mut processes {
        process.kill().expect("stop a process");
        process.wait().unwrap();
    }

    let fired = slots(&pool, &schema).await;
    let twice: Vec<_> = fired.iter().filter(|(_, &count)| count != 1).collect();
    assert!(twice.is_empty(), "slots with more than one job: {twice:?}");
    let (first, last) = (*fired.keys().next().unwrap(), *fired.keys().last().unwrap());
    let missing: Vec<_> = (0..=(last - first).num_seconds())
        .map(|s| first + chrono::Duration::seconds(s))
        .filter(|slot| !fired.contains_key(slot))
        .collect();
    assert!(missing.is_empty(), "slots with no job: {missing:?}");
    assert!(fired.len() >= 9);

    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
