//! Extractors that answer their rejections as [`ApiError`]s instead of axum's plain text.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
        if !plain_json(req.headers()) {
            // axum's own extractor judges (and refuses) any other content type.
            let Json(value) = Json::<Value>::from_request(req, state).await?;
            return checked(value);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        if let Some(value) = fast::<T>(&bytes) {
            return Ok(ApiJson(value));
        }
        let Json(value) = Json::<Value>::from_bytes(&bytes)?;
        checked(value)
    }
}

/// The shape check and the typed read of a parsed body, naming the field at fault.
fn checked<T: DeserializeOwned + ToSchema>(mut value: Value) -> Result<ApiJson<T>, ApiError> {
    let doc = document_json();
    let schema = component(doc, &T::name())?;
    check_shape(&mut value, schema, doc, &Loc::Root)?;
    Ok(ApiJson(serde_path_to_error::deserialize(value)?))
}

/// `Content-Type: application/json`, with or without parameters: the one type the fast path
/// takes. Anything else goes the way axum judges it.
fn plain_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a body that is well formed, of the right shape, and of the right types, straight from
/// its bytes, as two passes over them: the shape (streamed, no tree built), then `T`. `None`
/// for anything else — malformed, misshapen, a whole number written as `5.0` where an integer
/// goes, a duplicated field — which the slower path then reads into a tree, where it is
/// judged exactly as before and its error names the field.
///
/// A 10,000-job bulk enqueue spent more time building, checking and dropping the tree than
/// writing the jobs; valid bodies are the common case and now skip it.
fn fast<T: DeserializeOwned + ToSchema>(bytes: &[u8]) -> Option<T> {
    let shapes = shapes();
    let shape = shapes.get(T::name().as_ref())?;
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    Fast { shape, shapes }.deserialize(&mut reader).ok()?;
    reader.end().ok()?;
    serde_json::from_slice(bytes).ok()
}

/// A schema of the document reduced to what the shape check reads.
#[derive(Debug, Default)]
struct Shape {
    /// The JSON types it declares; empty for any.
    types: Vec<String>,
    /// Its fields' shapes, for an object.
    properties: HashMap<String, Shape>,
    /// Its items' shape, for a list.
    items: Option<Box<Shape>>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    /// The component it refers to.
    reference: Option<String>,
    /// `oneOf` and `anyOf` branches.
    branches: Vec<Shape>,
    /// An `allOf` the fast path does not take: the tree decides.
    composed: bool,
}

impl Shape {
    fn compile(schema: &Value) -> Shape {
        let types = match schema.get("type") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|fields| {
                fields
                    .iter()
                    .map(|(name, field)| (name.clone(), Shape::compile(field)))
                    .collect()
            })
            .unwrap_or_default();
        let branches = ["oneOf", "anyOf"]
            .iter()
            .filter_map(|key| schema.get(*key).and_then(Value::as_array))
            .flatten()
            .map(Shape::compile)
            .collect();
        Shape {
            types,
            properties,
            items: schema
                .get("items")
                .map(|items| Box::new(Shape::compile(items))),
            min_items: schema.get("minItems").and_then(Value::as_u64),
            max_items: schema.get("maxItems").and_then(Value::as_u64),
            reference: schema.get("$ref").and_then(Value::as_str).map(|target| {
                target
                    .trim_start_matches("#/components/schemas/")
                    .to_owned()
            }),
            branches,
            composed: schema.get("allOf").is_some(),
        }
    }

    fn declares(&self, wanted: &str) -> bool {
        self.types.iter().any(|one| one == wanted)
    }
}

