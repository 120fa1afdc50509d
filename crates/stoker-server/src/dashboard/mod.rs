//! The web dashboard `stoker serve` serves at `/` (issue 14).
//!
//! Server-rendered HTML from compile-time templates (askama, in `templates/dashboard/`), one
//! hand-written script and one style sheet (in `assets/dashboard/`, embedded in the binary and
//! served under a content hash with a year-long `immutable` cache), and charts drawn as SVG on
//! the server. `cargo build` builds all of it: no Node, no CDN, no web fonts.
//!
//! | page | path | reads through [`stoker::Client`] |
//! |---|---|---|
//! | Overview | `/` | stats, queue overview, queue depths, history series |
//! | Queues | `/queues`, `/queues/{name}` | queue overview, depths, series per queue |
//! | Jobs | `/jobs` | the job listing (keyset pages) |
//! | Job | `/jobs/{id}` | the job, its logs |
//! | Failures | `/failures` | failure groups seen in a range, their hourly counts |
//! | Workers | `/workers` | worker overview |
//! | Operations | `/ops`, `/ops/{id}` | bulk operations |
//! | Cron | `/cron` | schedules |
//!
//! Every button posts a form to a `/ui/…` route that calls the same [`stoker::Client`]
//! operation as the matching `/v1` route, so nothing here is out of reach of the API or the
//! CLI. Live figures come from the server's event stream (`GET /v1/events`), followed by the
//! page's script through `/ui/live`, which forwards the request to the API as the signed-in
//! token (a browser's `EventSource` cannot send an `Authorization` header). When that stream
//! fails (it does not open, or stays down), the script polls `/ui/snapshot` (the API's
//! `GET /v1/events/snapshot`, the same shared snapshot) every few seconds until it is back,
//! and says so in the live badge.
//!
//! With tokens configured, a sign-in form exchanges an API token for an `HttpOnly`,
//! `SameSite=Strict` session cookie that carries the token's scopes and tenant; every form
//! must come from the same origin and carry the session's form token. Every response carries
//! a strict Content Security Policy: scripts and styles only from this server, no inline
//! script, no style attributes.

mod actions;
mod chart;
mod format;
mod pages;
// --- stream tenancy ---
mod audit;
// --- stream workflows ---
mod batches;
pub(crate) mod session;

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt;

use crate::app::AppState;

/// The dashboard's shared state: the server's state, the sessions, and the API's router (the
/// live stream is forwarded to it).
#[derive(Clone)]
pub(crate) struct Dash {
    pub(crate) app: AppState,
    sessions: Arc<session::Sessions>,
    api: Router,
}

/// The dashboard's router: its pages at `/`, `/queues`, `/jobs`... and their actions under
/// `/ui`. [`Server`](crate::serve::Server) merges it with [`api::router`](crate::api::router);
/// an application embedding Stoker may mount it in its own axum app the same way.
pub fn router(state: AppState) -> Router {
    let dash = Dash {
        api: crate::api::router(state.clone()),
        app: state,
        sessions: Arc::new(session::Sessions::default()),
    };
    let protected = Router::new()
        .route("/", get(pages::overview))
        .route("/queues", get(pages::queues))
        .route("/queues/{name}", get(pages::queue))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/failures", get(pages::failures))
        .route("/workers", get(pages::workers))
        .route("/ops", get(pages::ops))
        .route("/ops/{id}", get(pages::op))
        .route("/cron", get(pages::cron))
        // --- stream flow ---
        .route("/limits", get(pages::limits))
        // --- stream tenancy ---
        .route("/audit", get(audit::audit))
        // --- stream wf ---
        .route("/workflows/{id}", get(pages::workflow))
        // --- stream workflows ---
        .route("/workflows", get(batches::workflows))
        .route("/batches", get(batches::batches))
        .route("/batches/{id}", get(batches::batch))
        .route("/logout", post(session::logout))
        .route("/ui/live", get(live))
        .route("/ui/ops/{id}/progress", get(pages::op_progress))
        .route("/ui/queues/{name}/{action}", post(actions::queue))
        .route("/ui/jobs/{id}/{action}", post(actions::job))
        .route("/ui/jobs/selected", post(actions::selected))
        .route("/ui/ops", post(actions::bulk))
        .route("/ui/ops/{id}/abort", post(actions::abort))
        .route(
            "/ui/failures/{fingerprint}/{action}",
            post(actions::failure_group),
        )
        .route("/ui/cron/{name}/{action}", post(actions::cron))
        // --- stream workflows ---
        .route("/ui/batches/{id}/{action}", post(actions::batch))
        .route("/ui/workflows/{id}/{action}", post(actions::workflow))
        // --- stream ops ---
        .route("/ui/snapshot", get(snapshot))
        .route_layer(middleware::from_fn_with_state(
            dash.clone(),
            session::require_viewer,
        ));
    let public = Router::new()
        .route("/login", get(pages::login).post(session::login))
        .route("/ui/assets/{file}", get(serve_asset));
    public
        .merge(protected)
        .layer(middleware::map_response(security_headers))
        .with_state(dash)
}

