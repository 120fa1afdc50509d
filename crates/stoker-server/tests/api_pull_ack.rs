//! `POST /v1/pull/ack` over a real socket, on every store: many fenced reports in one request,
//! each answered on its own, and reserve-with-ack.

mod api_support;

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, start, TestServer};

store_tests!(
    a_batch_applies_every_report_and_answers_each,
    a_stale_fence_fails_only_its_entry,
    reserve_with_ack_returns_new_jobs,
    a_refused_field_writes_nothing,
    the_openapi_document_bounds_the_batch,
);

/// Enqueues `count` jobs of `queue` and reserves them all; returns them.
async fn reserved(server: &TestServer, queue: &str, count: usize) -> Vec<Value> {
    for n in 0..count {
        server
            .enqueue(json!({"kind": "work", "queue": queue, "args": {"n": n}}))
            .await;
    }
    let jobs = server
        .reserve(json!({"worker": "w1", "queues": [queue], "limit": count}))
        .await;
    assert_eq!(jobs.len(), count);
    jobs
}

fn id_fence(job: &Value) -> (i64, i64) {
    (job["id"].as_i64().unwrap(), job["fence"].as_i64().unwrap())
}

async fn a_batch_applies_every_report_and_answers_each(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let jobs = reserved(&server, "q", 5).await;
    let ids: Vec<(i64, i64)> = jobs.iter().map(id_fence).collect();
    let answer = server
        .post(
            "/v1/pull/ack",
            json!({"acks": [
                {"op": "complete", "id": ids[0].0, "fence": ids[0].1, "result": {"ok": 1}},
                {"op": "fail", "id": ids[1].0, "fence": ids[1].1, "error": "boom", "retry_in_seconds": 60},
                {"op": "snooze", "id": ids[2].0, "fence": ids[2].1, "snooze_seconds": 30},
                {"op": "cancel", "id": ids[3].0, "fence": ids[3].1, "error": "stopped"},
                {"op": "heartbeat", "id": ids[4].0, "fence": ids[4].1, "lease_seconds": 120},
            ]}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (result, (id, _)) in results.iter().zip(&ids) {
        assert_eq!(result["id"], *id, "{result}");
        assert_eq!(result["ok"], true, "{result}");
    }
    assert_eq!(results[0]["state"], "completed");
    assert_eq!(results[1]["state"], "retryable");
    assert!(results[1]["run_at"].is_string());
    assert_eq!(results[2]["state"], "available");
    assert_eq!(results[3]["state"], "cancelled");
    assert_eq!(results[4]["cancel_requested"], false);
    assert!(results[4]["lease_expires_at"].is_string());
    assert_eq!(answer.body["jobs"], json!([]));

    assert_eq!(server.job(ids[0].0).await["result"], json!({"ok": 1}));
    let failed = server.job(ids[1].0).await;
    assert_eq!(failed["state"], "retryable");
    assert_eq!(failed["errors"][0]["message"], "boom");
    let snoozed = server.job(ids[2].0).await;
    assert_eq!(snoozed["state"], "available");
    assert_eq!(snoozed["attempt"], 0);
    let cancelled = server.job(ids[3].0).await;
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["errors"][0]["message"], "stopped");
    let extended = server.job(ids[4].0).await;
    assert_eq!(extended["state"], "running");
    assert!(
        extended["lease_expires_at"].as_str().unwrap()
            > jobs[4]["lease_expires_at"].as_str().unwrap()
    );
    server.stop().await;
}

async fn a_stale_fence_fails_only_its_entry(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let jobs = reserved(&server, "q", 3).await;
    let ids: Vec<(i64, i64)> = jobs.iter().map(id_fence).collect();
    let answer = server
        .post(
            "/v1/pull/ack",
            json!({"acks": [
                {"op": "complete", "id": ids[0].0, "fence": ids[0].1},
                {"op": "complete", "id": ids[1].0, "fence": ids[1].1 + 7},
                {"op": "fail", "id": ids[2].0, "fence": ids[2].1 + 7, "error": "x"},
                {"op": "heartbeat", "id": 987_654, "fence": 1},
            ]}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["state"], "completed");
    for stale in &results[1..3] {
        assert_eq!(stale["ok"], false, "{stale}");
        assert_eq!(stale["error"]["code"], "lease_lost", "{stale}");
        assert!(stale.get("state").is_none());
    }
    assert_eq!(results[3]["error"]["code"], "not_found");
    // The stale reports changed nothing.
    assert_eq!(server.job(ids[1].0).await["state"], "running");
    assert_eq!(server.job(ids[2].0).await["state"], "running");
    // Reporting the completed job again is stale too.
    let again = server
        .post(
            "/v1/pull/ack",
            json!({"acks": [{"op": "complete", "id": ids[0].0, "fence": ids[0].1}]}),
        )
        .await;
    assert_eq!(again.body["results"][0]["error"]["code"], "lease_lost");
    server.stop().await;
}

async fn reserve_with_ack_returns_new_jobs(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let jobs = reserved(&server, "q", 2).await;
    for n in 0..3 {
        server
            .enqueue(json!({"kind": "more", "queue": "q", "args": {"n": n}}))
            .await;
    }
    let acks: Vec<Value> = jobs
        .iter()
        .map(|job| json!({"op": "complete", "id": job["id"], "fence": job["fence"]}))
        .collect();
    let answer = server
        .post(
            "/v1/pull/ack",
            json!({"acks": acks, "reserve": {"worker": "w1", "queues": ["q"], "limit": 2}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["results"][0]["state"], "completed");
    assert_eq!(answer.body["results"][1]["state"], "completed");
    let new = answer.body["jobs"].as_array().unwrap();
    assert_eq!(new.len(), 2);
    for job in new {
        assert_eq!(job["kind"], "more");
        assert_eq!(job["state"], "running");
        assert_eq!(job["worker"], "pull:w1");
    }
    // A reserve alone, with no reports, is a plain reserve.
    let rest = server
        .post(
            "/v1/pull/ack",
            json!({"reserve": {"worker": "w1", "queues": ["q"], "limit": 5}}),
        )
        .await;
    assert_eq!(rest.body["results"], json!([]));
    assert_eq!(rest.body["jobs"].as_array().unwrap().len(), 1);
    server.stop().await;
}

async fn a_refused_field_writes_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let jobs = reserved(&server, "q", 2).await;
    let ids: Vec<(i64, i64)> = jobs.iter().map(id_fence).collect();
    let ok = json!({"op": "complete", "id": ids[0].0, "fence": ids[0].1});
    let cases = [
        (
            json!({"acks": [ok, {"op": "fail", "id": ids[1].0, "fence": ids[1].1, "error": ""}]}),
            "acks[1].error",
        ),
        (
            json!({"acks": [ok, {"op": "snooze", "id": ids[1].0, "fence": ids[1].1, "snooze_seconds": -1}]}),
            "acks[1].snooze_seconds",
        ),
        (
            json!({"acks": [ok], "reserve": {"worker": "w1", "queues": [], "limit": 1}}),
            "reserve.queues",
        ),
        (
            json!({"acks": [ok], "reserve": {"worker": "w1", "queues": ["q"], "limit": 1000}}),
            "reserve.limit",
        ),
    ];
    for (body, field) in cases {
        let answer = server.post("/v1/pull/ack", body.clone()).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{body}: {answer:?}");
    }
    let unknown_op = server
        .post(
            "/v1/pull/ack",
            json!({"acks": [{"op": "explode", "id": ids[0].0, "fence": ids[0].1}]}),
        )
        .await;
    assert_eq!(unknown_op.status, 422, "{unknown_op:?}");
    // A job named twice: the second entry alone is refused (the body is valid JSON of the
    // documented shape), and nothing else in the batch is written either way.
    let twice = json!({"op": "heartbeat", "id": ids[1].0, "fence": ids[1].1});
    let answer = server
        .post("/v1/pull/ack", json!({"acks": [twice, twice]}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["results"][0]["ok"], true);
    assert_eq!(answer.body["results"][1]["ok"], false);
    assert_eq!(answer.body["results"][1]["error"]["field"], "acks[1].id");
    // A fence below i64::MIN arrives as a float that rounds to exactly -2^63: refused.
    let below_min = server
        .post(
            "/v1/pull/ack",
            json!({"acks": [{"op": "complete", "id": ids[0].0, "fence": -9.223_372_036_854_776e18_f64}]}),
        )
        .await;
    assert_eq!(below_min.status, 422, "{below_min:?}");
    let too_many: Vec<Value> = (0..1001)
        .map(|n| json!({"op": "complete", "id": n + 1_000_000, "fence": 1}))
        .collect();
    let answer = server.post("/v1/pull/ack", json!({"acks": too_many})).await;
    assert!(answer.status == 422 || answer.status == 413, "{answer:?}");
    // Nothing was written: both jobs still run under their fences.
    for (id, _) in &ids {
        assert_eq!(server.job(*id).await["state"], "running");
    }
    server.stop().await;
}

async fn the_openapi_document_bounds_the_batch(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let doc = server.get("/v1/openapi.json").await.body;
    let op = &doc["paths"]["/v1/pull/ack"]["post"];
    assert!(op["responses"]["200"].is_object(), "{op}");
    let request = &doc["components"]["schemas"]["AckRequest"];
    assert_eq!(request["properties"]["acks"]["maxItems"], 1000, "{request}");
    assert_eq!(request["additionalProperties"], false, "{request}");
    let entry = doc["components"]["schemas"]["AckEntry"].to_string();
    for op in ["complete", "fail", "snooze", "cancel", "heartbeat"] {
        assert!(entry.contains(&format!("\"{op}\"")), "{op}: {entry}");
    }
    server.stop().await;
}
