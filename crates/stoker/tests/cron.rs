//! Cron through the runtime (issue 15): `WorkerBuilder::cron` upserts at start and the firer
//! every process runs fires the slots; the cost of an idle schedule table, in store calls per
//! minute, measured on a stub clock (no wall-clock timing); the client's validation.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stoker::cron::{CronFirer, CronFirerConfig, CronSchedule};
use stoker::sqlite::SqliteStore;
use stoker::testing::CountingStore;
use stoker::{Client, Clock, Error, Store, StubClock, Worker};

async fn memory_store() -> Arc<dyn Store> {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// Runs the firer's loop for `minutes` of a stub clock, each pass followed by the sleep it
/// asks for (the loop of [`CronFirer::run`], without waiting), and returns its store calls
/// per minute and the jobs fired.
async fn calls_per_minute(schedules: &[(&str, &str)], minutes: i64) -> (f64, f64, usize) {
    let inner = memory_store().await;
    let counting = Arc::new(CountingStore::new(inner.clone()));
    let start: DateTime<Utc> = "2030-01-01T00:00:30Z".parse().unwrap();
    let clock = StubClock::new(start);
    let client =
        Client::new(counting.clone() as Arc<dyn Store>).with_clock(Arc::new(clock.clone()));
    for (name, expr) in schedules {
        client
            .cron_create(CronSchedule::new(*name, *expr, "tick", json!({})))
            .await
            .unwrap();
    }
    counting.reset();
    let firer = CronFirer::new(client, CronFirerConfig::default());
    let end = start + chrono::Duration::minutes(minutes);
    while clock.now() < end {
        let (_, sleep) = firer.run_once().await.unwrap();
        clock.advance(chrono::Duration::from_std(sleep).unwrap());
    }
    let calls = counting.calls();
    let per_minute = |method: &str| calls.get(method).copied().unwrap_or(0) as f64 / minutes as f64;
    let jobs = Client::new(inner)
        .list(&stoker::JobFilter::new().limit(1000))
        .await
        .unwrap()
        .jobs
        .len();
    (per_minute("cron_due"), per_minute("cron_fire"), jobs)
}

#[tokio::test]
async fn an_idle_schedule_table_costs_a_few_reads_a_minute() {
    let (due, fire, jobs) = calls_per_minute(&[], 60).await;
    println!("no schedules: {due} cron_due/min, {fire} cron_fire/min");
    assert_eq!(due, 4.0, "one read per 15 s with no schedule");
    assert_eq!((fire, jobs), (0.0, 0));

    let (due, fire, jobs) =
        calls_per_minute(&[("nightly", "0 3 * * *"), ("weekly", "@weekly")], 60).await;
    println!("two schedules not due: {due} cron_due/min, {fire} cron_fire/min");
    assert_eq!(due, 4.0, "one read per 15 s with nothing due");
    assert_eq!((fire, jobs), (0.0, 0));

    let (due, fire, jobs) = calls_per_minute(&[("minutely", "* * * * *")], 60).await;
    println!("one every-minute schedule: {due} cron_due/min, {fire} cron_fire/min, {jobs} jobs");
    assert!(due <= 5.0, "{due} reads a minute");
    assert_eq!(fire, 1.0, "one fire a minute");
    assert_eq!(jobs, 60, "one job a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_builder_upserts_and_fires() {
    let store = memory_store().await;
    let client = Client::new(store.clone());
    let worker = Worker::builder(store.clone())
        .queue("default", 2)
        .handler_fn("tick", |_args, _ctx| async { Ok(json!("ok")) })
        .cron(CronSchedule::new(
            "every-second",
            "* * * * * *",
            "tick",
            json!({}),
        ))
        // Look at the table every 100 ms, so the resume below is seen at once.
        .cron_firer(CronFirerConfig {
            max_sleep: Duration::from_millis(100),
            ..CronFirerConfig::default()
        })
        .build()
        .unwrap();
    let handle = worker.start().await.unwrap();
    let row = client.cron_get("every-second").await.unwrap();
    assert!(row.schedule.enabled);
    // A paused schedule stays paused when the worker upserts it again.
    client.cron_pause("every-second").await.unwrap();
    let again = Worker::builder(store.clone())
        .queue("other", 1)
        .maintenance(false)
        .cron(CronSchedule::new(
            "every-second",
            "* * * * * *",
            "tick",
            json!({}),
        ))
        .build()
        .unwrap();
    let second = again.start().await.unwrap();
    assert!(
        !client
            .cron_get("every-second")
            .await
            .unwrap()
            .schedule
            .enabled
    );
    second.shutdown().await;
    client.cron_resume("every-second").await.unwrap();
    // The firer runs in this process: wait (bounded) for a fired slot's job to complete.
    let mut done = false;
    for _ in 0..100 {
        let runs = client.cron_history("every-second", 10).await.unwrap();
        if runs
            .iter()
            .any(|run| run.state == Some(stoker::JobState::Completed))
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.shutdown().await;
    assert!(done, "a slot fired and its job completed");
}

#[tokio::test]
async fn the_client_refuses_bad_schedules_naming_the_field() {
    let client = Client::new(memory_store().await);
    let field = |result: stoker::Result<stoker::cron::CronRow>| match result {
        Err(Error::Invalid(invalid)) => invalid.field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let good = CronSchedule::new("ok", "*/5 * * * *", "tick", json!({}));
    let mut bad = good.clone();
    bad.expr = "every day".into();
    assert_eq!(field(client.cron_create(bad).await), "expr");
    let mut bad = good.clone();
    bad.tz = "Europe/Atlantis".into();
    assert_eq!(field(client.cron_create(bad).await), "tz");
    let mut bad = good.clone();
    bad.name = "has space".into();
    assert_eq!(field(client.cron_create(bad).await), "name");
    let mut bad = good.clone();
    bad.kind = String::new();
    assert_eq!(field(client.cron_create(bad).await), "kind");
    let mut bad = good.clone();
    bad.catch_up_max = 0;
    assert_eq!(field(client.cron_create(bad).await), "catch_up_max");
    assert!(
        client.cron_list().await.unwrap().is_empty(),
        "nothing written"
    );
    client.cron_create(good.clone()).await.unwrap();
    assert!(matches!(
        client.cron_create(good).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        client.cron_get("nope").await,
        Err(Error::NotFound(_))
    ));
    // A tenant sees only the schedules whose jobs are its own (issue 17).
    assert!(client
        .for_tenant("acme")
        .cron_list()
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        client.for_tenant("acme").cron_get("ok").await,
        Err(Error::NotFound(_))
    ));
    let job = client.cron_run_now("ok").await.unwrap();
    let row = client.get(job.id).await.unwrap().unwrap();
    assert!(row.unique_key.unwrap().contains(":run-now:"));
    assert!(row.metadata.cron.unwrap().run_now);
}
