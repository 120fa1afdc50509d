//! Flow control (issue 16): rate limits and concurrency limits enforced in the claim, with the
//! fake clock every claim's `now` is.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use stoker_core::{
    Fair, JobFinish, JobId, JobInsert, JobRow, LimitKey, LimitPushBackParams, LimitSetParams,
    LimitSpec, Outcome, Priority, Rate, Store, StoreErrorKind, QUEUE_DEFAULT,
};
use tokio::sync::Barrier;

use crate::fixture::{
    at, attempt_error, claim, expect_err_kind, expect_invalid, finish, insert, job, rescue, stage,
    t0,
};

fn ms(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

fn limit(name: &str) -> LimitSpec {
    LimitSpec {
        name: name.to_owned(),
        queue: None,
        kind: None,
        key: LimitKey::Global,
        rate: None,
        concurrency: None,
        fair: None,
        quota: None,
    }
}

async fn set<S: Store>(store: &Arc<S>, spec: LimitSpec) {
    store
        .limit_set(LimitSetParams { spec, now: t0() })
        .await
        .expect("limit_set");
}

fn tenant_job(kind: &str, tenant: &str) -> JobInsert {
    let mut job = job(kind);
    job.tenant = Some(tenant.to_owned());
    job
}

async fn running_count<S: Store>(store: &Arc<S>, name: &str, key: &str) -> i64 {
    store
        .limit_usage(t0())
        .await
        .expect("limit_usage")
        .into_iter()
        .find(|usage| usage.name == name && usage.key == key)
        .map_or(0, |usage| usage.running)
}

/// A rate limit is a smooth token bucket: 2 per second with a burst of 2 admits two at once,
/// then one every 500 ms, however often claims come; the store says when the next token is
/// due; the rate counts at claim (finishing gives no token back); and other kinds are not
/// limited.
pub async fn rate_limit_gcra<S: Store>(store: Arc<S>) {
    let mut spec = limit("api");
    spec.kind = Some("call".into());
    spec.rate = Some(Rate {
        count: 2,
        period_ms: 1000,
        burst: 2,
    });
    set(&store, spec).await;
    insert(&store, (0..10).map(|_| job("call")).collect(), at(-1)).await;
    insert(&store, vec![job("other")], at(-1)).await;

    let first = claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await;
    let kinds: Vec<&str> = first.iter().map(|job| job.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "call").count(),
        2,
        "the burst"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "other").count(),
        1,
        "unlimited kind"
    );
    assert_eq!(store.limit_wake_at(QUEUE_DEFAULT), Some(ms(500)));
    for job in &first {
        finish(
            &store,
            job.id,
            job.fence,
            Outcome::Completed { result: None },
            t0(),
        )
        .await;
    }
    assert!(claim(&store, QUEUE_DEFAULT, 10, "w", ms(1))
        .await
        .is_empty());
    assert!(claim(&store, QUEUE_DEFAULT, 10, "w", ms(499))
        .await
        .is_empty());
    assert_eq!(
        claim(&store, QUEUE_DEFAULT, 10, "w", ms(500)).await.len(),
        1
    );
    assert!(claim(&store, QUEUE_DEFAULT, 10, "w", ms(999))
        .await
        .is_empty());
    assert_eq!(
        claim(&store, QUEUE_DEFAULT, 10, "w", ms(1000)).await.len(),
        1
    );
    // A quiet spell refills the bucket up to the burst, no further.
    assert_eq!(
        claim(&store, QUEUE_DEFAULT, 10, "w", ms(60_000))
            .await
            .len(),
        2
    );
    let usage = store.limit_usage(ms(60_000)).await.expect("limit_usage");
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].throttled_until, Some(ms(60_500)));
}

