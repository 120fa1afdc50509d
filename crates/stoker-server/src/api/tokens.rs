//! API tokens stored as data (issue 17, item 2): create, list, rotate, revoke. Admin only,
//! and not for a tenant-bound token. The secret is in the answer to create and rotate, and
//! nowhere else: the store keeps its hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath};
use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// A scope a token can hold: `admin` everything; `operate` read plus pause and resume queues,
/// retry, cancel, failure-group and bulk actions; `enqueue`; `work` (the pull protocol);
/// `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Everything.
    Admin,
    /// Read, plus pause/resume, retry, cancel, failure-group and bulk actions.
    Operate,
    /// Enqueue jobs.
    Enqueue,
    /// The pull protocol.
    Work,
    /// Read jobs, queues, workers, stats and metrics.
    Read,
}

impl TokenScope {
    fn as_str(self) -> &'static str {
        match self {
            TokenScope::Admin => "admin",
            TokenScope::Operate => "operate",
            TokenScope::Enqueue => "enqueue",
            TokenScope::Work => "work",
            TokenScope::Read => "read",
        }
    }
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A name for people, e.g. `billing`.
    #[schema(min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$")]
    pub name: String,
    /// Its scopes (at least one).
    #[schema(min_items = 1)]
    pub scopes: Vec<TokenScope>,
    /// The tenant it is bound to: it then sees and touches only that tenant's jobs.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub tenant: Option<String>,
    /// When it stops working (in the future); never when absent.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored token, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The visible id: the `<id>` of `stk_<id>_<secret>`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The tenant it is bound to, if any.
    pub tenant: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<stoker::TokenRow> for TokenView {
    fn from(row: stoker::TokenRow) -> Self {
        TokenView {
            id: row.id,
            name: row.name,
            scopes: row.scopes,
            tenant: row.tenant,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// A token just created or rotated, with its secret: shown this once, stored nowhere.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTokenView {
    /// The stored token.
    pub token: TokenView,
    /// What to send as `Authorization: Bearer <secret>`: `stk_<id>_<secret>`.
    pub secret: String,
}

/// Every stored token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Oldest first, revoked and expired ones included.
    pub tokens: Vec<TokenView>,
}

const ID_PARAM: &str = "The token's id: eight lowercase letters and digits";

fn admin(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Scope::Admin)?;
    principal.require_cluster("token management")
}

fn created(created: stoker::CreatedToken) -> (StatusCode, Json<CreatedTokenView>) {
    (
        StatusCode::CREATED,
        Json(CreatedTokenView {
            token: created.row.into(),
            secret: created.token,
        }),
    )
}

/// Create a token; the answer holds its secret, shown only this once.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; `secret` is shown only here", body = CreatedTokenView),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedTokenView>), ApiError> {
    admin(&principal)?;
    super::jobs::ascii_text(|| "name".to_owned(), &request.name, true)?;
    if let Some(tenant) = &request.tenant {
        super::jobs::ascii_text(|| "tenant".to_owned(), tenant, false)?;
    }
    let new = stoker::NewToken {
        name: request.name,
        scopes: request
            .scopes
            .iter()
            .map(|scope| scope.as_str().to_owned())
            .collect(),
        tenant: request.tenant,
        expires_at: request.expires_at,
    };
    let token = state.client_for(&principal).token_create(new).await?;
    // A first stored admin token switches auth on here at once (issue 17).
    state.inner.stored_tokens.forget_auth();
    Ok(created(token))
}

/// List every token (never a secret).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "Every token, oldest first", body = TokenList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TokenList>, ApiError> {
    admin(&principal)?;
    let tokens = state.client_for(&principal).token_list().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// Revoke a token: this server refuses it at once, every other within seconds.
#[utoipa::path(
    post,
    path = "/v1/tokens/{id}/revoke",
    tag = "tokens",
    params(("id" = String, Path, description = ID_PARAM, pattern = r"^[a-z0-9]{8}$")),
    responses(
        (status = 200, description = "Revoked (again, if it already was)", body = TokenView),
        (status = 404, description = "`not_found`: no such token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    admin(&principal)?;
    let row = state.client_for(&principal).token_revoke(&id).await?;
    state.inner.stored_tokens.forget(&id);
    Ok(Json(row.into()))
}

/// Rotate a token: a new token with the same name, scopes, tenant and expiry, and the old one
/// revoked. The answer holds the new secret.
#[utoipa::path(
    post,
    path = "/v1/tokens/{id}/rotate",
    tag = "tokens",
    params(("id" = String, Path, description = ID_PARAM, pattern = r"^[a-z0-9]{8}$")),
    responses(
        (status = 201, description = "The new token; `secret` is shown only here", body = CreatedTokenView),
        (status = 404, description = "`not_found`: no such token", body = ErrorBody),
        (status = 422, description = "`id`: the token is revoked or expired", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<CreatedTokenView>), ApiError> {
    admin(&principal)?;
    let new = state.client_for(&principal).token_rotate(&id).await?;
    state.inner.stored_tokens.forget(&id);
    Ok(created(new))
}
