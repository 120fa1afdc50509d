//! Management actions with their audit rows (issue 17, item 3): through
//! [`Store::audited`], the row is written in the action's own transaction, so it exists if and
//! only if the change committed. A failed action writes no row; a refused row (an unknown
//! face) refuses the action with it, leaving the data as it was.

use std::sync::Arc;

use serde_json::json;
use stoker_core::alert::{AlertMetric, AlertRule, AlertWriteMode, AlertWriteParams};
use stoker_core::cron::{CronExpr, CronSchedule, CronWriteMode, CronWriteParams};
use stoker_core::{
    AuditEntry, AuditListParams, AuditRow, AuditedAction, AuditedOutcome, BulkAction, BulkFilter,
    BulkOpCreateParams, JobCancelParams, JobId, JobPruneParams, JobRetryManyParams, JobRetryParams,
    JobState, LimitKey, LimitSetParams, LimitSpec, QueueParams, Store, StoreErrorKind, StoreResult,
    TokenCreateParams, TokenRow,
};

use crate::fixture::{at, get, insert, insert_one, job, job_in, running, t0};

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        at: t0(),
        actor: "ops".to_owned(),
        token_id: Some("ab12cd34".to_owned()),
        via: "api".to_owned(),
        tenant: None,
        action: action.to_owned(),
        target: Some(format!("{action} target")),
        filter: None,
        affected: None,
        source: Some("10.0.0.7".to_owned()),
    }
}

async fn rows<S: Store>(store: &Arc<S>) -> Vec<AuditRow> {
    store
        .audit_list(AuditListParams {
            limit: 100,
            ..AuditListParams::default()
        })
        .await
        .expect("audit_list")
}

/// The actions of the audit log, oldest first.
async fn actions<S: Store>(store: &Arc<S>) -> Vec<String> {
    let mut rows = rows(store).await;
    rows.reverse();
    rows.into_iter().map(|row| row.entry.action).collect()
}

async fn audited<S: Store>(
    store: &Arc<S>,
    action: AuditedAction,
    name: &str,
) -> StoreResult<AuditedOutcome> {
    store.audited(action, entry(name)).await
}

fn expect_kind(result: StoreResult<AuditedOutcome>, kind: StoreErrorKind, what: &str) {
    match result {
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err}"),
        Ok(outcome) => panic!("{what}: expected a {kind:?} error, got {outcome:?}"),
    }
}

fn cancel(id: JobId) -> AuditedAction {
    AuditedAction::JobCancel(JobCancelParams { id, now: at(1) })
}

/// A cancel, retry and delete commit with their rows, written exactly as given; a cancel of a
/// job already cancelled changes nothing and writes nothing; a missing job, a running job's
/// delete and a refused row (unknown face) write nothing, and the refused row leaves the job
/// as it was.
pub async fn job_actions_row_iff_committed<S: Store>(store: Arc<S>) {
    let id = insert_one(&store, job("mail"), t0()).await;

    // The row is refused inside the action's transaction: the cancel rolls back with it.
    let bad = AuditEntry {
        via: "carrier-pigeon".to_owned(),
        ..entry("job.cancel")
    };
    let refused = store.audited(cancel(id), bad).await;
    match refused {
        Err(err) => assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}"),
        Ok(outcome) => panic!("an unknown face was accepted: {outcome:?}"),
    }
    assert_eq!(
        get(&store, id).await.state,
        JobState::Available,
        "rolled back"
    );
    assert!(rows(&store).await.is_empty(), "no row for a refused action");

    let job = audited(&store, cancel(id), "job.cancel")
        .await
        .expect("audited cancel")
        .job()
        .expect("a job");
    assert_eq!(job.state, JobState::Cancelled);
    let written = rows(&store).await;
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].entry, entry("job.cancel"), "the row as given");

    // Nothing to change: the job comes back as it is, and no row is written.
    let again = audited(&store, cancel(id), "job.cancel")
        .await
        .expect("a cancel of a cancelled job")
        .job()
        .expect("a job");
    assert_eq!(again.state, JobState::Cancelled);
    expect_kind(
        audited(&store, cancel(JobId(id.0 + 1000)), "job.cancel").await,
        StoreErrorKind::NotFound,
        "a missing job",
    );
    assert_eq!(actions(&store).await, ["job.cancel"]);

    let retried = audited(
        &store,
        AuditedAction::JobRetry(JobRetryParams { id, now: at(2) }),
        "job.retry",
    )
    .await
    .expect("audited retry")
    .job()
    .expect("a job");
    assert_eq!(retried.state, JobState::Available);

    let busy = running(&store, "busy", at(3)).await;
    expect_kind(
        audited(&store, AuditedAction::JobDelete(busy.id), "job.delete").await,
        StoreErrorKind::Conflict,
        "a running job's delete",
    );
    assert_eq!(get(&store, busy.id).await.state, JobState::Running);
    let deleted = audited(&store, AuditedAction::JobDelete(id), "job.delete")
        .await
        .expect("audited delete")
        .job()
        .expect("a job");
    assert_eq!(deleted.id, id);
    assert!(store.job_get(id).await.expect("job_get").is_none());
    assert_eq!(
        actions(&store).await,
        ["job.cancel", "job.retry", "job.delete"]
    );
}

