//! Job-completion callbacks (issue 13, item 8): a job enqueued with
//! [`Metadata::on_finish`](stoker_core::Metadata::on_finish) gets exactly one delivery job of
//! the `webhook` kind ([`ON_FINISH_KIND`]) when it reaches a final state, whatever path took it
//! there (an acknowledgement, a cancel, a rescue, a bulk operation), written in the same
//! transaction as the state change. A job without the option gets none, and neither does a
//! change into a state that is not final. The delivery job's args are the webhook request:
//! `{"url", "method": "POST", "body": {"type": "job.finished", "id", "kind", "queue", "tenant",
//! "state", "attempt", "finished_at", "result", "error"}}`; a job with sealed args posts no
//! result nor error, and says `"sealed": true`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use stoker_core::{
    BulkAction, BulkFilter, BulkOpCreateParams, BulkOpStepParams, ErrorKind, HistoryGrain,
    HistoryMetric, HistoryQueryParams, HistoryScope, JobCancelParams, JobId, JobInsert,
    JobInsertParams, JobListParams, JobRetryParams, JobRow, JobState, OnFinish, Outcome, Priority,
    Store, StoreEvent, ON_FINISH_KIND, ON_FINISH_MAX_ATTEMPTS,
};
use tokio::sync::broadcast;

use crate::fixture::{
    all_jobs, at, attempt_error, claim_exactly, expect_invalid, finish, get, insert_one, job_in,
    list, rescue, t0,
};

const URL: &str = "http://127.0.0.1:9/hooks/done";

/// A job of `kind` in queue `of-work` that posts to [`URL`] when it finishes.
fn with_callback(kind: &str) -> JobInsert {
    let mut job = job_in("of-work", kind);
    job.metadata.on_finish = Some(OnFinish::new(URL));
    job
}

/// Every delivery job in the store, oldest first.
async fn callbacks<S: Store>(store: &Arc<S>) -> Vec<JobRow> {
    let mut rows = list(
        store,
        JobListParams {
            kinds: vec![ON_FINISH_KIND.to_owned()],
            ..JobListParams::default()
        },
    )
    .await;
    rows.reverse();
    rows
}

/// The delivery job posting the outcome of `id`, which must be the only one for it.
async fn callback_of<S: Store>(store: &Arc<S>, id: JobId) -> JobRow {
    let mut found: Vec<JobRow> = callbacks(store)
        .await
        .into_iter()
        .filter(|row| row.metadata.parent_id == Some(id))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one callback for job {id}: {found:?}"
    );
    found.remove(0)
}

