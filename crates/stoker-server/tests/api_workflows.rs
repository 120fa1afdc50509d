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
    // --- stream workflows ---
    a_pull_worker_reads_and_adds_to_its_batch,
    a_pull_parent_waits_for_its_children,
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
        "/v1/pull/jobs/{id}/batch",
        "/v1/pull/jobs/{id}/batch/jobs",
        "/v1/pull/jobs/{id}/children",
        "/v1/pull/jobs/{id}/wait-children",
        "/v1/jobs/{id}/children",
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

// --- stream workflows ---
/// The pull protocol's `ctx.add_to_batch`: a reserved job reads its batch and adds jobs to it
/// (fenced, lineage inherited); a job in no batch, a stale fence, a closed batch and an empty
/// list are refused, and nothing is added by a refusal.
async fn a_pull_worker_reads_and_adds_to_its_batch(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let created = server
        .post(
            "/v1/batches",
            json!({
                "name": "campaign",
                "callback": {"kind": "done", "queue": "cb"},
                "jobs": [job("deliver")],
                "open": true,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let batch = created.body["id"].as_i64().unwrap();
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["wf"], "limit": 1}))
        .await;
    let (id, fence) = (
        jobs[0]["id"].as_i64().unwrap(),
        jobs[0]["fence"].as_i64().unwrap(),
    );

    let shown = server.get(&format!("/v1/pull/jobs/{id}/batch")).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["batch"]["id"], batch);
    assert_eq!(shown.body["batch"]["state"], "open");
    assert_eq!(shown.body["batch"]["total"], 1);

    let add = format!("/v1/pull/jobs/{id}/batch/jobs");
    server
        .post(&add, json!({"fence": fence + 1, "jobs": [job("deliver")]}))
        .await
        .assert_error(409, "lease_lost");
    let empty = server.post(&add, json!({"fence": fence, "jobs": []})).await;
    empty.assert_error(422, "invalid_field");
    assert_eq!(empty.field(), "jobs");
    let bad = server
        .post(&add, json!({"fence": fence, "jobs": [{"kind": ""}]}))
        .await;
    bad.assert_error(422, "invalid_field");
    assert!(bad.field().starts_with("jobs[0]"), "{bad:?}");

    let added = server
        .post(
            &add,
            json!({"fence": fence, "jobs": [job("deliver"), job("deliver")]}),
        )
        .await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.body["id"], batch);
    let child = added.body["jobs"][0].as_i64().unwrap();
    assert_eq!(server.job(child).await["metadata"]["parent_id"], id);
    let shown = server.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(
        shown.body["total"], 3,
        "only the accepted add counted: {shown:?}"
    );

    server
        .post(&format!("/v1/batches/{batch}/close"), json!({}))
        .await;
    server
        .post(&add, json!({"fence": fence, "jobs": [job("deliver")]}))
        .await
        .assert_error(409, "conflict");

    // A job in no batch reads null and cannot add; an unknown job is not found.
    server
        .enqueue(json!({"kind": "solo", "queue": "solo"}))
        .await;
    let solo = server
        .reserve(json!({"worker": "w", "queues": ["solo"], "limit": 1}))
        .await;
    let (solo, solo_fence) = (
        solo[0]["id"].as_i64().unwrap(),
        solo[0]["fence"].as_i64().unwrap(),
    );
    let none = server.get(&format!("/v1/pull/jobs/{solo}/batch")).await;
    assert_eq!(none.status, 200, "{none:?}");
    assert_eq!(none.body["batch"], Value::Null);
    let refused = server
        .post(
            &format!("/v1/pull/jobs/{solo}/batch/jobs"),
            json!({"fence": solo_fence, "jobs": [job("deliver")]}),
        )
        .await;
    refused.assert_error(409, "conflict");
    server
        .get("/v1/pull/jobs/999999/batch")
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

/// Parents that wait for their children over the pull protocol: a reserved job enqueues two
/// children (lineage inherited) and waits; it is `blocked` with its result, reported by
/// `GET /v1/jobs/{id}/children`, and completes when the second child does. A stale fence, an
/// empty list and an unknown job are refused, writing nothing.
async fn a_pull_parent_waits_for_its_children(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let parent = server
        .enqueue(json!({"kind": "report", "queue": "wf"}))
        .await;
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["wf"], "limit": 1}))
        .await;
    assert_eq!(jobs[0]["id"], parent);
    let fence = jobs[0]["fence"].as_i64().unwrap();
    let path = format!("/v1/pull/jobs/{parent}/children");
    server
        .post(&path, json!({"fence": fence + 1, "jobs": [job("page")]}))
        .await
        .assert_error(409, "lease_lost");
    let empty = server
        .post(&path, json!({"fence": fence, "jobs": []}))
        .await;
    empty.assert_error(422, "invalid_field");
    assert_eq!(empty.field(), "jobs");
    server
        .post(
            "/v1/pull/jobs/999999/children",
            json!({"fence": 1, "jobs": [job("page")]}),
        )
        .await
        .assert_error(404, "not_found");
    let none = server.get(&format!("/v1/jobs/{parent}/children")).await;
    assert_eq!(none.status, 200, "{none:?}");
    assert_eq!(none.body["waits_for_children"], false);

    let created = server
        .post(
            &path,
            json!({"fence": fence, "jobs": [job("page"), job("page")], "on_failure": "run"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let kids: Vec<i64> = created.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(server.job(kids[0]).await["metadata"]["parent_id"], parent);

    let waited = server
        .post(
            &format!("/v1/pull/jobs/{parent}/wait-children"),
            json!({"fence": fence, "result": {"pages": 2}}),
        )
        .await;
    assert_eq!(waited.status, 200, "{waited:?}");
    assert_eq!(waited.body["state"], "blocked");
    let shown = server.get(&format!("/v1/jobs/{parent}/children")).await;
    assert_eq!(shown.body["waits_for_children"], true);
    assert_eq!(shown.body["pending"], 2);
    assert_eq!(shown.body["unresolved"][0]["policy"], "run");
    assert_eq!(server.job(parent).await["state"], "blocked");

    run_one(&server, json!(1)).await;
    assert_eq!(server.job(parent).await["state"], "blocked");
    run_one(&server, json!(2)).await;
    let done = server.job(parent).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"], json!({"pages": 2}));
    assert_eq!(done["attempt"], 1);
    server.stop().await;
}
