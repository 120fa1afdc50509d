//! Tenant isolation (issue 17, item 1), generated from the OpenAPI document, on every store.
//!
//! Two tenants, `acme` and `globex`, each get jobs (waiting, running under a pull lease,
//! discarded with a failure group and log lines), a cron schedule, a bulk operation, a stored
//! token and an alert rule. Then every operation the document lists is called with acme's
//! token (bound to acme, with the admin scope, so only the tenant binding stands in the way):
//! once against globex's ids and names, once against acme's own. Whatever the route answers,
//! no body ever holds anything of globex (every name, queue, kind, error and arg of globex
//! contains the word), a request for globex's object is 404 (or 403 for a route that spans
//! every tenant), never a success; and afterwards globex's objects are as they were.
//!
//! The calls come from the document: an operation this test does not know how to call fails
//! it, so a new route is covered as soon as it is documented.

mod api_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};
use stoker::Store;
use stoker_server::config::{ApiToken, Scope};

use api_support::{config, eventually, start, TestServer};

store_tests!(
    every_documented_operation_keeps_tenants_apart,
    a_stored_admin_token_switches_auth_on,
);

const ADMIN: &str = "admin-token-0123456789";
const ACME: &str = "acme-token-0123456789";
const GLOBEX: &str = "globex-token-0123456789";
/// Every name, queue, kind, error and arg of the other tenant holds this word.
const MARKER: &str = "globex";

fn tenant_token(tenant: &str, secret: &str) -> ApiToken {
    ApiToken {
        name: tenant.to_owned(),
        secret: secret.to_owned(),
        scopes: BTreeSet::from([Scope::Admin]),
        tenant: Some(tenant.to_owned()),
    }
}

/// A status and the body as text (some routes answer text or a stream).
#[derive(Debug)]
struct Raw {
    status: u16,
    text: String,
}

