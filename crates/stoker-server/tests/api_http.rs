//! The HTTP API over a real socket, on every store: enqueue, jobs, queues, workers, errors,
//! auth, health, metrics and the OpenAPI document.

mod api_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;
use stoker_server::config::{ApiToken, Scope};

use api_support::{config, eventually, start};

store_tests!(
    enqueue_takes_every_option,
    duplicates_answer_200_with_the_existing_id,
    list_filters_and_pages,
    cancel_retry_and_delete,
    pause_and_resume_queues,
    every_error_code_has_its_status_and_field,
    tokens_scopes_and_tenants,
    a_tenant_bulk_retry_counts_what_remains_in_its_tenant,
    misshapen_bodies_and_out_of_range_values_change_nothing,
    enqueue_answers_the_job,
    health_metrics_and_openapi,
    builtin_webhook_runs_in_the_server,
);

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const ENQUEUER: &str = "enqueue-token-0123456789";
const WORKER: &str = "worker-token-0123456789";
const ACME: &str = "acme-token-0123456789";

async fn enqueue_takes_every_option(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let answer = server
        .post(
            "/v1/jobs",
            json!({
                "kind": "report",
                "args": {"month": "2030-01"},
                "queue": "reports",
                "priority": 42,
                "run_at": "2031-06-01T12:00:00Z",
                "max_attempts": 9,
                "idempotency_key": "report-2030-01",
                "tenant": "acme",
                "metadata": {"correlation_id": "req-9", "parent_id": 7, "source": "billing", "tags": ["monthly"]},
                "timeout_seconds": 1.5,
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["duplicate"], false);
    let id = answer.body["id"].as_i64().unwrap();
    assert_eq!(
        answer.headers["location"].to_str().unwrap(),
        format!("/v1/jobs/{id}")
    );
    let job = server.job(id).await;
    assert_eq!(job["kind"], "report");
    assert_eq!(job["queue"], "reports");
    assert_eq!(job["state"], "available");
    assert_eq!(job["priority"], 42);
    assert_eq!(job["run_at"], "2031-06-01T12:00:00Z");
    assert_eq!(job["max_attempts"], 9);
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["idempotency_key"], "report-2030-01");
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["metadata"]["parent_id"], 7);
    assert_eq!(job["metadata"]["source"], "billing");
    assert_eq!(job["metadata"]["tags"], json!(["monthly"]));
    assert_eq!(job["timeout_seconds"], 1.5);
    assert_eq!(job["errors"], json!([]));

    // Defaults, named priorities and delays.
    let id = server
        .enqueue(json!({"kind": "ping", "priority": "critical", "delay_seconds": 3600}))
        .await;
    let job = server.job(id).await;
    assert_eq!(job["queue"], "default");
    assert_eq!(job["priority"], 20);
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(job["args"], json!({}));
    let run_at: chrono::DateTime<chrono::Utc> = job["run_at"].as_str().unwrap().parse().unwrap();
    assert!(run_at > chrono::Utc::now() + chrono::Duration::minutes(59));
    for (name, value) in [("LOW", -10), ("Normal", 0), ("HIGH", 10)] {
        let id = server
            .enqueue(json!({"kind": "ping", "priority": name}))
            .await;
        assert_eq!(server.job(id).await["priority"], value);
    }
    server.stop().await;
}

async fn duplicates_answer_200_with_the_existing_id(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let first = server
        .post(
            "/v1/jobs",
            json!({"kind": "welcome", "idempotency_key": "user-42"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let again = server
        .post(
            "/v1/jobs",
            json!({"kind": "welcome", "idempotency_key": "user-42"}),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["id"], first.body["id"]);
    // The same key in another tenant is another job.
    let other = server
        .post(
            "/v1/jobs",
            json!({"kind": "welcome", "idempotency_key": "user-42", "tenant": "t2"}),
        )
        .await;
    assert_eq!(other.status, 201);

    // Bulk: new jobs, an existing key, and a key repeated within the batch.
    let bulk = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [
                {"kind": "welcome", "idempotency_key": "user-42"},
                {"kind": "welcome", "idempotency_key": "user-43"},
                {"kind": "welcome", "idempotency_key": "user-43"},
                {"kind": "resize", "args": {"n": 1}, "queue": "media"},
            ]}),
        )
        .await;
    assert_eq!(bulk.status, 201, "{bulk:?}");
    assert_eq!(bulk.body["inserted"], 2);
    assert_eq!(bulk.body["duplicates"], 2);
    let jobs = bulk.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0]["id"], first.body["id"]);
    assert_eq!(jobs[0]["duplicate"], true);
    assert_eq!(jobs[1]["duplicate"], false);
    assert_eq!(jobs[2]["id"], jobs[1]["id"]);
    assert_eq!(jobs[2]["duplicate"], true);

    let all_duplicates = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [{"kind": "welcome", "idempotency_key": "user-43"}]}),
        )
        .await;
    assert_eq!(all_duplicates.status, 200);
    assert_eq!(all_duplicates.body["inserted"], 0);

    // Only new jobs count as enqueued.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stoker_jobs_enqueued_total{queue=\"default\",kind=\"welcome\"} 3"),
        "{metrics}"
    );
    server.stop().await;
}

