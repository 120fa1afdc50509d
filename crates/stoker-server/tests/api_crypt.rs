//! Encryption at rest and redaction (issue 17 items 4 and 5) through `stoker serve`, on every
//! store: what the API enqueues for an encrypted kind is sealed in the database, pull workers
//! and admins see plaintext, and tokens below admin see the listed paths redacted in job
//! views, listings and error messages.

mod api_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use stoker::{Client, KindRedaction, Store};
use stoker_server::config::{ApiToken, Scope};

use api_support::{config, start};

store_tests!(sealed_in_the_database_plaintext_to_workers_redacted_below_admin,);

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const WORKER: &str = "worker-token-0123456789";
const SECRET: &str = "4242424242424242";

fn token(name: &str, secret: &str, scope: Scope) -> ApiToken {
    ApiToken {
        name: name.to_owned(),
        secret: secret.to_owned(),
        scopes: BTreeSet::from([scope]),
        tenant: None,
    }
}

async fn sealed_in_the_database_plaintext_to_workers_redacted_below_admin(store: Arc<dyn Store>) {
    let mut config = config();
    config.tokens = vec![
        ApiToken::admin(ADMIN),
        token("reader", READER, Scope::Read),
        token("puller", WORKER, Scope::Work),
    ];
    config.stager.interval = std::time::Duration::from_millis(50);
    config.encryption.kinds = vec!["charge".into()];
    config
        .encryption
        .read_keys(Some("1=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="), None)
        .expect("keys");
    config.redaction = stoker::Redaction::new().kind(
        "charge",
        KindRedaction {
            args: vec!["card.number".into()],
            result: vec!["receipt".into()],
            hide_args: false,
        },
    );
    let server = start(Arc::clone(&store), config).await;
    let admin = server.with_token(ADMIN);
    let id = admin
        .post(
            "/v1/jobs",
            json!({"kind": "charge", "queue": "payments", "args": {"card": {"number": SECRET}}}),
        )
        .await;
    assert_eq!(id.status, 201, "{id:?}");
    let id = id.body["id"].as_i64().expect("an id");

    // The database holds an envelope (a client without keys reads it as stored).
    let raw = Client::new(Arc::clone(&store))
        .get(stoker::JobId(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stoker::sealed_with(&raw.args), Some(1));
    assert!(!format!("{raw:?}").contains(SECRET));

    // Admin sees plaintext; a reader sees it redacted, in the job and in listings.
    let shown = admin.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(shown.body["args"]["card"]["number"], SECRET, "{shown:?}");
    let reader = server.with_token(READER);
    let shown = reader.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        shown.body["args"]["card"]["number"], "[redacted]",
        "{shown:?}"
    );
    let listed = reader.get("/v1/jobs?queue=payments").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(!listed.body.to_string().contains(SECRET), "{listed:?}");

    // A pull worker gets plaintext; the failure message and the result it reports are
    // redacted for the reader, and the result is sealed in the database.
    let puller = server.with_token(WORKER);
    let jobs = puller
        .post(
            "/v1/pull/reserve",
            json!({"worker": "py", "queues": ["payments"]}),
        )
        .await;
    assert_eq!(jobs.status, 200, "{jobs:?}");
    let job = &jobs.body["jobs"][0];
    assert_eq!(job["args"]["card"]["number"], SECRET, "{jobs:?}");
    let failed = puller
        .post(
            &format!("/v1/pull/jobs/{id}/fail"),
            json!({"fence": job["fence"], "error": format!("card {SECRET} declined"), "retry_in_seconds": 0}),
        )
        .await;
    assert_eq!(failed.status, 200, "{failed:?}");
    let shown = reader.get(&format!("/v1/jobs/{id}")).await;
    assert!(!shown.body.to_string().contains(SECRET), "{shown:?}");
    assert!(
        shown.body.to_string().contains("card [redacted] declined"),
        "{shown:?}"
    );
    let again = api_support::eventually("the retry is due", || async {
        let jobs = puller
            .post(
                "/v1/pull/reserve",
                json!({"worker": "py", "queues": ["payments"]}),
            )
            .await;
        jobs.body["jobs"]
            .as_array()
            .filter(|jobs| !jobs.is_empty())
            .cloned()
    })
    .await;
    let done = puller
        .post(
            &format!("/v1/pull/jobs/{id}/complete"),
            json!({"fence": again[0]["fence"], "result": {"receipt": "rcpt-998877"}}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let raw = Client::new(Arc::clone(&store))
        .get(stoker::JobId(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stoker::sealed_with(raw.result.as_ref().unwrap()), Some(1));
    let shown = reader.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(shown.body["result"]["receipt"], "[redacted]", "{shown:?}");
    let shown = admin.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(shown.body["result"]["receipt"], "rcpt-998877", "{shown:?}");
    server.stop().await;
}

/// `[encryption]` and `[[redact]]` tables parse, and bad ones are refused naming the setting.
#[test]
fn encryption_and_redaction_settings_are_checked() {
    use stoker_server::config::Config;
    let mut config = Config::default();
    config
        .apply_toml(
            r#"
[encryption]
kinds = ["charge"]
queues = ["payments"]

[[redact]]
kind = "charge"
args = ["card.number"]
hide_args = false

[[redact]]
kind = "login"
hide_args = true
"#,
            "test",
        )
        .expect("valid");
    assert_eq!(config.encryption.kinds, vec!["charge".to_owned()]);
    assert!(config.redaction.get("login").unwrap().hide_args);
    // Kinds to encrypt without any key: refused, naming where keys come from.
    let err = config
        .encryption
        .read_keys(None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("STOKER_ENCRYPTION_KEYS"), "{err}");
    let err = config
        .encryption
        .read_keys(Some("1=short"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("STOKER_ENCRYPTION_KEYS") && err.contains("key 1"),
        "{err}"
    );
    config
        .encryption
        .read_keys(Some("2=AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="), None)
        .expect("a key");
    assert_eq!(config.encryption.encryption().unwrap().ring().active(), 2);

    for (toml, wanted) in [
        (
            "[[redact]]\nkind = \"k\"\nargs = [\"a..b\"]\n",
            "redact.k.args[0]",
        ),
        (
            "[[redact]]\nkind = \"k\"\n[[redact]]\nkind = \"k\"\n",
            "given twice",
        ),
        ("[[redact]]\nkind = \"k\"\nhide = true\n", "hide_args"),
        ("[encryption]\nkind = [\"k\"]\n", "kinds"),
        ("[encryption]\nkinds = [\"\"]\n", "encryption.kinds[0]"),
    ] {
        let err = Config::default()
            .apply_toml(toml, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{toml}: {err}");
    }
}
