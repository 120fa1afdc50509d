//! Bearer tokens, scopes and tenants.
//!
//! Without tokens (the server then listens on loopback only) every request acts as an admin of
//! every tenant. With tokens, the `authenticate` middleware turns the `Authorization: Bearer`
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
}

impl Principal {
    /// The caller of a server without tokens: an admin of every tenant.
    pub fn open() -> Self {
        Principal {
            name: None,
            scopes: vec![Scope::Admin],
            tenant: None,
        }
    }

    /// The caller holding `token`.
    pub fn from_token(token: &ApiToken) -> Self {
        Principal {
            name: Some(token.name.clone()),
            scopes: token.scopes.iter().copied().collect(),
            tenant: token.tenant.clone(),
        }
    }

    /// Whether the caller may act with `scope` (admin may do everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
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
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = &state.inner.tokens;
    let principal = if tokens.is_empty() {
        Principal::open()
    } else {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        // Refusals are logged (rate-limited) with the client's address, so attacks show.
        let refused = |reason: &str| {
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0);
            crate::logging::refused_token(peer, reason);
        };
        let Some(header) = header else {
            refused("no Authorization header");
            return ApiError::new(
                ErrorCode::Unauthorized,
                "this server needs an API token: send `Authorization: Bearer <token>`",
            )
            .into_response();
        };
        let presented = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                refused("not a Bearer token");
                return ApiError::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header must be `Bearer <token>`",
                )
                .into_response();
            }
        };
        // Compare against every token, so timing says nothing about which one nearly matched.
        let mut found = None;
        for token in tokens {
            if same_secret(&token.secret, presented) && found.is_none() {
                found = Some(token);
            }
        }
        match found {
            Some(token) => Principal::from_token(token),
            None => {
                refused("unknown token");
                return ApiError::new(ErrorCode::Unauthorized, "unknown API token").into_response();
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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
