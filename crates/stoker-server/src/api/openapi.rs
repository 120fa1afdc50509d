//! The OpenAPI document, generated from the handlers and the model types, served at
//! `/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::model;
// --- stream events ---
use super::events;
use super::{alerts, cron, failures, health, history, jobs, metrics, pull, queues, stats, workers};
// --- stream search ---
use super::search;
// --- stream tokens ---
use super::tokens;
// --- stream flow ---
use super::limits;
// --- stream wf ---
use super::workflows;
// --- stream workflows ---
use super::batches;
use super::children;
// --- stream tenancy ---
use super::audit;
// --- stream ops ---
use super::snapshot;

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
        // Recurring schedules (issue 15).
        cron::list,
        cron::create,
        cron::get,
        cron::update,
        cron::delete,
        cron::pause,
        cron::resume,
        cron::run_now,
        cron::history,
        cron::next,
        // Batched acknowledgements (issue 19).
        pull::ack,
        health::health,
        metrics::scrape,
        // History (issue 13).
        history::series,
        history::depths,
        history::clean,
        document,
        // Failure groups, bulk operations and job logs (issue 13).
        failures::list,
        failures::get,
        failures::retry,
        failures::discard,
        failures::create,
        failures::list_ops,
        failures::get_op,
        failures::abort,
        failures::job_logs,
        failures::pull_logs,
        // --- stream events ---
        events::stream,
        // --- stream alerts ---
        alerts::list,
        alerts::create,
        alerts::get,
        alerts::update,
        alerts::delete,
        alerts::events,
        // --- stream search ---
        search::lineage,
        // --- stream tokens ---
        tokens::create,
        tokens::list,
        tokens::revoke,
        tokens::rotate,
        // --- stream flow ---
        limits::list,
        limits::set,
        limits::delete,
        // --- stream wf ---
        workflows::create,
        workflows::add,
        workflows::get,
        workflows::cancel,
        workflows::dependencies,
        // --- stream tenancy ---
        audit::list,
        // --- stream ops ---
        snapshot::get,
        // --- stream workflows ---
        batches::create,
        batches::add,
        batches::close,
        batches::get,
        batches::cancel,
        batches::list,
        batches::workflows,
        batches::job_batch,
        batches::pull_add,
        children::create,
        children::wait,
        children::get,
    ),
    components(schemas(
        model::ErrorBody,
        model::ErrorDetail,
        model::ErrorCode,
        model::JobStateSchema,
        model::FinishedStateSchema,
        model::QueueNameSchema,
        model::JobIdSchema,
        model::KindNameSchema,
        model::ErrorKindSchema,
        model::PriorityLevel,
        // --- stream search ---
        model::StateViewSchema,
        model::SearchDirectionSchema,
        // --- stream workflows ---
        batches::BatchStateSchema,
    )),
    modifiers(&BearerAuth, &StandardResponses),
    tags(
        (name = "jobs", description = "Enqueue and manage jobs"),
        (name = "queues", description = "Queues: counts, pause and resume"),
        (name = "workers", description = "Workers and built-in handlers"),
        (name = "stats", description = "Counts and throughput"),
        (name = "pull", description = "The pull protocol for workers in any language"),
        (name = "cron", description = "Recurring schedules, fired exactly once per slot"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "failures", description = "Failure groups and bulk operations by filter"),
        // --- stream alerts ---
        (name = "alerts", description = "Alert rules delivered as webhook jobs"),
        // --- stream tokens ---
        (name = "tokens", description = "Stored API tokens: create, list, rotate, revoke"),
        // --- stream flow ---
        (name = "limits", description = "Flow control: rate and concurrency limits enforced in the claim"),
        // --- stream wf ---
        (name = "workflows", description = "Workflows: jobs that wait for other jobs"),
        // --- stream tenancy ---
        (name = "audit", description = "The audit log of management actions"),
        // --- stream workflows ---
        (name = "batches", description = "Batches: a group of jobs with a callback fired once when all have finished"),
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
                         admin, operate, enqueue, work, read.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers every route can give to each route's `responses`, in one place, so no
/// route's document forgets one: 401 and 403 where a token is needed, 400, 413, 415 and 422
/// for a JSON body, 422 for parameters, 404 for a path naming a job or a queue, and 503 when
/// the store cannot be reached. Each route keeps its own description where it has one.
struct StandardResponses;

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                let secured = operation
                    .security
                    .as_ref()
                    .is_some_and(|security| !security.is_empty());
                if secured {
                    add(
                        "401",
                        "`unauthorized`: no `Authorization: Bearer` token, or one the server does \
                         not know (when it has tokens)",
                    );
                    add(
                        "403",
                        "`missing_scope`: the token lacks the route's scope; `tenant_forbidden`: \
                         the token is bound to a tenant and the request reaches outside it",
                    );
                }
                if operation.request_body.is_some() {
                    add("400", "`malformed_json`: the body is not valid JSON");
                    add(
                        "413",
                        "`body_too_large`: the body is larger than the server's max_body_bytes",
                    );
                    add(
                        "415",
                        "`unsupported_media_type`: the body is not sent as \
                         `Content-Type: application/json`",
                    );
                }
                let has_params = operation
                    .parameters
                    .as_ref()
                    .is_some_and(|parameters| !parameters.is_empty());
                if operation.request_body.is_some() || has_params {
                    add(
                        "422",
                        "`invalid_field`, `unknown_state` or `invalid_date`: a field is missing, \
                         of the wrong type or shape, or refused; `field` names it",
                    );
                }
                if path.contains("{id}") {
                    add("404", "`not_found`: no such job (or another tenant's)");
                }
                if path.contains("{name}") && path.starts_with("/v1/cron/") {
                    add("404", "`not_found`: no such schedule");
                }
                if path != "/v1/openapi.json" {
                    add(
                        "503",
                        "`unavailable`: the store is unreachable or busy; retry after the \
                         `Retry-After` seconds",
                    );
                }
            }
        }
    }
}

