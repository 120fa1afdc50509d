//! Stored API tokens (issue 17, item 2) over a real socket, on every store: created by API,
//! working at once with exactly their scopes and tenant, refused after revocation on a second
//! server sharing the database, refused once expired, rotated; bad input changes nothing; the
//! `operate` scope.

mod api_support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stoker::Store;
use stoker_server::config::ApiToken;

use api_support::{config, eventually, start, TestServer};

store_tests!(
    a_created_token_works_with_exactly_its_scopes_and_tenant,
    revocation_reaches_a_second_server_and_rotation_replaces,
    expired_tokens_and_bad_input_are_refused,
    operate_scope_pauses_retries_and_cancels_but_does_not_delete,
    the_database_holds_no_secret,
);

const ADMIN: &str = "admin-token-0123456789";

async fn create(server: &TestServer, body: Value) -> (String, String) {
    let answer = server.with_token(ADMIN).post("/v1/tokens", body).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let secret = answer.body["secret"].as_str().expect("a secret").to_owned();
    let id = answer.body["token"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert!(secret.starts_with(&format!("stk_{id}_")), "{secret}");
    (id, secret)
}

fn admin_config() -> stoker_server::config::Config {
    let mut config = config();
    config.tokens = vec![ApiToken::admin(ADMIN)];
    config
}

async fn a_created_token_works_with_exactly_its_scopes_and_tenant(store: Arc<dyn Store>) {
    let server = start(store, admin_config()).await;
    let (id, secret) = create(
        &server,
        json!({"name": "billing", "scopes": ["enqueue", "read"], "tenant": "acme"}),
    )
    .await;

    // At once: it enqueues, into its tenant only.
    let answer = server
        .with_token(&secret)
        .post("/v1/jobs", json!({"kind": "email", "args": {}}))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let job = answer.body["id"].as_i64().expect("an id");
    let got = server
        .with_token(ADMIN)
        .get(&format!("/v1/jobs/{job}"))
        .await;
    assert_eq!(got.body["tenant"], "acme", "{got:?}");
    let answer = server
        .with_token(&secret)
        .post(
            "/v1/jobs",
            json!({"kind": "email", "args": {}, "tenant": "globex"}),
        )
        .await;
    assert!(answer.status == 403 || answer.status == 422, "{answer:?}");
    // A job of another tenant is not found.
    let other = server
        .with_token(ADMIN)
        .post(
            "/v1/jobs",
            json!({"kind": "email", "args": {}, "tenant": "globex"}),
        )
        .await;
    let other = other.body["id"].as_i64().expect("an id");
    server
        .with_token(&secret)
        .get(&format!("/v1/jobs/{other}"))
        .await
        .assert_error(404, "not_found");
    // Not its scopes: cancel (operate), token management (admin), the pull protocol (work).
    server
        .with_token(&secret)
        .post(&format!("/v1/jobs/{job}/cancel"), json!({}))
        .await
        .assert_error(403, "missing_scope");
    server
        .with_token(&secret)
        .get("/v1/tokens")
        .await
        .assert_error(403, "missing_scope");

    // The list shows it without any secret; its last use is recorded.
    let list = server.with_token(ADMIN).get("/v1/tokens").await;
    assert_eq!(list.status, 200);
    let tokens = list.body["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], id.as_str());
    assert_eq!(tokens[0]["name"], "billing");
    assert_eq!(tokens[0]["scopes"], json!(["enqueue", "read"]));
    assert_eq!(tokens[0]["tenant"], "acme");
    assert!(!list.body.to_string().contains(&secret[13..]));
    eventually("the last use is recorded", || async {
        let list = server.with_token(ADMIN).get("/v1/tokens").await;
        (!list.body["tokens"][0]["last_used_at"].is_null()).then_some(())
    })
    .await;

    // A wrong secret with the right id is unknown.
    let wrong = format!(
        "{}{}",
        &secret[..secret.len() - 1],
        if secret.ends_with('a') { 'b' } else { 'a' }
    );
    server
        .with_token(&wrong)
        .get("/v1/jobs")
        .await
        .assert_error(401, "unauthorized");
    server.stop().await;
}

async fn revocation_reaches_a_second_server_and_rotation_replaces(store: Arc<dyn Store>) {
    let first = start(Arc::clone(&store), admin_config()).await;
    let mut second_config = admin_config();
    second_config.token_cache_ttl = Duration::from_secs(2);
    let second = start(store, second_config).await;
    let (id, secret) = create(&first, json!({"name": "ops", "scopes": ["read"]})).await;
    // The second server knows it (and caches it).
    assert_eq!(second.with_token(&secret).get("/v1/jobs").await.status, 200);

    let answer = first
        .with_token(ADMIN)
        .post(&format!("/v1/tokens/{id}/revoke"), json!({}))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(!answer.body["revoked_at"].is_null());
    // The first server refuses it at once, with a message saying so.
    let refused = first.with_token(&secret).get("/v1/jobs").await;
    refused.assert_error(401, "unauthorized");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{refused:?}"
    );
    // The second within its cache's lifetime.
    eventually("the second server refuses the revoked token", || async {
        (second.with_token(&secret).get("/v1/jobs").await.status == 401).then_some(())
    })
    .await;

    // An unknown id is 404; a malformed one 422 naming it.
    first
        .with_token(ADMIN)
        .post("/v1/tokens/zzzz9999/revoke", json!({}))
        .await
        .assert_error(404, "not_found");
    let answer = first
        .with_token(ADMIN)
        .post("/v1/tokens/NOT-AN-ID/revoke", json!({}))
        .await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.field(), "id");

    // Rotation: a new secret with the same name and scopes; the old one stops.
    let (old_id, old_secret) = create(&first, json!({"name": "cron", "scopes": ["enqueue"]})).await;
    let answer = first
        .with_token(ADMIN)
        .post(&format!("/v1/tokens/{old_id}/rotate"), json!({}))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let new_secret = answer.body["secret"].as_str().expect("a secret");
    assert_eq!(answer.body["token"]["name"], "cron");
    assert_eq!(answer.body["token"]["scopes"], json!(["enqueue"]));
    assert_ne!(new_secret, old_secret);
    first
        .with_token(&old_secret)
        .post("/v1/jobs", json!({"kind": "email", "args": {}}))
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        first
            .with_token(new_secret)
            .post("/v1/jobs", json!({"kind": "email", "args": {}}))
            .await
            .status,
        201
    );
    first.stop().await;
    second.stop().await;
}

