//! `GET /v1/events` over a real socket, on every store (issue 13, live events): a job
//! followed to its end whether this server or another process runs it, snapshots with every
//! key, a stream that ends by itself with `timeout_secs`, and bad parameters refused by name.

mod api_support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use std::collections::BTreeSet;

use stoker::{Client, Failure, Reservation, Store};
use stoker_server::config::{ApiToken, Scope};

use api_support::{config, eventually, start, TestServer, WAIT};

store_tests!(
    a_job_is_followed_to_its_end_over_http,
    a_job_finished_by_another_process_ends_the_stream,
    snapshots_carry_every_key_and_timeouts_end_streams,
    bad_parameters_are_refused_by_name,
    a_tenant_token_sees_only_its_tenant,
    // --- stream ops ---
    the_snapshot_can_be_polled,
);

/// An open event stream: its blocks, read as they arrive.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(server: &TestServer, query: &str) -> Stream {
        Stream::open_as(server, query, None).await
    }

    async fn open_as(server: &TestServer, query: &str, token: Option<&str>) -> Stream {
        let mut request = server.http.get(format!("{}/v1/events?{query}", server.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("open the stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's name and JSON data (comments skipped); `None` once the server closed
    /// the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(value.trim()).expect("JSON data"));
                    }
                }
                if let Some(data) = data {
                    return Some((name, data));
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("read the stream")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every event until the server closes the stream.
    async fn rest(&mut self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

async fn enqueue(server: &TestServer, kind: &str) -> i64 {
    let created = server
        .post(
            "/v1/jobs",
            json!({"kind": kind, "args": {}, "max_attempts": 1, "metadata": {"correlation_id": "order-7"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.body["id"].as_i64().unwrap()
}

fn states(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(name, _)| name == "job")
        .map(|(_, data)| data["state"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_job_is_followed_to_its_end_over_http(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    let id = enqueue(&server, "resize").await;
    let mut stream = Stream::open(&server, &format!("job={id}&snapshot=false")).await;
    let (name, first) = stream.next().await.expect("the job as it is");
    assert_eq!(name, "job");
    assert_eq!(first["id"], id);
    assert_eq!(first["state"], "available");
    assert_eq!(first["correlation_id"], "order-7");
    for key in ["queue", "kind", "tenant", "attempt", "at", "error"] {
        assert!(first.get(key).is_some(), "no {key}: {first}");
    }

    // A pull worker reserves and fails it through this server's API.
    let reserved = server
        .post(
            "/v1/pull/reserve",
            json!({"worker": "pull:test", "queues": ["default"], "limit": 1, "wait_seconds": 0}),
        )
        .await;
    assert_eq!(reserved.status, 200, "{reserved:?}");
    let fence = reserved.body["jobs"][0]["fence"].as_i64().unwrap();
    let failed = server
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": fence, "error": "out of memory"}),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");

    let events = stream.rest().await;
    assert_eq!(states(&events), ["running", "discarded"], "{events:?}");
    let discarded = &events[1].1;
    assert_eq!(discarded["error"], "out of memory");
    assert_eq!(discarded["correlation_id"], "order-7");
    assert_eq!(events.last().unwrap().0, "end", "{events:?}");
    // The server lets go of the subscription once the stream has ended.
    let hub = server.server.state().client().event_hub().clone();
    eventually("no subscription left", || {
        let hub = hub.clone();
        async move { (hub.subscribers() == 0 && !hub.is_running()).then_some(()) }
    })
    .await;
    server.stop().await;
}

async fn a_job_finished_by_another_process_ends_the_stream(store: Arc<dyn Store>) {
    let server = start(Arc::clone(&store), config()).await;
    let id = enqueue(&server, "render").await;
    let mut stream = Stream::open(&server, &format!("job={id}&snapshot=false")).await;
    assert_eq!(stream.next().await.unwrap().1["state"], "available");

    // Another process: a client of its own, with its own event hub, on the same database.
    let elsewhere = Client::new(store);
    let reserved = elsewhere
        .reserve(&Reservation {
            worker: "pull:elsewhere".into(),
            queues: vec!["default".into()],
            kinds: Vec::new(),
            limit: 1,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert_eq!(reserved.len(), 1);
    elsewhere
        .fail_reserved(
            stoker::JobId(id),
            reserved[0].fence,
            Failure {
                message: "gpu lost".into(),
                retry_in: None,
                discard: true,
            },
        )
        .await
        .unwrap();

    let events = stream.rest().await;
    let last_job = events
        .iter()
        .rev()
        .find(|(name, _)| name == "job")
        .expect("a job event");
    assert_eq!(last_job.1["state"], "discarded", "{events:?}");
    assert_eq!(last_job.1["error"], "gpu lost");
    assert_eq!(events.last().unwrap().0, "end", "{events:?}");
    server.stop().await;
}

async fn snapshots_carry_every_key_and_timeouts_end_streams(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    enqueue(&server, "thumbnail").await;
    let mut stream = Stream::open(&server, "timeout_secs=2&jobs=false").await;
    let (name, snapshot) = stream.next().await.expect("a snapshot");
    assert_eq!(name, "snapshot");
    let states = [
        "available",
        "scheduled",
        "running",
        "retryable",
        "completed",
        "discarded",
        "cancelled",
    ];
    for key in states {
        assert!(
            snapshot["states"][key].is_i64(),
            "no states.{key}: {snapshot}"
        );
    }
    assert_eq!(snapshot["states"]["available"], 1);
    let queue = snapshot["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["name"] == "default")
        .unwrap_or_else(|| panic!("no default queue: {snapshot}"));
    assert_eq!(queue["paused"], false);
    assert_eq!(queue["states"]["available"], 1);
    assert!(queue["oldest_waiting_secs"].is_f64(), "{queue}");
    for key in ["enqueued", "started", "completed", "failed", "discarded"] {
        assert!(
            snapshot["minute"][key].is_i64(),
            "no minute.{key}: {snapshot}"
        );
    }
    assert_eq!(
        snapshot["workers_alive"], 1,
        "the built-in worker: {snapshot}"
    );
    // The stream closes by itself after its timeout, having sent only snapshots.
    let rest = stream.rest().await;
    assert!(rest.iter().all(|(name, _)| name == "snapshot"), "{rest:?}");

    // A client that goes away ends its stream: the server drops the subscription, and the
    // snapshot task stops with the last one.
    let hub = server.server.state().client().event_hub().clone();
    let mut open = Stream::open(&server, "queue=default").await;
    assert_eq!(open.next().await.expect("a snapshot").0, "snapshot");
    assert!(hub.subscribers() >= 1);
    drop(open);
    eventually("the subscription dropped", || {
        let hub = hub.clone();
        async move { (hub.subscribers() == 0 && !hub.is_running()).then_some(()) }
    })
    .await;
    server.stop().await;
}

async fn bad_parameters_are_refused_by_name(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    for (query, field) in [
        ("job=0", "job"),
        ("job=abc", "job"),
        ("snapshot=maybe", "snapshot"),
        ("timeout_secs=0", "timeout_secs"),
        ("queue=not%20a%20queue", "queue"),
        ("kind=a%20b", "kind"),
        ("colour=red", "colour"),
    ] {
        let answer = server.get(&format!("/v1/events?{query}")).await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{query}: {answer:?}");
    }
    let too_many: Vec<String> = (1..=101).map(|id| format!("job={id}")).collect();
    let answer = server
        .get(&format!("/v1/events?{}", too_many.join("&")))
        .await;
    answer.assert_error(422, "invalid_field");
    let missing = server.get("/v1/events?job=987654321").await;
    missing.assert_error(404, "not_found");
    server.stop().await;
}

async fn a_tenant_token_sees_only_its_tenant(store: Arc<dyn Store>) {
    const ADMIN: &str = "events-admin-token-0123456789";
    const ACME: &str = "events-acme-token-0123456789";
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        ApiToken {
            name: "acme".into(),
            secret: ACME.into(),
            scopes: [Scope::Read, Scope::Enqueue]
                .into_iter()
                .collect::<BTreeSet<_>>(),
            tenant: Some("acme".into()),
        },
    ];
    let server = start(store, config).await;
    let admin = server.with_token(ADMIN);
    let acme = server.with_token(ACME);
    let globex = admin
        .post("/v1/jobs", json!({"kind": "k", "tenant": "globex"}))
        .await;
    assert_eq!(globex.status, 201, "{globex:?}");
    let globex = globex.body["id"].as_i64().unwrap();

    // Another tenant's job is not found; asking for another tenant is forbidden.
    acme.get(&format!("/v1/events?job={globex}"))
        .await
        .assert_error(404, "not_found");
    acme.get("/v1/events?tenant=globex")
        .await
        .assert_error(403, "tenant_forbidden");

    // The tenant's stream: its own jobs only (its snapshots are the other test's).
    let mut stream = Stream::open_as(&server, "timeout_secs=2&snapshot=false", Some(ACME)).await;
    admin
        .post("/v1/jobs", json!({"kind": "k", "tenant": "globex"}))
        .await;
    let own = acme.post("/v1/jobs", json!({"kind": "k"})).await;
    assert_eq!(own.status, 201, "{own:?}");
    let events = stream.rest().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "job");
    assert_eq!(events[0].1["id"], own.body["id"]);
    assert_eq!(events[0].1["tenant"], "acme");
    server.stop().await;
}

// --- stream ops ---
/// `GET /v1/events/snapshot`: the stream's snapshot as one answer, with the same keys, for a
/// client whose stream fails; read scope. A tenant-bound token gets its tenant's snapshot,
/// polled and streamed (issue 17).
async fn the_snapshot_can_be_polled(store: Arc<dyn Store>) {
    const ADMIN: &str = "snapshot-admin-token-0123456789";
    const ACME: &str = "snapshot-acme-token-0123456789";
    const PUSH: &str = "snapshot-enqueue-token-0123456789";
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        ApiToken {
            name: "acme".into(),
            secret: ACME.into(),
            scopes: [Scope::Read].into_iter().collect::<BTreeSet<_>>(),
            tenant: Some("acme".into()),
        },
        ApiToken {
            name: "push".into(),
            secret: PUSH.into(),
            scopes: [Scope::Enqueue].into_iter().collect::<BTreeSet<_>>(),
            tenant: None,
        },
    ];
    let server = start(store, config).await;
    let admin = server.with_token(ADMIN);
    let due = admin.post("/v1/jobs", json!({"kind": "k"})).await;
    assert_eq!(due.status, 201, "{due:?}");
    let later = admin
        .post(
            "/v1/jobs",
            json!({"kind": "k", "queue": "later", "delay_seconds": 3600}),
        )
        .await;
    assert_eq!(later.status, 201, "{later:?}");

    let answer = admin.get("/v1/events/snapshot").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let snapshot = &answer.body;
    assert_eq!(snapshot["states"]["available"], 1, "{snapshot}");
    assert_eq!(snapshot["states"]["scheduled"], 1, "{snapshot}");
    for key in [
        "running",
        "retryable",
        "completed",
        "discarded",
        "cancelled",
    ] {
        assert_eq!(snapshot["states"][key], 0, "states.{key}: {snapshot}");
    }
    let queue = snapshot["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["name"] == "later")
        .unwrap_or_else(|| panic!("no queue later: {snapshot}"));
    assert_eq!(queue["states"]["scheduled"], 1, "{queue}");
    assert_eq!(queue["paused"], false);
    for key in ["enqueued", "started", "completed", "failed", "discarded"] {
        assert!(
            snapshot["minute"][key].is_i64(),
            "no minute.{key}: {snapshot}"
        );
    }
    assert!(snapshot["workers_alive"].is_u64(), "{snapshot}");
    assert!(snapshot["at"].is_string(), "{snapshot}");

    // The same keys as a streamed snapshot.
    let mut stream = Stream::open_as(&server, "timeout_secs=2&jobs=false", Some(ADMIN)).await;
    let (_, streamed) = stream.next().await.expect("a snapshot");
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(snapshot), keys(&streamed));
    assert_eq!(keys(&snapshot["states"]), keys(&streamed["states"]));
    drop(stream);

    // --- stream tenant ---
    // acme's snapshot counts acme's jobs only: one of its own beside the two without a tenant.
    let own = server
        .with_token(ADMIN)
        .post(
            "/v1/jobs",
            json!({"kind": "k", "queue": "acme-q", "tenant": "acme"}),
        )
        .await;
    assert_eq!(own.status, 201, "{own:?}");
    let polled = server.with_token(ACME).get("/v1/events/snapshot").await;
    assert_eq!(polled.status, 200, "{polled:?}");
    assert_eq!(polled.body["states"]["available"], 1, "{:?}", polled.body);
    assert_eq!(polled.body["states"]["scheduled"], 0, "{:?}", polled.body);
    let names: Vec<&str> = polled.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|queue| queue["name"].as_str())
        .collect();
    assert_eq!(names, vec!["acme-q"], "{:?}", polled.body);
    let mut stream = Stream::open_as(&server, "timeout_secs=2&jobs=false", Some(ACME)).await;
    let (kind, streamed) = stream.next().await.expect("a snapshot");
    assert_eq!(kind, "snapshot");
    assert_eq!(streamed["states"]["available"], 1, "{streamed}");
    assert_eq!(streamed["states"]["scheduled"], 0, "{streamed}");
    drop(stream);
    server
        .with_token(PUSH)
        .get("/v1/events/snapshot")
        .await
        .assert_error(403, "missing_scope");
    server.stop().await;
}
