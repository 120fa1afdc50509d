//! Job search over HTTP (issue 14), on every store: `GET /v1/jobs` with the `q` language and
//! the new parameters, both directions, counts, a job's lineage, bulk operations by query;
//! bad input gets a 422 naming the parameter (or the query's word) and changes nothing.

mod api_support;

use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, start};

store_tests!(
    search_by_query_and_parameters,
    lineage_and_bulk_by_query,
    bad_search_input,
);

fn ids(answer: &Value) -> Vec<i64> {
    answer["jobs"]
        .as_array()
        .expect("a job list")
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect()
}

async fn search_by_query_and_parameters(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let mut mail = Vec::new();
    for n in 0..5 {
        mail.push(
            server
                .enqueue(json!({
                    "kind": "email", "queue": "mail",
                    "args": {"to": format!("user{n}@example.com")},
                    "metadata": {"correlation_id": if n < 3 { "order-1" } else { "order-2" }},
                }))
                .await,
        );
    }
    let later = server
        .enqueue(json!({
            "kind": "email", "queue": "mail", "delay_seconds": 3600,
            "idempotency_key": "reminder-1",
        }))
        .await;
    let other = server
        .enqueue(json!({"kind": "pdf", "queue": "report", "tenant": "acme"}))
        .await;

    let page = server
        .get("/v1/jobs?q=queue:mail%20corr:order-1&count=true")
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(ids(&page.body), vec![mail[2], mail[1], mail[0]]);
    assert_eq!(page.body["count"], json!({"count": 3, "exact": true}));
    assert_eq!(page.body["partial"], false);
    assert!(page.body.get("next_cursor").is_none());

    // `scheduled` apart from due `available`; `failed` is retryable and discarded.
    let scheduled = server.get("/v1/jobs?state=scheduled").await;
    assert_eq!(ids(&scheduled.body), vec![later]);
    let due = server.get("/v1/jobs?q=state:available%20kind:email").await;
    assert_eq!(due.body["jobs"].as_array().unwrap().len(), 5);
    let failed = server.get("/v1/jobs?state=failed").await;
    assert_eq!(failed.body["jobs"], json!([]));

    // Parameters and the query join.
    let joined = server
        .get("/v1/jobs?q=%22user4@example.com%22&queue=mail")
        .await;
    assert_eq!(ids(&joined.body), vec![mail[4]]);
    let by_key = server.get("/v1/jobs?idempotency_key=reminder-1").await;
    assert_eq!(ids(&by_key.body), vec![later]);
    let by_id = server
        .get(&format!("/v1/jobs?id={},{}", mail[0], other))
        .await;
    assert_eq!(ids(&by_id.body), vec![other, mail[0]]);
    let by_text = server.get("/v1/jobs?text=user3@").await;
    assert_eq!(ids(&by_text.body), vec![mail[3]]);
    let by_tenant = server.get("/v1/jobs?q=tenant:acme").await;
    assert_eq!(ids(&by_tenant.body), vec![other]);

    // Pages both ways.
    let first = server.get("/v1/jobs?queue=mail&limit=2").await;
    assert_eq!(ids(&first.body), vec![later, mail[4]]);
    let next = first.body["next_cursor"].as_i64().unwrap();
    let second = server
        .get(&format!("/v1/jobs?queue=mail&limit=2&cursor={next}"))
        .await;
    assert_eq!(ids(&second.body), vec![mail[3], mail[2]]);
    let prev = second.body["prev_cursor"].as_i64().unwrap();
    let back = server
        .get(&format!(
            "/v1/jobs?queue=mail&limit=2&cursor={prev}&direction=newer"
        ))
        .await;
    assert_eq!(ids(&back.body), vec![later, mail[4]]);
    server.stop().await;
}

async fn lineage_and_bulk_by_query(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let parent = server.enqueue(json!({"kind": "order"})).await;
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(
            server
                .enqueue(json!({"kind": "email", "metadata": {"parent_id": parent}}))
                .await,
        );
    }
    let lineage = server.get(&format!("/v1/jobs/{parent}/lineage")).await;
    assert_eq!(lineage.status, 200, "{lineage:?}");
    assert!(lineage.body.get("parent").is_none());
    assert_eq!(
        ids(&json!({"jobs": lineage.body["children"]})),
        vec![children[1], children[0]]
    );
    assert_eq!(lineage.body["more_children"], false);
    let child = server
        .get(&format!("/v1/jobs/{}/lineage", children[0]))
        .await;
    assert_eq!(child.body["parent"]["id"], parent);
    server
        .get("/v1/jobs/999999/lineage")
        .await
        .assert_error(404, "not_found");

    // A bulk operation by query, recorded with the query's criteria.
    let op = server
        .post(
            "/v1/ops",
            json!({"action": "cancel", "q": format!("parent:{parent} kind:email")}),
        )
        .await;
    assert_eq!(op.status, 202, "{op:?}");
    assert_eq!(op.body["filter"]["parent_id"], parent);
    assert_eq!(op.body["filter"]["kinds"], json!(["email"]));
    server
        .post("/v1/ops", json!({"action": "cancel", "q": "stat:failed"}))
        .await
        .assert_error(422, "invalid_field");
    server.stop().await;
}

async fn bad_search_input(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    server.enqueue(json!({"kind": "k"})).await;
    let answer = server.get("/v1/jobs?q=stat:failed").await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "q");
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown qualifier \"stat:\""));
    let answer = server.get("/v1/jobs?q=state:faild").await;
    assert_eq!(answer.field(), "q");
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bad state \"faild\""));
    let answer = server.get("/v1/jobs?state=faild").await;
    answer.assert_error(422, "unknown_state");
    assert_eq!(answer.field(), "state");
    let answer = server.get("/v1/jobs?q=tenant:a&tenant=b").await;
    assert_eq!(answer.field(), "tenant");
    let answer = server.get("/v1/jobs?direction=sideways").await;
    assert_eq!(answer.field(), "direction");
    let answer = server.get("/v1/jobs?failure_group=xyz").await;
    assert_eq!(answer.field(), "failure_group");
    let answer = server.get("/v1/jobs?id=0").await;
    assert_eq!(answer.field(), "id");
    let answer = server.get("/v1/jobs?text=").await;
    assert_eq!(answer.field(), "text");
    let answer = server.get("/v1/jobs/abc/lineage").await;
    assert_eq!(answer.field(), "id");
    server.stop().await;
}