/// Claims every 10 ms for 3 s against 100 per second with a burst of 5: no one-second window
/// holds more than 105 starts, and the total is the rate (within the burst).
pub async fn rate_limit_window_bound<S: Store>(store: Arc<S>) {
    let mut spec = limit("steady");
    spec.rate = Some(Rate {
        count: 100,
        period_ms: 1000,
        burst: 5,
    });
    set(&store, spec).await;
    insert(&store, (0..400).map(|_| job("steady")).collect(), at(-1)).await;
    let mut starts = Vec::new();
    for step in 0..300 {
        let now = ms(step * 10);
        for _ in claim(&store, QUEUE_DEFAULT, 50, "w", now).await {
            starts.push(now);
        }
    }
    for (i, start) in starts.iter().enumerate() {
        let window = starts[i..]
            .iter()
            .take_while(|s| **s < *start + Duration::seconds(1))
            .count();
        assert!(window <= 105, "{window} starts in the second from {start}");
    }
    assert!(
        (299..=306).contains(&starts.len()),
        "{} starts in 3 s",
        starts.len()
    );
}

/// A concurrency limit counts running jobs across claims, and every way out of `running`
/// gives the slot back: completion, retry, discard, snooze, cancel, hand-back and rescue.
pub async fn concurrency_released_on_every_exit<S: Store>(store: Arc<S>) {
    let mut spec = limit("two");
    spec.kind = Some("slot".into());
    spec.concurrency = Some(2);
    set(&store, spec).await;
    insert(&store, (0..20).map(|_| job("slot")).collect(), at(-1)).await;

    let outcomes = vec![
        Outcome::Completed { result: None },
        Outcome::Retry {
            error: attempt_error(1, t0(), "boom"),
            run_at: at(3600),
        },
        Outcome::Discard {
            error: attempt_error(1, t0(), "fatal"),
        },
        Outcome::Snooze { run_at: at(3600) },
        Outcome::Cancel { error: None },
        Outcome::HandBack,
    ];
    let mut held: Vec<JobRow> = claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await;
    assert_eq!(held.len(), 2);
    assert!(claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await.is_empty());
    assert_eq!(running_count(&store, "two", "").await, 2);
    for (step, outcome) in outcomes.into_iter().enumerate() {
        let job = held.remove(0);
        let hand_back = matches!(outcome, Outcome::HandBack);
        finish(&store, job.id, job.fence, outcome, t0()).await;
        assert_eq!(running_count(&store, "two", "").await, 1, "step {step}");
        let next = claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await;
        assert_eq!(next.len(), 1, "step {step}: the freed slot is taken");
        if hand_back {
            assert_eq!(next[0].id, job.id, "the handed-back job runs again first");
        }
        held.extend(next);
        assert!(claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await.is_empty());
    }
    // A dead worker's job, rescued.
    let job = held.remove(0);
    let rescued = rescue(
        &store,
        job.id,
        job.fence,
        Outcome::Retry {
            error: attempt_error(1, t0(), "worker lost"),
            run_at: at(3600),
        },
        at(600),
    )
    .await;
    assert_eq!(rescued, vec![job.id]);
    assert_eq!(running_count(&store, "two", "").await, 1);
    assert_eq!(
        store.limit_reconcile().await.expect("reconcile"),
        0,
        "no drift"
    );
}