fn stamp(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Checks the delivery job's row, and returns its body.
fn body_of(callback: &JobRow, finished_at: DateTime<Utc>, queue: &str) -> Value {
    assert_eq!(callback.kind, ON_FINISH_KIND);
    assert_eq!(callback.queue, queue);
    assert_eq!(callback.state, JobState::Available);
    assert_eq!(callback.max_attempts, ON_FINISH_MAX_ATTEMPTS);
    assert_eq!(callback.priority, Priority::NORMAL);
    assert_eq!(callback.run_at, finished_at, "due as the job finished");
    assert_eq!(callback.created_at, finished_at);
    assert_eq!(callback.metadata.source.as_deref(), Some("on_finish"));
    assert_eq!(callback.metadata.tags, vec!["on_finish".to_owned()]);
    assert_eq!(
        callback.metadata.on_finish, None,
        "a callback has no callback"
    );
    assert_eq!(callback.args["url"], json!(URL));
    assert_eq!(callback.args["method"], json!("POST"));
    let body = callback.args["body"].clone();
    assert_eq!(body["type"], json!("job.finished"));
    assert_eq!(body["finished_at"], json!(stamp(finished_at)));
    body
}

/// Completion, discard (attempts used up) and cancel each insert exactly one delivery job
/// with the outcome; a job without the option, and a failed attempt that will be retried,
/// insert none.
pub async fn each_final_state_posts_once<S: Store>(store: Arc<S>) {
    let mut done = with_callback("of-done");
    done.tenant = Some("acme".into());
    done.metadata.correlation_id = Some("req-1".into());
    let done = insert_one(&store, done, t0()).await;
    let mut dead = with_callback("of-dead");
    dead.max_attempts = 1;
    let dead = insert_one(&store, dead, t0()).await;
    let gone = insert_one(&store, with_callback("of-gone"), t0()).await;
    let again = insert_one(&store, with_callback("of-again"), t0()).await;
    let plain = insert_one(&store, job_in("of-work", "of-plain"), t0()).await;

    let row = claim_exactly(&store, "of-work", "of-done", done, at(1)).await;
    let result = Outcome::Completed {
        result: Some(json!({"sent": 3})),
    };
    assert_eq!(
        finish(&store, done, row.fence, result, at(2)).await,
        vec![done]
    );
    let row = claim_exactly(&store, "of-work", "of-dead", dead, at(1)).await;
    let discard = Outcome::Discard {
        error: attempt_error(1, at(3), "smtp said 550"),
    };
    assert_eq!(
        finish(&store, dead, row.fence, discard, at(3)).await,
        vec![dead]
    );
    let cancelled = store
        .job_cancel(JobCancelParams {
            id: gone,
            now: at(4),
        })
        .await
        .expect("job_cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    let row = claim_exactly(&store, "of-work", "of-again", again, at(1)).await;
    let retry = Outcome::Retry {
        error: attempt_error(1, at(5), "try later"),
        run_at: at(60),
    };
    assert_eq!(
        finish(&store, again, row.fence, retry, at(5)).await,
        vec![again]
    );
    let row = claim_exactly(&store, "of-work", "of-plain", plain, at(1)).await;
    let plain_done = Outcome::Completed { result: None };
    assert_eq!(
        finish(&store, plain, row.fence, plain_done, at(6)).await,
        vec![plain]
    );

    assert_eq!(
        callbacks(&store).await.len(),
        3,
        "one per final state reached"
    );

    let callback = callback_of(&store, done).await;
    assert_eq!(
        callback.tenant.as_deref(),
        Some("acme"),
        "the job's tenant's"
    );
    assert_eq!(callback.metadata.correlation_id.as_deref(), Some("req-1"));
    let body = body_of(&callback, at(2), "default");
    assert_eq!(body["id"], json!(done.0));
    assert_eq!(body["kind"], json!("of-done"));
    assert_eq!(body["queue"], json!("of-work"));
    assert_eq!(body["tenant"], json!("acme"));
    assert_eq!(body["state"], json!("completed"));
    assert_eq!(body["attempt"], json!(1));
    assert_eq!(body["result"], json!({"sent": 3}));
    assert_eq!(body["error"], Value::Null);
    assert!(body.get("sealed").is_none());

    let body = body_of(&callback_of(&store, dead).await, at(3), "default");
    assert_eq!(body["state"], json!("discarded"));
    assert_eq!(body["tenant"], Value::Null);
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["error"], json!("smtp said 550"));

    let body = body_of(&callback_of(&store, gone).await, at(4), "default");
    assert_eq!(body["state"], json!("cancelled"));
    assert_eq!(body["attempt"], json!(0));
    assert_eq!(body["error"], Value::Null);
}

/// The rescuer's discard and a bulk cancel post too, on the queue the option names; a job
/// retried after its callback and finished again posts its new outcome (one more job).
pub async fn every_path_posts<S: Store>(store: Arc<S>) {
    let mut lost = with_callback("of-lost");
    lost.max_attempts = 1;
    lost.metadata.on_finish = Some(OnFinish {
        url: URL.to_owned(),
        queue: Some("hooks".to_owned()),
    });
    let lost = insert_one(&store, lost, t0()).await;
    let row = claim_exactly(&store, "of-work", "of-lost", lost, at(1)).await;
    let mut error = attempt_error(1, at(2), "worker lost");
    error.kind = ErrorKind::WorkerLost;
    assert_eq!(
        rescue(&store, lost, row.fence, Outcome::Discard { error }, at(2)).await,
        vec![lost]
    );
    let body = body_of(&callback_of(&store, lost).await, at(2), "hooks");
    assert_eq!(body["state"], json!("discarded"));
    assert_eq!(body["error"], json!("worker lost"));

    let bulk = insert_one(&store, with_callback("of-bulk"), t0()).await;
    store
        .bulk_op_create(BulkOpCreateParams {
            action: BulkAction::Cancel,
            filter: BulkFilter {
                kinds: vec!["of-bulk".to_owned()],
                ..BulkFilter::default()
            },
            priority: None,
            run_at: None,
            created_by: Some("test".into()),
            now: at(3),
        })
        .await
        .expect("bulk_op_create");
    let mut steps = 0;
    while store
        .bulk_op_step(BulkOpStepParams {
            limit: 100,
            now: at(3),
        })
        .await
        .expect("bulk_op_step")
        .is_some()
    {
        steps += 1;
        assert!(steps < 1_000, "the bulk operation never ends");
    }
    assert_eq!(get(&store, bulk).await.state, JobState::Cancelled);
    let body = body_of(&callback_of(&store, bulk).await, at(3), "default");
    assert_eq!(body["state"], json!("cancelled"));

    // Retried by hand, run again and completed: a second outcome, a second callback.
    store
        .job_retry(JobRetryParams {
            id: lost,
            now: at(4),
        })
        .await
        .expect("job_retry");
    assert_eq!(
        callbacks(&store).await.len(),
        2,
        "a retry is no final state"
    );
    let row = claim_exactly(&store, "of-work", "of-lost", lost, at(5)).await;
    let done = Outcome::Completed { result: None };
    assert_eq!(
        finish(&store, lost, row.fence, done, at(6)).await,
        vec![lost]
    );
    let posted: Vec<Value> = callbacks(&store)
        .await
        .into_iter()
        .filter(|row| row.metadata.parent_id == Some(lost))
        .map(|row| row.args["body"]["state"].clone())
        .collect();
    assert_eq!(posted, vec![json!("discarded"), json!("completed")]);
}

/// A job whose args are sealed (an encrypted kind) posts its id and state, never its result
/// nor its error: the body has `"sealed": true` and both `null`.
pub async fn sealed_job_posts_no_payload<S: Store>(store: Arc<S>) {
    let envelope = |n: &str| json!({"$enc": "v1", "kid": 1, "n": n, "ct": "AAAA"});
    let mut sealed = with_callback("of-sealed");
    sealed.args = envelope("args-nonce");
    let sealed = insert_one(&store, sealed, t0()).await;
    let row = claim_exactly(&store, "of-work", "of-sealed", sealed, at(1)).await;
    let done = Outcome::Completed {
        result: Some(envelope("result-nonce")),
    };
    assert_eq!(
        finish(&store, sealed, row.fence, done, at(2)).await,
        vec![sealed]
    );

    let callback = callback_of(&store, sealed).await;
    let body = body_of(&callback, at(2), "default");
    assert_eq!(body["state"], json!("completed"));
    assert_eq!(body["sealed"], json!(true));
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["error"], Value::Null);
    assert!(
        !callback.args.to_string().contains("result-nonce"),
        "nothing of the sealed result is copied: {}",
        callback.args
    );
}

