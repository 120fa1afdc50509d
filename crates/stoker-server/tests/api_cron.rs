//! `/v1/cron` over a real socket, on every store (issue 15): create, read, change, pause,
//! resume, run now, history, delete, the next slots of any expression, and refused input
//! that names its field and writes nothing.

mod api_support;

use std::sync::Arc;

use serde_json::json;
use stoker::Store;

use api_support::{config, eventually, start};

store_tests!(
    schedules_round_trip_through_the_api,
    bad_schedules_name_the_field_and_write_nothing,
    a_configured_schedule_is_upserted_and_fires,
);

async fn schedules_round_trip_through_the_api(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/cron",
            json!({
                "name": "weekly-report",
                "expr": "0 9 * * MON",
                "tz": "Europe/London",
                "kind": "report",
                "args": {"format": "pdf"},
                "priority": "high",
                "catch_up": "all",
                "catch_up_window_seconds": 86400,
                "catch_up_max": 3,
                "overlap": "skip",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.headers["location"], "/v1/cron/weekly-report");
    assert_eq!(created.body["tz"], "Europe/London");
    assert_eq!(created.body["priority"], 10);
    assert_eq!(created.body["upcoming"].as_array().unwrap().len(), 5);

    let again = server
        .post(
            "/v1/cron",
            json!({"name": "weekly-report", "expr": "@daily", "kind": "report"}),
        )
        .await;
    again.assert_error(409, "conflict");

    let listed = server.get("/v1/cron").await;
    assert_eq!(listed.body["schedules"][0]["name"], "weekly-report");

    let patched = server
        .send(
            server
                .http
                .patch(format!("{}/v1/cron/weekly-report", server.url))
                .json(&json!({"expr": "30 8 * * MON"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["expr"], "30 8 * * MON");
    assert_eq!(
        patched.body["args"],
        json!({"format": "pdf"}),
        "other fields kept"
    );

    let paused = server.post("/v1/cron/weekly-report/pause", json!({})).await;
    assert_eq!(paused.body["enabled"], false, "{paused:?}");
    assert_eq!(paused.body["upcoming"], json!([]));
    let resumed = server
        .post("/v1/cron/weekly-report/resume", json!({}))
        .await;
    assert_eq!(resumed.body["enabled"], true);

    let run = server
        .post("/v1/cron/weekly-report/run-now", json!({}))
        .await;
    assert_eq!(run.status, 201, "{run:?}");
    let job = server.job(run.body["id"].as_i64().unwrap()).await;
    assert_eq!(job["metadata"]["cron"]["name"], "weekly-report");
    assert_eq!(job["metadata"]["cron"]["run_now"], true);

    let history = server.get("/v1/cron/weekly-report/history?limit=5").await;
    assert_eq!(history.status, 200, "{history:?}");
    assert_eq!(history.body["runs"][0]["outcome"], "available");
    assert_eq!(history.body["runs"][0]["run_now"], true);

    let next = server
        .get("/v1/cron-next?expr=30%201%20*%20*%20*&tz=America/New_York&count=3")
        .await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.body["slots"].as_array().unwrap().len(), 3);

    let deleted = server.delete("/v1/cron/weekly-report").await;
    assert_eq!(deleted.status, 200);
    server
        .get("/v1/cron/weekly-report")
        .await
        .assert_error(404, "not_found");
    server
        .post("/v1/cron/weekly-report/run-now", json!({}))
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn bad_schedules_name_the_field_and_write_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let base = json!({"name": "n", "expr": "*/5 * * * *", "kind": "k"});
    for (key, value, field) in [
        ("expr", json!("61 * * * *"), "expr"),
        ("expr", json!("* * *"), "expr"),
        ("tz", json!("Mars/Olympus"), "tz"),
        ("name", json!("has space"), "name"),
        ("catch_up", json!("sometimes"), "catch_up"),
        ("catch_up_max", json!(0), "catch_up_max"),
        (
            "catch_up_window_seconds",
            json!(604_801),
            "catch_up_window_seconds",
        ),
        ("args", json!([1]), "args"),
        ("unknown", json!(1), "unknown"),
    ] {
        let mut body = base.clone();
        body[key] = value;
        let answer = server.post("/v1/cron", body).await;
        assert_eq!(answer.status, 422, "{key}: {answer:?}");
        assert!(answer.field().contains(field), "{key}: {answer:?}");
    }
    let listed = server.get("/v1/cron").await;
    assert_eq!(listed.body["schedules"], json!([]), "nothing written");
    server
        .get("/v1/cron-next?expr=nope")
        .await
        .assert_error(422, "invalid_field");
    server
        .get("/v1/cron/nope")
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn a_configured_schedule_is_upserted_and_fires(store: Arc<dyn Store>) {
    let mut config = config();
    config
        .apply_toml(
            "[[cron]]\nname = \"every-second\"\nexpr = \"* * * * * *\"\nkind = \"noop\"\nqueue = \"cron-test\"\n",
            "test",
        )
        .unwrap();
    let server = start(store, config).await;
    let row = server.get("/v1/cron/every-second").await;
    assert_eq!(row.status, 200, "{row:?}");
    // No worker runs `noop`: the server's firer still enqueues it each second.
    eventually("a slot's job", || async {
        let history = server.get("/v1/cron/every-second/history").await;
        history.body["runs"]
            .as_array()
            .and_then(|runs| runs.first())
            .and_then(|run| run["job_id"].as_i64())
    })
    .await;
    server.stop().await;
}
