//! Flow control (issue 16): the limits the claim enforces, set, listed and deleted by name,
//! with their usage. Changing a limit takes admin and applies at once on this server and
//! within a second on every node.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiPath};
use super::model::ErrorBody;
use super::{ApiError, AppState, Principal};
use crate::config::Scope;

/// A rate: `count` starts per `period_ms`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    /// How many per period.
    #[serde(deserialize_with = "whole_u32")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub count: u32,
    /// The period in milliseconds, up to one day.
    #[serde(deserialize_with = "whole_u64")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub period_ms: u64,
    /// How many may start at once after a quiet spell. Defaults to 1: one every
    /// `period_ms / count`.
    #[serde(default = "one", deserialize_with = "whole_u32")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64, default = 1)]
    pub burst: u32,
}

impl From<stoker::Rate> for RateBody {
    fn from(rate: stoker::Rate) -> Self {
        RateBody {
            count: rate.count,
            period_ms: rate.period_ms,
            burst: rate.burst,
        }
    }
}

impl From<RateBody> for stoker::Rate {
    fn from(rate: RateBody) -> Self {
        stoker::Rate {
            count: rate.count,
            period_ms: rate.period_ms,
            burst: rate.burst,
        }
    }
}

fn one() -> u32 {
    1
}

/// A field that may be left out but not sent as null: left out it is `None`; a null is refused
/// as the wrong type, as the document states (none of these fields is nullable).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A whole number in `u32`'s range, written as an integer or as a float with no fraction
/// (`100.0` is the integer 100 to JSON Schema, so the document admits it).
fn whole_u32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = super::model::whole_number(deserializer)?;
    u32::try_from(value).map_err(|_| {
        serde::de::Error::invalid_value(
            serde::de::Unexpected::Signed(value),
            &"a whole number from 0 to 4294967295",
        )
    })
}

/// A map of whole numbers, each as [`whole_u32`] (a fair queue's weights).
fn whole_u32_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, u32>, D::Error> {
    struct Whole(u32);
    impl<'de> Deserialize<'de> for Whole {
        fn deserialize<W: serde::Deserializer<'de>>(deserializer: W) -> Result<Self, W::Error> {
            whole_u32(deserializer).map(Whole)
        }
    }
    let map = std::collections::BTreeMap::<String, Whole>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(tenant, Whole(weight))| (tenant, weight))
        .collect())
}

/// A whole number in `u64`'s range, as [`whole_u32`].
fn whole_u64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = super::model::whole_number(deserializer)?;
    u64::try_from(value).map_err(|_| {
        serde::de::Error::invalid_value(
            serde::de::Unexpected::Signed(value),
            &"a whole number of at least 0",
        )
    })
}

/// [`whole_u32`] for a field that may be left out but not sent as null.
fn present_whole_u32<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    whole_u32(deserializer).map(Some)
}

/// A limit's settings: which jobs it governs, how it splits them, and its rate and/or
/// concurrency (at least one).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// Only jobs of this queue; every queue when absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]+$"
    )]
    pub queue: Option<String>,
    /// Only jobs of this kind; every kind when absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    pub kind: Option<String>,
    /// How jobs split into independent limiters: `global` (one for all, the default),
    /// `tenant` (one per tenant), `args.FIELD` or `metadata.FIELD` (one per value of that
    /// field, e.g. `args.shop_id`). Jobs without a value for the key are not limited.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 600,
        pattern = r"^(global|tenant|(args|metadata)(\.[A-Za-z0-9_-]{1,64}){1,8})$"
    )]
    pub key: Option<String>,
    /// Start at most this many per period (counted when a job is claimed).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub rate: Option<RateBody>,
    /// At most this many running at once, across every worker.
    #[serde(default, deserialize_with = "present_whole_u32")]
    #[schema(nullable = false, minimum = 1, maximum = 4_294_967_295_u64)]
    pub concurrency: Option<u32>,
    /// Serve the queue's tenants in turn (weighted fair queuing) rather than in plain priority
    /// order. Needs `queue` and no `kind`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub fair: Option<FairBody>,
    /// Accept at most this many submissions per period for each key (e.g. with `key` =
    /// `tenant`, per tenant), counted when jobs are enqueued: beyond it an enqueue answers 429
    /// with `Retry-After` and writes nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub quota: Option<RateBody>,
}

/// Fair queuing across the tenants of a queue: each tenant with waiting jobs gets a share of
/// the starts in proportion to its weight; within a tenant, jobs keep priority order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FairBody {
    /// Weights of named tenants, 1 to 1000 (at most 1000 tenants); any other tenant weighs 1.
    #[serde(default, deserialize_with = "whole_u32_map")]
    pub weights: std::collections::BTreeMap<String, u32>,
}

/// One limiter's use: running jobs against its cap, tokens left, quota used, and how many
/// available jobs it is holding back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// The limit.
    pub name: String,
    /// The limiter's key within it (empty for a global limit).
    pub key: String,
    /// Jobs running under it now.
    pub running: i64,
    /// Until when it starts no job (rate limited), if it is throttled now.
    pub throttled_until: Option<DateTime<Utc>>,
    // --- stream flow ---
    /// Its concurrency cap, if the limit has one.
    #[serde(default)]
    pub cap: Option<u32>,
    /// Starts its rate allows right now (0 to the burst), if the limit has a rate.
    #[serde(default)]
    pub tokens_left: Option<u32>,
    /// When its rate next allows a start, if it allows none now.
    #[serde(default)]
    pub next_token_at: Option<DateTime<Utc>>,
    /// Submissions its enqueue quota counted in the current window, if it has a quota.
    #[serde(default)]
    pub quota_used: Option<u32>,
    /// Available, due jobs waiting because of it now (0 while it admits jobs). Counted from
    /// at most 10,000 due jobs of the limit's scope per limiter, so it is a lower bound when
    /// `held_back_more` is true.
    #[serde(default)]
    pub held_back: u64,
    /// Whether `held_back` stopped at its bound: there may be more.
    #[serde(default)]
    pub held_back_more: bool,
}