async fn call(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Raw {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = server.http.request(method, format!("{}{path}", server.url));
    // An empty token sends no Authorization header at all.
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    Raw { status, text }
}

async fn json_call(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let raw = call(server, token, method, path, body.as_ref()).await;
    assert!(raw.status < 300, "{method} {path}: {raw:?}");
    serde_json::from_str(&raw.text).unwrap_or(Value::Null)
}

/// One tenant's objects.
#[derive(Debug, Clone)]
struct Owned {
    tenant: String,
    waiting: i64,
    running: i64,
    fence: i64,
    discarded: i64,
    fingerprint: String,
    cron: String,
    op: i64,
    token: String,
    alert: String,
    /// A workflow of the tenant's: `a`, then `b` (blocked on `a`).
    workflow: i64,
    // --- stream workflows ---
    /// An open batch of the tenant's, with a callback and one job.
    batch: i64,
}

async fn enqueue(
    server: &TestServer,
    secret: &str,
    tenant: &str,
    queue: &str,
    extra: Value,
) -> i64 {
    let mut body = json!({
        "kind": format!("k-{tenant}"),
        "queue": format!("{queue}-{tenant}"),
        "args": {"owner": tenant},
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    json_call(server, secret, "post", "/v1/jobs", Some(body)).await["id"]
        .as_i64()
        .expect("an id")
}

/// Reserves the one job of `queue` with the tenant's own token: a tenant-bound worker.
async fn reserve_one(server: &TestServer, secret: &str, tenant: &str, queue: &str) -> (i64, i64) {
    let answer = json_call(
        server,
        secret,
        "post",
        "/v1/pull/reserve",
        Some(json!({"worker": format!("w-{tenant}"), "queues": [format!("{queue}-{tenant}")], "limit": 10})),
    )
    .await;
    let jobs = answer["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{answer}");
    assert_eq!(jobs[0]["tenant"], tenant);
    (
        jobs[0]["id"].as_i64().expect("id"),
        jobs[0]["fence"].as_i64().expect("fence"),
    )
}

async fn set_up(server: &TestServer, tenant: &str, secret: &str) -> Owned {
    let waiting = enqueue(server, secret, tenant, "q", json!({})).await;
    enqueue(server, secret, tenant, "run", json!({})).await;
    let (running, fence) = reserve_one(server, secret, tenant, "run").await;
    json_call(
        server,
        secret,
        "post",
        &format!("/v1/pull/jobs/{running}/logs"),
        Some(json!({"fence": fence, "lines": [format!("log of {tenant}")]})),
    )
    .await;
    enqueue(server, secret, tenant, "fail", json!({"max_attempts": 1})).await;
    let (discarded, failed_fence) = reserve_one(server, secret, tenant, "fail").await;
    json_call(
        server,
        secret,
        "post",
        &format!("/v1/pull/jobs/{discarded}/fail"),
        Some(json!({"fence": failed_fence, "error": format!("boom of {tenant}")})),
    )
    .await;
    let fingerprint = eventually("the failure group", || async {
        let groups = json_call(server, ADMIN, "get", "/v1/failures", None).await;
        groups["groups"].as_array().and_then(|groups| {
            groups
                .iter()
                .find(|group| group["kind"] == format!("k-{tenant}"))
                .and_then(|group| group["fingerprint"].as_str().map(str::to_owned))
        })
    })
    .await;
    let cron = format!("cron-{tenant}");
    let created = json_call(
        server,
        secret,
        "post",
        "/v1/cron",
        Some(json!({"name": cron, "expr": "@yearly", "kind": format!("k-{tenant}")})),
    )
    .await;
    assert_eq!(created["tenant"], tenant, "a tenant's schedule is its own");
    enqueue(server, secret, tenant, "bulk", json!({})).await;
    let op = json_call(
        server,
        secret,
        "post",
        "/v1/ops",
        Some(json!({"action": "cancel", "filter": {"queues": [format!("bulk-{tenant}")]}})),
    )
    .await["id"]
        .as_i64()
        .expect("an op id");
    let token = json_call(
        server,
        ADMIN,
        "post",
        "/v1/tokens",
        Some(json!({"name": format!("tok-{tenant}"), "scopes": ["read"], "tenant": tenant})),
    )
    .await["token"]["id"]
        .as_str()
        .expect("a token id")
        .to_owned();
    let alert = format!("alert-{tenant}");
    json_call(
        server,
        ADMIN,
        "post",
        "/v1/alerts",
        Some(
            json!({"name": alert, "metric": "discarded", "url": "http://x.test/h",
                    "scope": {"tenant": tenant}}),
        ),
    )
    .await;
    let workflow = json_call(
        server,
        secret,
        "post",
        "/v1/workflows",
        Some(json!({"name": format!("wf-{tenant}"), "jobs": [
            {"name": "a", "job": {"kind": format!("k-{tenant}"), "queue": format!("wf-{tenant}")}},
            {"name": "b", "job": {"kind": format!("k-{tenant}"), "queue": format!("wf-{tenant}")},
             "depends_on": [{"node": "a"}]},
        ]})),
    )
    .await["id"]
        .as_i64()
        .expect("a workflow id");
    // --- stream workflows ---
    let batch = json_call(
        server,
        secret,
        "post",
        "/v1/batches",
        Some(json!({"name": format!("batch-{tenant}"), "open": true,
            "callback": {"kind": format!("k-{tenant}"), "queue": format!("cb-{tenant}"),
                         "args": {"owner": tenant}},
            "jobs": [{"kind": format!("k-{tenant}"), "queue": format!("batch-{tenant}")}]})),
    )
    .await["id"]
        .as_i64()
        .expect("a batch id");
    Owned {
        tenant: tenant.to_owned(),
        workflow,
        batch,
        waiting,
        running,
        fence,
        discarded,
        fingerprint,
        cron,
        op,
        token,
        alert,
    }
}

/// What a call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// It names the other tenant's object (or the other tenant): 404, or 403 for a route
    /// that spans every tenant.
    Refused,
    /// Anything but a server error, with nothing of the other tenant in the body.
    Clean,
}

struct Call {
    path: String,
    body: Option<Value>,
    expect: Expect,
}

fn call_of(path: impl Into<String>, body: Option<Value>, expect: Expect) -> Call {
    Call {
        path: path.into(),
        body,
        expect,
    }
}

/// The calls of one documented operation: against `other`'s objects (refused) and `own`'s
/// (clean). `None` for an operation this test does not know.
fn calls(method: &str, path: &str, own: &Owned, other: &Owned) -> Option<Vec<Call>> {
    use Expect::{Clean, Refused};
    let by_job = |suffix: &str, body: Option<Value>| -> Vec<Call> {
        let mut calls = Vec::new();
        for id in [other.waiting, other.running, other.discarded] {
            calls.push(call_of(
                format!("/v1/jobs/{id}{suffix}"),
                body.clone(),
                Refused,
            ));
        }
        for id in [own.waiting, own.discarded] {
            calls.push(call_of(
                format!("/v1/jobs/{id}{suffix}"),
                body.clone(),
                Clean,
            ));
        }
        calls
    };
    let by_reserved = |op: &str, body: Value| -> Vec<Call> {
        let with_fence = |fence: i64| {
            let mut body = body.clone();
            body["fence"] = json!(fence);
            Some(body)
        };
        vec![
            call_of(
                format!("/v1/pull/jobs/{}/{op}", other.running),
                with_fence(other.fence),
                Refused,
            ),
            call_of(
                format!("/v1/pull/jobs/{}/{op}", own.running),
                with_fence(own.fence),
                Clean,
            ),
        ]
    };
    let by_name = |prefix: &str, theirs: &str, mine: &str, suffix: &str, body: Option<Value>| {
        vec![
            call_of(format!("{prefix}/{theirs}{suffix}"), body.clone(), Refused),
            call_of(format!("{prefix}/{mine}{suffix}"), body, Clean),
        ]
    };
    let other_tenant = &other.tenant;
    let own_job = json!({"kind": "k-new", "args": {}});
    let foreign_job = json!({"kind": "k-new", "args": {}, "tenant": other_tenant});
    let cron_patch = json!({"expr": "@monthly"});
    let calls = match (method, path) {
        ("get", "/health") => vec![call_of("/health", None, Clean)],
        ("get", "/metrics") => vec![call_of("/metrics", None, Clean)],
        ("get", "/v1/openapi.json") => vec![call_of(path, None, Clean)],
        ("get", "/v1/handlers") => vec![call_of(path, None, Clean)],
        ("get", "/v1/workers") => vec![call_of(path, None, Clean)],
        ("get", "/v1/stats") => vec![call_of(path, None, Clean)],
        ("get", "/v1/stats/series") => vec![
            call_of(path, None, Clean),
            call_of(format!("{path}?tenant={other_tenant}"), None, Refused),
        ],
        ("get", "/v1/queues") => vec![call_of(path, None, Clean)],
        ("get", "/v1/queues/depths") => vec![call_of(path, None, Clean)],
        ("post", "/v1/queues/{name}/pause") => by_name(
            "/v1/queues",
            &format!("q-{other_tenant}"),
            "q-new",
            "/pause",
            None,
        ),
        ("post", "/v1/queues/{name}/resume") => by_name(
            "/v1/queues",
            &format!("q-{other_tenant}"),
            "q-new",
            "/resume",
            None,
        ),
        ("get", "/v1/jobs") => vec![
            call_of(path, None, Clean),
            call_of("/v1/jobs?state=discarded", None, Clean),
            call_of(format!("/v1/jobs?tenant={other_tenant}"), None, Refused),
            call_of(format!("/v1/jobs?q=tenant:{other_tenant}"), None, Refused),
        ],
        ("post", "/v1/jobs") => vec![
            call_of(path, Some(own_job.clone()), Clean),
            call_of(path, Some(foreign_job.clone()), Refused),
        ],
        ("post", "/v1/jobs/bulk") => vec![
            call_of(path, Some(json!({"jobs": [own_job.clone()]})), Clean),
            call_of(path, Some(json!({"jobs": [foreign_job.clone()]})), Refused),
        ],
        ("post", "/v1/jobs/retry") => vec![
            call_of(path, Some(json!({})), Clean),
            call_of(path, Some(json!({"tenant": other_tenant})), Refused),
        ],
        ("post", "/v1/jobs/clean") => vec![call_of(
            path,
            Some(
                json!({"older_than_seconds": 0, "states": ["discarded", "cancelled", "completed"]}),
            ),
            Clean,
        )],
        ("get", "/v1/jobs/{id}") => by_job("", None),
        ("get", "/v1/jobs/{id}/lineage") => by_job("/lineage", None),
        ("get", "/v1/jobs/{id}/logs") => by_job("/logs", None),
        ("post", "/v1/jobs/{id}/cancel") => by_job("/cancel", Some(json!({}))),
        ("post", "/v1/jobs/{id}/retry") => by_job("/retry", Some(json!({}))),
        ("delete", "/v1/jobs/{id}") => by_job("", None),
        ("post", "/v1/pull/reserve") => {
            let queues =
                ["q", "run", "fail", "bulk"].map(|queue| format!("{queue}-{other_tenant}"));
            vec![call_of(
                path,
                Some(json!({"worker": "w-new", "queues": queues, "limit": 100})),
                Clean,
            )]
        }
        ("post", "/v1/pull/jobs/{id}/heartbeat") => by_reserved("heartbeat", json!({})),
        ("post", "/v1/pull/jobs/{id}/progress") => {
            by_reserved("progress", json!({"fraction": 0.5}))
        }
        ("post", "/v1/pull/jobs/{id}/logs") => by_reserved("logs", json!({"lines": ["more"]})),
        ("post", "/v1/pull/jobs/{id}/snooze") => {
            by_reserved("snooze", json!({"snooze_seconds": 60.0}))
        }
        ("post", "/v1/pull/jobs/{id}/fail") => by_reserved("fail", json!({"error": "no"})),
        ("post", "/v1/pull/jobs/{id}/cancel") => by_reserved("cancel", json!({})),
        ("post", "/v1/pull/jobs/{id}/complete") => by_reserved("complete", json!({})),
        ("post", "/v1/pull/ack") => vec![call_of(
            path,
            Some(json!({"acks": [
                {"op": "complete", "id": other.running, "fence": other.fence},
                {"op": "heartbeat", "id": other.waiting, "fence": other.fence},
            ]})),
            Clean,
        )],
        ("get", "/v1/cron") => vec![call_of(path, None, Clean)],
        ("post", "/v1/cron") => vec![
            call_of(
                path,
                Some(json!({"name": "cron-new", "expr": "@daily", "kind": "k-new"})),
                Clean,
            ),
            call_of(
                path,
                Some(
                    json!({"name": "cron-x", "expr": "@daily", "kind": "k-new", "tenant": other_tenant}),
                ),
                Refused,
            ),
        ],
        ("get", "/v1/cron-next") => vec![call_of("/v1/cron-next?expr=@daily", None, Clean)],
        ("get", "/v1/cron/{name}") => by_name("/v1/cron", &other.cron, &own.cron, "", None),
        ("patch", "/v1/cron/{name}") => by_name(
            "/v1/cron",
            &other.cron,
            &own.cron,
            "",
            Some(cron_patch.clone()),
        ),
        ("get", "/v1/cron/{name}/history") => {
            by_name("/v1/cron", &other.cron, &own.cron, "/history", None)
        }
        ("post", "/v1/cron/{name}/pause") => by_name(
            "/v1/cron",
            &other.cron,
            &own.cron,
            "/pause",
            Some(json!({})),
        ),
        ("post", "/v1/cron/{name}/resume") => by_name(
            "/v1/cron",
            &other.cron,
            &own.cron,
            "/resume",
            Some(json!({})),
        ),
        ("post", "/v1/cron/{name}/run-now") => by_name(
            "/v1/cron",
            &other.cron,
            &own.cron,
            "/run-now",
            Some(json!({})),
        ),
        ("delete", "/v1/cron/{name}") => by_name("/v1/cron", &other.cron, "cron-new", "", None),
        ("get", "/v1/events") => vec![
            call_of("/v1/events?timeout_secs=1", None, Clean),
            call_of(
                format!("/v1/events?timeout_secs=1&job={}", other.running),
                None,
                Refused,
            ),
            call_of(
                format!("/v1/events?timeout_secs=1&tenant={other_tenant}"),
                None,
                Refused,
            ),
        ],
        ("get", "/v1/failures") => vec![call_of(path, None, Clean)],
        // Workflows, limits and the polled snapshot (merged in with issues 16, 18 and 13).
        ("get", "/v1/events/snapshot") => vec![call_of(path, None, Clean)],
        ("get", "/v1/limits") => vec![call_of(path, None, Clean)],
        ("put", "/v1/limits/{name}") => vec![call_of(
            "/v1/limits/lim-new",
            Some(json!({"key": "tenant", "concurrency": 5})),
            Clean,
        )],
        ("delete", "/v1/limits/{name}") => vec![call_of("/v1/limits/lim-new", None, Clean)],
        ("get", "/v1/pull/jobs/{id}/dependencies") => vec![
            call_of(
                format!("/v1/pull/jobs/{}/dependencies", other.waiting),
                None,
                Refused,
            ),
            call_of(
                format!("/v1/pull/jobs/{}/dependencies", own.waiting),
                None,
                Clean,
            ),
        ],
        ("post", "/v1/workflows") => vec![
            call_of(
                path,
                Some(json!({"name": "wf-new", "jobs": [{"name": "a", "job": {"kind": "k-new"}}]})),
                Clean,
            ),
            call_of(
                path,
                Some(json!({"name": "wf-x", "tenant": other_tenant,
                            "jobs": [{"name": "a", "job": {"kind": "k-new"}}]})),
                Refused,
            ),
            // A dependency on the other tenant's job is refused as one on a missing job is,
            // and the answer tells nothing of it.
            call_of(
                path,
                Some(
                    json!({"name": "wf-y", "jobs": [{"name": "a", "job": {"kind": "k-new"},
                            "depends_on": [{"job": other.waiting}]}]}),
                ),
                Clean,
            ),
        ],
        ("get", "/v1/workflows/{id}") => by_name(
            "/v1/workflows",
            &other.workflow.to_string(),
            &own.workflow.to_string(),
            "",
            None,
        ),
        ("post", "/v1/workflows/{id}/jobs") => by_name(
            "/v1/workflows",
            &other.workflow.to_string(),
            &own.workflow.to_string(),
            "/jobs",
            Some(json!({"jobs": [{"name": "c", "job": {"kind": "k-new"},
                                  "depends_on": [{"node": "b"}]}]})),
        ),
        ("post", "/v1/workflows/{id}/cancel") => by_name(
            "/v1/workflows",
            &other.workflow.to_string(),
            &own.workflow.to_string(),
            "/cancel",
            Some(json!({})),
        ),
        // --- integration ---
        // A parent's children and a pull worker's batch (issue 18, merged in this session).
        ("get", "/v1/jobs/{id}/children") => by_job("/children", None),
        ("get", "/v1/pull/jobs/{id}/batch") => vec![
            call_of(
                format!("/v1/pull/jobs/{}/batch", other.waiting),
                None,
                Refused,
            ),
            call_of(format!("/v1/pull/jobs/{}/batch", own.waiting), None, Clean),
        ],
        ("post", "/v1/pull/jobs/{id}/batch/jobs") => {
            by_reserved("batch/jobs", json!({"jobs": [{"kind": "k-new"}]}))
        }
        ("post", "/v1/pull/jobs/{id}/children") => {
            by_reserved("children", json!({"jobs": [{"kind": "k-new"}]}))
        }
        ("post", "/v1/pull/jobs/{id}/wait-children") => by_reserved("wait-children", json!({})),
        // --- stream workflows ---
        ("get", "/v1/workflows") => vec![
            call_of(path, None, Clean),
            call_of(format!("{path}?tenant={other_tenant}"), None, Refused),
        ],
        ("get", "/v1/batches") => vec![
            call_of(path, None, Clean),
            call_of("/v1/batches?state=open", None, Clean),
            call_of(format!("{path}?tenant={other_tenant}"), None, Refused),
        ],
        ("post", "/v1/batches") => vec![
            call_of(
                path,
                Some(json!({"name": "batch-new", "jobs": [{"kind": "k-new"}]})),
                Clean,
            ),
            call_of(
                path,
                Some(json!({"name": "batch-x", "tenant": other_tenant,
                            "jobs": [{"kind": "k-new"}]})),
                Refused,
            ),
        ],
        ("get", "/v1/batches/{id}") => by_name(
            "/v1/batches",
            &other.batch.to_string(),
            &own.batch.to_string(),
            "",
            None,
        ),
        ("post", "/v1/batches/{id}/jobs") => by_name(
            "/v1/batches",
            &other.batch.to_string(),
            &own.batch.to_string(),
            "/jobs",
            Some(json!({"jobs": [{"kind": "k-new"}]})),
        ),
        ("post", "/v1/batches/{id}/close") => by_name(
            "/v1/batches",
            &other.batch.to_string(),
            &own.batch.to_string(),
            "/close",
            None,
        ),
        ("post", "/v1/batches/{id}/cancel") => by_name(
            "/v1/batches",
            &other.batch.to_string(),
            &own.batch.to_string(),
            "/cancel",
            None,
        ),
        ("get", "/v1/failures/{fingerprint}") => by_name(
            "/v1/failures",
            &other.fingerprint,
            &own.fingerprint,
            "",
            None,
        ),
        ("post", "/v1/failures/{fingerprint}/retry") => by_name(
            "/v1/failures",
            &other.fingerprint,
            &own.fingerprint,
            "/retry",
            Some(json!({})),
        ),
        ("post", "/v1/failures/{fingerprint}/discard") => by_name(
            "/v1/failures",
            &other.fingerprint,
            &own.fingerprint,
            "/discard",
            Some(json!({})),
        ),
        ("get", "/v1/ops") => vec![call_of(path, None, Clean)],
        ("post", "/v1/ops") => vec![
            call_of(
                path,
                Some(
                    json!({"action": "cancel", "filter": {"queues": [format!("q-{other_tenant}")]}}),
                ),
                Refused,
            ),
            call_of(
                path,
                Some(json!({"action": "cancel", "filter": {"tenant": other_tenant}})),
                Refused,
            ),
        ],
        ("get", "/v1/ops/{id}") => by_name(
            "/v1/ops",
            &other.op.to_string(),
            &own.op.to_string(),
            "",
            None,
        ),
        ("post", "/v1/ops/{id}/abort") => by_name(
            "/v1/ops",
            &other.op.to_string(),
            &own.op.to_string(),
            "/abort",
            Some(json!({})),
        ),
        ("get", "/v1/alerts") => vec![call_of(path, None, Clean)],
        ("post", "/v1/alerts") => vec![call_of(
            path,
            Some(json!({"name": "alert-new", "metric": "discarded", "url": "http://x.test/h"})),
            Clean,
        )],
        ("get", "/v1/alerts/{name}") => by_name("/v1/alerts", &other.alert, &own.alert, "", None),
        ("patch", "/v1/alerts/{name}") => by_name(
            "/v1/alerts",
            &other.alert,
            &own.alert,
            "",
            Some(json!({"threshold": 5.0})),
        ),
        ("get", "/v1/alerts/{name}/events") => {
            by_name("/v1/alerts", &other.alert, &own.alert, "/events", None)
        }
        ("delete", "/v1/alerts/{name}") => {
            by_name("/v1/alerts", &other.alert, &own.alert, "", None)
        }
        ("get", "/v1/tokens") => vec![call_of(path, None, Clean)],
        ("post", "/v1/tokens") => vec![call_of(
            path,
            Some(json!({"name": "tok-new", "scopes": ["read"]})),
            Clean,
        )],
        ("post", "/v1/tokens/{id}/revoke") => by_name(
            "/v1/tokens",
            &other.token,
            &own.token,
            "/revoke",
            Some(json!({})),
        ),
        ("post", "/v1/tokens/{id}/rotate") => by_name(
            "/v1/tokens",
            &other.token,
            &own.token,
            "/rotate",
            Some(json!({})),
        ),
        ("get", "/v1/audit") => vec![
            call_of(path, None, Clean),
            call_of("/v1/audit?action=job.", None, Clean),
            call_of(format!("/v1/audit?tenant={other_tenant}"), None, Refused),
        ],
        _ => return None,
    };
    Some(calls)
}

/// The other tenant's objects as the admin sees them, to compare before and after.
async fn snapshot(server: &TestServer, other: &Owned) -> BTreeMap<String, Value> {
    let mut seen = BTreeMap::new();
    for id in [other.waiting, other.running, other.discarded] {
        let path = format!("/v1/jobs/{id}");
        seen.insert(
            path.clone(),
            json_call(server, ADMIN, "get", &path, None).await,
        );
    }
    let path = format!("/v1/cron/{}", other.cron);
    let mut cron = json_call(server, ADMIN, "get", &path, None).await;
    // When it last looked is the firer's business, not the tenant's.
    cron.as_object_mut().map(|cron| cron.remove("updated_at"));
    seen.insert(path, cron);
    let tokens = json_call(server, ADMIN, "get", "/v1/tokens", None).await;
    let token = tokens["tokens"]
        .as_array()
        .and_then(|tokens| {
            tokens
                .iter()
                .find(|token| token["id"] == other.token.as_str())
        })
        .cloned()
        .expect("the other tenant's token");
    seen.insert("token".to_owned(), token);
    let path = format!("/v1/alerts/{}", other.alert);
    let alert = json_call(server, ADMIN, "get", &path, None).await;
    seen.insert(
        path,
        json!({"name": alert["name"], "threshold": alert["threshold"]}),
    );
    let path = format!("/v1/ops/{}", other.op);
    let op = json_call(server, ADMIN, "get", &path, None).await;
    seen.insert(path, json!({"aborted": op["state"] == "aborted"}));
    // --- stream workflows ---
    let path = format!("/v1/batches/{}", other.batch);
    seen.insert(
        path.clone(),
        json_call(server, ADMIN, "get", &path, None).await,
    );
    seen
}

async fn every_documented_operation_keeps_tenants_apart(store: Arc<dyn Store>) {
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        tenant_token("acme", ACME),
        tenant_token(MARKER, GLOBEX),
    ];
    let server = start(store, config).await;
    let other = set_up(&server, MARKER, GLOBEX).await;
    let own = set_up(&server, "acme", ACME).await;
    // --- stream tenant ---
    scoped_views_show_only_own(&server).await;
    let before = snapshot(&server, &other).await;

    let document = json_call(&server, ADMIN, "get", "/v1/openapi.json", None).await;
    let paths = document["paths"].as_object().expect("paths");
    let mut unknown = Vec::new();
    let mut operations = 0;
    let mut successes = 0;
    // Deletions last, so the other calls find the caller's own objects.
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|item| item.keys())
                .filter(|method| {
                    ["get", "post", "put", "patch", "delete"].contains(&method.as_str())
                })
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    documented.sort_by_key(|(method, path)| (method == "delete", path.clone()));
    for (method, path) in &documented {
        let Some(calls) = calls(method, path, &own, &other) else {
            unknown.push(format!("{} {path}", method.to_uppercase()));
            continue;
        };
        operations += 1;
        for planned in calls {
            let raw = call(&server, ACME, method, &planned.path, planned.body.as_ref()).await;
            let what = format!(
                "{} {} {:?}",
                method.to_uppercase(),
                planned.path,
                planned.body
            );
            assert!(raw.status < 500, "{what}: {raw:?}");
            match planned.expect {
                Expect::Refused => assert!(
                    raw.status == 403 || raw.status == 404,
                    "{what} names the other tenant's object: must be 404 (or 403 on a route \
                     spanning every tenant), got {raw:?}"
                ),
                Expect::Clean => {
                    if raw.status < 300 {
                        successes += 1;
                    }
                }
            }
            // The request itself may name the other tenant; the answer never does.
            let echoes = planned.path.contains(MARKER)
                || planned
                    .body
                    .as_ref()
                    .is_some_and(|body| body.to_string().contains(MARKER));
            assert!(
                (echoes && raw.status >= 400) || !raw.text.contains(MARKER),
                "{what} shows the other tenant: {raw:?}"
            );
        }
    }
    assert!(
        unknown.is_empty(),
        "operations of the document this test does not know how to call (add them to \
         `calls`): {unknown:?}"
    );
    assert!(
        operations >= 50,
        "the document lists {operations} operations"
    );
    assert!(
        successes >= 25,
        "the tenant's own calls mostly succeed: {successes}"
    );

    // Nothing of the other tenant changed.
    assert_eq!(snapshot(&server, &other).await, before);
    // And the other tenant still sees its own (the matrix was not vacuous).
    let jobs = json_call(&server, GLOBEX, "get", "/v1/jobs", None).await;
    assert!(
        jobs["jobs"].as_array().is_some_and(|jobs| jobs.len() >= 3),
        "{jobs}"
    );
    let queues = json_call(&server, GLOBEX, "get", "/v1/queues", None).await;
    assert!(queues.to_string().contains("q-globex"), "{queues}");
    assert!(!queues.to_string().contains("q-acme"), "{queues}");
    let cron = json_call(&server, GLOBEX, "get", "/v1/cron", None).await;
    assert_eq!(
        cron["schedules"].as_array().map(Vec::len),
        Some(1),
        "{cron}"
    );

    dashboard_pages_keep_tenants_apart(&server, &own, &other).await;
    server.stop().await;
}