async fn expired_tokens_and_bad_input_are_refused(store: Arc<dyn Store>) {
    let server = start(Arc::clone(&store), admin_config()).await;
    for (body, field) in [
        (json!({"name": "x", "scopes": ["root"]}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_at": "next tuesday"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "tenant": "ac me"}),
            "tenant",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "tenant": "a\u{1}"}),
            "tenant",
        ),
        (json!({"name": "", "scopes": ["read"]}), "name"),
    ] {
        let answer = server
            .with_token(ADMIN)
            .post("/v1/tokens", body.clone())
            .await;
        assert_eq!(answer.status, 422, "{body}: {answer:?}");
        assert!(answer.field().starts_with(field), "{body}: {answer:?}");
    }
    // Nothing was created.
    assert!(store.token_list().await.expect("list").is_empty());

    // A token past its expiry is refused with a message saying so.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (_, secret) = create(
        &server,
        json!({"name": "brief", "scopes": ["read"], "expires_at": soon}),
    )
    .await;
    let refused = eventually("the token expires", || async {
        let answer = server.with_token(&secret).get("/v1/jobs").await;
        (answer.status == 401).then_some(answer)
    })
    .await;
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{refused:?}"
    );
    server.stop().await;
}

async fn operate_scope_pauses_retries_and_cancels_but_does_not_delete(store: Arc<dyn Store>) {
    let server = start(store, admin_config()).await;
    let (_, operator) = create(&server, json!({"name": "oncall", "scopes": ["operate"]})).await;
    let job = server
        .with_token(ADMIN)
        .post("/v1/jobs", json!({"kind": "email", "args": {}}))
        .await
        .body["id"]
        .as_i64()
        .expect("an id");
    let caller = server.with_token(&operator);
    assert_eq!(caller.get(&format!("/v1/jobs/{job}")).await.status, 200);
    assert_eq!(
        caller
            .post("/v1/queues/default/pause", json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        caller
            .post("/v1/queues/default/resume", json!({}))
            .await
            .status,
        200
    );
    let answer = caller
        .post(&format!("/v1/jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = caller
        .post(&format!("/v1/jobs/{job}/retry"), json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    caller
        .delete(&format!("/v1/jobs/{job}"))
        .await
        .assert_error(403, "missing_scope");
    caller
        .post("/v1/tokens", json!({"name": "x", "scopes": ["admin"]}))
        .await
        .assert_error(403, "missing_scope");
    caller
        .post("/v1/jobs", json!({"kind": "email", "args": {}}))
        .await
        .assert_error(403, "missing_scope");
    server.stop().await;
}

async fn the_database_holds_no_secret(store: Arc<dyn Store>) {
    let server = start(Arc::clone(&store), admin_config()).await;
    let (id, secret) = create(&server, json!({"name": "audit", "scopes": ["read"]})).await;
    let rows = store.token_list().await.expect("list");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id, id);
    let secret_part = secret.rsplit('_').next().expect("a secret part");
    assert_eq!(
        row.secret_hash,
        Sha256::digest(secret_part.as_bytes()).to_vec()
    );
    let stored = format!("{row:?}");
    assert!(!stored.contains(secret_part), "{stored}");
    server.stop().await;
}
