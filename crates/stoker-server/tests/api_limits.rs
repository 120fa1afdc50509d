//! Flow-control limits (issue 16) over a real socket, on every store: set, listed with their
//! usage, replaced, deleted; bad input names its field and writes nothing; the metrics and the
//! dashboard page show them.

mod api_support;

use std::sync::Arc;

use serde_json::json;
use stoker::Store;

use api_support::{config, start};

store_tests!(
    limits_are_set_listed_and_deleted,
    bad_limits_are_refused_and_nothing_is_written,
    metrics_and_dashboard_show_limits,
    quota_answers_429_and_writes_nothing,
    fair_queuing_is_set_and_shown,
);

async fn put(
    server: &api_support::TestServer,
    name: &str,
    body: serde_json::Value,
) -> api_support::Answer {
    let url = format!("{}/v1/limits/{name}", server.url);
    server.send(server.http.put(url).json(&body)).await
}

async fn limits_are_set_listed_and_deleted(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let answer = put(
        &server,
        "openai",
        json!({"kind": "generate", "key": "tenant", "rate": {"count": 100, "period_ms": 60000}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["name"], "openai");
    assert_eq!(answer.body["key"], "tenant");
    assert_eq!(answer.body["rate"]["burst"], 1, "the default burst");

    let answer = put(&server, "openai", json!({"concurrency": 5})).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let list = server.get("/v1/limits").await;
    assert_eq!(list.status, 200);
    let limits = list.body["limits"].as_array().expect("limits");
    assert_eq!(limits.len(), 1, "replaced by name: {list:?}");
    assert_eq!(limits[0]["concurrency"], 5);
    assert_eq!(limits[0]["key"], "global");
    assert!(limits[0]["rate"].is_null());

    let deleted = server.delete("/v1/limits/openai").await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    server
        .delete("/v1/limits/openai")
        .await
        .assert_error(404, "not_found");
    let list = server.get("/v1/limits").await;
    assert_eq!(list.body["limits"], json!([]));
}

async fn bad_limits_are_refused_and_nothing_is_written(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    for (body, field) in [
        (
            json!({"rate": {"count": 0, "period_ms": 1000}}),
            "rate.count",
        ),
        (
            json!({"rate": {"count": 1, "period_ms": 1000, "burst": 0}}),
            "rate.burst",
        ),
        (
            json!({"rate": {"count": 1, "period_ms": 1000, "burst": -1}}),
            "rate.burst",
        ),
        (json!({"concurrency": 1, "key": "job.shop"}), "key"),
        (json!({"kind": "k"}), ""),
    ] {
        let answer = put(&server, "bad", body.clone()).await;
        assert_eq!(answer.status, 422, "{body}: {answer:?}");
        if !field.is_empty() {
            assert!(answer.field().contains(field), "{body}: {answer:?}");
        }
    }
    let answer = put(&server, "bad name", json!({"concurrency": 1})).await;
    assert!(answer.status == 422 || answer.status == 404, "{answer:?}");
    let list = server.get("/v1/limits").await;
    assert_eq!(list.body["limits"], json!([]), "nothing written");
}

async fn metrics_and_dashboard_show_limits(store: Arc<dyn Store>) {
    let server = start(store.clone(), config()).await;
    let answer = put(
        &server,
        "two",
        json!({"concurrency": 2, "rate": {"count": 1, "period_ms": 1000}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // A provider said 429: the limiter is throttled for an hour.
    let now = chrono::Utc::now();
    store
        .limit_push_back(stoker::core::LimitPushBackParams {
            name: "two".into(),
            key: String::new(),
            until: now + chrono::Duration::hours(1),
            now,
        })
        .await
        .expect("push back");
    let url = format!("{}/metrics", server.url);
    let metrics = server
        .http
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("stoker_limit_throttled{limit=\"two\",key=\"\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("stoker_limit_running{"), "{metrics}");
    let url = format!("{}/limits", server.url);
    let page = server.http.get(url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("two") && html.contains("throttled"), "{html}");
}

async fn quota_answers_429_and_writes_nothing(store: Arc<dyn Store>) {
    let server = start(store.clone(), config()).await;
    let answer = put(
        &server,
        "per-tenant",
        json!({"key": "tenant", "quota": {"count": 2, "period_ms": 3_600_000, "burst": 2}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["quota"]["count"], 2);
    let job = |tenant: &str| json!({"kind": "k", "tenant": tenant});
    let bulk = server
        .post("/v1/jobs/bulk", json!({"jobs": [job("a"), job("a")]}))
        .await;
    assert_eq!(bulk.status, 201, "{bulk:?}");
    // The quota is spent: one more for `a` is refused, with when to come back.
    let over = server.post("/v1/jobs", job("a")).await;
    over.assert_error(429, "quota_exceeded");
    let retry_after: u64 = over.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    // A bulk with one job over the quota writes none of them.
    let mixed = server
        .post("/v1/jobs/bulk", json!({"jobs": [job("b"), job("a")]}))
        .await;
    mixed.assert_error(429, "quota_exceeded");
    // Other tenants, and jobs without a tenant, are not held back.
    assert_eq!(server.post("/v1/jobs", job("b")).await.status, 201);
    let untenanted = server.post("/v1/jobs", json!({"kind": "k"})).await;
    assert_eq!(untenanted.status, 201, "{untenanted:?}");
    let jobs = store
        .job_list(stoker::core::JobListParams {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    let tenants: Vec<Option<String>> = jobs.iter().map(|job| job.tenant.clone()).collect();
    assert_eq!(tenants.len(), 4, "{tenants:?}");
    assert_eq!(
        tenants.iter().filter(|t| t.as_deref() == Some("b")).count(),
        1
    );
    // A bad quota is refused by name.
    let bad = put(
        &server,
        "bad",
        json!({"key": "tenant", "quota": {"count": 0, "period_ms": 1000}}),
    )
    .await;
    assert_eq!(bad.status, 422, "{bad:?}");
    assert!(bad.field().contains("quota.count"), "{bad:?}");
}

async fn fair_queuing_is_set_and_shown(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let answer = put(
        &server,
        "share",
        json!({"queue": "reports", "fair": {"weights": {"big": 3}}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["fair"]["weights"]["big"], 3);
    let list = server.get("/v1/limits").await;
    assert_eq!(list.body["limits"][0]["fair"]["weights"]["big"], 3);
    // Fair queuing is per queue, and weights are 1 to 1000.
    let answer = put(&server, "nowhere", json!({"fair": {}})).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.field(), "queue");
    let answer = put(
        &server,
        "heavy",
        json!({"queue": "q", "fair": {"weights": {"x": 5000}}}),
    )
    .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert!(answer.field().starts_with("fair.weights"), "{answer:?}");
}
