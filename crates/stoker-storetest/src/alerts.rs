//! Alert rules (issue 13, item 8): the rows, the compare-and-set transition that inserts its
//! delivery jobs in the same transaction, and the event history.

use std::sync::Arc;

use serde_json::json;
use stoker_core::alert::{
    AlertEventKind, AlertMetric, AlertRow, AlertRule, AlertState, AlertStatus,
    AlertTransitionParams, AlertWriteMode, AlertWriteParams, ALERT_EVENTS_KEEP,
};
use stoker_core::{JobInsert, JobState, Store, StoreErrorKind, MAX_ARGS_BYTES_DEFAULT};

use crate::fixture::{all_jobs, at, expect_err_kind, expect_invalid};

fn rule(name: &str) -> AlertRule {
    let mut rule = AlertRule::new(
        name,
        AlertMetric::QueueDepth,
        100.0,
        "http://127.0.0.1:9/hook",
    );
    rule.scope.queue = Some("mail".into());
    rule
}

async fn write<S: Store>(
    store: &Arc<S>,
    rule: AlertRule,
    mode: AlertWriteMode,
    secs: i64,
) -> AlertRow {
    store
        .alert_write(AlertWriteParams {
            rule,
            mode,
            now: at(secs),
        })
        .await
        .expect("alert_write")
}

fn delivery(name: &str, what: &str) -> JobInsert {
    let mut job = JobInsert::new(
        "webhook",
        json!({"url": "http://127.0.0.1:9/hook", "body": {"rule": name, "type": what}}),
    );
    job.queue = "alerts".into();
    job
}

fn transition(
    name: &str,
    version: i64,
    state: AlertState,
    event: Option<AlertEventKind>,
    secs: i64,
) -> AlertTransitionParams {
    AlertTransitionParams {
        name: name.to_owned(),
        version,
        status: AlertStatus {
            state,
            since: Some(at(secs)),
            clear_since: None,
            value: Some(250.0),
        },
        event: event.map(|kind| (kind, 250.0, 100.0)),
        jobs: event
            .map(|kind| vec![delivery(name, kind.as_str())])
            .unwrap_or_default(),
        now: at(secs),
        max_args_bytes: MAX_ARGS_BYTES_DEFAULT,
    }
}

/// Create, get, list, update, upsert and delete keep the definition and the status, refuse a
/// taken name or a missing one, and an unchanged upsert writes nothing.
pub async fn rule_crud<S: Store>(store: Arc<S>) {
    let created = write(&store, rule("deep"), AlertWriteMode::Create, 0).await;
    assert_eq!(created.rule, rule("deep"));
    assert_eq!(created.status, AlertStatus::default());
    assert_eq!((created.version, created.created_at), (1, at(0)));
    let again = store
        .alert_write(AlertWriteParams {
            rule: rule("deep"),
            mode: AlertWriteMode::Create,
            now: at(1),
        })
        .await;
    expect_err_kind(again, StoreErrorKind::Conflict);
    let missing = store
        .alert_write(AlertWriteParams {
            rule: rule("nope"),
            mode: AlertWriteMode::Update,
            now: at(1),
        })
        .await;
    expect_err_kind(missing, StoreErrorKind::NotFound);

    write(&store, rule("another"), AlertWriteMode::Upsert, 2).await;
    let names: Vec<String> = store
        .alert_list()
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.rule.name)
        .collect();
    assert_eq!(names, ["another", "deep"]);

    let same = write(&store, rule("deep"), AlertWriteMode::Upsert, 3).await;
    assert_eq!(same.version, 1, "an unchanged upsert writes nothing");
    let mut changed = rule("deep");
    changed.threshold = 500.0;
    changed.for_seconds = 120;
    let updated = write(&store, changed.clone(), AlertWriteMode::Update, 4).await;
    assert_eq!((updated.version, updated.updated_at), (2, at(4)));
    assert_eq!(updated.created_at, at(0));
    let read = store.alert_get("deep").await.unwrap().expect("the rule");
    assert_eq!(read.rule, changed);

    let deleted = store.alert_delete("deep").await.unwrap();
    assert_eq!(deleted.rule, changed);
    assert!(store.alert_get("deep").await.unwrap().is_none());
    expect_err_kind(store.alert_delete("deep").await, StoreErrorKind::NotFound);
}

/// A rule that fails validation is refused naming the field, and nothing is written.
pub async fn rule_rejects_bad_input<S: Store>(store: Arc<S>) {
    let mut bad = rule("bad");
    bad.threshold = -1.0;
    let result = store
        .alert_write(AlertWriteParams {
            rule: bad,
            mode: AlertWriteMode::Create,
            now: at(0),
        })
        .await;
    expect_invalid(result, "threshold");
    let mut rate = AlertRule::new("rate", AlertMetric::FailureRate, 2.0, "http://x.test/h");
    rate.window_seconds = 120;
    let result = store
        .alert_write(AlertWriteParams {
            rule: rate,
            mode: AlertWriteMode::Upsert,
            now: at(0),
        })
        .await;
    expect_invalid(result, "threshold");
    assert!(store.alert_list().await.unwrap().is_empty());
}

