//! Bearer tokens, scopes and tenants.
//!
//! Without tokens (the server then listens on loopback only) every request acts as an admin of
//! every tenant; a config-file token, or an active stored admin token, switches auth on
//! ([`auth_required`]). With tokens, the `authenticate` middleware turns the `Authorization: Bearer`
//! header into a [`Principal`], or answers 401; each handler then asks the principal for the scope it needs
//! (403 without it), and acts through the client scoped to the principal's tenant
//! ([`AppState::client_for`]), which enforces the tenant below the HTTP layer.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::model::ErrorCode;
use crate::api::ApiError;
use crate::app::AppState;
use crate::config::{ApiToken, Scope};

/// Who is calling: the token's name, scopes and tenant binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name; `None` when the server has no tokens.
    pub name: Option<String>,
    scopes: Vec<Scope>,
    /// The tenant the token is bound to.
    pub tenant: Option<String>,
    // --- stream tenancy ---
    /// The stored token's id, for the audit log (`None` for config-file tokens).
    pub token_id: Option<String>,
    /// The face the caller came through, for the audit log: `api` or `dashboard`.
    pub via: &'static str,
    /// The caller's address, for the audit log.
    pub source: Option<String>,
}

impl Principal {
    /// Who the caller is, for the audit log: the token's name (`anonymous` on a server
    /// without tokens), its stored id, the face and the address.
    pub fn actor(&self) -> stoker::Actor {
        let mut actor = stoker::Actor::new(
            self.name.clone().unwrap_or_else(|| "anonymous".to_owned()),
            self.via,
        );
        actor.token_id.clone_from(&self.token_id);
        actor.source.clone_from(&self.source);
        actor
    }

    /// The same caller acting through the dashboard from `source`, for the audit log.
    pub(crate) fn through_dashboard(self, source: Option<String>) -> Self {
        Principal {
            via: "dashboard",
            source,
            ..self
        }
    }

    /// The caller of a server without tokens: an admin of every tenant.
    pub fn open() -> Self {
        Principal {
            name: None,
            scopes: vec![Scope::Admin],
            tenant: None,
            token_id: None,
            via: "api",
            source: None,
        }
    }

    /// The caller holding `token`.
    pub fn from_token(token: &ApiToken) -> Self {
        Principal {
            name: Some(token.name.clone()),
            scopes: token.scopes.iter().copied().collect(),
            tenant: token.tenant.clone(),
            token_id: None,
            via: "api",
            source: None,
        }
    }