/// Every component schema of the served document, compiled once.
fn shapes() -> &'static HashMap<String, Shape> {
    static SHAPES: OnceLock<HashMap<String, Shape>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        document_json()
            .get("components")
            .and_then(|components| components.get("schemas"))
            .and_then(Value::as_object)
            .map(|schemas| {
                schemas
                    .iter()
                    .map(|(name, schema)| (name.clone(), Shape::compile(schema)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A JSON value's kind, as the fast check meets it.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    Null,
    Scalar,
    Integer,
    Float(f64),
    List,
    Object,
}

/// The fast shape check of one value: it accepts only what [`check_shape`] accepts unchanged,
/// and gives up (an error, so the tree decides) on anything else.
#[derive(Clone, Copy)]
struct Fast<'s> {
    shape: &'s Shape,
    shapes: &'s HashMap<String, Shape>,
}

/// Nothing to check below this value.
static ANY: OnceLock<Shape> = OnceLock::new();

impl<'s> Fast<'s> {
    fn at(self, shape: &'s Shape) -> Fast<'s> {
        Fast { shape, ..self }
    }

    /// The shape that judges a value of kind `token`, following references and choosing a
    /// branch as [`check_shape`] would; `None` to give up.
    fn settle(self, token: Token) -> Option<&'s Shape> {
        let mut shape = self.shape;
        for _ in 0..16 {
            if let Some(name) = &shape.reference {
                shape = self.shapes.get(name)?;
                continue;
            }
            if shape.composed {
                return None;
            }
            if shape.branches.is_empty() {
                break;
            }
            // The first branch that takes this kind of value at its top level; should its
            // inside fail, the tree tries the others.
            shape = shape.branches.iter().find(|branch| {
                let branch = self.at(branch).resolve();
                match branch {
                    Some(branch) if branch.declares("null") && branch.types.len() == 1 => {
                        token == Token::Null
                    }
                    Some(branch) => takes(branch, token),
                    None => false,
                }
            })?;
        }
        if shape.reference.is_some() || !shape.branches.is_empty() {
            return None;
        }
        if !takes(shape, token) {
            return None;
        }
        if let Token::Float(number) = token {
            // [`check_shape`] rewrites such a number as an integer: let it.
            if shape.declares("integer") && number.fract() == 0.0 && number.abs() < 2f64.powi(53) {
                return None;
            }
        }
        Some(shape)
    }

    /// `shape` with its references followed.
    fn resolve(self) -> Option<&'s Shape> {
        let mut shape = self.shape;
        for _ in 0..16 {
            match &shape.reference {
                Some(name) => shape = self.shapes.get(name)?,
                None => return Some(shape),
            }
        }
        None
    }

    fn give_up<E: serde::de::Error>() -> E {
        E::custom("left to the full check")
    }
}

/// Whether a schema's declared types let a value of kind `token` pass [`check_shape`]: any
/// value where nothing is declared, and a scalar wherever neither an object nor a list is
/// required (serde judges scalars).
fn takes(shape: &Shape, token: Token) -> bool {
    if shape.types.is_empty() {
        return true;
    }
    let names: &[&str] = match token {
        Token::Null => &["null"],
        Token::Scalar => &["boolean", "string"],
        Token::Integer => &["integer", "number"],
        Token::Float(_) => &["number"],
        Token::List => &["array"],
        Token::Object => &["object"],
    };
    if names.iter().any(|name| shape.declares(name)) {
        return true;
    }
    !matches!(token, Token::List | Token::Object)
        && !shape.declares("object")
        && !shape.declares("array")
}

impl<'de> DeserializeSeed<'de> for Fast<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Fast<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.settle(Token::Null).map(drop).ok_or_else(Self::give_up)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.settle(Token::Scalar)
            .map(drop)
            .ok_or_else(Self::give_up)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.settle(Token::Scalar)
            .map(drop)
            .ok_or_else(Self::give_up)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.settle(Token::Integer)
            .map(drop)
            .ok_or_else(Self::give_up)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.settle(Token::Integer)
            .map(drop)
            .ok_or_else(Self::give_up)
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<(), E> {
        self.settle(Token::Float(number))
            .map(drop)
            .ok_or_else(Self::give_up)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let shape = self.settle(Token::List).ok_or_else(Self::give_up)?;
        let item = self.at(shape.items.as_deref().unwrap_or_else(|| any()));
        let mut len = 0u64;
        while items.next_element_seed(item)?.is_some() {
            len += 1;
            if shape.max_items.is_some_and(|max| len > max) {
                return Err(Self::give_up());
            }
        }
        if shape.min_items.is_some_and(|min| len < min) {
            return Err(Self::give_up());
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        let shape = self.settle(Token::Object).ok_or_else(Self::give_up)?;
        // A name with escapes cannot be borrowed: the tree reads it.
        while let Some(name) = fields.next_key::<&'de str>()? {
            let field = shape.properties.get(name).unwrap_or_else(|| any());
            fields.next_value_seed(self.at(field))?;
        }
        Ok(())
    }
}

fn any() -> &'static Shape {
    ANY.get_or_init(Shape::default)
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

/// Where a value sits in the body, as a chain on the stack: the field's name (`jobs[3].queue`)
/// is written out only for an error, so a 10,000-job body costs no string per field.
#[derive(Clone, Copy)]
enum Loc<'a> {
    Root,
    Field(&'a Loc<'a>, &'a str),
    Index(&'a Loc<'a>, usize),
}

impl std::fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Root => Ok(()),
            Loc::Field(Loc::Root, name) => f.write_str(name),
            Loc::Field(parent, name) => write!(f, "{parent}.{name}"),
            Loc::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn refused(loc: &Loc<'_>, message: String) -> ApiError {
    match loc {
        Loc::Root => ApiError::invalid("", message).without_field(),
        _ => ApiError::invalid(loc.to_string(), message),
    }
}

/// The schema the document names `name` among its components.
fn component<'d>(doc: &'d Value, name: &str) -> Result<&'d Value, ApiError> {
    doc.get("components")
        .and_then(|components| components.get("schemas"))
        .and_then(|schemas| schemas.get(name))
        .ok_or_else(|| ApiError::internal(format!("the document has no schema {name}")))
}

