//! API tokens stored as data (issue 17, item 2).
//!
//! A stored token is presented as `stk_<id>_<secret>`. The store keeps the id (the visible
//! prefix, also the row's key), the SHA-256 hash of the secret, and the token's name, scopes,
//! tenant, expiry, last use and revocation; never the secret itself. Hashing and checking are
//! done by the caller (the `stoker` client); the store only keeps rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;

/// The scopes a token may hold, from the widest: `admin` may do everything, `operate` may
/// pause and resume queues and retry or cancel jobs (and read), `enqueue`, `work` and `read`
/// are what they say.
pub const TOKEN_SCOPES: [&str; 5] = ["admin", "operate", "enqueue", "work", "read"];

/// The length of a stored token's id (the visible part of `stk_<id>_<secret>`).
pub const TOKEN_ID_LEN: usize = 8;

/// The longest token name.
pub const TOKEN_NAME_MAX_LEN: usize = 100;

/// A stored token's last use is written at most once per this many seconds.
pub const TOKEN_TOUCH_EVERY_SECONDS: i64 = 60;

/// A stored token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    /// The visible id: [`TOKEN_ID_LEN`] lowercase letters and digits.
    pub id: String,
    /// A name for people, e.g. `billing`.
    pub name: String,
    /// The scopes, each one of [`TOKEN_SCOPES`], sorted.
    pub scopes: Vec<String>,
    /// The tenant the token is bound to, if any.
    pub tenant: Option<String>,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (to the minute: see [`TOKEN_TOUCH_EVERY_SECONDS`]).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    /// Whether the token is neither revoked nor expired at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A new stored token, for [`Store::token_create`](crate::Store::token_create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCreateParams {
    /// The row to insert (`last_used_at` and `revoked_at` are ignored).
    pub token: TokenRow,
}

/// Checks a token id: [`TOKEN_ID_LEN`] lowercase ASCII letters and digits.
///
/// # Errors
///
/// `id` when it is not.
pub fn validate_token_id(id: &str) -> Result<(), InvalidInput> {
    if id.len() == TOKEN_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Ok(());
    }
    Err(InvalidInput::new(
        "id",
        format!("a token id is {TOKEN_ID_LEN} lowercase letters and digits, not {id:?}"),
    ))
}

/// Checks the fields a caller chooses for a new token.
///
/// # Errors
///
/// Names the field at fault: `name` (empty, too long, control characters), `scopes` (none, or
/// one not in [`TOKEN_SCOPES`]), `tenant` (empty, too long, whitespace or control
/// characters), `expires_at` (not after `now`).
pub fn validate_token_fields(
    name: &str,
    scopes: &[String],
    tenant: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), InvalidInput> {
    if name.trim().is_empty() || name.len() > TOKEN_NAME_MAX_LEN {
        return Err(InvalidInput::new(
            "name",
            format!("must be 1 to {TOKEN_NAME_MAX_LEN} bytes and not blank"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            "name",
            "must not contain control characters",
        ));
    }
    if scopes.is_empty() {
        return Err(InvalidInput::new(
            "scopes",
            format!("needs at least one of {}", TOKEN_SCOPES.join(", ")),
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !TOKEN_SCOPES.contains(&s.as_str())) {
        return Err(InvalidInput::new(
            "scopes",
            format!(
                "unknown scope {bad:?}; the scopes are {}",
                TOKEN_SCOPES.join(", ")
            ),
        ));
    }
    if let Some(tenant) = tenant {
        if tenant.is_empty()
            || tenant.len() > crate::TENANT_MAX_LEN
            || tenant.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(InvalidInput::new(
                "tenant",
                format!(
                    "must be 1 to {} bytes without spaces or control characters, not {tenant:?}",
                    crate::TENANT_MAX_LEN
                ),
            ));
        }
    }
    if let Some(at) = expires_at {
        if at <= now {
            return Err(InvalidInput::new(
                "expires_at",
                format!("{at} is not in the future"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_fields() {
        let now = Utc::now();
        let scopes = vec!["read".to_owned()];
        assert!(validate_token_fields("a", &scopes, Some("acme"), None, now).is_ok());
        let field = |r: Result<(), InvalidInput>| r.unwrap_err().field;
        assert_eq!(
            field(validate_token_fields(" ", &scopes, None, None, now)),
            "name"
        );
        assert_eq!(
            field(validate_token_fields(
                "a",
                &["root".into()],
                None,
                None,
                now
            )),
            "scopes"
        );
        assert_eq!(
            field(validate_token_fields("a", &[], None, None, now)),
            "scopes"
        );
        assert_eq!(
            field(validate_token_fields("a", &scopes, Some("a b"), None, now)),
            "tenant"
        );
        assert_eq!(
            field(validate_token_fields("a", &scopes, None, Some(now), now)),
            "expires_at"
        );
        assert!(validate_token_id("abcd1234").is_ok());
        assert!(validate_token_id("ABCD1234").is_err());
        assert!(validate_token_id("abc").is_err());
    }
}
