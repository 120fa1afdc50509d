//! Failure groups, bulk operations and job logs over HTTP (issue 13), on every store: a pull
//! worker logs and fails, the group appears, retrying it is a bulk operation the server's
//! leader runs; bad input gets a clear 4xx and changes nothing.

mod api_support;

use std::sync::Arc;

use serde_json::json;
use stoker::Store;

use api_support::{config, eventually, start};

store_tests!(
    pull_logs_failure_groups_and_group_retry,
    bulk_operations_by_filter_and_their_errors,
    // --- stream ops ---
    failure_groups_count_a_range,
);

async fn pull_logs_failure_groups_and_group_retry(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            server
                .enqueue(json!({"kind": "import", "queue": "pull", "args": {"n": n}}))
                .await,
        );
    }
    let jobs = server
        .reserve(json!({"worker": "py", "queues": ["pull"], "limit": 3}))
        .await;
    assert_eq!(jobs.len(), 3);
    for job in &jobs {
        let id = job["id"].as_i64().unwrap();
        let fence = job["fence"].as_i64().unwrap();
        let logged = server
            .post(
                &format!("/v1/pull/jobs/{id}/logs"),
                json!({"fence": fence, "lines": ["reading file", format!("row {id} bad")]}),
            )
            .await;
        assert_eq!(logged.status, 200, "{logged:?}");
        assert_eq!(logged.body, json!({"accepted": 2, "dropped": 0}));
        // A stale fence is refused like any other report.
        server
            .post(
                &format!("/v1/pull/jobs/{id}/logs"),
                json!({"fence": fence + 1, "lines": ["late"]}),
            )
            .await
            .assert_error(409, "lease_lost");
        let failed = server
            .post(
                &format!("/v1/pull/jobs/{id}/fail"),
                json!({"fence": fence, "error": format!("row {id} has bad date 2024-13-{id}"), "discard": true}),
            )
            .await;
        assert_eq!(failed.status, 200, "{failed:?}");
    }
    server
        .post(
            &format!("/v1/pull/jobs/{}/logs", ids[0]),
            json!({"fence": 1, "lines": []}),
        )
        .await
        .assert_error(422, "invalid_field");

    let job = server.job(ids[0]).await;
    assert_eq!(job["logs"][1]["line"], format!("row {} bad", ids[0]));
    assert_eq!(job["logs"][0]["attempt"], 1);
    let logs = server.get(&format!("/v1/jobs/{}/logs", ids[0])).await;
    assert_eq!(logs.body["lines"].as_array().unwrap().len(), 2);

    let groups = server.get("/v1/failures?limit=10").await;
    assert_eq!(groups.status, 200, "{groups:?}");
    let groups = groups.body["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["kind"], "import");
    assert_eq!(groups[0]["message"], "row <n> has bad date <n>-<n>-<n>");
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let one = server.get(&format!("/v1/failures/{fingerprint}")).await;
    assert_eq!(one.body["count"], 3);
    server
        .get("/v1/failures/0000000000000000")
        .await
        .assert_error(404, "not_found");
    server
        .get("/v1/failures/NOT-HEX")
        .await
        .assert_error(422, "invalid_field");

    let started = server
        .post(&format!("/v1/failures/{fingerprint}/retry"), json!({}))
        .await;
    assert_eq!(started.status, 202, "{started:?}");
    let op = started.body["id"].as_i64().unwrap();
    let done = eventually("the group's retry to finish", || async {
        let op = server.get(&format!("/v1/ops/{op}")).await;
        (op.body["state"] == "done").then_some(op.body)
    })
    .await;
    assert_eq!(done["matched"], 3);
    assert_eq!(done["done"], 3);
    for id in &ids {
        assert_eq!(server.job(*id).await["state"], "available");
    }
    // Aborting an operation that ended is a conflict.
    server
        .post(&format!("/v1/ops/{op}/abort"), json!({}))
        .await
        .assert_error(409, "conflict");
    server.stop().await;
}

