//! API tokens stored as data (issue 17, item 2): create, fetch, list, revoke, expiry and the
//! once-a-minute last use.

use std::sync::Arc;

use stoker_core::{Store, StoreErrorKind, TokenCreateParams, TokenRow};

use crate::fixture::{at, expect_err_kind};

fn token(id: &str, tenant: Option<&str>, expires: Option<i64>) -> TokenRow {
    TokenRow {
        id: id.to_owned(),
        name: format!("name-{id}"),
        scopes: vec!["enqueue".to_owned(), "read".to_owned()],
        tenant: tenant.map(str::to_owned),
        secret_hash: vec![7; 32],
        created_at: at(0),
        expires_at: expires.map(at),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn create<S: Store>(store: &Arc<S>, row: TokenRow) -> TokenRow {
    store
        .token_create(TokenCreateParams { token: row })
        .await
        .expect("token_create")
}

/// A created token reads back exactly (hash, scopes, tenant, expiry); ids are unique; the
/// list holds every token, oldest first.
pub async fn create_get_list<S: Store>(store: Arc<S>) {
    let first = token("aaaa1111", Some("acme"), Some(3600));
    assert_eq!(create(&store, first.clone()).await, first);
    let second = TokenRow {
        created_at: at(5),
        ..token("bbbb2222", None, None)
    };
    assert_eq!(create(&store, second.clone()).await, second);

    expect_err_kind(
        store
            .token_create(TokenCreateParams {
                token: token("aaaa1111", None, None),
            })
            .await,
        StoreErrorKind::Conflict,
    );
    assert_eq!(
        store.token_get("aaaa1111").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(store.token_get("cccc3333").await.expect("get"), None);
    assert_eq!(store.token_list().await.expect("list"), vec![first, second]);
}

/// Revoking sets `revoked_at` once (a second revoke keeps the first time) and the token is no
/// longer active; an unknown id is `NotFound`; an expired token is inactive.
pub async fn revoke_and_expire<S: Store>(store: Arc<S>) {
    create(&store, token("aaaa1111", None, Some(100))).await;
    let got = store
        .token_get("aaaa1111")
        .await
        .expect("get")
        .expect("a row");
    assert!(got.is_active(at(99)));
    assert!(!got.is_active(at(100)));

    create(&store, token("bbbb2222", None, None)).await;
    let revoked = store
        .token_revoke("bbbb2222", at(10))
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked_at, Some(at(10)));
    assert!(!revoked.is_active(at(11)));
    let again = store
        .token_revoke("bbbb2222", at(20))
        .await
        .expect("revoke");
    assert_eq!(again.revoked_at, Some(at(10)));
    assert_eq!(
        store
            .token_get("bbbb2222")
            .await
            .expect("get")
            .expect("a row")
            .revoked_at,
        Some(at(10))
    );
    expect_err_kind(
        store.token_revoke("cccc3333", at(10)).await,
        StoreErrorKind::NotFound,
    );
    // The other token is untouched.
    let other = store
        .token_get("aaaa1111")
        .await
        .expect("get")
        .expect("a row");
    assert_eq!(other.revoked_at, None);
}

/// Last use is written on the first use and then at most once a minute.
pub async fn touch_once_a_minute<S: Store>(store: Arc<S>) {
    create(&store, token("aaaa1111", None, None)).await;
    assert!(store.token_touch("aaaa1111", at(10)).await.expect("touch"));
    assert!(!store.token_touch("aaaa1111", at(30)).await.expect("touch"));
    assert!(!store.token_touch("aaaa1111", at(69)).await.expect("touch"));
    let row = store
        .token_get("aaaa1111")
        .await
        .expect("get")
        .expect("a row");
    assert_eq!(row.last_used_at, Some(at(10)));
    assert!(store.token_touch("aaaa1111", at(70)).await.expect("touch"));
    let row = store
        .token_get("aaaa1111")
        .await
        .expect("get")
        .expect("a row");
    assert_eq!(row.last_used_at, Some(at(70)));
    assert!(!store.token_touch("zzzz9999", at(200)).await.expect("touch"));
}