fn schedule(name: &str) -> CronSchedule {
    CronSchedule::new(name, "0 * * * *", "tick", json!({"schedule": name}))
}

fn cron_write(schedule: CronSchedule, mode: CronWriteMode) -> AuditedAction {
    let expr = CronExpr::parse(&schedule.expr, &schedule.tz).expect("a valid expression");
    AuditedAction::CronWrite(CronWriteParams {
        next_slot: expr.next_after(t0()).expect("a next slot"),
        schedule,
        mode,
        now: t0(),
    })
}

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

fn alert_write(rule: AlertRule, mode: AlertWriteMode) -> AuditedAction {
    AuditedAction::AlertWrite(AlertWriteParams {
        rule,
        mode,
        now: t0(),
    })
}

fn token(id: &str) -> TokenRow {
    TokenRow {
        id: id.to_owned(),
        name: format!("name-{id}"),
        scopes: vec!["read".to_owned()],
        tenant: None,
        secret_hash: vec![7; 32],
        created_at: t0(),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    }
}

fn limit(name: &str, concurrency: Option<u32>) -> LimitSpec {
    LimitSpec {
        name: name.to_owned(),
        queue: None,
        kind: Some("mail".to_owned()),
        key: LimitKey::Global,
        rate: None,
        concurrency,
        fair: None,
        quota: None,
    }
}

