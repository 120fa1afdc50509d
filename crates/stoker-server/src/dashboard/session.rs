//! Who is looking at the dashboard, and the guards on what they may change.
//!
//! With tokens configured, the login form exchanges an API token for a session: a random id
//! in an `HttpOnly`, `SameSite=Strict` cookie, kept in memory (a restart signs everyone out).
//! The session carries the token's scopes and tenant, so a page shows what the token may
//! read and an action is refused unless the token may do it, exactly as the API would.
//! Without tokens (the server then listens on loopback only) a session is opened on the first
//! visit, acting as the open API does; it exists to carry the form token.
//!
//! Every unsafe request (a POST) must be same-origin (`Sec-Fetch-Site: same-origin`, or an
//! `Origin` naming this host when the browser sends no fetch metadata) and carry the
//! session's form token: a cross-site page can neither send the cookie (SameSite=Strict) nor
//! read the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::{Dash, DashError};
use crate::auth::Principal;
use crate::config::Scope;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "stoker_session";
/// How long a session lasts after it was opened.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept; past it the oldest go first.
const SESSIONS_MAX: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    /// The token's secret, to follow the live events through the API as the token.
    secret: Option<String>,
    csrf: String,
    expires: Instant,
}

/// The sessions of one server, in memory.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session for `principal`; returns its id.
    fn open(&self, principal: Principal, secret: Option<String>) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= SESSIONS_MAX {
            map.retain(|_, session| session.expires > now);
            while map.len() >= SESSIONS_MAX {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, session)| session.expires)
                    .map(|(id, _)| id.clone());
                match oldest {
                    Some(oldest) => map.remove(&oldest),
                    None => break,
                };
            }
        }
        map.insert(
            id.clone(),
            Session {
                principal,
                secret,
                csrf: random_hex(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The viewer of a dashboard request: who they are and their form token.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) principal: Principal,
    pub(crate) csrf: String,
    pub(crate) secret: Option<String>,
    /// Whether the server has tokens (so there is a sign-out).
    pub(crate) auth: bool,
    session: String,
}

impl Viewer {
    /// Whether the viewer may take the everyday actions (pause, retry, cancel, bulk retry):
    /// the API asks `operate` (or `admin`) for them; delete and schedules need `admin`.
    pub(crate) fn can_act(&self) -> bool {
        self.principal.allows(Scope::Operate)
    }

    /// Whether the viewer sees every tenant (cluster-wide pages).
    pub(crate) fn cluster(&self) -> bool {
        self.principal.tenant.is_none()
    }

    /// Refuses an action that needs `scope` (the same scope as the API's route for it).
    pub(crate) fn require_act(&self, scope: Scope) -> Result<(), DashError> {
        if self.principal.allows(scope) {
            return Ok(());
        }
        Err(DashError::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!(
                "Token {:?} may not do this here: it needs a token with the {scope} (or admin) \
                 scope.",
                self.principal.name.as_deref().unwrap_or_default()
            ),
        ))
    }

    /// Checks the form token of an unsafe request.
    pub(crate) fn check_csrf(&self, form_token: Option<&str>) -> Result<(), DashError> {
        match form_token {
            Some(token) if crate::auth::same_secret(token, &self.csrf) => Ok(()),
            _ => Err(DashError::new(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form's security token does not match your session (it may have \
                 expired, or the server restarted). Go back, reload the page and try again.",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
            DashError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "a dashboard route has no session layer",
            )
        })
    }
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// Whether an unsafe request comes from this site's own pages: fetch metadata first, then
/// `Origin` against `Host`. A request with neither is not a browser's cross-site form (every
/// browser that posts a form sends `Origin`), and still needs the form token.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    match headers.get(ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let origin = origin.to_str().unwrap_or_default();
            !host.is_empty()
                && (origin == format!("http://{host}") || origin == format!("https://{host}"))
        }
    }
}