/// A throttled or full key never blocks other keys: tenant `a`'s many higher-priority jobs
/// wait while tenant `b`'s are claimed, and jobs without the key are not limited at all.
pub async fn throttled_key_never_blocks_others<S: Store>(store: Arc<S>) {
    let mut spec = limit("per-tenant");
    spec.key = LimitKey::Tenant;
    spec.rate = Some(Rate {
        count: 1,
        period_ms: 3_600_000,
        burst: 1,
    });
    set(&store, spec).await;
    let mut jobs: Vec<JobInsert> = (0..40)
        .map(|_| {
            let mut job = tenant_job("t", "a");
            job.priority = stoker_core::Priority::HIGH;
            job
        })
        .collect();
    jobs.extend((0..3).map(|_| tenant_job("t", "b")));
    insert(&store, jobs, at(-1)).await;

    let first = claim(&store, QUEUE_DEFAULT, 4, "w", t0()).await;
    assert_eq!(first.len(), 1, "one token for a; b is not reached yet");
    assert_eq!(first[0].tenant.as_deref(), Some("a"));
    let second = claim(&store, QUEUE_DEFAULT, 4, "w", t0()).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(
        second[0].tenant.as_deref(),
        Some("b"),
        "a's backlog is skipped"
    );
    assert!(claim(&store, QUEUE_DEFAULT, 4, "w", ms(1)).await.is_empty());
    insert(&store, vec![job("t")], ms(2)).await;
    let free = claim(&store, QUEUE_DEFAULT, 4, "w", ms(3)).await;
    assert_eq!(free.len(), 1, "a job without a tenant is not limited");
    assert_eq!(free[0].tenant, None);
}

/// A key computed from the args (`args.shop`) limits each value separately: with at most one
/// running per shop, a claim takes one job of each shop plus every job without a shop.
pub async fn args_key_concurrency<S: Store>(store: Arc<S>) {
    let mut spec = limit("shop");
    spec.key = LimitKey::parse("args.shop").expect("a key");
    spec.concurrency = Some(1);
    set(&store, spec).await;
    let shop = |id: i64| JobInsert::new("sync", json!({"shop": id}));
    let mut jobs = vec![shop(1), shop(1), shop(2), shop(1), shop(2)];
    jobs.push(JobInsert::new("sync", json!({"other": 1})));
    insert(&store, jobs, at(-1)).await;
    let claimed = claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await;
    let shops: Vec<Option<i64>> = claimed.iter().map(|j| j.args["shop"].as_i64()).collect();
    assert_eq!(claimed.len(), 3, "{shops:?}");
    assert!(shops.contains(&Some(1)) && shops.contains(&Some(2)) && shops.contains(&None));
    assert_eq!(running_count(&store, "shop", "1").await, 1);
    assert!(claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await.is_empty());
    let one = claimed
        .iter()
        .find(|j| j.args["shop"] == 1)
        .expect("shop 1");
    finish(
        &store,
        one.id,
        one.fence,
        Outcome::Completed { result: None },
        t0(),
    )
    .await;
    let next = claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].args["shop"], 1);
}

/// A push-back (the provider said 429) holds the limiter until the given instant, then admits
/// one job.
pub async fn push_back_holds_the_key<S: Store>(store: Arc<S>) {
    let mut spec = limit("provider");
    spec.rate = Some(Rate {
        count: 100,
        period_ms: 1000,
        burst: 10,
    });
    set(&store, spec).await;
    insert(&store, (0..5).map(|_| job("call")).collect(), at(-1)).await;
    store
        .limit_push_back(LimitPushBackParams {
            name: "provider".into(),
            key: String::new(),
            until: at(5),
            now: t0(),
        })
        .await
        .expect("push back");
    assert!(claim(&store, QUEUE_DEFAULT, 5, "w", t0()).await.is_empty());
    assert_eq!(store.limit_wake_at(QUEUE_DEFAULT), Some(at(5)));
    assert!(claim(&store, QUEUE_DEFAULT, 5, "w", ms(4999))
        .await
        .is_empty());
    assert_eq!(claim(&store, QUEUE_DEFAULT, 5, "w", at(5)).await.len(), 1);
    let missing = store
        .limit_push_back(LimitPushBackParams {
            name: "nope".into(),
            key: String::new(),
            until: at(5),
            now: t0(),
        })
        .await;
    expect_err_kind(missing, StoreErrorKind::NotFound);
}