impl From<stoker::LimitUsage> for UsageView {
    fn from(usage: stoker::LimitUsage) -> Self {
        UsageView {
            name: usage.name,
            key: usage.key,
            running: usage.running,
            throttled_until: usage.throttled_until,
            cap: usage.cap,
            tokens_left: usage.tokens_left,
            next_token_at: usage.next_token_at,
            quota_used: usage.quota_used,
            held_back: usage.held_back,
            held_back_more: usage.held_back_more,
        }
    }
}

/// A stored limit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitView {
    /// Its name.
    pub name: String,
    /// Its queue, if it governs one queue only.
    pub queue: Option<String>,
    /// Its kind, if it governs one kind only.
    pub kind: Option<String>,
    /// Its key expression.
    pub key: String,
    /// Its rate, if any.
    pub rate: Option<RateBody>,
    /// Its concurrency limit, if any.
    pub concurrency: Option<u32>,
    /// Its fair queuing across tenants, if on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair: Option<FairBody>,
    /// Its enqueue quota per key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<RateBody>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

impl From<stoker::LimitRow> for LimitView {
    fn from(row: stoker::LimitRow) -> Self {
        LimitView {
            key: row.spec.key.to_string(),
            name: row.spec.name,
            queue: row.spec.queue,
            kind: row.spec.kind,
            rate: row.spec.rate.map(|rate| RateBody {
                count: rate.count,
                period_ms: rate.period_ms,
                burst: rate.burst,
            }),
            concurrency: row.spec.concurrency,
            fair: row.spec.fair.map(|fair| FairBody {
                weights: fair.weights,
            }),
            quota: row.spec.quota.map(RateBody::from),
            updated_at: row.updated_at,
        }
    }
}

/// Every limit and every limiter in use.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitList {
    /// The limits, by name.
    pub limits: Vec<LimitView>,
    /// The limiters running jobs or throttled now, by limit and key.
    pub usage: Vec<UsageView>,
}

const NAME_PARAM: &str = "The limit's name: 1 to 64 letters, digits, `_`, `-`, `.` or `:`";

fn admin(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Scope::Admin)?;
    principal.require_cluster("limit management")
}

/// List every limit, with the limiters in use now.
///
/// A tenant-bound token gets its tenant's limits only: those keyed by `tenant`, which give
/// each tenant a limiter of its own, with its own limiter's usage. The other limits are shared
/// by every tenant and are not shown to it.
#[utoipa::path(
    get,
    path = "/v1/limits",
    tag = "limits",
    responses((status = 200, description = "Every limit and its usage (for a tenant-bound token: its tenant's)", body = LimitList)),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LimitList>, ApiError> {
    principal.require(Scope::Read)?;
    let client = state.client_for(&principal);
    let limits = client.limits().await?;
    let usage = client.limit_usage().await?;
    Ok(Json(LimitList {
        limits: limits.into_iter().map(LimitView::from).collect(),
        usage: usage.into_iter().map(UsageView::from).collect(),
    }))
}

/// Create or replace a limit by name. A limit governs every tenant's jobs of its queue and
/// kind, so a tenant-bound token is refused (403 `tenant_forbidden`).
#[utoipa::path(
    put,
    path = "/v1/limits/{name}",
    tag = "limits",
    params(("name" = String, Path, description = NAME_PARAM, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")),
    request_body = LimitBody,
    responses(
        (status = 200, description = "The limit as stored", body = LimitView),
        (status = 422, description = "A refused field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<LimitBody>,
) -> Result<Json<LimitView>, ApiError> {
    admin(&principal)?;
    let key = match &body.key {
        Some(key) => stoker::LimitKey::parse(key)?,
        None => stoker::LimitKey::Global,
    };
    let spec = stoker::LimitSpec {
        name,
        queue: body.queue,
        kind: body.kind,
        key,
        rate: body.rate.map(|rate| stoker::Rate {
            count: rate.count,
            period_ms: rate.period_ms,
            burst: rate.burst,
        }),
        concurrency: body.concurrency,
        fair: body.fair.map(|fair| stoker::Fair {
            weights: fair.weights,
        }),
        quota: body.quota.map(stoker::Rate::from),
    };
    let row = state.client_for(&principal).limit_set(spec).await?;
    Ok(Json(row.into()))
}

/// Delete a limit: its jobs run unlimited from then on.
#[utoipa::path(
    delete,
    path = "/v1/limits/{name}",
    tag = "limits",
    params(("name" = String, Path, description = NAME_PARAM, pattern = r"^[A-Za-z0-9_.:-]{1,64}$")),
    responses(
        (status = 200, description = "The deleted limit", body = LimitView),
        (status = 404, description = "`not_found`: no such limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<LimitView>, ApiError> {
    admin(&principal)?;
    let row = state.client_for(&principal).limit_delete(&name).await?;
    Ok(Json(row.into()))
}