/// The Content Security Policy of every dashboard response: everything from this server
/// only, no inline script or style, no framing, forms only to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// One embedded asset: its content, type and hashed file name.
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static [u8],
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn embed(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name: format!("{stem}-{:012x}.{ext}", fnv(body) & 0xffff_ffff_ffff),
        content_type,
        body,
    }
}

/// The style sheet, the script and the icon, named by their content so a new build is never
/// served from an old cache.
static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        embed(
            "app",
            "css",
            "text/css; charset=utf-8",
            include_bytes!("../../assets/dashboard/app.css"),
        ),
        embed(
            "app",
            "js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/dashboard/app.js"),
        ),
        embed(
            "icon",
            "svg",
            "image/svg+xml",
            include_bytes!("../../assets/dashboard/icon.svg"),
        ),
    ]
});

/// The URL of the asset at `index` of [`ASSETS`].
fn asset_url(index: usize) -> String {
    format!("/ui/assets/{}", ASSETS[index].name)
}

async fn serve_asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => (
            [
                (CONTENT_TYPE, asset.content_type),
                (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /ui/live`: the API's event stream (`/v1/events`, same query), as the signed-in token.
async fn live(State(dash): State<Dash>, viewer: session::Viewer, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default();
    let uri = if query.is_empty() {
        "/v1/events".to_owned()
    } else {
        format!("/v1/events?{query}")
    };
    forward(&dash, &viewer, peer(&request), uri).await
}

// --- stream ops ---
/// `GET /ui/snapshot`: the API's snapshot (`/v1/events/snapshot`), as the signed-in token.
/// The page's script polls it while its live stream is down.
async fn snapshot(State(dash): State<Dash>, viewer: session::Viewer, request: Request) -> Response {
    forward(
        &dash,
        &viewer,
        peer(&request),
        "/v1/events/snapshot".to_owned(),
    )
    .await
}

/// The request's peer address, which the API's loopback rule reads.
fn peer(request: &Request) -> Option<axum::extract::ConnectInfo<std::net::SocketAddr>> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .copied()
}

/// Sends a `GET` of `uri` to the API as the signed-in token, from the request's peer, and
/// answers with the API's response.
async fn forward(
    dash: &Dash,
    viewer: &session::Viewer,
    peer: Option<axum::extract::ConnectInfo<std::net::SocketAddr>>,
    uri: String,
) -> Response {
    let mut forward = Request::builder().method("GET").uri(uri);
    if let Some(secret) = &viewer.secret {
        forward = forward.header("authorization", format!("Bearer {secret}"));
    }
    if let Some(info) = peer {
        forward = forward.extension(info);
    }
    let Ok(forward) = forward.body(Body::empty()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match dash.api.clone().oneshot(forward).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A dashboard page that could not be shown: a status and a message for people.
#[derive(Debug)]
pub(crate) struct DashError {
    status: StatusCode,
    title: String,
    message: String,
}

impl DashError {
    pub(crate) fn new(
        status: StatusCode,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DashError {
            status,
            title: title.into(),
            message: message.into(),
        }
    }
}

impl From<stoker::Error> for DashError {
    fn from(err: stoker::Error) -> Self {
        match err {
            stoker::Error::Invalid(invalid) => DashError::new(
                StatusCode::BAD_REQUEST,
                "Not accepted",
                format!("{}: {}", invalid.field, invalid.reason),
            ),
            stoker::Error::NotFound(what) => DashError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found."),
            ),
            stoker::Error::Conflict(message) => {
                DashError::new(StatusCode::CONFLICT, "Not possible now", message)
            }
            stoker::Error::TenantForbidden { message, .. } => {
                DashError::new(StatusCode::FORBIDDEN, "Not for this token", message)
            }
            stoker::Error::Store(store) if store.kind() == stoker::StoreErrorKind::Busy => {
                tracing::warn!(err = %store, "the database is busy or unreachable");
                DashError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database busy",
                    "The database is busy or unreachable; this page will work again shortly.",
                )
            }
            other => {
                tracing::error!(err = %other, "a dashboard page failed");
                DashError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    "Something went wrong on the server; its log has the details.",
                )
            }
        }
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        pages::error_page(self.status, &self.title, &self.message)
    }
}

/// Renders a template as an HTML response.
pub(crate) fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(%err, "a dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// A form body: its fields in order, repeated names kept (`id=1&id=2`).
#[derive(Debug, Default)]
pub(crate) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Form {
            fields: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}