/// Limits are set, replaced, listed and deleted by name and apply to the next claim on this
/// handle; bad input names its field and writes nothing.
pub async fn manage_and_validate<S: Store>(store: Arc<S>) {
    let mut bad = limit("r");
    bad.rate = Some(Rate {
        count: 0,
        period_ms: 1000,
        burst: 1,
    });
    let set_bad = |spec: LimitSpec| {
        let store = store.clone();
        async move { store.limit_set(LimitSetParams { spec, now: t0() }).await }
    };
    expect_invalid(set_bad(bad.clone()).await, "rate.count");
    bad.rate = Some(Rate {
        count: 1,
        period_ms: 1000,
        burst: 0,
    });
    expect_invalid(set_bad(bad.clone()).await, "rate.burst");
    expect_invalid(set_bad(limit("r")).await, "rate");
    expect_invalid(set_bad(limit("bad name")).await, "name");
    let mut bad_queue = limit("q");
    bad_queue.concurrency = Some(1);
    bad_queue.queue = Some("no spaces".into());
    expect_invalid(set_bad(bad_queue).await, "queue");
    assert!(
        store.limit_list().await.expect("list").is_empty(),
        "nothing written"
    );

    let mut one = limit("one");
    one.queue = Some("mail".into());
    one.concurrency = Some(1);
    set(&store, one.clone()).await;
    insert(
        &store,
        (0..3)
            .map(|_| {
                let mut job = job("send");
                job.queue = "mail".into();
                job
            })
            .collect(),
        at(-1),
    )
    .await;
    insert(&store, (0..3).map(|_| job("send")).collect(), at(-1)).await;
    assert_eq!(claim(&store, "mail", 10, "w", t0()).await.len(), 1);
    assert_eq!(
        claim(&store, QUEUE_DEFAULT, 10, "w", t0()).await.len(),
        3,
        "other queue"
    );
    one.concurrency = Some(2);
    set(&store, one.clone()).await;
    let listed = store.limit_list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec, one);
    assert_eq!(
        claim(&store, "mail", 10, "w", t0()).await.len(),
        1,
        "one more slot"
    );
    let deleted = store.limit_delete("one").await.expect("delete");
    assert_eq!(deleted.spec, one);
    assert_eq!(
        claim(&store, "mail", 10, "w", t0()).await.len(),
        1,
        "unlimited now"
    );
    expect_err_kind(store.limit_delete("one").await, StoreErrorKind::NotFound);
    assert!(store.limit_list().await.expect("list").is_empty());
}

/// Eight claimers racing over one concurrency limit of 5 claim 5 jobs between them, never
/// more; completing them lets the next 5 run, and the counts never drift.
pub async fn concurrent_claimers_respect_the_limit<S: Store>(store: Arc<S>) {
    let mut spec = limit("five");
    spec.concurrency = Some(5);
    set(&store, spec).await;
    insert(&store, (0..100).map(|_| job("c")).collect(), at(-1)).await;
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                claim(&store, QUEUE_DEFAULT, 3, &format!("w{worker}"), t0()).await
            }));
        }
        let mut claimed: Vec<JobRow> = Vec::new();
        for task in tasks {
            claimed.extend(task.await.expect("claimer"));
        }
        let unique: HashSet<JobId> = claimed.iter().map(|j| j.id).collect();
        assert_eq!(unique.len(), claimed.len());
        assert_eq!(claimed.len(), 5, "round {round}");
        assert_eq!(running_count(&store, "five", "").await, 5);
        let finishes = claimed
            .iter()
            .map(|job| JobFinish {
                id: job.id,
                fence: job.fence,
                outcome: Outcome::Completed { result: None },
            })
            .collect();
        crate::fixture::finish_many(&store, finishes, t0()).await;
        assert_eq!(running_count(&store, "five", "").await, 0);
    }
    assert_eq!(store.limit_reconcile().await.expect("reconcile"), 0);
}

fn fair_limit(queue: &str, weights: &[(&str, u32)]) -> LimitSpec {
    let mut spec = limit(&format!("fair-{queue}"));
    spec.queue = Some(queue.to_owned());
    spec.fair = Some(Fair {
        weights: weights
            .iter()
            .map(|(tenant, weight)| ((*tenant).to_owned(), *weight))
            .collect(),
    });
    spec
}