/// Checks `value` (at `loc`) against `schema`: objects and lists where the document says so,
/// and lists within `minItems`/`maxItems`. Scalars are left to serde, whose errors name the
/// field already.
///
/// A number with no fraction where the document says integer (`5.0`, which JSON Schema counts
/// as an integer) becomes that integer, so serde reads it as the document promises.
fn check_shape(
    value: &mut Value,
    schema: &Value,
    doc: &Value,
    loc: &Loc<'_>,
) -> Result<(), ApiError> {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| ApiError::internal(format!("unresolved schema reference {target}")))?;
        return check_shape(value, component(doc, name)?, doc, loc);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check_shape(value, part, doc, loc)?;
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
                match check_shape(value, branch, doc, loc) {
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
    let declared = schema.get("type");
    let declares = |wanted: &str| match declared {
        Some(Value::String(one)) => one == wanted,
        Some(Value::Array(many)) => many.iter().any(|one| one == wanted),
        _ => false,
    };
    if declares("integer") {
        if let Some(float) = value.as_f64().filter(|_| value.is_f64()) {
            // Only where the float is exact (below 2^53): a larger one may stand for a number
            // out of range, which serde must still refuse.
            if float.fract() == 0.0 && float.abs() < 2f64.powi(53) {
                *value = Value::from(float as i64);
            }
        }
    }
    let kinds = kinds_of(value);
    let typed = matches!(declared, Some(Value::String(_) | Value::Array(_)));
    if typed && !kinds.iter().any(|kind| declares(kind)) {
        let got = kinds[0];
        let what = match loc {
            Loc::Root => "the body".to_owned(),
            _ => format!("`{loc}`"),
        };
        if declares("object") {
            return Err(refused(
                loc,
                format!("{what} must be a JSON object, got {got}"),
            ));
        }
        if declares("array") {
            return Err(refused(
                loc,
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
                        check_shape(field, property, doc, &Loc::Field(loc, name))?;
                    }
                }
            }
        }
        Value::Array(items) => {
            let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
            let len = items.len() as u64;
            if let Some(max) = bound("maxItems").filter(|max| len > *max) {
                return Err(refused(
                    loc,
                    format!("`{loc}` holds {len} items; send at most {max}"),
                ));
            }
            if let Some(min) = bound("minItems").filter(|min| len < *min) {
                return Err(refused(
                    loc,
                    format!("`{loc}` holds {len} items; send at least {min}"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    check_shape(item, item_schema, doc, &Loc::Index(loc, index))?;
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
        let doc = document_json();
        let mut value = value;
        check_shape(&mut value, component(doc, schema)?, doc, &Loc::Root)
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

    /// The fast read takes plain valid bodies, and whatever it takes, the full check reads
    /// the same; anything else it leaves to the full check.
    #[test]
    fn the_fast_read_agrees_with_the_full_check() {
        use crate::api::model::{EnqueueBulkRequest, EnqueueRequest};

        fn agree<T>(body: &str) -> bool
        where
            T: DeserializeOwned + ToSchema + PartialEq + std::fmt::Debug,
        {
            let fast = fast::<T>(body.as_bytes());
            let full = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|value| checked::<T>(value).ok())
                .map(|ApiJson(value)| value);
            if let Some(fast) = &fast {
                assert_eq!(Some(fast), full.as_ref(), "{body}");
            }
            fast.is_some()
        }

        let taken = [
            r#"{"kind":"k"}"#,
            r#"{"kind":"k","args":{"a":[1,{"b":null}]},"queue":"q","priority":3}"#,
            r#"{"kind":"k","priority":"high","metadata":{"tags":["a"],"correlation_id":"c"}}"#,
            r#"{"kind":"k","backoff":null,"metadata":null,"delay_seconds":1.5}"#,
            r#"{"kind":"k","backoff":{"base_seconds":1,"factor":2,"max_seconds":60,"jitter":0.1}}"#,
        ];
        for body in taken {
            assert!(agree::<EnqueueRequest>(body), "not taken: {body}");
        }
        let bulk = format!(r#"{{"jobs":[{}]}}"#, taken.join(","));
        assert!(agree::<EnqueueBulkRequest>(&bulk));

        let left = [
            r#"["k"]"#,
            r#"{"kind":"k","args":["x"]}"#,
            r#"{"kind":"k","args":null}"#,
            r#"{"kind":"k","metadata":["c"]}"#,
            r#"{"kind":"k","max_attempts":5.0}"#,
            r#"{"kind":"k","kind":"j"}"#,
            r#"{"kind":"k","unknown":1}"#,
            r#"{"kind":"k"} trailing"#,
            r#"{"kind":"k""#,
            r#"{"ki\u006ed":"k"}"#,
            r#"{"kind":1}"#,
        ];
        for body in left {
            assert!(!agree::<EnqueueRequest>(body), "taken: {body}");
        }
        for body in [
            r#"{"jobs":[]}"#,
            r#"{"jobs":{"kind":"k"}}"#,
            r#"{"jobs":[["k"]]}"#,
        ] {
            assert!(!agree::<EnqueueBulkRequest>(body), "taken: {body}");
        }
        let too_many = format!(
            r#"{{"jobs":[{}]}}"#,
            vec![r#"{"kind":"k"}"#; 10_001].join(",")
        );
        assert!(!agree::<EnqueueBulkRequest>(&too_many));
    }
}