/// The dashboard signed in with acme's token: every page of its navigation, and globex's
/// objects by address, never show globex.
async fn dashboard_pages_keep_tenants_apart(server: &TestServer, own: &Owned, other: &Owned) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let signed_in = browser
        .post(format!("{}/login", server.url))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", ACME), ("next", "/")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status().as_u16(), 303);
    let cookie = signed_in
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = |path: String| {
        let request = browser
            .get(format!("{}{path}", server.url))
            .header(reqwest::header::COOKIE, cookie.clone());
        async move {
            let response = request.send().await.expect("a page");
            let status = response.status().as_u16();
            (status, response.text().await.expect("html"))
        }
    };
    let mut shown = 0;
    for path in [
        "/",
        "/queues",
        "/jobs",
        "/failures",
        "/workers",
        "/ops",
        "/cron",
        "/audit",
    ] {
        let (status, html) = page(path.to_owned()).await;
        assert!(status == 200 || status == 403, "{path}: {status}");
        assert!(
            !html.contains(MARKER),
            "{path} shows the other tenant: {html}"
        );
        shown += usize::from(status == 200);
    }
    assert!(shown >= 4, "the tenant's own pages open");
    // (The matrix deleted the caller's own jobs: a fresh one.)
    let fresh = enqueue(server, ACME, &own.tenant, "q", json!({})).await;
    let (status, html) = page(format!("/jobs/{fresh}")).await;
    assert_eq!(status, 200, "{html}");
    for path in [
        format!("/jobs/{}", other.waiting),
        format!("/jobs/{}", other.running),
        format!("/ops/{}", other.op),
        format!("/queues/q-{}", other.tenant),
    ] {
        let (status, _) = page(path.clone()).await;
        assert!(status == 403 || status == 404, "{path}: {status}");
    }
}