    /// Whether the caller may act with `scope` (admin may do everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin)
            || self.scopes.contains(&scope)
            || (scope == Scope::Read && self.scopes.contains(&Scope::Operate))
    }

    /// Refuses a caller without `scope`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::MissingScope`].
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.allows(scope) {
            return Ok(());
        }
        let scopes: Vec<&str> = self.scopes.iter().map(|scope| scope.as_str()).collect();
        Err(ApiError::new(
            ErrorCode::MissingScope,
            format!(
                "this route needs a token with the `{scope}` (or `admin`) scope; token {:?} has {}",
                self.name.as_deref().unwrap_or_default(),
                scopes.join(", ")
            ),
        ))
    }

    /// Refuses a tenant-bound caller on a route that shows or changes every tenant's data.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::TenantForbidden`].
    pub fn require_cluster(&self, what: &str) -> Result<(), ApiError> {
        match &self.tenant {
            None => Ok(()),
            Some(tenant) => Err(ApiError::new(
                ErrorCode::TenantForbidden,
                format!(
                    "this token is bound to tenant {tenant:?} and cannot use {what}, which spans \
                     every tenant"
                ),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a route that needs a caller has no auth layer"))
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The middleware in front of every protected route.
///
/// A presented token is always checked (config-file tokens, then stored ones). Without one,
/// the caller is refused once the server needs tokens ([`auth_required`]: a config-file token
/// or an active stored admin token exists), and acts as an admin of every tenant on a server
/// that needs none (which listens on loopback only). On such an open server a token that is
/// not known is ignored, as before; a known one acts with its own scopes and tenant.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let required = match auth_required(&state).await {
        Ok(required) => required,
        Err(err) => return err.into_response(),
    };
    let principal = match header {
        None if !required => Principal::open(),
        None => {
            // Refusals are logged (rate-limited) with the client's address, so attacks show.
            crate::logging::refused_token(peer, "no Authorization header");
            return ApiError::new(
                ErrorCode::Unauthorized,
                "this server needs an API token: send `Authorization: Bearer <token>`",
            )
            .into_response();
        }
        Some(header) => {
            let presented = match header.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ if !required => "",
                _ => {
                    crate::logging::refused_token(peer, "not a Bearer token");
                    return ApiError::new(
                        ErrorCode::Unauthorized,
                        "the Authorization header must be `Bearer <token>`",
                    )
                    .into_response();
                }
            };
            match principal_for_secret(&state, presented).await {
                Ok(principal) => principal,
                Err(_) if !required => Principal::open(),
                Err(refusal) => {
                    crate::logging::refused_token(peer, refusal.reason);
                    return refusal.error.into_response();
                }
            }
        }
    };
    let principal = Principal {
        source: peer.map(|peer| peer.to_string()),
        ..principal
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

// --- stream tenancy ---

/// Whether a request needs a token: when the config names any, or once the store holds an
/// active (neither revoked nor expired) stored admin token not bound to a tenant. Without
/// either, the server is open (and listens on loopback only); creating the first stored admin
/// token switches auth on for every face, within the token cache's time on other servers.
/// Only an admin token does, so that a tenant's token cannot lock the operator out.
///
/// # Errors
///
/// 503/500 when the store cannot be read.
pub async fn auth_required(state: &AppState) -> Result<bool, ApiError> {
    if !state.inner.tokens.is_empty() {
        return Ok(true);
    }
    if let Some(required) = state.inner.stored_tokens.auth_on() {
        return Ok(required);
    }
    let now = state.inner.clock.now();
    let required = state.inner.client.token_list().await?.iter().any(|row| {
        row.tenant.is_none()
            && row.is_active(now)
            && row
                .scopes
                .iter()
                .any(|scope| scope == Scope::Admin.as_str())
    });
    state.inner.stored_tokens.set_auth_on(required);
    Ok(required)
}

// --- stream tokens ---

/// Why [`principal_for_secret`] refused a secret: the error to answer and a short reason to log.
#[derive(Debug)]
pub struct Refusal {
    /// The 401 (or, when the store fails, 500) to answer.
    pub error: ApiError,
    /// What to log, e.g. `unknown token`.
    pub reason: &'static str,
}

impl Refusal {
    fn unauthorized(reason: &'static str, message: &str) -> Self {
        Refusal {
            error: ApiError::new(ErrorCode::Unauthorized, message.to_owned()),
            reason,
        }
    }
}

impl Principal {
    /// The caller holding stored token `row` (scopes the server does not know are dropped).
    pub fn from_stored(row: &stoker::TokenRow) -> Self {
        Principal {
            name: Some(row.name.clone()),
            scopes: row
                .scopes
                .iter()
                .filter_map(|scope| scope.parse().ok())
                .collect(),
            tenant: row.tenant.clone(),
            token_id: Some(row.id.clone()),
            via: "api",
            source: None,
        }
    }
}

/// Turns a presented secret into the caller it stands for: the one way every face (the API,
/// the dashboard's login) authenticates. Config-file tokens first (each compared in constant
/// time, all of them every time), then stored tokens (`stk_<id>_<secret>`: the row by id, from
/// a cache of a few seconds, then the secret's hash compared in constant time; revoked and
/// expired tokens are refused with a message saying so). A stored token's last use is written
/// at most once a minute, off the request's path.
///
/// # Errors
///
/// A [`Refusal`] (401) for an unknown, revoked or expired token; 500 if the store fails.
pub async fn principal_for_secret(state: &AppState, presented: &str) -> Result<Principal, Refusal> {
    // Compare against every token, so timing says nothing about which one nearly matched.
    let mut found = None;
    for token in &state.inner.tokens {
        if same_secret(&token.secret, presented) && found.is_none() {
            found = Some(token);
        }
    }
    if let Some(token) = found {
        return Ok(Principal::from_token(token));
    }
    let Some((id, _)) = stoker::parse_token(presented) else {
        return Err(Refusal::unauthorized("unknown token", "unknown API token"));
    };
    let row = match state.inner.stored_tokens.get(id) {
        Some(row) => Some(row),
        None => {
            let row = state
                .inner
                .client
                .token_get(id)
                .await
                .map_err(|err| Refusal {
                    error: ApiError::from(err),
                    reason: "token store failed",
                })?;
            if let Some(row) = &row {
                state.inner.stored_tokens.put(row.clone());
            }
            row
        }
    };
    let Some(row) = row.filter(|row| stoker::token_secret_matches(row, presented)) else {
        return Err(Refusal::unauthorized("unknown token", "unknown API token"));
    };
    let now = state.inner.clock.now();
    if row.revoked_at.is_some() {
        return Err(Refusal::unauthorized(
            "revoked token",
            &format!("API token {:?} ({}) was revoked", row.name, row.id),
        ));
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Err(Refusal::unauthorized(
            "expired token",
            &format!("API token {:?} ({}) has expired", row.name, row.id),
        ));
    }
    if state.inner.stored_tokens.should_touch(&row.id, now) {
        let client = state.inner.client.clone();
        let id = row.id.clone();
        tokio::spawn(async move {
            if let Err(err) = client.token_touch(&id).await {
                tracing::warn!(token = %id, error = %err, "could not record a token's last use");
            }
        });
    }
    Ok(Principal::from_stored(&row))
}

/// Stored tokens as recently read, so a request costs no store read: rows are kept for a few
/// seconds (so a revocation reaches every server within that time), and the last write of
/// each token's last use is remembered (so it is written at most once a minute).
#[derive(Debug)]
pub(crate) struct TokenCache {
    ttl: std::time::Duration,
    /// Whether an active stored admin token exists, and when that was read ([`auth_required`]).
    auth_on: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    rows:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, stoker::TokenRow)>>,
    touched: std::sync::Mutex<std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>>,
}

impl TokenCache {
    pub(crate) fn new(ttl: std::time::Duration) -> Self {
        TokenCache {
            ttl,
            auth_on: Default::default(),
            rows: Default::default(),
            touched: Default::default(),
        }
    }

    fn get(&self, id: &str) -> Option<stoker::TokenRow> {
        let mut rows = self.rows.lock().expect("token cache lock");
        let fresh = rows
            .get(id)
            .map(|(at, row)| (at.elapsed() < self.ttl, row.clone()));
        match fresh {
            Some((true, row)) => Some(row),
            Some((false, _)) => {
                rows.remove(id);
                None
            }
            None => None,
        }
    }

    fn put(&self, row: stoker::TokenRow) {
        if self.ttl.is_zero() {
            return;
        }
        let mut rows = self.rows.lock().expect("token cache lock");
        // Bounded: forget everything stale once it grows.
        if rows.len() >= 10_000 {
            let ttl = self.ttl;
            rows.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        rows.insert(row.id.clone(), (std::time::Instant::now(), row));
    }

    /// Forgets a token, e.g. on revocation through this server, and whether auth is on.
    pub(crate) fn forget(&self, id: &str) {
        self.rows.lock().expect("token cache lock").remove(id);
        self.forget_auth();
    }

    /// Forgets whether a stored admin token exists, e.g. when one is created here.
    pub(crate) fn forget_auth(&self) {
        *self.auth_on.lock().expect("token cache lock") = None;
    }

    fn auth_on(&self) -> Option<bool> {
        let auth_on = self.auth_on.lock().expect("token cache lock");
        match *auth_on {
            // Once on, it stays on for the cache's time even if the last admin token is
            // revoked meanwhile: a server never opens up early.
            Some((at, required)) if at.elapsed() < self.ttl => Some(required),
            _ => None,
        }
    }

    fn set_auth_on(&self, required: bool) {
        if !self.ttl.is_zero() {
            *self.auth_on.lock().expect("token cache lock") =
                Some((std::time::Instant::now(), required));
        }
    }

    fn should_touch(&self, id: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        let mut touched = self.touched.lock().expect("token cache lock");
        let every = chrono::Duration::seconds(stoker::TOKEN_TOUCH_EVERY_SECONDS);
        match touched.get(id) {
            Some(last) if now - *last < every => false,
            _ => {
                touched.insert(id.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_secrets_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn binds_tenants() {
        let mut token = ApiToken::admin("x".repeat(20));
        token.tenant = Some("acme".into());
        let principal = Principal::from_token(&token);
        assert_eq!(principal.tenant.as_deref(), Some("acme"));
        assert!(principal.require_cluster("the pull protocol").is_err());
    }
}