/// A bad callback URL or queue is refused as `Invalid` naming the field, and nothing of the
/// batch is written.
pub async fn invalid_callback_refused<S: Store>(store: Arc<S>) {
    let cases = [
        ("ftp://example.com/x", None, "on_finish.url"),
        ("example.com/hooks", None, "on_finish.url"),
        ("http:///nohost", None, "on_finish.url"),
        ("https://example.com/a b", None, "on_finish.url"),
        (
            "https://example.com/ok",
            Some("no spaces"),
            "on_finish.queue",
        ),
    ];
    for (url, queue, field) in cases {
        let mut bad = with_callback("of-bad");
        bad.metadata.on_finish = Some(OnFinish {
            url: url.to_owned(),
            queue: queue.map(str::to_owned),
        });
        let params = JobInsertParams::new(vec![with_callback("of-good"), bad], t0());
        expect_invalid(store.job_insert_many(params).await, field);
    }
    let mut long = with_callback("of-bad");
    long.metadata.on_finish = Some(OnFinish::new(format!(
        "https://example.com/{}",
        "x".repeat(2048)
    )));
    expect_invalid(
        store
            .job_insert_many(JobInsertParams::new(vec![long], t0()))
            .await,
        "on_finish.url",
    );
    assert!(all_jobs(&store).await.is_empty(), "nothing was written");
}