/// Queue pause and resume, schedule, alert rule, token and limit changes commit with their
/// rows; a taken name, a missing name and invalid input fail with no row and no change.
pub async fn settings_row_iff_committed<S: Store>(store: Arc<S>) {
    let queue = |queue: &str| QueueParams {
        queue: queue.to_owned(),
        now: t0(),
    };
    audited(
        &store,
        AuditedAction::QueuePause(queue("mail")),
        "queue.pause",
    )
    .await
    .expect("audited pause")
    .done()
    .expect("nothing");
    let paused = store.queue_list().await.expect("queue_list");
    assert!(paused.iter().any(|row| row.name == "mail" && row.paused));
    expect_kind(
        audited(
            &store,
            AuditedAction::QueuePause(queue("no such queue!")),
            "queue.pause",
        )
        .await,
        StoreErrorKind::Invalid,
        "a bad queue name",
    );
    audited(
        &store,
        AuditedAction::QueueResume(queue("mail")),
        "queue.resume",
    )
    .await
    .expect("audited resume");

    audited(
        &store,
        cron_write(schedule("nightly"), CronWriteMode::Create),
        "cron.create",
    )
    .await
    .expect("audited cron create")
    .cron()
    .expect("a schedule");
    expect_kind(
        audited(
            &store,
            cron_write(schedule("nightly"), CronWriteMode::Create),
            "cron.create",
        )
        .await,
        StoreErrorKind::Conflict,
        "a taken schedule name",
    );
    expect_kind(
        audited(
            &store,
            cron_write(schedule("weekly"), CronWriteMode::Update),
            "cron.update",
        )
        .await,
        StoreErrorKind::NotFound,
        "a missing schedule's update",
    );
    expect_kind(
        audited(
            &store,
            AuditedAction::CronDelete("weekly".into()),
            "cron.delete",
        )
        .await,
        StoreErrorKind::NotFound,
        "a missing schedule's delete",
    );
    audited(
        &store,
        AuditedAction::CronDelete("nightly".into()),
        "cron.delete",
    )
    .await
    .expect("audited cron delete");
    assert!(store.cron_get("nightly").await.expect("cron_get").is_none());

    audited(
        &store,
        alert_write(rule("deep"), AlertWriteMode::Create),
        "alert.create",
    )
    .await
    .expect("audited alert create")
    .alert()
    .expect("a rule");
    expect_kind(
        audited(
            &store,
            alert_write(rule("shallow"), AlertWriteMode::Update),
            "alert.update",
        )
        .await,
        StoreErrorKind::NotFound,
        "a missing rule's update",
    );
    audited(
        &store,
        AuditedAction::AlertDelete("deep".into()),
        "alert.delete",
    )
    .await
    .expect("audited alert delete");
    expect_kind(
        audited(
            &store,
            AuditedAction::AlertDelete("deep".into()),
            "alert.delete",
        )
        .await,
        StoreErrorKind::NotFound,
        "a deleted rule's delete",
    );

    let create = |id: &str| AuditedAction::TokenCreate(TokenCreateParams { token: token(id) });
    audited(&store, create("aaaa1111"), "token.create")
        .await
        .expect("audited token create")
        .token()
        .expect("a token");
    expect_kind(
        audited(&store, create("aaaa1111"), "token.create").await,
        StoreErrorKind::Conflict,
        "a taken token id",
    );
    let revoke = |id: &str| AuditedAction::TokenRevoke {
        id: id.to_owned(),
        now: at(5),
    };
    expect_kind(
        audited(&store, revoke("bbbb2222"), "token.revoke").await,
        StoreErrorKind::NotFound,
        "a missing token",
    );
    let revoked = audited(&store, revoke("aaaa1111"), "token.revoke")
        .await
        .expect("audited revoke")
        .token()
        .expect("a token");
    assert_eq!(revoked.revoked_at, Some(at(5)));

    let set = |spec: LimitSpec| AuditedAction::LimitSet(LimitSetParams { spec, now: t0() });
    expect_kind(
        audited(&store, set(limit("mail", Some(0))), "limit.set").await,
        StoreErrorKind::Invalid,
        "a concurrency of 0",
    );
    assert!(store.limit_list().await.expect("limit_list").is_empty());
    audited(&store, set(limit("mail", Some(2))), "limit.set")
        .await
        .expect("audited limit set")
        .limit()
        .expect("a limit");
    audited(
        &store,
        AuditedAction::LimitDelete("mail".into()),
        "limit.delete",
    )
    .await
    .expect("audited limit delete");
    expect_kind(
        audited(
            &store,
            AuditedAction::LimitDelete("mail".into()),
            "limit.delete",
        )
        .await,
        StoreErrorKind::NotFound,
        "a missing limit",
    );

    assert_eq!(
        actions(&store).await,
        [
            "queue.pause",
            "queue.resume",
            "cron.create",
            "cron.delete",
            "alert.create",
            "alert.delete",
            "token.create",
            "token.revoke",
            "limit.set",
            "limit.delete",
        ]
    );
}