async fn list_filters_and_pages(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            server
                .enqueue(json!({"kind": "page", "queue": "paging", "args": {"n": n}}))
                .await,
        );
    }
    server
        .enqueue(json!({"kind": "other", "queue": "elsewhere", "tenant": "acme"}))
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(cursor) => format!("/v1/jobs?queue=paging&limit=2&cursor={cursor}"),
            None => "/v1/jobs?queue=paging&limit=2".to_owned(),
        };
        let page = server.get(&path).await;
        assert_eq!(page.status, 200, "{page:?}");
        pages += 1;
        seen.extend(
            page.body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["id"].as_i64().unwrap()),
        );
        match page.body["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every job once");
    assert_eq!(pages, 3);

    let by_kind = server.get("/v1/jobs?kind=other,nothing").await;
    assert_eq!(by_kind.body["jobs"].as_array().unwrap().len(), 1);
    let by_tenant = server.get("/v1/jobs?tenant=acme").await;
    assert_eq!(by_tenant.body["jobs"][0]["kind"], "other");
    let by_state = server
        .get("/v1/jobs?state=available,running&limit=1000")
        .await;
    assert_eq!(by_state.body["jobs"].as_array().unwrap().len(), 6);
    let none = server.get("/v1/jobs?state=completed").await;
    assert_eq!(none.body["jobs"], json!([]));
    assert!(none.body.get("next_cursor").is_none());
    server.stop().await;
}

async fn cancel_retry_and_delete(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server.enqueue(json!({"kind": "later", "queue": "q"})).await;
    let cancelled = server
        .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.body["state"], "cancelled");
    let retried = server
        .post(&format!("/v1/jobs/{id}/retry"), json!({}))
        .await;
    assert_eq!(retried.body["state"], "available");

    // A running job cannot be deleted.
    server
        .reserve(json!({"worker": "w", "queues": ["q"]}))
        .await;
    server
        .delete(&format!("/v1/jobs/{id}"))
        .await
        .assert_error(409, "conflict");
    server
        .post(&format!("/v1/pull/jobs/{id}/complete"), json!({"fence": 1}))
        .await;
    let deleted = server.delete(&format!("/v1/jobs/{id}")).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["state"], "completed");
    server
        .get(&format!("/v1/jobs/{id}"))
        .await
        .assert_error(404, "not_found");
    for path in ["cancel", "retry"] {
        server
            .post(&format!("/v1/jobs/{id}/{path}"), json!({}))
            .await
            .assert_error(404, "not_found");
    }
    server
        .delete(&format!("/v1/jobs/{id}"))
        .await
        .assert_error(404, "not_found");
    server.stop().await;
}

