//! Job-completion callbacks over a real socket, on every store (issue 13, item 8): a job
//! enqueued with `on_finish` posts its outcome to a local receiver once it completes or is
//! cancelled, delivered by the server's own webhook worker; a bad callback names its field
//! and writes nothing.

mod api_support;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use stoker::Store;

use api_support::{config, eventually, start};

store_tests!(
    outcomes_reach_a_local_receiver,
    bad_callbacks_name_the_field_and_write_nothing,
    // --- stream history ---
    callback_urls_hidden_from_readers,
);

/// A receiver on a free port, and the bodies it was posted, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new().route(
        "/done",
        post({
            let received = Arc::clone(&received);
            move |Json(body): Json<Value>| async move {
                received.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/done", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (target, received)
}

async fn outcomes_reach_a_local_receiver(store: Arc<dyn Store>) {
    let (target, received) = receiver().await;
    let server = start(store, config()).await;
    // The test server's built-in worker serves `builtin`: the callbacks go there.
    let on_finish = json!({"url": target, "queue": "builtin"});

    // A job nothing serves, cancelled: its callback says so.
    let held = server
        .enqueue(json!({
            "kind": "report", "queue": "held", "args": {}, "tenant": "acme",
            "on_finish": on_finish,
        }))
        .await;
    let view = server.job(held).await;
    assert_eq!(view["on_finish"], on_finish, "{view:#}");
    let cancelled = server
        .post(&format!("/v1/jobs/{held}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    let posted = eventually("the cancel's callback", || async {
        received.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(posted["type"], "job.finished", "{posted:#}");
    assert_eq!(posted["id"], held);
    assert_eq!(posted["kind"], "report");
    assert_eq!(posted["queue"], "held");
    assert_eq!(posted["tenant"], "acme");
    assert_eq!(posted["state"], "cancelled");
    assert_eq!(posted["result"], Value::Null);

    // A webhook job the server runs itself, posting to the receiver too: it completes, and
    // its callback carries its result.
    let hook = server
        .enqueue(json!({
            "kind": "webhook", "queue": "builtin",
            "args": {"url": target, "body": {"hello": "world"}},
            "on_finish": on_finish,
        }))
        .await;
    let posted = eventually("the completion's callback", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|body| body["id"] == hook)
            .cloned()
    })
    .await;
    assert_eq!(posted["state"], "completed", "{posted:#}");
    assert_eq!(posted["attempt"], 1);
    assert_eq!(
        posted["result"]["status"], 200,
        "the webhook's result: {posted:#}"
    );
    let finished = server.job(hook).await;
    assert_eq!(
        posted["finished_at"].as_str().map(parse),
        finished["finished_at"].as_str().map(parse)
    );

    // Each delivery job ran once; nothing else was posted (the callbacks have none of their
    // own).
    let callbacks = eventually("both callbacks completed", || async {
        let list = server.get("/v1/jobs?kind=webhook&state=completed").await;
        let jobs = list.body["jobs"].as_array().cloned().unwrap_or_default();
        (jobs.len() == 3).then_some(jobs)
    })
    .await;
    let sources: Vec<&str> = callbacks
        .iter()
        .filter_map(|job| job["metadata"]["source"].as_str())
        .filter(|source| *source == "on_finish")
        .collect();
    assert_eq!(sources.len(), 2, "{callbacks:#?}");
    let bodies = received.lock().unwrap().clone();
    // The webhook job's own request, and the two callbacks.
    assert_eq!(bodies.len(), 3, "{bodies:#?}");
    server.stop().await;
}

fn parse(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("an RFC 3339 instant")
}

async fn bad_callbacks_name_the_field_and_write_nothing(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    for (on_finish, field) in [
        (json!({"url": "ftp://example.com/x"}), "on_finish.url"),
        (json!({"url": "example.com/hooks"}), "on_finish.url"),
        (json!({"url": "https://"}), "on_finish.url"),
        (
            json!({"url": "https://example.com/", "queue": "a b"}),
            "on_finish.queue",
        ),
    ] {
        let answer = server
            .post(
                "/v1/jobs",
                json!({"kind": "report", "on_finish": on_finish}),
            )
            .await;
        answer.assert_error(422, "invalid_field");
        assert_eq!(answer.field(), field, "{answer:?}");
    }
    let unknown = server
        .post(
            "/v1/jobs",
            json!({"kind": "report", "on_finish": {"url": "https://example.com/", "method": "PUT"}}),
        )
        .await;
    unknown.assert_error(422, "invalid_field");
    let bulk = server
        .post(
            "/v1/jobs/bulk",
            json!({"jobs": [
                {"kind": "report", "on_finish": {"url": "https://example.com/ok"}},
                {"kind": "report", "on_finish": {"url": "gopher://example.com/"}},
            ]}),
        )
        .await;
    bulk.assert_error(422, "invalid_field");
    assert_eq!(bulk.field(), "jobs[1].on_finish.url", "{bulk:?}");
    let list = server.get("/v1/jobs").await;
    assert_eq!(
        list.body["jobs"],
        json!([]),
        "nothing was written: {list:?}"
    );
    server.stop().await;
}

// --- stream history ---

mod hidden {
    use super::*;
    use std::collections::BTreeSet;
    use stoker_server::config::{ApiToken, Scope};

    const ADMIN: &str = "admin-token-0123456789";
    const READER: &str = "reader-token-0123456789";
    const OPERATOR: &str = "operator-token-0123456789";
    const ENQUEUER: &str = "enqueuer-token-0123456789";
    const SIGNED: &str = "https://hooks.example.com:8443/t/s3cr3t?sig=abc123";
    const SHOWN: &str = "https://hooks.example.com:8443/[redacted]";

    fn token(name: &str, secret: &str, scope: Scope) -> ApiToken {
        ApiToken {
            name: name.to_owned(),
            secret: secret.to_owned(),
            scopes: BTreeSet::from([scope]),
            tenant: None,
        }
    }

    /// A callback URL can carry a secret (a signed URL): a read-only token sees the job's
    /// `on_finish` URL, and the `url` arg of its delivery job, as scheme and host only, in
    /// get and list; tokens that may enqueue, operate or administer see it whole.
    pub(super) async fn callback_urls_hidden_from_readers(store: Arc<dyn Store>) {
        let mut config = config();
        config.tokens = vec![
            ApiToken::admin(ADMIN),
            token("reader", READER, Scope::Read),
            token("operator", OPERATOR, Scope::Operate),
            // Enqueue alone cannot read jobs: enqueue and read together see the URL whole.
            ApiToken {
                scopes: BTreeSet::from([Scope::Enqueue, Scope::Read]),
                ..token("enqueuer", ENQUEUER, Scope::Enqueue)
            },
        ];
        let server = start(store, config).await;
        let admin = server.with_token(ADMIN);
        let created = admin
            .post(
                "/v1/jobs",
                json!({
                    "kind": "report", "queue": "held", "args": {},
                    "on_finish": {"url": SIGNED, "queue": "held-hooks"},
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let id = created.body["id"].as_i64().expect("an id");

        let reader = server.with_token(READER);
        let shown = reader.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(shown.status, 200, "{shown:?}");
        assert_eq!(shown.body["on_finish"]["url"], SHOWN, "{shown:?}");
        assert_eq!(shown.body["on_finish"]["queue"], "held-hooks");
        let listed = reader.get("/v1/jobs?queue=held").await;
        assert_eq!(listed.status, 200, "{listed:?}");
        assert!(!listed.body.to_string().contains("s3cr3t"), "{listed:?}");
        assert!(listed.body.to_string().contains(SHOWN), "{listed:?}");
        for whole in [ADMIN, OPERATOR, ENQUEUER] {
            let shown = server
                .with_token(whole)
                .get(&format!("/v1/jobs/{id}"))
                .await;
            assert_eq!(shown.body["on_finish"]["url"], SIGNED, "{shown:?}");
        }

        // The delivery job (nothing serves its queue, so it waits) carries the URL in its
        // args: hidden from the reader too, whole for the others and in the database.
        let cancelled = admin
            .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
            .await;
        assert_eq!(cancelled.status, 200, "{cancelled:?}");
        let listed = reader.get("/v1/jobs?queue=held-hooks").await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let jobs = listed.body["jobs"].as_array().expect("jobs").clone();
        assert_eq!(jobs.len(), 1, "{listed:?}");
        assert_eq!(jobs[0]["kind"], "webhook");
        assert_eq!(jobs[0]["args"]["url"], SHOWN, "{listed:?}");
        let hook = jobs[0]["id"].as_i64().expect("an id");
        let shown = reader.get(&format!("/v1/jobs/{hook}")).await;
        assert_eq!(shown.body["args"]["url"], SHOWN, "{shown:?}");
        let shown = server
            .with_token(OPERATOR)
            .get(&format!("/v1/jobs/{hook}"))
            .await;
        assert_eq!(shown.body["args"]["url"], SIGNED, "{shown:?}");
    }
}

use hidden::callback_urls_hidden_from_readers;