/// Actions over many jobs: a retry batch's and a clean's rows count what they changed (set by
/// the store), and a batch that changed nothing writes none; a bulk operation's row names it
/// (`op <id>`) and counts the jobs it matched, its abort's row counts the jobs done; a filter
/// matching nothing, and an abort of an ended operation, write nothing.
pub async fn many_jobs_rows_count<S: Store>(store: Arc<S>) {
    let ids = insert(
        &store,
        vec![
            job_in("mail", "mail"),
            job_in("mail", "mail"),
            job_in("mail", "mail"),
        ],
        t0(),
    )
    .await;
    for id in &ids {
        store
            .job_cancel(JobCancelParams {
                id: *id,
                now: at(1),
            })
            .await
            .expect("job_cancel");
    }
    let retry = |limit: u32, kinds: Vec<String>| {
        AuditedAction::JobRetryMany(JobRetryManyParams {
            states: vec![JobState::Cancelled],
            queues: Vec::new(),
            kinds,
            tenant: None,
            limit,
            now: at(2),
        })
    };
    let count = audited(&store, retry(2, Vec::new()), "job.retry_many")
        .await
        .expect("audited retry_many")
        .changed()
        .expect("the retried jobs")
        .len();
    assert_eq!(count, 2);
    let none = audited(&store, retry(10, vec!["nothing".into()]), "job.retry_many")
        .await
        .expect("a retry matching nothing")
        .changed()
        .expect("the retried jobs")
        .len();
    assert_eq!(none, 0);
    let written = rows(&store).await;
    assert_eq!(
        written.len(),
        1,
        "no row for the batch that changed nothing"
    );
    assert_eq!(written[0].entry.affected, Some(2), "the store's count");

    // One job is still cancelled, finished at 1: a clean counts it.
    let prune = JobPruneParams {
        completed_before: None,
        cancelled_before: Some(at(10)),
        discarded_before: None,
        keep_last: None,
        limit: 100,
        queue_rules: Vec::new(),
    };
    let deleted = audited(
        &store,
        AuditedAction::JobPrune {
            params: prune.clone(),
            tenant: None,
        },
        "job.clean",
    )
    .await
    .expect("audited clean")
    .count()
    .expect("a count");
    assert_eq!(deleted, 1);
    let nothing = audited(
        &store,
        AuditedAction::JobPrune {
            params: prune,
            tenant: None,
        },
        "job.clean",
    )
    .await
    .expect("a clean with nothing to delete")
    .count()
    .expect("a count");
    assert_eq!(nothing, 0);
    let newest = &rows(&store).await[0];
    assert_eq!(
        (newest.entry.action.as_str(), newest.entry.affected),
        ("job.clean", Some(1))
    );

    let create = |kinds: Vec<String>| {
        AuditedAction::BulkOpCreate(BulkOpCreateParams {
            action: BulkAction::Cancel,
            filter: BulkFilter {
                kinds,
                ..BulkFilter::default()
            },
            priority: None,
            run_at: None,
            created_by: Some("ops".into()),
            now: at(3),
        })
    };
    expect_kind(
        audited(&store, create(vec!["nothing".into()]), "bulk.start").await,
        StoreErrorKind::NotFound,
        "a filter matching nothing",
    );
    let op = audited(&store, create(vec!["mail".into()]), "bulk.start")
        .await
        .expect("audited bulk start")
        .bulk_op()
        .expect("an operation");
    let started = &rows(&store).await[0];
    assert_eq!(started.entry.action, "bulk.start");
    assert_eq!(started.entry.target, Some(format!("op {}", op.id)));
    assert_eq!(started.entry.affected, Some(op.matched));

    let abort = AuditedAction::BulkOpAbort {
        id: op.id,
        now: at(4),
    };
    let aborted = audited(&store, abort.clone(), "bulk.abort")
        .await
        .expect("audited abort")
        .bulk_op()
        .expect("an operation");
    assert_eq!(rows(&store).await[0].entry.affected, Some(aborted.done));
    expect_kind(
        audited(&store, abort, "bulk.abort").await,
        StoreErrorKind::Conflict,
        "an ended operation",
    );
    assert_eq!(
        actions(&store).await,
        ["job.retry_many", "job.clean", "bulk.start", "bulk.abort"]
    );
}