async fn pause_and_resume_queues(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = server
        .enqueue(json!({"kind": "k", "queue": "imports"}))
        .await;
    let paused = server.post("/v1/queues/imports/pause", json!({})).await;
    assert_eq!(paused.status, 200, "{paused:?}");
    assert_eq!(paused.body["paused"], true);
    assert_eq!(paused.body["counts"]["available"], 1);
    let jobs = server
        .reserve(json!({"worker": "w", "queues": ["imports"]}))
        .await;
    assert!(jobs.is_empty(), "a paused queue gives nothing");
    // A queue with settings but no jobs is listed too.
    server.post("/v1/queues/empty-queue/pause", json!({})).await;

    let queues = server.get("/v1/queues").await;
    assert_eq!(queues.status, 200);
    let list = queues.body["queues"].as_array().unwrap();
    let imports = list
        .iter()
        .find(|queue| queue["name"] == "imports")
        .unwrap();
    assert_eq!(imports["paused"], true);
    assert_eq!(imports["counts"]["available"], 1);
    assert!(imports["updated_at"].is_string());
    let empty = list
        .iter()
        .find(|queue| queue["name"] == "empty-queue")
        .unwrap();
    assert_eq!(empty["counts"]["available"], 0);

    // Resuming wakes a waiting reserve.
    let waiting = {
        let http = server.http.clone();
        let url = server.url.clone();
        tokio::spawn(async move {
            http.post(format!("{url}/v1/pull/reserve"))
                .json(&json!({"worker": "w", "queues": ["imports"], "wait_seconds": 15}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let resumed = server.post("/v1/queues/imports/resume", json!({})).await;
    assert_eq!(resumed.body["paused"], false);
    let body = waiting.await.unwrap();
    assert_eq!(body["jobs"][0]["id"], id);

    server
        .post("/v1/queues/bad%20queue/pause", json!({}))
        .await
        .assert_error(422, "invalid_field");
    server.stop().await;
}

async fn every_error_code_has_its_status_and_field(store: Arc<dyn Store>) {
    let mut config = config();
    config.max_body_bytes = 4096;
    let server = start(store, config).await;
    let url = &server.url;

    // malformed_json
    let answer = server
        .send(
            server
                .http
                .post(format!("{url}/v1/jobs"))
                .header("content-type", "application/json")
                .body("{\"kind\": "),
        )
        .await;
    answer.assert_error(400, "malformed_json");
    // unsupported_media_type
    let answer = server
        .send(
            server
                .http
                .post(format!("{url}/v1/jobs"))
                .body("{\"kind\": \"x\"}"),
        )
        .await;
    answer.assert_error(415, "unsupported_media_type");
    // body_too_large
    let answer = server
        .post(
            "/v1/jobs",
            json!({"kind": "big", "args": {"blob": "x".repeat(10_000)}}),
        )
        .await;
    answer.assert_error(413, "body_too_large");

    // invalid_field, naming the field
    for (body, field) in [
        (json!({"args": {}}), "kind"),
        (json!({"kind": "has space"}), "kind"),
        (json!({"kind": "k", "priority": "URGENT"}), "priority"),
        (json!({"kind": "k", "priority": 40000}), "priority"),
        (json!({"kind": "k", "max_attemps": 3}), "max_attemps"),
        (json!({"kind": "k", "max_attempts": 0}), "max_attempts"),
        (json!({"kind": "k", "max_attempts": "five"}), "max_attempts"),
        (json!({"kind": "k", "queue": "no/slash"}), "queue"),
        (json!({"kind": "k", "delay_seconds": -5}), "delay_seconds"),
        (
            json!({"kind": "k", "delay_seconds": 5, "run_at": "2030-01-01T00:00:00Z"}),
            "delay_seconds",
        ),
        (
            json!({"kind": "k", "timeout_seconds": 0}),
            "timeout_seconds",
        ),
        (
            json!({"kind": "k", "idempotency_key": ""}),
            "idempotency_key",
        ),
        (
            json!({"kind": "k", "metadata": {"tgas": []}}),
            "metadata.tgas",
        ),
        (
            json!({"kind": "webhook", "queue": "q", "args": {"method": "GET"}}),
            "args.url",
        ),
    ] {
        let answer = server.post("/v1/jobs", body.clone()).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{body} -> {answer:?}");
    }
    let answer = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [{"kind": "ok"}, {"kind": "k", "queue": "bad queue"}]}),
        )
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "jobs[1].queue");
    let answer = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [{"kind": "ok"}, {"args": {}}]}),
        )
        .await;
    assert_eq!(answer.field(), "jobs[1].kind", "{answer:?}");
    let answer = server.post("/v1/jobs/bulk", json!({"jobs": []})).await;
    assert_eq!(answer.field(), "jobs");
    // Nothing of a refused batch was written.
    let all = server.get("/v1/jobs").await;
    assert_eq!(all.body["jobs"], json!([]), "{all:?}");

    // invalid_date
    let answer = server
        .post("/v1/jobs", json!({"kind": "k", "run_at": "next tuesday"}))
        .await;
    answer.assert_error(422, "invalid_date");
    assert_eq!(answer.field(), "run_at");
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("RFC 3339"));

    // unknown_state, in the query and in a body
    let answer = server.get("/v1/jobs?state=available,finished").await;
    answer.assert_error(422, "unknown_state");
    assert_eq!(answer.field(), "state");
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"finished\""));
    let answer = server
        .post("/v1/jobs/retry", json!({"states": ["dead"]}))
        .await;
    answer.assert_error(422, "unknown_state");
    let answer = server
        .post("/v1/jobs/retry", json!({"states": ["running"]}))
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "states");

    // Query and path parameters
    let answer = server.get("/v1/jobs?limit=lots").await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "limit");
    let answer = server.get("/v1/jobs?limit=0").await;
    assert_eq!(answer.field(), "limit");
    let answer = server.get("/v1/jobs?colour=red").await;
    assert_eq!(answer.field(), "colour");
    let answer = server.get("/v1/jobs/abc").await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "id");
    let answer = server.get("/v1/stats?minutes=61").await;
    assert_eq!(answer.field(), "minutes");

    // not_found, route_not_found, method_not_allowed
    server
        .get("/v1/jobs/424242")
        .await
        .assert_error(404, "not_found");
    server
        .get("/v2/jobs")
        .await
        .assert_error(404, "route_not_found");
    let answer = server.send(server.http.put(format!("{url}/v1/jobs"))).await;
    answer.assert_error(405, "method_not_allowed");
    server.stop().await;
}

