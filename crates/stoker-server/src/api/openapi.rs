//! The OpenAPI document, generated from the handlers and the model types, served at
//! `/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::model;
use super::{health, jobs, metrics, pull, queues, stats, workers};

/// The OpenAPI 3.1 document of the API.
///
/// ```
/// use utoipa::OpenApi;
/// let doc = stoker_server::api::ApiDoc::openapi();
/// assert!(doc.paths.paths.contains_key("/v1/jobs"));
/// ```
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Stoker",
        description = "The HTTP API of the Stoker job server: enqueue and manage jobs, \
                       inspect queues and workers, and run jobs from any language with the \
                       pull protocol. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}` \
                       with a stable code (see the ErrorCode schema)."
    ),
    paths(
        jobs::enqueue,
        jobs::enqueue_bulk,
        jobs::list,
        jobs::get,
        jobs::delete,
        jobs::cancel,
        jobs::retry,
        jobs::retry_many,
        queues::list,
        queues::pause,
        queues::resume,
        workers::list,
        workers::handlers,
        stats::get,
        pull::reserve,
        pull::heartbeat,
        pull::progress,
        pull::complete,
        pull::fail,
        pull::snooze,
        pull::cancel,
        health::health,
        metrics::scrape,
        document,
    ),
    components(schemas(
        model::ErrorBody,
        model::ErrorDetail,
        model::ErrorCode,
        model::JobStateSchema,
        model::ErrorKindSchema,
        model::PriorityLevel,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Enqueue and manage jobs"),
        (name = "queues", description = "Queues: counts, pause and resume"),
        (name = "workers", description = "Workers and built-in handlers"),
        (name = "stats", description = "Counts and throughput"),
        (name = "pull", description = "The pull protocol for workers in any language"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token scheme the routes' `security` refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token, needed when the server has tokens configured. Scopes: \
                         admin, enqueue, work, read.",
                    ))
                    .build(),
            ),
        );
    }
}

/// This OpenAPI document. Needs no token.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn document() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}