/// A transition applies only at the version evaluated, writes the status, inserts its
/// delivery job and records the event with the job's id, all at once; a second evaluator at
/// the same version writes nothing and inserts no job.
pub async fn transition_compare_and_set<S: Store>(store: Arc<S>) {
    let row = write(&store, rule("deep"), AlertWriteMode::Create, 0).await;
    let pending = store
        .alert_transition(transition(
            "deep",
            row.version,
            AlertState::Pending,
            None,
            10,
        ))
        .await
        .unwrap()
        .expect("the first transition applies");
    assert_eq!(pending.status.state, AlertState::Pending);
    assert_eq!(pending.status.since, Some(at(10)));
    assert_eq!(pending.version, row.version + 1);
    assert!(all_jobs(&store).await.is_empty());
    assert!(store.alert_events("deep", 10).await.unwrap().is_empty());

    let firing = transition(
        "deep",
        pending.version,
        AlertState::Firing,
        Some(AlertEventKind::Firing),
        70,
    );
    let fired = store
        .alert_transition(firing.clone())
        .await
        .unwrap()
        .expect("firing applies");
    assert_eq!(fired.status.state, AlertState::Firing);
    assert_eq!(fired.status.value, Some(250.0));
    // A second evaluator that read the same version loses: no second message.
    assert!(store.alert_transition(firing).await.unwrap().is_none());
    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 1, "one message per change");
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].queue.as_str()),
        ("webhook", "alerts")
    );
    assert_eq!(jobs[0].state, JobState::Available);
    let events = store.alert_events("deep", 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, AlertEventKind::Firing);
    assert_eq!(events[0].job_id, Some(jobs[0].id));
    assert_eq!((events[0].value, events[0].threshold), (250.0, 100.0));
    assert_eq!(events[0].at, at(70));

    // An edit moves the version: an evaluation of the old definition loses.
    let mut edited = rule("deep");
    edited.threshold = 300.0;
    let edited = write(&store, edited, AlertWriteMode::Update, 80).await;
    assert_eq!(
        edited.status.state,
        AlertState::Firing,
        "an edit keeps the status"
    );
    let stale = transition(
        "deep",
        fired.version,
        AlertState::Ok,
        Some(AlertEventKind::Resolved),
        90,
    );
    assert!(store.alert_transition(stale).await.unwrap().is_none());
    assert_eq!(all_jobs(&store).await.len(), 1);
    // A rule that is gone never transitions.
    store.alert_delete("deep").await.unwrap();
    let gone = transition(
        "deep",
        edited.version,
        AlertState::Ok,
        Some(AlertEventKind::Resolved),
        100,
    );
    assert!(store.alert_transition(gone).await.unwrap().is_none());
    assert_eq!(all_jobs(&store).await.len(), 1);
    assert!(store.alert_events("deep", 10).await.unwrap().is_empty());
}

/// A transition with a bad delivery job writes nothing at all: not the status either.
pub async fn transition_with_bad_job_writes_nothing<S: Store>(store: Arc<S>) {
    let row = write(&store, rule("deep"), AlertWriteMode::Create, 0).await;
    let mut params = transition(
        "deep",
        row.version,
        AlertState::Firing,
        Some(AlertEventKind::Firing),
        10,
    );
    params.jobs[0].queue = "not a queue!".into();
    let result = store.alert_transition(params).await;
    expect_err_kind(result, StoreErrorKind::Invalid);
    let after = store.alert_get("deep").await.unwrap().unwrap();
    assert_eq!(
        (after.version, after.status.state),
        (row.version, AlertState::Ok)
    );
    assert!(all_jobs(&store).await.is_empty());
}

/// Each rule keeps its newest events only, newest first.
pub async fn events_keep_the_newest<S: Store>(store: Arc<S>) {
    let mut version = write(&store, rule("deep"), AlertWriteMode::Create, 0)
        .await
        .version;
    let total = i64::from(ALERT_EVENTS_KEEP) + 5;
    for i in 0..total {
        let (state, kind) = if i % 2 == 0 {
            (AlertState::Firing, AlertEventKind::Firing)
        } else {
            (AlertState::Ok, AlertEventKind::Resolved)
        };
        let mut params = transition("deep", version, state, Some(kind), i);
        params.jobs.clear();
        version = store
            .alert_transition(params)
            .await
            .unwrap()
            .expect("applies")
            .version;
    }
    let events = store.alert_events("deep", 1000).await.unwrap();
    assert_eq!(events.len(), ALERT_EVENTS_KEEP as usize);
    assert_eq!(events[0].at, at(total - 1), "newest first");
    assert_eq!(events[0].job_id, None);
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(store.alert_events("deep", 3).await.unwrap().len(), 3);
    assert!(store.alert_events("other", 10).await.unwrap().is_empty());
}