async fn bulk_operations_by_filter_and_their_errors(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    for _ in 0..3 {
        server
            .enqueue(json!({"kind": "later", "queue": "parked", "run_at": "2100-01-01T00:00:00Z"}))
            .await;
    }
    // A filter matching nothing: a clear refusal, nothing recorded.
    server
        .post(
            "/v1/ops",
            json!({"action": "cancel", "filter": {"kinds": ["nothing-like-it"]}}),
        )
        .await
        .assert_error(404, "not_found");
    server
        .post(
            "/v1/ops",
            json!({"action": "cancel", "filter": {
                "created_after": "2030-01-01T00:00:00Z", "created_before": "2030-01-01T00:00:00Z"}}),
        )
        .await
        .assert_error(404, "not_found");
    let refused = server
        .post(
            "/v1/ops",
            json!({"action": "cancel", "filter": {"failure_group": "XYZ"}}),
        )
        .await;
    refused.assert_error(422, "invalid_field");
    assert_eq!(refused.field(), "filter.failure_group");
    server
        .post(
            "/v1/ops",
            json!({"action": "retry", "priority": 3, "filter": {"queues": ["parked"]}}),
        )
        .await
        .assert_error(422, "invalid_field");
    server
        .get("/v1/ops?cursor=0")
        .await
        .assert_error(422, "invalid_field");
    server
        .post(
            "/v1/ops",
            json!({"action": "set_priority", "filter": {"queues": ["parked"]}}),
        )
        .await
        .assert_error(422, "invalid_field");
    server
        .post(
            "/v1/ops",
            json!({"action": "explode", "filter": {"queues": ["parked"]}}),
        )
        .await
        .assert_error(422, "invalid_field");
    let listed = server.get("/v1/ops").await;
    assert_eq!(listed.body["ops"], json!([]));

    let started = server
        .post(
            "/v1/ops",
            // Run at 2100: `scheduled` (available, not yet due), not due `available` (issue 14).
            json!({"action": "set_priority", "priority": 20, "filter": {"queues": ["parked"], "states": ["scheduled"]}}),
        )
        .await;
    assert_eq!(started.status, 202, "{started:?}");
    assert_eq!(started.body["state"], "running");
    let op = started.body["id"].as_i64().unwrap();
    eventually("the operation to finish", || async {
        let op = server.get(&format!("/v1/ops/{op}")).await;
        (op.body["state"] == "done" && op.body["done"] == 3).then_some(())
    })
    .await;
    let jobs = server.get("/v1/jobs?queue=parked").await;
    for job in jobs.body["jobs"].as_array().unwrap() {
        assert_eq!(job["priority"], 20);
    }
    server
        .get("/v1/ops/999999")
        .await
        .assert_error(404, "not_found");
    server
        .post("/v1/ops/999999/abort", json!({}))
        .await
        .assert_error(404, "not_found");
    let running = server.get("/v1/ops?state=running").await;
    assert_eq!(running.body["ops"], json!([]));
    server.stop().await;
}

// --- stream ops ---
/// Failure groups by time range: with `since`, each listed group has its failed attempts in
/// the range, and one group has them per hour; a range that is empty, far in the past or in
/// the future answers, never fails; a tenant-bound token is refused.
async fn failure_groups_count_a_range(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    for n in 0..2 {
        server
            .enqueue(json!({"kind": "import", "queue": "pull", "args": {"n": n}}))
            .await;
    }
    let jobs = server
        .reserve(json!({"worker": "py", "queues": ["pull"], "limit": 2}))
        .await;
    for job in &jobs {
        let id = job["id"].as_i64().unwrap();
        let fence = job["fence"].as_i64().unwrap();
        let failed = server
            .post(
                &format!("/v1/pull/jobs/{id}/fail"),
                json!({"fence": fence, "error": format!("timeout after {id} s"), "discard": true}),
            )
            .await;
        assert_eq!(failed.status, 200, "{failed:?}");
    }
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let list = server.get(&format!("/v1/failures?since={hour_ago}")).await;
    assert_eq!(list.status, 200, "{list:?}");
    let groups = list.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["count_in_range"], 2);
    assert!(groups[0].get("hours").is_none(), "{groups:?}");
    // Without a range, no range count.
    let plain = server.get("/v1/failures").await;
    assert!(plain.body["groups"][0].get("count_in_range").is_none());

    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    let one = server
        .get(&format!("/v1/failures/{fingerprint}?since={hour_ago}"))
        .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body["count_in_range"], 2);
    let hours = one.body["hours"].as_array().unwrap();
    let total: i64 = hours.iter().map(|h| h["count"].as_i64().unwrap()).sum();
    assert_eq!(total, 2, "{hours:?}");

    // Ranges that hold nothing answer with nothing.
    for (since, until) in [
        ("2999-01-01T00:00:00Z", None),
        ("2020-01-01T00:00:00Z", Some("2020-01-02T00:00:00Z")),
        ("2020-01-02T00:00:00Z", Some("2020-01-01T00:00:00Z")),
        ("0001-01-01T00:00:00Z", Some("1970-01-01T00:00:00Z")),
    ] {
        let mut path = format!("/v1/failures/{fingerprint}?since={since}");
        if let Some(until) = until {
            path.push_str(&format!("&until={until}"));
        }
        let answer = server.get(&path).await;
        assert_eq!(answer.status, 200, "{since} {until:?}: {answer:?}");
        assert_eq!(answer.body["count_in_range"], 0, "{answer:?}");
        assert_eq!(answer.body["hours"], json!([]));
    }
    // A range reaching back before the hours kept counts what is kept.
    let long = server
        .get(&format!(
            "/v1/failures/{fingerprint}?since=0001-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(long.body["count_in_range"], 2, "{long:?}");
    server
        .get(&format!("/v1/failures/{fingerprint}?sinse=x"))
        .await
        .assert_error(422, "invalid_field");
    server.stop().await;
}