// --- stream history ---

/// The `enqueued` of `kind`'s jobs in the minute starting at `minute`, in `tenant` (or all).
async fn enqueued_in<S: Store>(
    store: &Arc<S>,
    minute: DateTime<Utc>,
    kind: &str,
    tenant: Option<&str>,
) -> i64 {
    store
        .history_query(HistoryQueryParams {
            grain: HistoryGrain::Minute,
            from: minute,
            to: minute + chrono::Duration::minutes(1),
            scope: HistoryScope {
                queue: None,
                kind: Some(kind.to_owned()),
                tenant: tenant.map(str::to_owned),
            },
        })
        .await
        .expect("history_query")
        .iter()
        .filter(|value| value.bucket == minute && value.metric == HistoryMetric::Enqueued)
        .map(|value| value.value)
        .sum()
}

/// A callback's delivery job counts in its minute's history as `enqueued`, under its own
/// queue, kind and tenant, whichever path finished the job (a completion, a cancel): no
/// process inserted it through a client, so the store counts it with the insert. A job
/// without the option adds nothing.
pub async fn callbacks_count_as_enqueued<S: Store>(store: Arc<S>) {
    let minute = HistoryGrain::Minute.truncate(t0());
    let next = minute + chrono::Duration::minutes(1);
    let mut done = with_callback("ofh-done");
    done.tenant = Some("acme".into());
    done.metadata.on_finish = Some(OnFinish {
        url: URL.to_owned(),
        queue: Some("hooks".to_owned()),
    });
    let done = insert_one(&store, done, t0()).await;
    let gone = insert_one(&store, with_callback("ofh-gone"), t0()).await;
    let plain = insert_one(&store, job_in("of-work", "ofh-plain"), t0()).await;

    let row = claim_exactly(&store, "of-work", "ofh-done", done, at(1)).await;
    let completed = Outcome::Completed { result: None };
    assert_eq!(
        finish(&store, done, row.fence, completed, at(2)).await,
        vec![done]
    );
    let row = claim_exactly(&store, "of-work", "ofh-plain", plain, at(1)).await;
    let completed = Outcome::Completed { result: None };
    finish(&store, plain, row.fence, completed, at(2)).await;
    // The cancel lands in the next minute.
    let later = next + chrono::Duration::seconds(5);
    store
        .job_cancel(JobCancelParams {
            id: gone,
            now: later,
        })
        .await
        .expect("job_cancel");

    assert_eq!(callback_of(&store, done).await.queue, "hooks");
    assert_eq!(enqueued_in(&store, minute, ON_FINISH_KIND, None).await, 1);
    assert_eq!(
        enqueued_in(&store, minute, ON_FINISH_KIND, Some("acme")).await,
        1,
        "counted under the job's tenant"
    );
    assert_eq!(enqueued_in(&store, next, ON_FINISH_KIND, None).await, 1);
    assert_eq!(
        enqueued_in(&store, next, ON_FINISH_KIND, Some("acme")).await,
        0
    );
    let in_hooks = store
        .history_query(HistoryQueryParams {
            grain: HistoryGrain::Minute,
            from: minute,
            to: next + chrono::Duration::minutes(1),
            scope: HistoryScope {
                queue: Some("hooks".to_owned()),
                kind: None,
                tenant: None,
            },
        })
        .await
        .expect("history_query");
    assert_eq!(
        in_hooks
            .iter()
            .filter(|value| value.metric == HistoryMetric::Enqueued)
            .map(|value| value.value)
            .sum::<i64>(),
        1,
        "under the callback's queue: {in_hooks:?}"
    );
    assert_eq!(
        callbacks(&store).await.len(),
        2,
        "no callback for a plain job"
    );
}

