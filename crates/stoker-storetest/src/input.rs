//! Bad input: one invalid job in a batch is refused as `Invalid` naming its field, and the
//! store is left exactly as it was (no job of the batch, no unique key taken, same counts).

use std::sync::Arc;

use serde_json::json;
use stoker_core::{JobInsert, JobInsertParams, Store};

use crate::fixture::{all_jobs, at, expect_invalid, insert, insert_many, job, stats, t0};

/// Inserts a valid batch around `bad` and checks it is refused for `field` with no trace.
async fn refused<S: Store>(store: &Arc<S>, bad: JobInsert, field: &str, max_args_bytes: usize) {
    insert(store, vec![job("existing"), job("existing")], t0()).await;
    let jobs_before = all_jobs(store).await;
    let stats_before = stats(store).await;

    let mut first = job("valid");
    first.unique_key = Some("first-key".into());
    let mut last = job("valid");
    last.unique_key = Some("last-key".into());
    let params = JobInsertParams {
        jobs: vec![first.clone(), bad, last.clone()],
        now: at(1),
        max_args_bytes,
    };
    expect_invalid(store.job_insert_many(params).await, field);

    assert_eq!(all_jobs(store).await, jobs_before, "no job was written");
    assert_eq!(stats(store).await, stats_before, "no count moved");
    let again = insert_many(store, vec![first, last], at(2)).await;
    assert!(
        again.iter().all(|inserted| !inserted.duplicate),
        "the refused batch took no unique key: {again:?}"
    );
}

/// An empty kind is refused.
pub async fn empty_kind<S: Store>(store: Arc<S>) {
    refused(&store, JobInsert::new("", json!({})), "kind", 1024).await;
}

/// A 256-character kind is refused (the limit is 255).
pub async fn kind_too_long<S: Store>(store: Arc<S>) {
    refused(
        &store,
        JobInsert::new("k".repeat(256), json!({})),
        "kind",
        1024,
    )
    .await;
}

/// A kind with whitespace is refused.
pub async fn kind_with_whitespace<S: Store>(store: Arc<S>) {
    refused(
        &store,
        JobInsert::new("send email", json!({})),
        "kind",
        1024,
    )
    .await;
}

/// A queue name with spaces is refused.
pub async fn queue_with_spaces<S: Store>(store: Arc<S>) {
    let mut bad = job("k");
    bad.queue = "my queue".into();
    refused(&store, bad, "queue", 1024).await;
}

/// `max_attempts` 0 is refused.
pub async fn max_attempts_zero<S: Store>(store: Arc<S>) {
    let mut bad = job("k");
    bad.max_attempts = 0;
    refused(&store, bad, "max_attempts", 1024).await;
}

/// Args over `max_args_bytes` are refused.
pub async fn args_over_limit<S: Store>(store: Arc<S>) {
    let bad = JobInsert::new("k", json!({"body": "x".repeat(100)}));
    refused(&store, bad, "args", 64).await;
}

/// An empty tenant is refused.
pub async fn empty_tenant<S: Store>(store: Arc<S>) {
    let mut bad = job("k");
    bad.tenant = Some(String::new());
    refused(&store, bad, "tenant", 1024).await;
}

/// A zero timeout is refused.
pub async fn timeout_zero<S: Store>(store: Arc<S>) {
    let mut bad = job("k");
    bad.timeout_ms = Some(0);
    refused(&store, bad, "timeout", 1024).await;
}

/// A backoff that is not finite, under a millisecond, shrinking, with a jitter outside 0..=1
/// or longer than ten years is refused, naming the field. (A cap below the base is allowed: it
/// caps every wait.)
pub async fn backoff_fields<S: Store>(store: Arc<S>) {
    let good = stoker_core::JobBackoff {
        base_seconds: 1.0,
        factor: 2.0,
        max_seconds: 60.0,
        jitter: 0.1,
    };
    let cases = [
        (
            "backoff.base_seconds",
            stoker_core::JobBackoff {
                base_seconds: 0.0,
                ..good
            },
        ),
        (
            "backoff.base_seconds",
            stoker_core::JobBackoff {
                base_seconds: f64::NAN,
                ..good
            },
        ),
        (
            "backoff.base_seconds",
            stoker_core::JobBackoff {
                base_seconds: 0.0005,
                ..good
            },
        ),
        (
            "backoff.factor",
            stoker_core::JobBackoff {
                factor: 0.5,
                ..good
            },
        ),
        (
            "backoff.factor",
            stoker_core::JobBackoff {
                factor: f64::INFINITY,
                ..good
            },
        ),
        (
            "backoff.max_seconds",
            stoker_core::JobBackoff {
                max_seconds: 0.0,
                ..good
            },
        ),
        (
            "backoff.max_seconds",
            stoker_core::JobBackoff {
                max_seconds: 1e15,
                ..good
            },
        ),
        (
            "backoff.jitter",
            stoker_core::JobBackoff {
                jitter: 1.5,
                ..good
            },
        ),
        (
            "backoff.jitter",
            stoker_core::JobBackoff {
                jitter: -0.1,
                ..good
            },
        ),
    ];
    insert(&store, vec![job("existing")], t0()).await;
    let jobs_before = all_jobs(&store).await;
    for (field, backoff) in cases {
        let mut bad = job("bad_backoff");
        bad.backoff = Some(backoff);
        let params = JobInsertParams::new(vec![job("valid"), bad], at(1));
        expect_invalid(store.job_insert_many(params).await, field);
        assert_eq!(all_jobs(&store).await, jobs_before, "no job was written");
    }
}
