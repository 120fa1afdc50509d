//! Recurring schedules (issue 15): slots across minute, hour, day and DST boundaries, each
//! catch-up policy after a 3-hour outage, a changed expression without backfill, overlap
//! `skip`, manual runs, and exactly one job per slot under concurrent firers. Every fire goes
//! through [`fire_due`], the routine every process runs, with `now` from a fake clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use stoker_core::cron::{
    fire_due, CatchUp, CronExpr, CronFireOutcome, CronFireParams, CronRow, CronSchedule,
    CronSlotJob, CronWriteMode, CronWriteParams, Overlap,
};
use stoker_core::{Outcome, Store, StoreErrorKind, MAX_ARGS_BYTES_DEFAULT};
use tokio::sync::Barrier;

use crate::fixture::{all_jobs, at, claim, expect_err_kind, finish};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

async fn write<S: Store>(
    store: &Arc<S>,
    schedule: CronSchedule,
    mode: CronWriteMode,
    now: DateTime<Utc>,
) -> CronRow {
    let expr = CronExpr::parse(&schedule.expr, &schedule.tz).expect("a valid expression");
    store
        .cron_write(CronWriteParams {
            next_slot: expr.next_after(now).expect("a next slot"),
            schedule,
            mode,
            now,
        })
        .await
        .expect("cron_write")
}

async fn create<S: Store>(store: &Arc<S>, schedule: CronSchedule, now: DateTime<Utc>) -> CronRow {
    write(store, schedule, CronWriteMode::Create, now).await
}

async fn fire<S: Store>(store: &Arc<S>, now: DateTime<Utc>) {
    fire_due(&**store, now, MAX_ARGS_BYTES_DEFAULT)
        .await
        .expect("fire_due");
}

/// Every cron job's (slot, catch-up) by schedule, slots in order; panics on a slot with two
/// jobs.
async fn slots_by_schedule<S: Store>(
    store: &Arc<S>,
) -> BTreeMap<String, Vec<(DateTime<Utc>, bool)>> {
    let mut out: BTreeMap<String, Vec<(DateTime<Utc>, bool)>> = BTreeMap::new();
    for job in all_jobs(store).await {
        let Some(cron) = job.metadata.cron else {
            continue;
        };
        if cron.run_now {
            continue;
        }
        out.entry(cron.name)
            .or_default()
            .push((cron.slot, cron.catch_up));
    }
    for (name, slots) in &mut out {
        slots.sort();
        let before = slots.len();
        slots.dedup_by_key(|(slot, _)| *slot);
        assert_eq!(
            before,
            slots.len(),
            "schedule {name} has a slot with two jobs"
        );
    }
    out
}

fn times(slots: &[(DateTime<Utc>, bool)]) -> Vec<String> {
    slots
        .iter()
        .map(|(slot, _)| slot.format("%H:%M:%S").to_string())
        .collect()
}

/// Runs the clock from `from` to `to` in `step`s, firing at each.
async fn run_clock<S: Store>(
    store: &Arc<S>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Duration,
) {
    let mut now = from;
    while now <= to {
        fire(store, now).await;
        now += step;
    }
}

fn schedule(name: &str, expr: &str, tz: &str) -> CronSchedule {
    let mut schedule = CronSchedule::new(name, expr, "tick", json!({"schedule": name}));
    schedule.tz = tz.to_owned();
    schedule.catch_up = CatchUp::All;
    schedule.catch_up_max = 100;
    schedule
}

/// Slots across minute, hour, day and year boundaries fire once each, on time.
pub async fn slots_cross_boundaries<S: Store>(store: Arc<S>) {
    let start = at(-3600 - 30);
    create(&store, schedule("twenty", "*/20 * * * *", "UTC"), start).await;
    create(
        &store,
        schedule("seconds", "*/30 * * * * *", "UTC"),
        at(-91),
    )
    .await;
    run_clock(&store, start, at(3600), Duration::seconds(15)).await;
    let slots = slots_by_schedule(&store).await;
    assert_eq!(
        times(&slots["twenty"]),
        ["23:00:00", "23:20:00", "23:40:00", "00:00:00", "00:20:00", "00:40:00", "01:00:00"]
    );
    assert_eq!(
        slots["seconds"].len(),
        124,
        "every 30 s from 23:58:30 to 01:00:00"
    );
    assert!(slots["seconds"]
        .windows(2)
        .all(|w| w[1].0 - w[0].0 == Duration::seconds(30)));
    assert!(slots.values().flatten().all(|(_, catch_up)| !catch_up));
    let row = store.cron_get("twenty").await.unwrap().unwrap();
    assert_eq!(row.last_slot, Some(at(3600)));
    assert_eq!(row.next_slot, at(3600 + 1200));
}

