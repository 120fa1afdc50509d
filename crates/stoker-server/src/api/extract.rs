//! Extractors that answer their rejections as [`ApiError`]s instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::document_json;
use super::ApiError;

/// A JSON body of the shape the OpenAPI document gives `T`; a malformed, mistyped, misshapen
/// or oversized body is an [`ApiError`] naming the field at fault, and nothing is done.
///
/// Serde alone would take a JSON array for a struct (its fields in order: `["x"]` was an
/// enqueue of kind `x`), so the body is first checked against `T`'s schema in the served
/// document: an object or a list exactly where the document says so, and every list within its
/// `maxItems`. The document is the one place the shape is declared.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + ToSchema,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(mut value) = Json::<Value>::from_request(req, state).await?;
        let doc = document_json();
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{}", T::name()) });
        check_shape(&mut value, &schema, doc, "")?;
        Ok(ApiJson(serde_path_to_error::deserialize(value)?))
    }
}

/// The JSON type names of `value`, as a schema's `type` spells them.
fn kinds_of(value: &Value) -> &'static [&'static str] {
    match value {
        Value::Null => &["null"],
        Value::Bool(_) => &["boolean"],
        Value::Number(number) if number.is_f64() => &["number"],
        Value::Number(_) => &["integer", "number"],
        Value::String(_) => &["string"],
        Value::Array(_) => &["array"],
        Value::Object(_) => &["object"],
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn refused(path: &str, message: String) -> ApiError {
    if path.is_empty() {
        ApiError::invalid("", message).without_field()
    } else {
        ApiError::invalid(path, message)
    }
}

/// Checks `value` (at `path`) against `schema`: objects and lists where the document says so,
/// and lists within `minItems`/`maxItems`. Scalars are left to serde, whose errors name the
/// field already.
///
/// A number with no fraction where the document says integer (`5.0`, which JSON Schema counts
/// as an integer) becomes that integer, so serde reads it as the document promises.
fn check_shape(value: &mut Value, schema: &Value, doc: &Value, path: &str) -> Result<(), ApiError> {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let resolved = target
            .strip_prefix("#/components/schemas/")
            .and_then(|name| doc.pointer(&format!("/components/schemas/{name}")))
            .ok_or_else(|| ApiError::internal(format!("unresolved schema reference {target}")))?;
        return check_shape(value, resolved, doc, path);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check_shape(value, part, doc, path)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let mut first_error = None;
            for branch in branches {
                // Scalars pass this check (serde judges them), so a `null` branch must be
                // skipped for a value that is not null, or it would pass anything.
                if branch.get("type") == Some(&Value::from("null")) && !value.is_null() {
                    continue;
                }
                match check_shape(value, branch, doc, path) {
                    Ok(()) => return Ok(()),
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first_error {
                return Err(err);
            }
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"integer") {
        if let Some(float) = value.as_f64().filter(|_| value.is_f64()) {
            // Only where the float is exact (below 2^53): a larger one may stand for a number
            // out of range, which serde must still refuse.
            if float.fract() == 0.0 && float.abs() < 2f64.powi(53) {
                *value = Value::from(float as i64);
            }
        }
    }
    let kinds = kinds_of(value);
    if !types.is_empty() && !types.iter().any(|wanted| kinds.contains(wanted)) {
        let got = kinds[0];
        let what = if path.is_empty() {
            "the body".to_owned()
        } else {
            format!("`{path}`")
        };
        if types.contains(&"object") {
            return Err(refused(
                path,
                format!("{what} must be a JSON object, got {got}"),
            ));
        }
        if types.contains(&"array") {
            return Err(refused(
                path,
                format!("{what} must be a JSON array, got {got}"),
            ));
        }
        return Ok(());
    }
    match value {
        Value::Object(fields) => {
            if let Some(properties) = schema.get("properties") {
                for (name, field) in fields.iter_mut() {
                    if let Some(property) = properties.get(name) {
                        check_shape(field, property, doc, &join(path, name))?;
                    }
                }
            }
        }
        Value::Array(items) => {
            let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
            let len = items.len() as u64;
            if let Some(max) = bound("maxItems").filter(|max| len > *max) {
                return Err(refused(
                    path,
                    format!("`{path}` holds {len} items; send at most {max}"),
                ));
            }
            if let Some(min) = bound("minItems").filter(|min| len < *min) {
                return Err(refused(
                    path,
                    format!("`{path}` holds {len} items; send at least {min}"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    check_shape(item, item_schema, doc, &format!("{path}[{index}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A query string; an unknown or mistyped parameter is an [`ApiError`] naming it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// Path parameters; one that does not parse (a job id that is not a number) is an
/// [`ApiError`] naming it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Value, schema: &str) -> Result<(), ApiError> {
        let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
        let mut value = value;
        check_shape(&mut value, &schema, document_json(), "")
    }

    #[test]
    fn objects_and_lists_where_the_document_says() {
        assert!(check(json!({"kind": "k", "args": {"a": [1]}}), "EnqueueRequest").is_ok());
        let err = check(json!(["x"]), "EnqueueRequest").unwrap_err();
        assert_eq!(err.field(), None);
        assert!(err.message().contains("must be a JSON object"), "{err}");
        assert_eq!(
            check(json!({"kind": "k", "args": null}), "EnqueueRequest")
                .unwrap_err()
                .field(),
            Some("args")
        );
        assert_eq!(
            check(json!({"kind": "k", "args": ["x"]}), "EnqueueRequest")
                .unwrap_err()
                .field(),
            Some("args")
        );
        assert_eq!(
            check(json!({"kind": "k", "metadata": ["c"]}), "EnqueueRequest")
                .unwrap_err()
                .field(),
            Some("metadata")
        );
        assert!(check(json!({"kind": "k", "metadata": null}), "EnqueueRequest").is_ok());
        assert_eq!(
            check(
                json!({"jobs": [{"kind": "k"}, ["k"]]}),
                "EnqueueBulkRequest"
            )
            .unwrap_err()
            .field(),
            Some("jobs[1]")
        );
        assert_eq!(
            check(json!({"jobs": {"kind": "k"}}), "EnqueueBulkRequest")
                .unwrap_err()
                .field(),
            Some("jobs")
        );
        assert!(check(json!([null, null]), "RetryJobsRequest").is_err());
    }
}