fn token(name: &str, secret: &str, scopes: &[Scope], tenant: Option<&str>) -> ApiToken {
    ApiToken {
        name: name.to_owned(),
        secret: secret.to_owned(),
        scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
        tenant: tenant.map(str::to_owned),
    }
}

async fn tokens_scopes_and_tenants(store: Arc<dyn Store>) {
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        token("reader", READER, &[Scope::Read], None),
        token("ingest", ENQUEUER, &[Scope::Enqueue], None),
        token("runner", WORKER, &[Scope::Work], None),
        token(
            "acme",
            ACME,
            &[Scope::Enqueue, Scope::Read, Scope::Admin],
            Some("acme"),
        ),
    ];
    let server = start(store, config).await;

    // 401: no token, a bad token, another scheme.
    let answer = server.get("/v1/jobs").await;
    answer.assert_error(401, "unauthorized");
    assert!(answer.headers.contains_key("www-authenticate"));
    server
        .with_token("not-a-real-token-at-all")
        .get("/v1/jobs")
        .await
        .assert_error(401, "unauthorized");
    let answer = server
        .send(
            server
                .http
                .get(format!("{}/v1/jobs", server.url))
                .header("authorization", format!("Basic {ADMIN}")),
        )
        .await;
    answer.assert_error(401, "unauthorized");
    server
        .get("/metrics")
        .await
        .assert_error(401, "unauthorized");
    server
        .post("/v1/pull/reserve", json!({"worker": "w", "queues": ["q"]}))
        .await
        .assert_error(401, "unauthorized");
    // Health and the OpenAPI document need no token.
    assert_eq!(server.get("/health").await.status, 200);
    assert_eq!(server.get("/v1/openapi.json").await.status, 200);

    // 403: scopes.
    let answer = server
        .with_token(READER)
        .post("/v1/jobs", json!({"kind": "k", "queue": "q"}))
        .await;
    answer.assert_error(403, "missing_scope");
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("enqueue"));
    let created = server
        .with_token(ENQUEUER)
        .post("/v1/jobs", json!({"kind": "k", "queue": "q"}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_i64().unwrap();
    server
        .with_token(ENQUEUER)
        .get(&format!("/v1/jobs/{id}"))
        .await
        .assert_error(403, "missing_scope");
    let job = server
        .with_token(READER)
        .get(&format!("/v1/jobs/{id}"))
        .await;
    assert_eq!(job.status, 200);
    assert_eq!(
        job.body["metadata"]["source"], "ingest",
        "the token's name is the source"
    );
    server
        .with_token(READER)
        .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
        .await
        .assert_error(403, "missing_scope");
    server
        .with_token(READER)
        .post("/v1/pull/reserve", json!({"worker": "w", "queues": ["q"]}))
        .await
        .assert_error(403, "missing_scope");
    let reserved = server
        .with_token(WORKER)
        .post("/v1/pull/reserve", json!({"worker": "w", "queues": ["q"]}))
        .await;
    assert_eq!(reserved.body["jobs"][0]["id"], id, "{reserved:?}");
    server
        .with_token(WORKER)
        .get("/v1/queues")
        .await
        .assert_error(403, "missing_scope");
    for path in [
        "/v1/queues",
        "/v1/workers",
        "/v1/stats",
        "/metrics",
        "/v1/handlers",
    ] {
        let answer = server.with_token(READER).get(path).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
    let answer = server
        .with_token(ADMIN)
        .post("/v1/queues/q/pause", json!({}))
        .await;
    assert_eq!(answer.status, 200);

    // Tenants: the acme token enqueues for acme only, and sees only acme's jobs.
    let own = server
        .with_token(ACME)
        .post("/v1/jobs", json!({"kind": "k", "queue": "t"}))
        .await;
    assert_eq!(own.status, 201);
    let own_id = own.body["id"].as_i64().unwrap();
    assert_eq!(
        server
            .with_token(ACME)
            .get(&format!("/v1/jobs/{own_id}"))
            .await
            .body["tenant"],
        "acme"
    );
    let answer = server
        .with_token(ACME)
        .post("/v1/jobs", json!({"kind": "k", "tenant": "globex"}))
        .await;
    answer.assert_error(403, "tenant_forbidden");
    assert_eq!(answer.field(), "tenant");
    let answer = server
        .with_token(ACME)
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [{"kind": "k"}, {"kind": "k", "tenant": "globex"}]}),
        )
        .await;
    assert_eq!(answer.field(), "jobs[1].tenant");
    let theirs = server
        .with_token(ADMIN)
        .post(
            "/v1/jobs",
            json!({"kind": "k", "queue": "t", "tenant": "globex"}),
        )
        .await;
    let theirs_id = theirs.body["id"].as_i64().unwrap();
    for answer in [
        server
            .with_token(ACME)
            .get(&format!("/v1/jobs/{theirs_id}"))
            .await,
        server.with_token(ACME).get(&format!("/v1/jobs/{id}")).await,
        server
            .with_token(ACME)
            .post(&format!("/v1/jobs/{theirs_id}/cancel"), json!({}))
            .await,
        server
            .with_token(ACME)
            .delete(&format!("/v1/jobs/{theirs_id}"))
            .await,
    ] {
        answer.assert_error(404, "not_found");
    }
    let listed = server.with_token(ACME).get("/v1/jobs?limit=1000").await;
    let ids: Vec<i64> = listed.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![own_id]);
    server
        .with_token(ACME)
        .get("/v1/jobs?tenant=globex")
        .await
        .assert_error(403, "tenant_forbidden");
    // --- stream counts ---
    // Its stats are its own tenant's counts, and none of the cluster's throughput.
    let stats = server.with_token(ACME).get("/v1/stats").await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    let total = |counts: &serde_json::Value| -> i64 {
        counts
            .as_object()
            .expect("counts")
            .values()
            .map(|count| count.as_i64().expect("a count"))
            .sum()
    };
    assert_eq!(total(&stats.body["totals"]), 1, "{:?}", stats.body);
    assert_eq!(total(&stats.body["tenants"]["acme"]), 1);
    assert!(stats.body["tenants"].get("globex").is_none());
    assert_eq!(stats.body["throughput"]["minutes"], json!([]));
    let every = server.with_token(ADMIN).get("/v1/stats").await;
    assert_eq!(
        total(&every.body["tenants"]["globex"]),
        1,
        "{:?}",
        every.body
    );
    // Its queues are those of its own jobs (issue 17), counting only them: queue `t` holds
    // one job of each tenant.
    let queues = server.with_token(ACME).get("/v1/queues").await;
    assert_eq!(queues.status, 200, "{queues:?}");
    let listed = queues.body["queues"].as_array().expect("queues");
    let names: Vec<&str> = listed
        .iter()
        .map(|queue| queue["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, vec!["t"], "{queues:?}");
    assert_eq!(total(&listed[0]["counts"]), 1, "{queues:?}");
    // --- stream tenant ---
    // Its workers are those bound to it: none here (issue 17).
    let workers = server.with_token(ACME).get("/v1/workers").await;
    assert_eq!(workers.status, 200, "{workers:?}");
    assert_eq!(workers.body["workers"], json!([]), "{workers:?}");
    server
        .with_token(ACME)
        .get("/metrics")
        .await
        .assert_error(403, "tenant_forbidden");
    server
        .with_token(ACME)
        .post("/v1/queues/t/pause", json!({}))
        .await
        .assert_error(403, "tenant_forbidden");
    let cancelled = server
        .with_token(ACME)
        .post(&format!("/v1/jobs/{own_id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.body["state"], "cancelled");
    // A tenant's bulk retry touches only its own jobs.
    server
        .with_token(ADMIN)
        .post(&format!("/v1/jobs/{theirs_id}/cancel"), json!({}))
        .await;
    let retried = server
        .with_token(ACME)
        .post("/v1/jobs/retry", json!({"states": ["cancelled"]}))
        .await;
    assert_eq!(retried.body["retried"], 1, "{retried:?}");
    assert_eq!(
        server
            .with_token(ADMIN)
            .get(&format!("/v1/jobs/{theirs_id}"))
            .await
            .body["state"],
        "cancelled"
    );
    server.stop().await;
}

/// Item 4: a tenant-bound token's bulk retry once reported `remaining` counted over every
/// tenant.
async fn a_tenant_bulk_retry_counts_what_remains_in_its_tenant(store: Arc<dyn Store>) {
    const GLOBEX: &str = "globex-token-0123456789";
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        token("acme", ACME, &[Scope::Admin], Some("acme")),
        token("globex", GLOBEX, &[Scope::Admin], Some("globex")),
    ];
    let server = start(store, config).await;
    for (caller, count) in [(ACME, 2), (GLOBEX, 3)] {
        for _ in 0..count {
            let answer = server
                .with_token(caller)
                .post("/v1/jobs", json!({"kind": "k", "queue": "q"}))
                .await;
            assert_eq!(answer.status, 201, "{answer:?}");
            let id = answer.body["id"].as_i64().unwrap();
            let cancelled = server
                .with_token(caller)
                .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
                .await;
            assert_eq!(cancelled.body["state"], "cancelled");
        }
    }
    let retry = json!({"states": ["cancelled"], "limit": 1});
    let first = server
        .with_token(ACME)
        .post("/v1/jobs/retry", retry.clone())
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["retried"], 1);
    assert_eq!(
        first.body["remaining"], 1,
        "only acme's jobs count: {first:?}"
    );
    let second = server
        .with_token(ACME)
        .post("/v1/jobs/retry", retry.clone())
        .await;
    assert_eq!(
        (
            second.body["retried"].as_u64(),
            second.body["remaining"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let globex = server
        .with_token(GLOBEX)
        .post("/v1/jobs/retry", retry)
        .await;
    assert_eq!(
        (
            globex.body["retried"].as_u64(),
            globex.body["remaining"].as_u64()
        ),
        (Some(1), Some(2))
    );
    server.stop().await;
}

/// Items 3, 5 and 9: huge or negative durations, far-off dates, arrays and `null` where the
/// document says object, and lists beyond their bounds are each a 422 naming the field, and
/// nothing is written.
async fn misshapen_bodies_and_out_of_range_values_change_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let raw = |path: &str, body: &str| {
        server
            .http
            .post(format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    for (path, body, field) in [
        ("/v1/jobs", r#"["x"]"#, ""),
        ("/v1/jobs", "null", ""),
        ("/v1/jobs", "42", ""),
        ("/v1/jobs/retry", "[null,null]", ""),
        ("/v1/jobs/bulk", r#"[[{"kind":"k"}]]"#, ""),
        ("/v1/jobs", r#"{"kind":"k","args":null}"#, "args"),
        ("/v1/jobs", r#"{"kind":"ké"}"#, "kind"),
        ("/v1/jobs", r#"{"kind":"k","tenant":"acmé"}"#, "tenant"),
        (
            "/v1/jobs",
            r#"{"kind":"k","max_attempts":2.5}"#,
            "max_attempts",
        ),
        (
            "/v1/jobs",
            r#"{"kind":"k","metadata":{"parent_id":-9223372036854775809}}"#,
            "metadata.parent_id",
        ),
        ("/v1/jobs", r#"{"kind":"k","args":["x"]}"#, "args"),
        ("/v1/jobs", r#"{"kind":"k","args":"x"}"#, "args"),
        ("/v1/jobs", r#"{"kind":"k","metadata":["c"]}"#, "metadata"),
        (
            "/v1/jobs/bulk",
            r#"{"jobs":[{"kind":"k"},["k"]]}"#,
            "jobs[1]",
        ),
        ("/v1/jobs/bulk", r#"{"jobs":{"kind":"k"}}"#, "jobs"),
        (
            "/v1/jobs",
            r#"{"kind":"k","delay_seconds":1e15}"#,
            "delay_seconds",
        ),
        (
            "/v1/jobs",
            r#"{"kind":"k","delay_seconds":-1}"#,
            "delay_seconds",
        ),
        (
            "/v1/jobs",
            r#"{"kind":"k","timeout_seconds":1e15}"#,
            "timeout_seconds",
        ),
        (
            "/v1/jobs",
            r#"{"kind":"k","run_at":"+10000-01-01T00:00:00Z"}"#,
            "run_at",
        ),
        (
            "/v1/jobs",
            r#"{"kind":"k","run_at":"-0001-12-31T00:00:00Z"}"#,
            "run_at",
        ),
        (
            "/v1/jobs/bulk",
            r#"{"jobs":[{"kind":"k"},{"kind":"k","run_at":"+200000-01-01T00:00:00Z"}]}"#,
            "jobs[1].run_at",
        ),
    ] {
        let answer = server.send(raw(path, body)).await;
        assert_eq!(answer.status, 422, "{path} {body}: {answer:?}");
        assert_eq!(answer.field(), field, "{path} {body}: {answer:?}");
    }

    // Lists beyond their bounds.
    let tags: Vec<String> = (0..=100).map(|n| format!("t{n}")).collect();
    let answer = server
        .post("/v1/jobs", json!({"kind": "k", "metadata": {"tags": tags}}))
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "metadata.tags");
    let jobs: Vec<Value> = (0..=10_000).map(|_| json!({"kind": "k"})).collect();
    let answer = server.post("/v1/jobs/bulk", json!({ "jobs": jobs })).await;
    assert_eq!(answer.field(), "jobs", "{answer:?}");
    let queues: Vec<String> = (0..=100).map(|n| format!("q{n}")).collect();
    let answer = server
        .post("/v1/jobs/retry", json!({ "queues": queues }))
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "queues");
    let answer = server
        .get(&format!("/v1/jobs?queue={}", queues.join(",")))
        .await;
    answer.assert_error(422, "invalid_field");
    assert_eq!(answer.field(), "queue");
    for cursor in ["0", "-5"] {
        let answer = server.get(&format!("/v1/jobs?cursor={cursor}")).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), "cursor");
    }

    let all = server.get("/v1/jobs").await;
    assert_eq!(all.body["jobs"], json!([]), "nothing was written: {all:?}");
    server.stop().await;
}

/// Enqueue answers the job (id, state, run_at...), also for a duplicate.
async fn enqueue_answers_the_job(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let answer = server
        .post(
            "/v1/jobs",
            json!({"kind": "k", "queue": "q", "run_at": "2031-06-01T12:00:00Z", "idempotency_key": "a"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let id = answer.body["id"].as_i64().unwrap();
    assert_eq!(answer.body["state"], "available");
    assert_eq!(answer.body["run_at"], "2031-06-01T12:00:00Z");
    assert_eq!(answer.body["queue"], "q");
    assert_eq!(answer.body["kind"], "k");
    // A number without a fraction is an integer, as JSON Schema counts it.
    let whole = server
        .post(
            "/v1/jobs",
            json!({"kind": "k", "max_attempts": 3.0, "priority": 7.0}),
        )
        .await;
    assert_eq!(whole.status, 201, "{whole:?}");
    let whole = server.job(whole.body["id"].as_i64().unwrap()).await;
    assert_eq!(
        (whole["max_attempts"].as_i64(), whole["priority"].as_i64()),
        (Some(3), Some(7))
    );
    server
        .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
        .await;
    let again = server
        .post("/v1/jobs", json!({"kind": "k", "idempotency_key": "a"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], id);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["state"], "cancelled");
    let bulk = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [{"kind": "k", "idempotency_key": "a"}, {"kind": "k"}]}),
        )
        .await;
    assert_eq!(bulk.body["jobs"][0]["state"], "cancelled");
    assert_eq!(bulk.body["jobs"][1]["state"], "available");
    let now: chrono::DateTime<chrono::Utc> = bulk.body["jobs"][1]["run_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = server
        .job(bulk.body["jobs"][1]["id"].as_i64().unwrap())
        .await;
    assert_eq!(
        job["run_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        now
    );
    server.stop().await;
}

/// Every route documents each status it can answer, and every bound is in the document, so a
/// schema-driven fuzzer reaches past validation and sees no undocumented answer.
#[test]
fn every_route_documents_its_answers_and_bounds() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(stoker_server::api::ApiDoc::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let name = format!("{method} {path}");
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{name} does not document {status}");
                }
            }
            let secured = operation["security"]
                .as_array()
                .is_some_and(|security| !security.is_empty());
            if secured {
                assert!(has("401") && has("403"), "{name} does not document 401/403");
            } else {
                assert!(
                    ["/health", "/v1/openapi.json"].contains(&path.as_str()),
                    "{name} needs no token"
                );
            }
            if path.contains("{id}") {
                assert!(has("404"), "{name} does not document 404");
            }
            if operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
            {
                assert!(has("422"), "{name} does not document 422");
            }
            if path != "/v1/openapi.json" {
                assert!(has("503"), "{name} does not document 503");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} operations");

    let schemas = &doc["components"]["schemas"];
    let bound = |pointer: &str| doc.pointer(pointer).and_then(Value::as_u64);
    assert_eq!(
        bound("/components/schemas/EnqueueBulkRequest/properties/jobs/maxItems"),
        Some(stoker_server::api::model::BULK_MAX as u64)
    );
    for list in ["queues", "kinds"] {
        assert_eq!(
            bound(&format!(
                "/components/schemas/RetryJobsRequest/properties/{list}/maxItems"
            )),
            Some(stoker::FILTER_MAX as u64),
            "{list}"
        );
    }
    assert_eq!(
        bound("/components/schemas/JobMetadata/properties/tags/maxItems"),
        Some(stoker_server::api::model::TAGS_MAX as u64)
    );
    let enqueue = &schemas["EnqueueRequest"]["properties"];
    assert_eq!(enqueue["kind"]["maxLength"], stoker::core::KIND_MAX_LEN);
    assert_eq!(enqueue["queue"]["maxLength"], stoker::core::QUEUE_MAX_LEN);
    // Printable ASCII: characters and bytes are the same bound.
    assert_eq!(enqueue["tenant"]["maxLength"], stoker::core::TENANT_MAX_LEN);
    assert_eq!(
        enqueue["idempotency_key"]["maxLength"],
        stoker::core::UNIQUE_KEY_MAX_LEN
    );
    assert_eq!(enqueue["args"]["type"], "object");
    assert_eq!(
        enqueue["delay_seconds"]["maximum"].as_f64(),
        Some(stoker::SCHEDULE_MAX.as_secs_f64())
    );
}

async fn health_metrics_and_openapi(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let expected_store = server.server.state().store().name();
    let health = eventually("a leader", || async {
        let health = server.get("/health").await;
        (health.body["status"] == "ok").then_some(health)
    })
    .await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["store"], expected_store);
    assert_eq!(health.body["store_reachable"], true);
    assert_eq!(health.body["migrations_current"], true);
    assert_eq!(health.body["leader"], server.server.worker_id());

    server
        .enqueue(json!({"kind": "m", "queue": "metered"}))
        .await;
    let metrics = server.metrics().await;
    for needle in [
        "# TYPE stoker_jobs_enqueued counter",
        "stoker_jobs_enqueued_total{queue=\"metered\",kind=\"m\"} 1",
        "stoker_queue_jobs{queue=\"metered\",state=\"available\"} 1",
        "stoker_workers_alive 1",
        "# EOF",
    ] {
        assert!(
            metrics.contains(needle),
            "missing {needle:?} in:\n{metrics}"
        );
    }

    // The server's own worker shows in the workers list.
    let workers = server.get("/v1/workers").await;
    let own = workers.body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["id"] == server.server.worker_id())
        .cloned()
        .expect("the built-in worker's row");
    assert_eq!(own["pull"], false);
    assert_eq!(own["alive"], true);
    assert_eq!(own["queues"], json!(["builtin"]));
    let handlers = server.get("/v1/handlers").await;
    assert!(handlers.body["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|handler| handler["kind"] == "webhook"));
    assert_eq!(handlers.body["queues"], json!(["builtin"]));

    let stats = server.get("/v1/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body["totals"]["available"], 1);
    assert_eq!(stats.body["queues"]["metered"]["available"], 1);
    assert_eq!(stats.body["kinds"]["m"]["available"], 1);
    assert!(stats.body["throughput"]["minutes"].is_array());

    // The OpenAPI document parses and lists every route.
    let doc = server.get("/v1/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/jobs", &["get", "post"][..]),
        ("/v1/jobs/bulk", &["post"]),
        ("/v1/jobs/retry", &["post"]),
        ("/v1/jobs/{id}", &["get", "delete"]),
        ("/v1/jobs/{id}/cancel", &["post"]),
        ("/v1/jobs/{id}/retry", &["post"]),
        ("/v1/queues", &["get"]),
        ("/v1/queues/{name}/pause", &["post"]),
        ("/v1/queues/{name}/resume", &["post"]),
        ("/v1/workers", &["get"]),
        ("/v1/handlers", &["get"]),
        ("/v1/stats", &["get"]),
        ("/v1/pull/reserve", &["post"]),
        ("/v1/pull/jobs/{id}/heartbeat", &["post"]),
        ("/v1/pull/jobs/{id}/progress", &["post"]),
        ("/v1/pull/jobs/{id}/complete", &["post"]),
        ("/v1/pull/jobs/{id}/fail", &["post"]),
        ("/v1/pull/jobs/{id}/snooze", &["post"]),
        ("/health", &["get"]),
        ("/metrics", &["get"]),
        ("/v1/openapi.json", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|item| item.get(*method)).is_some(),
                "the document lacks {method} {path}"
            );
        }
    }
    // (utoipa cannot read its own `{}` schema of "any JSON value" back, so the document is
    // checked by its structure rather than by a round trip.)
    assert_eq!(doc.body["info"]["title"], "Stoker");
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    // Every reference resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => out.push(target.clone()),
                        _ => refs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&doc.body, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(schemas.contains_key(name), "dangling reference {target}");
    }
    for schema in [
        "EnqueueRequest",
        "JobView",
        "ErrorBody",
        "ErrorCode",
        "ReserveRequest",
        "JobState",
    ] {
        assert!(schemas.contains_key(schema), "no schema {schema}");
    }
    let codes = &schemas["ErrorCode"];
    assert!(codes.to_string().contains("lease_lost"), "{codes}");
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    server.stop().await;
}

async fn builtin_webhook_runs_in_the_server(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    // The server's own worker delivers a webhook to the server itself.
    let id = server
        .enqueue(json!({
            "kind": "webhook",
            "queue": "builtin",
            "args": {"url": format!("{}/health", server.url), "method": "GET"},
        }))
        .await;
    let job = eventually("the webhook job to finish", || async {
        let job = server.job(id).await;
        (job["state"] == "completed").then_some(job)
    })
    .await;
    assert!(!job["result"].is_null(), "{job}");
    // The worker's events reach the metrics just after the job is written.
    eventually("the webhook's metrics", || async {
        let metrics = server.metrics().await;
        (metrics.contains("stoker_jobs_completed_total{queue=\"builtin\",kind=\"webhook\"} 1")
            && metrics
                .contains("stoker_job_run_seconds_count{queue=\"builtin\",kind=\"webhook\"} 1"))
        .then_some(())
    })
    .await;
    server.stop().await;
}