/// Both 2026 transitions in Europe/London and America/New_York: a fixed-time entry runs once
/// in the repeated hour and at the transition when its local time does not exist; wildcard
/// entries follow elapsed time.
pub async fn dst_transitions_2026<S: Store>(store: Arc<S>) {
    let cases = [
        // (name, expr, tz, from, to, expected UTC slots)
        (
            "lon-spring-fixed",
            "30 1 * * *",
            "Europe/London",
            "2026-03-28T23:00:00Z",
            "2026-03-29T03:00:00Z",
            vec!["01:00:00"],
        ),
        (
            "lon-spring-wild",
            "*/30 * * * *",
            "Europe/London",
            "2026-03-28T23:00:00Z",
            "2026-03-29T03:00:00Z",
            vec![
                "23:30:00", "00:00:00", "00:30:00", "01:00:00", "01:30:00", "02:00:00", "02:30:00",
                "03:00:00",
            ],
        ),
        (
            "lon-fall-fixed",
            "30 1 * * *",
            "Europe/London",
            "2026-10-24T23:00:00Z",
            "2026-10-25T03:00:00Z",
            vec!["00:30:00"],
        ),
        (
            "lon-fall-wild",
            "*/30 * * * *",
            "Europe/London",
            "2026-10-24T23:00:00Z",
            "2026-10-25T03:00:00Z",
            vec![
                "23:30:00", "00:00:00", "00:30:00", "01:00:00", "01:30:00", "02:00:00", "02:30:00",
                "03:00:00",
            ],
        ),
        (
            "ny-spring-fixed",
            "30 2 * * *",
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "2026-03-08T09:00:00Z",
            vec!["07:00:00"],
        ),
        (
            "ny-spring-wild",
            "0 * * * *",
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "2026-03-08T09:00:00Z",
            vec!["06:00:00", "07:00:00", "08:00:00", "09:00:00"],
        ),
        (
            "ny-fall-fixed",
            "30 1 * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            "2026-11-01T08:00:00Z",
            vec!["05:30:00"],
        ),
        (
            "ny-fall-wild",
            "0 * * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            "2026-11-01T08:00:00Z",
            vec!["05:00:00", "06:00:00", "07:00:00", "08:00:00"],
        ),
    ];
    for (name, expr, tz, from, to, expected) in cases {
        // One schedule at a time, so one case's clock never fires another case's schedule.
        create(&store, schedule(name, expr, tz), utc(from)).await;
        run_clock(&store, utc(from), utc(to), Duration::minutes(10)).await;
        store.cron_delete(name).await.expect("cron_delete");
        let slots = slots_by_schedule(&store).await;
        let got = slots.get(name).map(|s| times(s)).unwrap_or_default();
        assert_eq!(got, expected, "schedule {name}");
    }
}

/// Fires once at 00:00, then nothing runs for three hours (and two minutes), then fires again.
async fn outage<S: Store>(store: &Arc<S>, catch_up: CatchUp) -> Vec<(DateTime<Utc>, bool)> {
    let mut every5 = schedule("every5", "*/5 * * * *", "UTC");
    every5.catch_up = catch_up;
    every5.catch_up_window_seconds = 4 * 3600;
    every5.catch_up_max = 10;
    create(store, every5, at(-1)).await;
    fire(store, at(0)).await;
    fire(store, at(3 * 3600 + 120)).await;
    let row = store.cron_get("every5").await.unwrap().unwrap();
    assert_eq!(
        row.next_slot,
        at(3 * 3600 + 300),
        "no missed slot is left due"
    );
    slots_by_schedule(store).await.remove("every5").unwrap()
}

/// `skip`: the slots missed during the outage never fire.
pub async fn catch_up_skip_after_outage<S: Store>(store: Arc<S>) {
    let slots = outage(&store, CatchUp::Skip).await;
    assert_eq!(slots, [(at(0), false)]);
}

/// `latest`: the newest missed slot fires once, marked as a catch-up.
pub async fn catch_up_latest_after_outage<S: Store>(store: Arc<S>) {
    let slots = outage(&store, CatchUp::Latest).await;
    assert_eq!(slots, [(at(0), false), (at(3 * 3600), true)]);
}