fn tenant_job_in(queue: &str, tenant: &str, priority: i16) -> JobInsert {
    let mut job = tenant_job("f", tenant);
    job.queue = queue.to_owned();
    job.priority = Priority(priority);
    job
}

/// The issue's fairness test: tenant A has 100,000 jobs queued before tenant B's 10; under
/// fair queuing B's 10 all start before A's 1,000th does (in fact within a few claims), and a
/// queue without fair queuing still serves A's backlog first.
pub async fn fair_small_tenant_is_not_starved<S: Store>(store: Arc<S>) {
    set(&store, fair_limit("fair", &[])).await;
    for _ in 0..10 {
        let chunk = (0..10_000).map(|_| tenant_job_in("fair", "a", 0)).collect();
        insert(&store, chunk, at(-2)).await;
    }
    insert(
        &store,
        (0..10).map(|_| tenant_job_in("fair", "b", 0)).collect(),
        at(-1),
    )
    .await;
    let mut started_a = 0;
    let mut started_b = 0;
    while started_b < 10 {
        let batch = claim(&store, "fair", 10, "w", t0()).await;
        assert!(!batch.is_empty(), "jobs are waiting");
        for job in &batch {
            match job.tenant.as_deref() {
                Some("a") => started_a += 1,
                Some("b") => started_b += 1,
                other => panic!("unexpected tenant {other:?}"),
            }
        }
        assert!(started_a < 1000, "B waits behind A's backlog");
    }
    // Round robin: B's 10 took about as many of A's.
    assert!(started_a <= 20, "{started_a} of A's started first");

    // The same backlog in a queue without fair queuing: A's earlier jobs come first.
    insert(
        &store,
        (0..30).map(|_| tenant_job_in("plain", "a", 0)).collect(),
        at(-2),
    )
    .await;
    insert(
        &store,
        (0..5).map(|_| tenant_job_in("plain", "b", 0)).collect(),
        at(-1),
    )
    .await;
    let batch = claim(&store, "plain", 10, "w", t0()).await;
    assert!(batch.iter().all(|job| job.tenant.as_deref() == Some("a")));
}

