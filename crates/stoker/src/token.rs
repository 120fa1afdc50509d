//! API tokens stored as data (issue 17, item 2): created, listed, rotated and revoked through
//! the [`Client`], and checked by the server.
//!
//! A token is presented as `stk_<id>_<secret>`: `<id>` is its visible id (eight lowercase
//! letters and digits, the row's key), `<secret>` 32 random letters and digits (about 190
//! bits). The store keeps only SHA-256 of the secret; [`Client::token_verify`] looks the row
//! up by id and compares hashes in constant time. The secret is returned once, by
//! [`Client::token_create`] or [`Client::token_rotate`].

use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, Distribution, Uniform};
use rand::Rng;
use sha2::{Digest, Sha256};
use stoker_core::{
    validate_token_fields, validate_token_id, InvalidInput, Store, TokenCreateParams, TokenRow,
    TOKEN_ID_LEN,
};

use crate::{Client, Error, Result};

/// What every stored token starts with.
pub const TOKEN_PREFIX: &str = "stk_";

/// The length of a stored token's secret part.
pub const TOKEN_SECRET_LEN: usize = 32;

/// A new stored token, for [`Client::token_create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// A name for people, e.g. `billing`.
    pub name: String,
    /// Its scopes: `admin`, `operate`, `enqueue`, `work`, `read`.
    pub scopes: Vec<String>,
    /// The tenant it is bound to, if any.
    pub tenant: Option<String>,
    /// When it stops working, if ever (must be in the future).
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token just created or rotated: its row and the full token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    /// The stored row (without the secret).
    pub row: TokenRow,
    /// The token to present, `stk_<id>_<secret>`; not stored anywhere.
    pub token: String,
}

/// SHA-256 of a token's secret part.
fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares two byte strings in time that depends only on their lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Splits `stk_<id>_<secret>` into its id and secret, or `None` if it is not so shaped.
pub fn parse_token(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (validate_token_id(id).is_ok() && secret.len() == TOKEN_SECRET_LEN).then_some((id, secret))
}

fn random_id() -> String {
    let chars = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let pick = Uniform::from(0..chars.len());
    let mut rng = rand::thread_rng();
    (0..TOKEN_ID_LEN)
        .map(|_| char::from(chars[pick.sample(&mut rng)]))
        .collect()
}

fn random_secret() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(TOKEN_SECRET_LEN)
        .map(char::from)
        .collect()
}