/// `all`: the newest `catch_up_max` missed slots fire, each marked as a catch-up.
pub async fn catch_up_all_after_outage<S: Store>(store: Arc<S>) {
    let slots = outage(&store, CatchUp::All).await;
    let mut expected = vec![(at(0), false)];
    expected.extend((0..10).map(|i| (at(3 * 3600 - 300 * (9 - i)), true)));
    assert_eq!(slots, expected);
}

/// A changed expression takes effect from now: the old expression's missed slots are not
/// backfilled.
pub async fn changed_expr_no_backfill<S: Store>(store: Arc<S>) {
    let mut hourly = schedule("hourly", "0 * * * *", "UTC");
    hourly.catch_up_window_seconds = 4 * 3600;
    create(&store, hourly.clone(), at(-1)).await;
    fire(&store, at(0)).await;
    hourly.expr = "*/15 * * * *".to_owned();
    let row = write(&store, hourly, CronWriteMode::Update, at(2 * 3600 + 600)).await;
    assert_eq!(row.next_slot, at(2 * 3600 + 900));
    fire(&store, at(2 * 3600 + 600)).await;
    fire(&store, at(2 * 3600 + 900)).await;
    let slots = slots_by_schedule(&store).await.remove("hourly").unwrap();
    assert_eq!(slots, [(at(0), false), (at(2 * 3600 + 900), false)]);
}

/// Overlap `skip`: a slot is skipped while the previous run's job is unfinished, and recorded
/// as skipped in the history.
pub async fn overlap_skip<S: Store>(store: Arc<S>) {
    let mut minutely = schedule("minutely", "* * * * *", "UTC");
    minutely.overlap = Overlap::Skip;
    create(&store, minutely, at(-1)).await;
    fire(&store, at(0)).await;
    fire(&store, at(60)).await;
    let job = claim(&store, "default", 10, "w1", at(61)).await.remove(0);
    finish(
        &store,
        job.id,
        job.fence,
        Outcome::Completed { result: None },
        at(62),
    )
    .await;
    fire(&store, at(120)).await;
    let slots = slots_by_schedule(&store).await.remove("minutely").unwrap();
    assert_eq!(slots, [(at(0), false), (at(120), false)]);
    let history = store.cron_history("minutely", 10).await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|run| (run.slot, run.skipped, run.job_id.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            (at(120), false, true),
            (at(60), true, false),
            (at(0), false, true)
        ]
    );
    assert_eq!(history[2].state, Some(stoker_core::JobState::Completed));
    assert_eq!(history[2].duration(), Some(Duration::seconds(1)));
}

/// A manual run uses its own key, so it never takes the slot's place, and needs no
/// compare-and-set.
pub async fn run_now_never_collides<S: Store>(store: Arc<S>) {
    let row = create(&store, schedule("manual", "* * * * *", "UTC"), at(-1)).await;
    let outcome = store
        .cron_fire(CronFireParams {
            name: "manual".into(),
            advance: None,
            slots: vec![CronSlotJob {
                slot: at(0),
                catch_up: false,
                run_now: true,
                job: row.schedule.job(at(0), false, true),
            }],
            overlap: Overlap::Skip,
            now: at(0),
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
        })
        .await
        .unwrap();
    assert!(
        matches!(&outcome, CronFireOutcome::Fired(jobs) if jobs.len() == 1 && !jobs[0].duplicate)
    );
    fire(&store, at(0)).await;
    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 2, "the manual run and the 00:00 slot");
    let keys: Vec<_> = jobs.iter().filter_map(|j| j.unique_key.clone()).collect();
    assert_ne!(keys[0], keys[1]);
    let row = store.cron_get("manual").await.unwrap().unwrap();
    assert_eq!(
        row.next_slot,
        at(60),
        "a manual run does not move the schedule"
    );
    let missing = store
        .cron_fire(CronFireParams {
            name: "nobody".into(),
            advance: None,
            slots: Vec::new(),
            overlap: Overlap::Allow,
            now: at(0),
            max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
        })
        .await;
    expect_err_kind(missing, StoreErrorKind::NotFound);
}

