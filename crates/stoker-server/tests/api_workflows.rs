//! Workflows over HTTP (issue 18), on every store: enqueue a graph, run it through the pull
//! protocol reading dependency results, add to it, cancel it, and refuse bad graphs with
//! nothing written.

mod api_support;

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, start, TestServer};

store_tests!(
    a_diamond_runs_through_the_pull_protocol,
    bad_graphs_are_refused_naming_the_job,
    adding_and_cancelling,
    the_openapi_document_lists_workflow_routes,
);

fn job(kind: &str) -> Value {
    json!({"kind": kind, "queue": "wf"})
}

/// Reserves exactly one job of queue `wf` and completes it with `result`; returns its id.
async fn run_one(server: &TestServer, result: Value) -> i64 {
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["wf"], "limit": 1}))
        .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (id, fence) = (jobs[0]["id"].as_i64().unwrap(), jobs[0]["fence"].clone());
    let done = server
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": fence, "result": result}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    id
}

async fn a_diamond_runs_through_the_pull_protocol(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/workflows",
            json!({
                "name": "report",
                "jobs": [
                    {"name": "a", "job": job("fetch")},
                    {"name": "b", "job": job("fetch"), "depends_on": [{"node": "a"}]},
                    {"name": "c", "job": job("fetch"), "depends_on": [{"node": "a", "policy": "run"}]},
                    {"name": "d", "job": job("merge"),
                     "depends_on": [{"node": "b"}, {"node": "c", "policy": "hold"}]},
                ],
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_i64().unwrap();
    let ids: Vec<i64> = created.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect();

    let shown = server.get(&format!("/v1/workflows/{id}")).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["state"], "running");
    assert_eq!(shown.body["counts"]["blocked"], 3);
    assert_eq!(shown.body["jobs"][3]["depends_on"][1]["policy"], "hold");
    assert_eq!(server.job(ids[1]).await["state"], "blocked");

    assert_eq!(run_one(&server, json!("A")).await, ids[0]);
    run_one(&server, json!("B")).await;
    run_one(&server, json!("C")).await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["wf"], "limit": 5}))
        .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], ids[3]);
    let deps = server
        .get(&format!("/v1/pull/jobs/{}/dependencies", ids[3]))
        .await;
    assert_eq!(deps.status, 200, "{deps:?}");
    let results: Vec<&Value> = deps.body["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dep| &dep["result"])
        .collect();
    assert_eq!(results, vec![&json!("B"), &json!("C")]);
    let done = server
        .post(
            &format!("/v1/pull/jobs/{}/complete", ids[3]),
            json!({"fence": jobs[0]["fence"], "result": {"rows": 3}}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let shown = server.get(&format!("/v1/workflows/{id}")).await;
    assert_eq!(shown.body["state"], "completed");
    assert_eq!(shown.body["result"], json!({"d": {"rows": 3}}));
    server
        .get("/v1/workflows/999999")
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn bad_graphs_are_refused_naming_the_job(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let cases = [
        (
            json!([
                {"name": "a", "job": job("k"), "depends_on": [{"node": "b"}]},
                {"name": "b", "job": job("k"), "depends_on": [{"node": "a"}]},
            ]),
            "jobs[0].depends_on",
        ),
        (
            json!([{"name": "a", "job": job("k"), "depends_on": [{"node": "zz"}]}]),
            "jobs[0].depends_on[0]",
        ),
        (
            json!([{"name": "a", "job": job("k"), "depends_on": [{"job": 987654}]}]),
            "jobs[0].depends_on[0]",
        ),
        (
            json!([{"name": "a", "job": job("k")}, {"name": "a", "job": job("k")}]),
            "jobs[1].name",
        ),
        (
            json!([{"name": "a", "job": {"kind": "k", "queue": "bad queue"}}]),
            "jobs[0].job.queue",
        ),
        (
            json!([{"name": "a", "job": job("k"), "depends_on": [{"node": "a", "job": 1}]}]),
            "jobs[0].depends_on[0]",
        ),
    ];
    for (jobs, field) in cases {
        let answer = server
            .post("/v1/workflows", json!({"name": "bad", "jobs": jobs}))
            .await;
        assert_eq!(answer.status, 422, "{answer:?}");
        assert!(
            answer.field().starts_with(field),
            "expected {field}, got {answer:?}"
        );
    }
    let listed = server.get("/v1/jobs").await;
    assert_eq!(listed.body["jobs"], json!([]), "nothing was written");
    server.stop().await;
}

async fn adding_and_cancelling(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/workflows",
            json!({"name": "campaign", "jobs": [{"name": "plan", "job": job("plan")}]}),
        )
        .await;
    let id = created.body["id"].as_i64().unwrap();
    let added = server
        .post(
            &format!("/v1/workflows/{id}/jobs"),
            json!({"jobs": [
                {"name": "send1", "job": job("send"), "depends_on": [{"node": "plan"}]},
                {"name": "send2", "job": job("send"), "depends_on": [{"node": "plan"}]},
            ]}),
        )
        .await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.body["id"], id);
    let cancelled = server
        .post(&format!("/v1/workflows/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.body["state"], "cancelled");
    assert_eq!(cancelled.body["counts"]["cancelled"], 3);
    server
        .post(
            &format!("/v1/workflows/{id}/jobs"),
            json!({"jobs": [{"name": "late", "job": job("send")}]}),
        )
        .await
        .assert_error(409, "conflict");
    server.stop().await;
}

async fn the_openapi_document_lists_workflow_routes(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let doc = server.get("/v1/openapi.json").await.body;
    for path in [
        "/v1/workflows",
        "/v1/workflows/{id}",
        "/v1/workflows/{id}/jobs",
        "/v1/workflows/{id}/cancel",
        "/v1/pull/jobs/{id}/dependencies",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let spec = &doc["components"]["schemas"]["WorkflowJobSpec"];
    assert!(spec["properties"]["idempotency_key"].is_null());
    assert!(
        spec["not"].is_object(),
        "run_at and delay_seconds exclude each other"
    );
    assert_eq!(
        doc["components"]["schemas"]["WorkflowRequest"]["properties"]["jobs"]["maxItems"],
        10_000
    );
    server.stop().await;
}