/// A server without config-file tokens is open (on loopback), but checks stored tokens (issue
/// 17): a presented tenant token acts for its tenant only; the first active stored admin token
/// switches auth on for every request; revoking it opens the server again.
async fn a_stored_admin_token_switches_auth_on(store: Arc<dyn Store>) {
    let server = start(store, config()).await;
    assert_eq!(
        call(&server, "", "get", "/v1/jobs", None).await.status,
        200,
        "open without tokens"
    );
    let theirs = json_call(
        &server,
        "",
        "post",
        "/v1/jobs",
        Some(json!({"kind": "k", "args": {}, "tenant": MARKER})),
    )
    .await["id"]
        .as_i64()
        .expect("an id");

    // A stored tenant token: the server stays open, and the token is held to its tenant.
    let created = json_call(
        &server,
        "",
        "post",
        "/v1/tokens",
        Some(json!({"name": "acme", "scopes": ["read", "enqueue"], "tenant": "acme"})),
    )
    .await;
    let acme = created["secret"].as_str().expect("a secret").to_owned();
    assert_eq!(
        call(&server, "", "get", "/v1/jobs", None).await.status,
        200,
        "a tenant token opens nothing"
    );
    let seen = call(&server, &acme, "get", &format!("/v1/jobs/{theirs}"), None).await;
    assert_eq!(seen.status, 404, "{seen:?}");
    let listed = call(&server, &acme, "get", "/v1/jobs", None).await;
    assert!(
        listed.status == 200 && !listed.text.contains(MARKER),
        "{listed:?}"
    );

    // A stored admin token: now every request needs a token.
    let created = json_call(
        &server,
        "",
        "post",
        "/v1/tokens",
        Some(json!({"name": "root", "scopes": ["admin"]})),
    )
    .await;
    let admin = created["secret"].as_str().expect("a secret").to_owned();
    let admin_id = created["token"]["id"].as_str().expect("an id").to_owned();
    let refused = call(&server, "", "get", "/v1/jobs", None).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let bad = call(&server, "stk_nope_nope", "get", "/v1/jobs", None).await;
    assert_eq!(bad.status, 401, "{bad:?}");
    assert_eq!(
        call(&server, &admin, "get", "/v1/jobs", None).await.status,
        200
    );
    assert_eq!(
        call(&server, &acme, "get", &format!("/v1/jobs/{theirs}"), None)
            .await
            .status,
        404
    );
    // The dashboard asks for a token too.
    let page = server
        .http
        .get(format!("{}/", server.url))
        .send()
        .await
        .expect("dashboard");
    assert!(page.url().path().starts_with("/login"), "{:?}", page.url());

    // Revoked, the server is open again (it needs no token and listens on loopback only).
    let revoked = call(
        &server,
        &admin,
        "post",
        &format!("/v1/tokens/{admin_id}/revoke"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(call(&server, "", "get", "/v1/jobs", None).await.status, 200);
    server.stop().await;
}

// --- stream tenant ---

/// The routes that once refused a tenant-bound token because they span every tenant now
/// answer it with its own part (issue 17): its queues and their depths, the workers bound to
/// it, its live snapshot, its tenant's limits and alert rules. Each answer holds acme's rows
/// and counts, and never globex's.
async fn scoped_views_show_only_own(server: &TestServer) {
    // Limits are shared settings: one keyed by tenant (each tenant's own limiter) and one
    // global, named for the other tenant, in queues no job uses.
    for (name, key) in [("per-tenant", "tenant"), ("shared-globex", "global")] {
        json_call(
            server,
            ADMIN,
            "put",
            &format!("/v1/limits/{name}"),
            Some(json!({"queue": "unused-queue", "key": key, "concurrency": 5})),
        )
        .await;
    }
    let get = |path: &'static str| async move {
        let raw = call(server, ACME, "get", path, None).await;
        assert_eq!(raw.status, 200, "GET {path} answers a tenant: {raw:?}");
        assert!(
            !raw.text.contains(MARKER),
            "GET {path} shows the other tenant: {raw:?}"
        );
        serde_json::from_str::<Value>(&raw.text).expect("json")
    };

    let queues = get("/v1/queues").await;
    let names: Vec<&str> = queues["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|queue| queue["name"].as_str())
        .collect();
    assert!(
        names.contains(&"q-acme") && names.contains(&"run-acme"),
        "{queues}"
    );

    let depths = get("/v1/queues/depths").await;
    let q = depths["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|queue| queue["queue"] == "q-acme"))
        .unwrap_or_else(|| panic!("acme's waiting queue: {depths}"));
    assert_eq!(q["due"], 1, "{depths}");

    let workers = get("/v1/workers").await;
    let ids: Vec<&str> = workers["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|worker| worker["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["pull:w-acme"],
        "only the worker bound to acme: {workers}"
    );

    let snapshot = get("/v1/events/snapshot").await;
    assert_eq!(
        snapshot["states"]["running"], 1,
        "acme's one running job, not globex's too: {snapshot}"
    );
    assert_eq!(snapshot["states"]["discarded"], 1, "{snapshot}");
    let everyone = json_call(server, ADMIN, "get", "/v1/events/snapshot", None).await;
    assert_eq!(everyone["states"]["running"], 2, "{everyone}");

    let limits = get("/v1/limits").await;
    let names: Vec<&str> = limits["limits"]
        .as_array()
        .expect("limits")
        .iter()
        .filter_map(|limit| limit["name"].as_str())
        .collect();
    assert_eq!(names, vec!["per-tenant"], "{limits}");

    let failures = get("/v1/failures").await;
    let groups = failures["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "acme's one group: {failures}");
    assert_eq!(groups[0]["kind"], "k-acme", "{failures}");

    let alerts = get("/v1/alerts").await;
    let names: Vec<&str> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert["name"].as_str())
        .collect();
    assert_eq!(names, vec!["alert-acme"], "{alerts}");
    // A rule acme creates is scoped to acme, whatever it asks.
    let created = json_call(
        server,
        ACME,
        "post",
        "/v1/alerts",
        Some(json!({"name": "alert-acme-own", "metric": "discarded", "url": "http://x.test/h"})),
    )
    .await;
    assert_eq!(created["scope"]["tenant"], "acme", "{created}");
    let refused = call(
        server,
        ACME,
        "post",
        "/v1/alerts",
        Some(
            &json!({"name": "alert-acme-x", "metric": "discarded", "url": "http://x.test/h",
                     "scope": {"tenant": MARKER}}),
        ),
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let deleted = call(server, ACME, "delete", "/v1/alerts/alert-acme-own", None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    for (name, _) in [("per-tenant", ()), ("shared-globex", ())] {
        call(server, ADMIN, "delete", &format!("/v1/limits/{name}"), None).await;
    }
}