/// Eight firers racing every round, for twenty rounds: every slot has exactly one job, and
/// none is missing.
pub async fn concurrent_firers_exactly_once<S: Store>(store: Arc<S>) {
    let mut every_second = schedule("every-second", "* * * * * *", "UTC");
    every_second.catch_up_window_seconds = 60;
    create(&store, every_second, at(-1)).await;
    let firers = 8;
    let barrier = Arc::new(Barrier::new(firers));
    let mut tasks = Vec::new();
    for _ in 0..firers {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..20 {
                barrier.wait().await;
                fire(&store, at(round * 3)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a firer");
    }
    let slots = slots_by_schedule(&store)
        .await
        .remove("every-second")
        .unwrap();
    let expected: Vec<_> = (0..=57).map(at).collect();
    assert_eq!(slots.iter().map(|(s, _)| *s).collect::<Vec<_>>(), expected);
}

/// Create, update, upsert, pause, resume and delete: conflicts and absences are errors, an
/// unchanged upsert keeps the revision, a resume restarts the slots from now.
pub async fn write_modes<S: Store>(store: Arc<S>) {
    let daily = schedule("daily", "0 3 * * *", "UTC");
    let row = create(&store, daily.clone(), at(0)).await;
    assert_eq!((row.revision, row.next_slot), (1, at(3 * 3600)));
    let again = store
        .cron_write(CronWriteParams {
            schedule: daily.clone(),
            next_slot: at(3 * 3600),
            mode: CronWriteMode::Create,
            now: at(1),
        })
        .await;
    expect_err_kind(again, StoreErrorKind::Conflict);
    let missing = store
        .cron_write(CronWriteParams {
            schedule: schedule("nope", "0 3 * * *", "UTC"),
            next_slot: at(3 * 3600),
            mode: CronWriteMode::Update,
            now: at(1),
        })
        .await;
    expect_err_kind(missing, StoreErrorKind::NotFound);

    let same = write(&store, daily.clone(), CronWriteMode::Upsert, at(10)).await;
    assert_eq!(same.revision, 1, "an unchanged upsert writes nothing");
    let mut changed = daily.clone();
    changed.args = json!({"v": 2});
    let row = write(&store, changed.clone(), CronWriteMode::Upsert, at(20)).await;
    assert_eq!((row.revision, row.next_slot), (2, at(3 * 3600)));
    assert_eq!(row.schedule.args, json!({"v": 2}));

    changed.enabled = false;
    let paused = write(&store, changed.clone(), CronWriteMode::Update, at(30)).await;
    assert!(!paused.schedule.enabled);
    fire(&store, at(4 * 86_400)).await;
    assert!(
        all_jobs(&store).await.is_empty(),
        "a paused schedule fires nothing"
    );
    changed.enabled = true;
    let resumed = write(&store, changed, CronWriteMode::Update, at(4 * 86_400)).await;
    assert_eq!(
        resumed.next_slot,
        at(4 * 86_400 + 3 * 3600),
        "no backfill on resume"
    );

    create(&store, schedule("another", "* * * * *", "UTC"), at(0)).await;
    let names: Vec<_> = store
        .cron_list()
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.schedule.name)
        .collect();
    assert_eq!(names, ["another", "daily"]);
    store.cron_delete("daily").await.unwrap();
    expect_err_kind(store.cron_delete("daily").await, StoreErrorKind::NotFound);
    assert!(store.cron_get("daily").await.unwrap().is_none());
    assert!(store.cron_history("daily", 10).await.unwrap().is_empty());
}

/// More due schedules than one call fires: the first call says to come back at once, and the
/// second fires the rest.
pub async fn many_due_schedules_fire_in_batches<S: Store>(store: Arc<S>) {
    let total = stoker_core::cron::FIRE_BATCH as usize + 5;
    for i in 0..total {
        create(
            &store,
            schedule(&format!("s{i:04}"), "* * * * *", "UTC"),
            at(-1),
        )
        .await;
    }
    let first = fire_due(&*store, at(0), MAX_ARGS_BYTES_DEFAULT)
        .await
        .unwrap();
    assert_eq!(first.fired, stoker_core::cron::FIRE_BATCH as usize);
    assert_eq!(first.next_slot, Some(at(0)), "more are due: come back now");
    let second = fire_due(&*store, at(0), MAX_ARGS_BYTES_DEFAULT)
        .await
        .unwrap();
    assert_eq!(second.fired, 5);
    assert_eq!(second.next_slot, Some(at(60)));
    assert_eq!(slots_by_schedule(&store).await.len(), total);
}
