//! Cron across processes (issue 15): four firers, each on its own pool as four processes would
//! be, fire one every-second schedule once per second of a fake clock for a minute, their
//! clocks a little apart; one is killed (its pool closed under a fire in flight) at second 20
//! and restarted at second 40. Every slot must have exactly one job, and none may be missing.
//!
//! Runs when `STOKER_TEST_DATABASE_URL` is set (see `build.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use stoker_core::cron::{
    fire_due, CatchUp, CronExpr, CronSchedule, CronWriteMode, CronWriteParams,
};
use stoker_core::{JobListParams, Store, MAX_ARGS_BYTES_DEFAULT};
use stoker_postgres::PgStore;

async fn open(url: &str, schema: &str) -> Arc<PgStore> {
    Arc::new(
        PgStore::builder(url)
            .schema(schema)
            .max_connections(2)
            .listen(false)
            .build()
            .await
            .expect("connect the PostgreSQL store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(stoker_pg_skip, ignore = "STOKER_TEST_DATABASE_URL is unset")]
async fn four_firers_one_killed_every_slot_exactly_once() {
    let url = std::env::var("STOKER_TEST_DATABASE_URL").expect("STOKER_TEST_DATABASE_URL");
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let schema = format!("stoker_test_{secs}_{:08x}", rand::random::<u32>());
    let setup = open(&url, &schema).await;
    setup.migrate().await.expect("migrate");

    let t0: DateTime<Utc> = "2030-06-01T00:00:00Z".parse().unwrap();
    let mut schedule = CronSchedule::new("every-second", "* * * * * *", "tick", json!({}));
    schedule.catch_up = CatchUp::All;
    schedule.catch_up_window_seconds = 60;
    schedule.catch_up_max = 100;
    let expr = CronExpr::parse(&schedule.expr, &schedule.tz).unwrap();
    setup
        .cron_write(CronWriteParams {
            next_slot: expr.next_after(t0).unwrap(),
            schedule,
            mode: CronWriteMode::Create,
            now: t0,
        })
        .await
        .expect("create the schedule");

    let mut firers: Vec<Option<Arc<PgStore>>> = Vec::new();
    for _ in 0..4 {
        firers.push(Some(open(&url, &schema).await));
    }
    for second in 1..60 {
        if second == 20 {
            // Kill firer 2 with a fire in flight: its task is aborted and its pool closed,
            // so whatever transaction it had open is rolled back by the server.
            let store = firers[2].take().expect("firer 2 runs");
            let now = t0 + Duration::seconds(second);
            let doomed = tokio::spawn({
                let store = store.clone();
                async move { fire_due(&*store, now, MAX_ARGS_BYTES_DEFAULT).await }
            });
            tokio::task::yield_now().await;
            doomed.abort();
            store.pool().close().await;
        }
        if second == 40 {
            firers[2] = Some(open(&url, &schema).await);
        }
        let mut fires = Vec::new();
        for (i, firer) in firers.iter().enumerate() {
            let Some(store) = firer.clone() else { continue };
            // Each process's clock is a little off from the others'.
            let now = t0 + Duration::seconds(second) + Duration::milliseconds(97 * i as i64);
            fires.push(tokio::spawn(async move {
                fire_due(&*store, now, MAX_ARGS_BYTES_DEFAULT).await
            }));
        }
        for fire in fires {
            fire.await.expect("a firer task").expect("fire_due");
        }
    }

    let jobs = setup
        .job_list(JobListParams {
            limit: 10_000,
            ..JobListParams::default()
        })
        .await
        .expect("job_list");
    let mut per_slot: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for job in &jobs {
        let cron = job.metadata.cron.as_ref().expect("a cron job");
        *per_slot.entry(cron.slot).or_default() += 1;
    }
    let expected: BTreeMap<DateTime<Utc>, usize> =
        (1..60).map(|s| (t0 + Duration::seconds(s), 1)).collect();
    assert_eq!(per_slot, expected, "every slot once, none missing");

    let mut conn = setup.pool().acquire().await.expect("a connection");
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut *conn)
        .await
        .expect("drop the test schema");
}