/// The document as JSON, built once: what `/v1/openapi.json` serves and what request bodies
/// are checked against (see `api::extract`), so the document and the checks cannot drift
/// apart.
pub(crate) fn document_json() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        // utoipa has no `not`: say here that `run_at` and `delay_seconds` do not go together
        // (both present and not null), as the server holds.
        if let Some(enqueue) = doc.pointer_mut("/components/schemas/EnqueueRequest") {
            enqueue["not"] = serde_json::json!({
                "required": ["run_at", "delay_seconds"],
                "properties": {
                    "run_at": {"not": {"type": "null"}},
                    "delay_seconds": {"not": {"type": "null"}},
                },
            });
        }
        // --- stream wf ---
        // A workflow's job takes `run_at` or `delay_seconds`, not both, as `POST /v1/jobs`.
        if let Some(spec) = doc.pointer_mut("/components/schemas/WorkflowJobSpec") {
            spec["not"] = serde_json::json!({
                "required": ["run_at", "delay_seconds"],
                "properties": {
                    "run_at": {"not": {"type": "null"}},
                    "delay_seconds": {"not": {"type": "null"}},
                },
            });
        }
        // --- stream workflows ---
        // A batch's callback gets the counts under `batch` in its args, so it may not carry
        // that key itself (utoipa cannot say this of the shared job schema).
        if let Some(callback) =
            doc.pointer_mut("/components/schemas/BatchRequest/properties/callback")
        {
            let shared = callback.take();
            *callback = serde_json::json!({"allOf": [
                shared,
                {"properties": {"args": {"not": {"required": ["batch"]}}}},
            ]});
        }
        // Failure groups, bulk operations and job logs (issue 13): `priority` goes with
        // `set_priority` only and `run_at` with `set_run_at` only, which utoipa cannot say of
        // one struct; the body is one of three shapes.
        if let Some(create) = doc.pointer_mut("/components/schemas/CreateBulkOpRequest") {
            let filter = serde_json::json!({"$ref": "#/components/schemas/BulkFilterBody"});
            let description = create.get("description").cloned();
            let shape = |actions: &[&str], extra: Option<(&str, serde_json::Value)>| {
                let mut properties = serde_json::json!({
                    "action": {"type": "string", "enum": actions},
                    "filter": filter.clone(),
                    // Job search (issue 14): a search-bar query, joined with `filter`.
                    "q": {
                        "type": "string", "maxLength": 2000,
                        "description": "A search-bar query (as `GET /v1/jobs?q=`), joined \
                                        with `filter`: lists join, single values must agree.",
                    },
                });
                let mut required = vec!["action"];
                if let Some((name, schema)) = extra {
                    properties[name] = schema;
                    required.push(name);
                }
                serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": required,
                    "properties": properties,
                })
            };
            let mut one_of = serde_json::json!({
                "oneOf": [
                    shape(&["retry", "cancel", "delete", "discard"], None),
                    shape(&["set_priority"], Some(("priority", serde_json::json!({
                        "type": "integer", "minimum": -32768, "maximum": 32767,
                        "description": "The new priority.",
                    })))),
                    shape(&["set_run_at"], Some(("run_at", serde_json::json!({
                        "type": "string", "format": "date-time",
                        "description": "The new run_at: an RFC 3339 date-time, years 1 to 9999.",
                    })))),
                ],
            });
            if let Some(description) = description {
                one_of["description"] = description;
            }
            *create = one_of;
        }
        // --- stream flow ---
        // A limit needs a rate, a concurrency, fair queuing, or some of them.
        if let Some(limit) = doc.pointer_mut("/components/schemas/LimitBody") {
            limit["anyOf"] = serde_json::json!([
                {"required": ["rate"]},
                {"required": ["concurrency"]},
                {"required": ["fair"]},
                {"required": ["quota"]},
            ]);
        }
        doc
    })
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
        serde_json::to_string_pretty(document_json())
            .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}