/// A callback's delivery job wakes the workers waiting on its queue, as an insert into it
/// does, whether an acknowledgement, a cancel or a bulk operation finished the job: it starts
/// at once rather than at their next poll. Skipped, with the reason printed, for a store
/// that delivers no events.
pub async fn callbacks_wake_their_queue<S: Store>(store: Arc<S>) {
    let Some(mut events) = store.subscribe() else {
        eprintln!(
            "skipped on_finish::callbacks_wake_their_queue: the {} store delivers no events",
            store.name()
        );
        return;
    };
    let to_queue = |kind: &str, queue: &str| {
        let mut job = with_callback(kind);
        job.metadata.on_finish = Some(OnFinish {
            url: URL.to_owned(),
            queue: Some(queue.to_owned()),
        });
        job
    };
    let acked = insert_one(&store, to_queue("ofw-acked", "ofw-hooks-1"), t0()).await;
    let cancelled = insert_one(&store, to_queue("ofw-cancelled", "ofw-hooks-2"), t0()).await;
    let bulk = insert_one(&store, to_queue("ofw-bulk", "ofw-hooks-3"), t0()).await;

    settle(&store, &mut events, "ofw-marker-1").await;
    let row = claim_exactly(&store, "of-work", "ofw-acked", acked, at(1)).await;
    let completed = Outcome::Completed { result: None };
    finish(&store, acked, row.fence, completed, at(2)).await;
    expect_available(&mut events, "ofw-hooks-1").await;

    settle(&store, &mut events, "ofw-marker-2").await;
    store
        .job_cancel(JobCancelParams {
            id: cancelled,
            now: at(3),
        })
        .await
        .expect("job_cancel");
    expect_available(&mut events, "ofw-hooks-2").await;

    settle(&store, &mut events, "ofw-marker-3").await;
    store
        .bulk_op_create(BulkOpCreateParams {
            action: BulkAction::Cancel,
            filter: BulkFilter {
                kinds: vec!["ofw-bulk".to_owned()],
                ..BulkFilter::default()
            },
            priority: None,
            run_at: None,
            created_by: Some("test".into()),
            now: at(4),
        })
        .await
        .expect("bulk_op_create");
    while store
        .bulk_op_step(BulkOpStepParams {
            limit: 100,
            now: at(4),
        })
        .await
        .expect("bulk_op_step")
        .is_some()
    {}
    assert_eq!(get(&store, bulk).await.state, JobState::Cancelled);
    expect_available(&mut events, "ofw-hooks-3").await;
}

/// How long a wake may take: generous, since a store that sends none fails only by this
/// running out, and PostgreSQL delivers through a listener connection.
const WAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits for `JobsAvailable` of `queue`, skipping other events.
async fn expect_available(events: &mut broadcast::Receiver<StoreEvent>, queue: &str) {
    let wanted = StoreEvent::JobsAvailable {
        queue: queue.to_owned(),
    };
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if event == wanted => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    if tokio::time::timeout(WAKE_TIMEOUT, wait).await.is_err() {
        panic!("still waiting for {wanted:?} after {WAKE_TIMEOUT:?}");
    }
}

/// Inserts a marker job into `queue` and waits for its event: every event of what came
/// before has then been consumed, so the next awaited one comes from what follows.
async fn settle<S: Store>(
    store: &Arc<S>,
    events: &mut broadcast::Receiver<StoreEvent>,
    queue: &str,
) {
    insert_one(store, job_in(queue, "marker"), t0()).await;
    expect_available(events, queue).await;
}