/// Weights share the starts: with weights 3 and 1 and both tenants busy, 40 starts go 30 / 10;
/// a tenant new to the queue joins level with the others rather than catching up.
pub async fn fair_weights_share_the_starts<S: Store>(store: Arc<S>) {
    set(&store, fair_limit("w", &[("heavy", 3)])).await;
    insert(
        &store,
        (0..100).map(|_| tenant_job_in("w", "heavy", 0)).collect(),
        at(-2),
    )
    .await;
    insert(
        &store,
        (0..100).map(|_| tenant_job_in("w", "light", 0)).collect(),
        at(-2),
    )
    .await;
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..5 {
        for job in claim(&store, "w", 8, "w", t0()).await {
            *started
                .entry(job.tenant.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert_eq!(started["heavy"], 30);
    assert_eq!(started["light"], 10);
    // A newcomer starts at the queue's clock: it gets its share (1 in 5 per round with
    // weights 3, 1, 1), not every start until it has caught up with 40 starts of history.
    insert(
        &store,
        (0..100).map(|_| tenant_job_in("w", "new", 0)).collect(),
        at(-1),
    )
    .await;
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..4 {
        for job in claim(&store, "w", 5, "w", t0()).await {
            *next
                .entry(job.tenant.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert!(
        (3..=5).contains(&next["new"]),
        "the newcomer's share of 20: {next:?}"
    );
    assert!(next["heavy"] >= 11, "{next:?}");
}

/// Within a tenant, priorities still hold; jobs without a tenant share one turn; fair queuing
/// counts nothing per limiter, and it can be switched off again.
pub async fn fair_keeps_priorities_within_a_tenant<S: Store>(store: Arc<S>) {
    set(&store, fair_limit("p", &[])).await;
    let low = insert(
        &store,
        (0..3).map(|_| tenant_job_in("p", "a", 0)).collect(),
        at(-3),
    )
    .await;
    let high = insert(
        &store,
        (0..2).map(|_| tenant_job_in("p", "a", 10)).collect(),
        at(-2),
    )
    .await;
    let mut untenanted = job("f");
    untenanted.queue = "p".to_owned();
    insert(&store, vec![untenanted.clone(), untenanted], at(-1)).await;
    let mut order = Vec::new();
    for _ in 0..9 {
        order.extend(claim(&store, "p", 1, "w", t0()).await);
    }
    assert_eq!(order.len(), 7);
    let a: Vec<JobId> = order
        .iter()
        .filter(|job| job.tenant.is_some())
        .map(|job| job.id)
        .collect();
    let expected: Vec<JobId> = high.iter().chain(low.iter()).copied().collect();
    assert_eq!(a, expected, "A's jobs in priority order");
    let tenants: Vec<bool> = order
        .iter()
        .take(4)
        .map(|job| job.tenant.is_some())
        .collect();
    assert_eq!(
        tenants.iter().filter(|t| **t).count(),
        2,
        "the two shares alternate while both have jobs: {tenants:?}"
    );
    assert!(store.limit_usage(t0()).await.expect("usage").is_empty());

    // Bad settings are refused and change nothing.
    let mut bad = fair_limit("p", &[("a", 0)]);
    expect_invalid(
        store
            .limit_set(LimitSetParams {
                spec: bad.clone(),
                now: t0(),
            })
            .await,
        "fair.weights.a",
    );
    bad = fair_limit("p", &[]);
    bad.queue = None;
    expect_invalid(
        store
            .limit_set(LimitSetParams {
                spec: bad,
                now: t0(),
            })
            .await,
        "queue",
    );
    let listed = store.limit_list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec, fair_limit("p", &[]));
    store.limit_delete("fair-p").await.expect("delete");
}

/// An enqueue quota per tenant takes its tokens in the insert's transaction: within the burst
/// inserts pass, then an insert (one job or a bulk with one job over) is refused whole with
/// how long until it fits, nothing written; other tenants and jobs without a tenant are not
/// held back; the bucket refills with time; a batch larger than the burst is invalid.
pub async fn quota_refuses_whole_inserts<S: Store>(store: Arc<S>) {
    let mut spec = limit("uploads");
    spec.key = LimitKey::Tenant;
    spec.quota = Some(Rate {
        count: 2,
        period_ms: 1000,
        burst: 3,
    });
    set(&store, spec).await;
    insert(&store, (0..3).map(|_| tenant_job("u", "a")).collect(), t0()).await;
    let before = crate::fixture::all_jobs(&store).await.len();
    let refused = store
        .job_insert_many(stoker_core::JobInsertParams::new(
            vec![tenant_job("u", "b"), tenant_job("u", "a")],
            t0(),
        ))
        .await;
    match refused {
        Err(stoker_core::StoreError::QuotaExceeded {
            limit,
            key,
            retry_after,
        }) => {
            assert_eq!((limit.as_str(), key.as_str()), ("uploads", "a"));
            assert_eq!(retry_after, std::time::Duration::from_millis(500));
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(
        crate::fixture::all_jobs(&store).await.len(),
        before,
        "nothing written"
    );
    insert(&store, vec![tenant_job("u", "b"), job("u")], t0()).await;
    insert(&store, vec![tenant_job("u", "a")], ms(500)).await;
    expect_err_kind(
        store
            .job_insert_many(stoker_core::JobInsertParams::new(
                vec![tenant_job("u", "a")],
                ms(600),
            ))
            .await,
        StoreErrorKind::Limited,
    );
    expect_invalid(
        store
            .job_insert_many(stoker_core::JobInsertParams::new(
                (0..4).map(|_| tenant_job("u", "c")).collect(),
                ms(600),
            ))
            .await,
        "jobs",
    );
}

/// A workflow's jobs and a batch's jobs and callback draw on the enqueue quotas as any insert
/// does: one over the tenant's quota refuses the whole workflow or batch, nothing written; the
/// ones that fit take their tokens.
pub async fn quota_covers_workflows_and_batches<S: Store>(store: Arc<S>) {
    let mut spec = limit("submissions");
    spec.key = LimitKey::Tenant;
    spec.quota = Some(Rate {
        count: 1,
        period_ms: 60_000,
        burst: 3,
    });
    set(&store, spec).await;
    let node = |name: &str| stoker_core::WorkflowNode {
        name: name.to_owned(),
        job: tenant_job("w", "a"),
        depends_on: Vec::new(),
    };
    let workflow = |names: &[&str]| {
        let mut params = stoker_core::WorkflowInsertParams::new(
            "wf",
            names.iter().map(|name| node(name)).collect(),
            t0(),
        );
        params.tenant = Some("a".to_owned());
        params
    };
    let batch = |jobs: usize| {
        let mut params = stoker_core::BatchInsertParams::new(
            "campaign",
            (0..jobs).map(|_| tenant_job("b", "a")).collect(),
            t0(),
        );
        params.tenant = Some("a".to_owned());
        params.callback = Some(tenant_job("done", "a"));
        params
    };

    // Two of the three tokens: a workflow of two fits.
    store
        .workflow_insert(workflow(&["x", "y"]))
        .await
        .expect("a workflow within the quota");
    let before = crate::fixture::all_jobs(&store).await.len();
    // One token left: a workflow of two and a batch of one plus its callback are refused whole.
    for refused in [
        store
            .workflow_insert(workflow(&["p", "q"]))
            .await
            .map(|_| ()),
        store.batch_insert(batch(1)).await.map(|_| ()),
    ] {
        match refused {
            Err(stoker_core::StoreError::QuotaExceeded { limit, key, .. }) => {
                assert_eq!((limit.as_str(), key.as_str()), ("submissions", "a"));
            }
            other => panic!("expected QuotaExceeded, got {other:?}"),
        }
    }
    assert_eq!(
        crate::fixture::all_jobs(&store).await.len(),
        before,
        "nothing written"
    );
    assert!(
        store
            .batch_list(stoker_core::BatchListParams {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("batch_list")
            .is_empty(),
        "no batch row written"
    );
    // The last token: a one-job workflow passes, and then nothing more does.
    store
        .workflow_insert(workflow(&["z"]))
        .await
        .expect("the last token");
    expect_err_kind(
        store.workflow_insert(workflow(&["w"])).await,
        StoreErrorKind::Limited,
    );
}

// --- stream flow ---

/// What a limiter's usage shows (item 2): a rate limiter out of tokens says when the next one
/// is due and how many due jobs wait on it; a concurrency limiter at its cap shows its cap and
/// its waiting jobs; a quota how much of its window is used; a limiter that still admits jobs
/// holds none back; and the counts follow the jobs.
pub async fn usage_shows_what_waits<S: Store>(store: Arc<S>) {
    let mut rate = limit("r");
    rate.kind = Some("r".into());
    rate.rate = Some(Rate {
        count: 1,
        period_ms: 1000,
        burst: 2,
    });
    set(&store, rate).await;
    let mut cap = limit("c");
    cap.kind = Some("c".into());
    cap.concurrency = Some(1);
    set(&store, cap).await;
    let mut quota = limit("q");
    quota.kind = Some("q".into());
    quota.key = LimitKey::Tenant;
    quota.quota = Some(Rate {
        count: 10,
        period_ms: 60_000,
        burst: 10,
    });
    set(&store, quota).await;
    insert(&store, (0..5).map(|_| job("r")).collect(), at(-1)).await;
    insert(&store, (0..4).map(|_| job("c")).collect(), at(-1)).await;
    insert(
        &store,
        (0..3).map(|_| tenant_job("q", "acme")).collect(),
        at(-1),
    )
    .await;

    let claimed = claim(&store, QUEUE_DEFAULT, 20, "w", t0()).await;
    let count = |kind: &str| claimed.iter().filter(|job| job.kind == kind).count();
    assert_eq!(
        (count("r"), count("c"), count("q")),
        (2, 1, 3),
        "{claimed:?}"
    );

    let usage = store.limit_usage(t0()).await.expect("limit_usage");
    let of = |name: &str| {
        usage
            .iter()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no usage of {name}: {usage:?}"))
            .clone()
    };
    let r = of("r");
    assert_eq!(r.tokens_left, Some(0), "{r:?}");
    assert_eq!(r.next_token_at, Some(ms(1000)), "{r:?}");
    assert_eq!((r.held_back, r.held_back_more), (3, false), "{r:?}");
    let c = of("c");
    assert_eq!((c.running, c.cap), (1, Some(1)), "{c:?}");
    assert_eq!(c.tokens_left, None);
    assert_eq!((c.held_back, c.held_back_more), (3, false), "{c:?}");
    let q = of("q");
    assert_eq!(q.key, "acme");
    assert_eq!(q.quota_used, Some(3), "{q:?}");
    assert_eq!(q.held_back, 0, "a quota holds back no claim");

    // A token later, the rate limiter admits one: one fewer waits, and it admits no other.
    assert_eq!(
        claim(&store, QUEUE_DEFAULT, 20, "w", ms(1000))
            .await
            .iter()
            .filter(|job| job.kind == "r")
            .count(),
        1
    );
    let usage = store.limit_usage(ms(1000)).await.expect("limit_usage");
    let r = usage.iter().find(|row| row.name == "r").expect("r");
    assert_eq!((r.tokens_left, r.held_back), (Some(0), 2), "{r:?}");
    // After a quiet spell the bucket is full again and holds nothing back.
    let usage = store.limit_usage(ms(60_000)).await.expect("limit_usage");
    assert!(
        usage.iter().all(|row| row.name != "r"),
        "an idle rate limiter is not in use: {usage:?}"
    );
}

/// Fair queuing with many tenants (item 1): 100 tenants with five jobs each get exactly one
/// start each in the first 100, in claims of 10; a tenant whose job becomes due later (staged,
/// not inserted) is found by the claims that follow and, level with the clock, served first.
pub async fn fair_many_tenants_take_turns<S: Store>(store: Arc<S>) {
    set(&store, fair_limit("many", &[])).await;
    let jobs: Vec<JobInsert> = (0..100)
        .flat_map(|t| (0..5).map(move |_| tenant_job_in("many", &format!("t{t:03}"), 0)))
        .collect();
    insert(&store, jobs, at(-2)).await;
    let mut late = tenant_job_in("many", "late", 0);
    late.run_at = Some(at(30));
    insert(&store, vec![late], at(-2)).await;

    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..10 {
        let batch = claim(&store, "many", 10, "w", t0()).await;
        assert_eq!(batch.len(), 10);
        for job in batch {
            *first.entry(job.tenant.expect("a tenant")).or_default() += 1;
        }
    }
    assert_eq!(first.len(), 100, "one start per tenant: {first:?}");
    assert!(first.values().all(|n| *n == 1), "{first:?}");

    // The late tenant's job becomes due by staging, not by an insert.
    assert_eq!(stage(&store, at(30)).await, 1);
    let mut found = None;
    for step in 0..5 {
        let batch = claim(&store, "many", 10, "w", at(30)).await;
        if batch
            .iter()
            .any(|job| job.tenant.as_deref() == Some("late"))
        {
            found = Some(step);
            break;
        }
    }
    assert!(
        found.is_some(),
        "the staged tenant was not served within 5 claims"
    );
}