/// A path inside the dashboard to return to, or `/`: never another site.
pub(crate) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.contains(['\r', '\n']) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A 303 to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The layer in front of every dashboard page and action: finds the viewer (or opens a
/// session on an open server, or sends a signed-out browser to the login form), and refuses
/// unsafe requests from other origins.
pub(crate) async fn require_viewer(
    State(dash): State<Dash>,
    mut request: Request,
    next: Next,
) -> Response {
    // A store that cannot say whether stored admin tokens exist keeps the dashboard closed.
    let auth = crate::auth::auth_required(&dash.app).await.unwrap_or(true);
    let found = cookie(request.headers(), COOKIE_NAME).and_then(|id| {
        dash.sessions
            .get(id)
            .map(|session| (id.to_owned(), session))
    });
    let mut opened = None;
    let (session_id, session) = match found {
        // A session lives only as long as its token: a revoked or expired stored token (seen
        // within the token cache's few seconds) ends it, and a changed one changes its scopes.
        Some((id, mut session)) if auth => match &session.secret {
            Some(secret) => match crate::auth::principal_for_secret(&dash.app, secret).await {
                Ok(principal) => {
                    session.principal = principal;
                    (id, session)
                }
                Err(_) => {
                    dash.sessions.close(&id);
                    return see_other("/login");
                }
            },
            // Opened while the server needed no token: once a stored admin token switched
            // auth on (issue 17), it must sign in like anyone else.
            None => {
                dash.sessions.close(&id);
                return see_other("/login");
            }
        },
        Some(found) => found,
        None if !auth => {
            let id = dash.sessions.open(Principal::open(), None);
            opened = Some(id.clone());
            let session = dash.sessions.get(&id).expect("a session just opened");
            (id, session)
        }
        None => {
            if request.method() == Method::GET {
                let path = request
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_else(|| "/".to_owned());
                let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
                return see_other(&format!("/login?next={next}"));
            }
            return DashError::new(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended. Sign in again with your API token.",
            )
            .into_response();
        }
    };
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && !same_origin(request.headers())
    {
        return DashError::new(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "Changes are only accepted from the dashboard's own pages.",
        )
        .into_response();
    }
    // The dashboard's actions are audited as such, from the browser's address (issue 17).
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.to_string());
    request.extensions_mut().insert(Viewer {
        principal: session.principal.through_dashboard(source),
        csrf: session.csrf,
        secret: session.secret,
        auth,
        session: session_id,
    });
    let mut response = next.run(request).await;
    if let Some(id) = opened {
        if let Ok(value) = HeaderValue::from_str(&session_cookie(&id)) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// `POST /login`: a token for a session.
pub(crate) async fn login(
    State(dash): State<Dash>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !same_origin(&headers) {
        return DashError::new(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "Sign in from the dashboard's own login page.",
        )
        .into_response();
    }
    let form = super::Form::parse(&body);
    let next = local_path(form.get("next"));
    if !crate::auth::auth_required(&dash.app).await.unwrap_or(true) {
        return see_other(&next);
    }
    let presented = form.get("token").unwrap_or_default().trim();
    let refuse = |message: &str| {
        super::pages::login_form(StatusCode::UNAUTHORIZED, &next, message).into_response()
    };
    // The API's own check: configured tokens, then stored ones (revoked and expired refused).
    let principal = match crate::auth::principal_for_secret(&dash.app, presented).await {
        Ok(principal) => principal,
        Err(refusal) => {
            crate::logging::refused_token(None, refusal.reason);
            return refuse(&format!(
                "That token was refused: {}.",
                refusal.error.message()
            ));
        }
    };
    if !principal.allows(Scope::Read) {
        return refuse(&format!(
            "Token {:?} cannot read jobs: the dashboard needs the read (or admin) scope.",
            principal.name.as_deref().unwrap_or_default()
        ));
    }
    let id = dash.sessions.open(principal, Some(presented.to_owned()));
    let mut response = see_other(&next);
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&id)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: ends the session.
pub(crate) async fn logout(
    State(dash): State<Dash>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Response {
    let form = super::Form::parse(&body);
    if let Err(error) = viewer.check_csrf(form.get("csrf")) {
        return error.into_response();
    }
    dash.sessions.close(&viewer.session);
    let mut response = see_other(if viewer.auth { "/login" } else { "/" });
    response.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_static("stoker_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; stoker_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn same_origin_needs_fetch_metadata_or_a_matching_origin() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers), "no browser headers at all");
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:7700"));
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:7700"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers));
    }

    #[test]
    fn returns_only_to_local_paths() {
        assert_eq!(local_path(Some("/jobs?q=x")), "/jobs?q=x");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open(Principal::open(), None);
        assert!(sessions.get(&id).is_some());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }
}