/// Whether `presented` is stored token `row` with its secret (hashes compared in constant
/// time).
pub fn token_secret_matches(row: &TokenRow, presented: &str) -> bool {
    match parse_token(presented) {
        Some((id, secret)) => id == row.id && same_bytes(&row.secret_hash, &secret_hash(secret)),
        None => false,
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// One stored token by id, revoked and expired ones included (its row, never a secret).
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`] for a scoped client; store errors.
    pub async fn token_get(&self, id: &str) -> Result<Option<TokenRow>> {
        self.require_every_tenant("token management")?;
        if validate_token_id(id).is_err() {
            return Ok(None);
        }
        Ok(self.store().token_get(id).await?)
    }

    /// Creates a stored token and returns it with its secret, which is shown only here.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `name`, `scopes` (unknown or none), `tenant` or
    /// `expires_at` (not in the future); [`Error::TenantForbidden`] for a scoped client.
    pub async fn token_create(&self, new: NewToken) -> Result<CreatedToken> {
        self.require_every_tenant("token management")?;
        let now = self.clock().now();
        let mut scopes = new.scopes;
        scopes.sort();
        scopes.dedup();
        validate_token_fields(
            &new.name,
            &scopes,
            new.tenant.as_deref(),
            new.expires_at,
            now,
        )?;
        // A clash of random ids is rare; try a few before giving up.
        let mut last = None;
        for _ in 0..3 {
            let secret = random_secret();
            let row = TokenRow {
                id: random_id(),
                name: new.name.clone(),
                scopes: scopes.clone(),
                tenant: new.tenant.clone(),
                secret_hash: secret_hash(&secret),
                created_at: now,
                expires_at: new.expires_at,
                last_used_at: None,
                revoked_at: None,
            };
            let entry = self.audit_entry(
                "token.create",
                Some(format!("token {}", row.id)),
                None,
                None,
            );
            let action = stoker_core::AuditedAction::TokenCreate(TokenCreateParams { token: row });
            match self
                .store()
                .audited(action, entry)
                .await
                .and_then(stoker_core::AuditedOutcome::token)
            {
                Ok(row) => {
                    let token = format!("{TOKEN_PREFIX}{}_{secret}", row.id);
                    return Ok(CreatedToken { row, token });
                }
                Err(err) if err.kind() == stoker_core::StoreErrorKind::Conflict => {
                    last = Some(err);
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(last.expect("three failed tries").into())
    }

    /// Every stored token (revoked and expired ones too), oldest first; no secrets.
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`] for a scoped client; store errors.
    pub async fn token_list(&self) -> Result<Vec<TokenRow>> {
        self.require_every_tenant("token management")?;
        Ok(self.store().token_list().await?)
    }

    /// Revokes a stored token; servers refuse it within seconds (their cache's lifetime).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `id` if it is not a token id; [`Error::NotFound`] if there is
    /// no such token; [`Error::TenantForbidden`] for a scoped client.
    pub async fn token_revoke(&self, id: &str) -> Result<TokenRow> {
        self.require_every_tenant("token management")?;
        validate_token_id(id)?;
        let now = self.clock().now();
        let entry = self.audit_entry("token.revoke", Some(format!("token {id}")), None, None);
        let action = stoker_core::AuditedAction::TokenRevoke {
            id: id.to_owned(),
            now,
        };
        Ok(self.store().audited(action, entry).await?.token()?)
    }

    /// Replaces a token by a new one with the same name, scopes, tenant and expiry, and
    /// revokes the old one. Returns the new token with its secret.
    ///
    /// # Errors
    ///
    /// As [`Client::token_revoke`]; [`Error::Invalid`] naming `id` if the token is already
    /// revoked or expired.
    pub async fn token_rotate(&self, id: &str) -> Result<CreatedToken> {
        self.require_every_tenant("token management")?;
        validate_token_id(id)?;
        let old = self
            .store()
            .token_get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("token {id:?}")))?;
        if !old.is_active(self.clock().now()) {
            return Err(InvalidInput::new(
                "id",
                format!("token {id:?} is revoked or expired; create a new one instead"),
            )
            .into());
        }
        let created = self
            .token_create(NewToken {
                name: old.name,
                scopes: old.scopes,
                tenant: old.tenant,
                expires_at: old.expires_at,
            })
            .await?;
        self.token_revoke(id).await?;
        Ok(created)
    }

    /// The stored token `presented` is (`stk_<id>_<secret>`), if its secret matches, whether
    /// or not it is still active (see [`TokenRow::is_active`]). Compares hashes in constant
    /// time. Does not record the use: see [`Client::token_touch`].
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn token_verify(&self, presented: &str) -> Result<Option<TokenRow>> {
        let Some((id, secret)) = parse_token(presented) else {
            return Ok(None);
        };
        let Some(row) = self.store().token_get(id).await? else {
            return Ok(None);
        };
        Ok(same_bytes(&row.secret_hash, &secret_hash(secret)).then_some(row))
    }

    /// Records a use of token `id` now; written at most once a minute per token.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn token_touch(&self, id: &str) -> Result<bool> {
        let now = self.clock().now();
        Ok(self.store().token_touch(id, now).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = random_id();
        let secret = random_secret();
        let token = format!("{TOKEN_PREFIX}{id}_{secret}");
        assert_eq!(parse_token(&token), Some((id.as_str(), secret.as_str())));
        assert_eq!(parse_token("stk_ABCDEFGH_x"), None);
        assert_eq!(parse_token("not a token"), None);
        assert!(same_bytes(b"ab", b"ab"));
        assert!(!same_bytes(b"ab", b"ac"));
        assert!(!same_bytes(b"ab", b"abc"));
        assert_ne!(secret_hash("a"), secret_hash("b"));
    }
}
