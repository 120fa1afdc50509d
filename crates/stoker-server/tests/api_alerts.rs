//! `/v1/alerts` over a real socket, on every store (issue 13, item 8): rules round trip, bad
//! input names its field and writes nothing, and a rule fires once and resolves once against
//! a local receiver, delivered by the server's own webhook worker.

mod api_support;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, eventually, start};

store_tests!(
    rules_round_trip_through_the_api,
    bad_rules_name_the_field_and_write_nothing,
    a_rule_fires_once_and_resolves_once_at_a_local_receiver,
    a_configured_rule_is_upserted_at_start,
);

async fn rules_round_trip_through_the_api(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/alerts",
            json!({
                "name": "mail-failing",
                "metric": "failure_rate",
                "scope": {"queue": "mail", "kind": "send"},
                "threshold": 0.2,
                "resolve_threshold": 0.1,
                "window_seconds": 600,
                "for_seconds": 120,
                "url": "https://hooks.example.com/ops",
                "headers": {"Authorization": "Bearer secret"},
                "format": "slack",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.headers["location"], "/v1/alerts/mail-failing");
    assert_eq!(created.body["state"], "ok");
    assert_eq!(created.body["resolve_threshold"], 0.1);
    assert_eq!(created.body["header_names"], json!(["Authorization"]));
    assert!(
        !created.body.to_string().contains("secret"),
        "header values are not shown"
    );

    let again = server
        .post(
            "/v1/alerts",
            json!({"name": "mail-failing", "metric": "discarded", "url": "http://x.test/h"}),
        )
        .await;
    again.assert_error(409, "conflict");

    let patched = server
        .send(
            server
                .http
                .patch(format!("{}/v1/alerts/mail-failing", server.url))
                .json(&json!({"threshold": 0.5, "enabled": false})),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["threshold"], 0.5);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["format"], "slack");

    let listed = server.get("/v1/alerts").await;
    assert_eq!(listed.body["alerts"][0]["name"], "mail-failing");
    let events = server.get("/v1/alerts/mail-failing/events").await;
    assert_eq!(events.status, 200, "{events:?}");
    assert_eq!(events.body["events"], json!([]));
    assert_eq!(events.body["alert"]["name"], "mail-failing");

    let deleted = server.delete("/v1/alerts/mail-failing").await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    server
        .get("/v1/alerts/mail-failing")
        .await
        .assert_error(404, "not_found");
    server
        .delete("/v1/alerts/mail-failing")
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn bad_rules_name_the_field_and_write_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let base = json!({
        "name": "r",
        "metric": "failure_rate",
        "threshold": 0.5,
        "url": "http://127.0.0.1:9/hook",
    });
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    for (body, field) in [
        (with("metric", json!("cpu_temperature")), "metric"),
        (with("window_seconds", json!(-60)), "window_seconds"),
        (with("window_seconds", json!(30)), "window_seconds"),
        (with("threshold", json!(1.5)), "threshold"),
        (with("threshold", json!(-0.1)), "threshold"),
        (with("for_seconds", json!(-1)), "for_seconds"),
        (with("resolve_threshold", json!(0.9)), "resolve_threshold"),
        (with("url", json!("ftp://example.com")), "url"),
        (with("name", json!("no spaces")), "name"),
        (with("baseline", json!("day")), "baseline"),
        (
            json!({"name": "w", "metric": "no_worker", "url": "http://x.test/h"}),
            "scope.queue",
        ),
        (
            json!({"name": "d", "metric": "queue_depth", "url": "http://x.test/h"}),
            "threshold",
        ),
        (
            json!({"name": "d", "metric": "queue_depth", "threshold": 5,
                   "scope": {"kind": "send"}, "url": "http://x.test/h"}),
            "scope.kind",
        ),
    ] {
        let answer = server.post("/v1/alerts", body.clone()).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{body}: {answer:?}");
    }
    let listed = server.get("/v1/alerts").await;
    assert_eq!(listed.body["alerts"], json!([]), "nothing was written");
    server
        .get("/v1/alerts/nope/events")
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn a_rule_fires_once_and_resolves_once_at_a_local_receiver(store: Arc<dyn Store>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new().route(
        "/hook",
        post({
            let received = Arc::clone(&received);
            move |Json(body): Json<Value>| async move {
                received.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/alerts",
            json!({
                "name": "held-backlog",
                "metric": "queue_depth",
                "scope": {"queue": "held"},
                "threshold": 0,
                "url": target,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    // Nothing serves `held`: the job waits there.
    let id = server
        .enqueue(json!({"kind": "report", "queue": "held", "args": {}}))
        .await;
    let firing = eventually("the firing message", || async {
        received.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(firing["type"], "alert.firing", "{firing:#}");
    assert_eq!(firing["rule"], "held-backlog");
    assert_eq!(firing["value"], 1.0);
    let row = server.get("/v1/alerts/held-backlog").await;
    assert_eq!(row.body["state"], "firing", "{row:?}");

    let deleted = server.delete(&format!("/v1/jobs/{id}")).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let resolved = eventually("the resolved message", || async {
        received.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(resolved["type"], "alert.resolved", "{resolved:#}");
    assert_eq!(resolved["value"], 0.0);
    let history = server.get("/v1/alerts/held-backlog/events").await;
    let kinds: Vec<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["resolved", "firing"], "one event per change");
    assert_eq!(history.body["alert"]["state"], "ok");
    assert_eq!(received.lock().unwrap().len(), 2, "one message per change");
    server.stop().await;
}

async fn a_configured_rule_is_upserted_at_start(store: Arc<dyn Store>) {
    let toml = "[[alert]]\nname = \"mail-backlog\"\nmetric = \"queue_depth\"\nqueue = \"mail\"\n\
                threshold = 1000\nfor = \"2m\"\nurl = \"http://127.0.0.1:9/hook\"\n";
    let mut first = config();
    first.apply_toml(toml, "test").unwrap();
    let server = start(Arc::clone(&store), first).await;
    let row = server.get("/v1/alerts/mail-backlog").await;
    assert_eq!(row.status, 200, "{row:?}");
    assert_eq!(row.body["for_seconds"], 120);
    let version = row.body["version"].clone();
    server.stop().await;
    // A restart with the same file writes nothing: the rule keeps its version (and state).
    let mut again = config();
    again.apply_toml(toml, "test").unwrap();
    let server = start(store, again).await;
    let row = server.get("/v1/alerts/mail-backlog").await;
    assert_eq!(row.body["version"], version, "{row:?}");
    server.stop().await;
}
