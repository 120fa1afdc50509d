//! Encryption at rest of jobs' args and results (issue 17 item 4).
//!
//! The client seals the args of the kinds and queues an [`Encryption`] names before they reach
//! the store, and the worker (or a pull worker's reservation) opens them before the handler
//! sees them; a result is sealed before the acknowledgement writes it. So the database, its
//! backups and the store's logs hold only ciphertext, while handlers and pull workers get
//! plaintext. The server needs the keys only because it serves pull workers and shows jobs to
//! admins; a library user who runs the worker in-process keeps the keys there alone.
//!
//! # Format
//!
//! A sealed value is a JSON object in the same column, so neither store changes:
//!
//! ```json
//! {"$enc": "v1", "kid": 2, "n": "<base64 24-byte nonce>", "ct": "<base64 ciphertext+tag>"}
//! ```
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): its 192-bit nonces are
//! safe to draw at random for every message, so no counter has to be kept across processes,
//! and it is constant-time in software. The key id (`kid`) says which key sealed the value, so
//! a reader never tries keys in turn and rotation knows which rows are left. The associated
//! data binds the ciphertext to its place, `stoker:v1:<field>:<kind>:<tenant>`: a result
//! copied into args, or one tenant's args copied into another tenant's job, fails to open.
//!
//! # Limits
//!
//! Sealed args are opaque to the store: a search by args text does not match them, and an
//! idempotency key must be given by the caller (Stoker never derives one from args).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The marker key of a sealed value, and the version of its format.
pub const ENVELOPE_MARKER: &str = "$enc";
/// The format version every sealed value carries.
pub const ENVELOPE_VERSION: &str = "v1";
/// The environment variable the server reads its keys from (`1=<base64>,2=<base64>`).
pub const KEYS_ENV: &str = "STOKER_ENCRYPTION_KEYS";
/// How long a job whose args cannot be opened (its key is missing or wrong) waits before the
/// next try: it is snoozed, not failed, so a fixed key ring lets it run without losing an
/// attempt.
pub const KEY_MISSING_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Which part of a job a value is; it is bound into the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The job's args.
    Args,
    /// The job's result.
    Result,
}

impl Field {
    fn as_str(self) -> &'static str {
        match self {
            Field::Args => "args",
            Field::Result => "result",
        }
    }
}

/// Why a sealed value could not be opened, or a key ring not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The value was sealed with a key this process does not have.
    #[error("the {field} were sealed with key {kid}, which this process does not have; add it to {KEYS_ENV} or the key file")]
    UnknownKey {
        /// `args` or `result`.
        field: &'static str,
        /// The key id in the ciphertext.
        kid: u32,
    },
    /// The ciphertext does not open under its key: it was changed, moved to another job
    /// kind or tenant, or the key under that id is not the one that sealed it.
    #[error("the {field} do not open under key {kid}: the ciphertext was altered or moved, or key {kid} is not the key that sealed it")]
    Tampered {
        /// `args` or `result`.
        field: &'static str,
        /// The key id in the ciphertext.
        kid: u32,
    },
    /// The value looks sealed (it has `$enc`) but is not a valid envelope.
    #[error("the {field} are a malformed encrypted envelope: {reason}")]
    Malformed {
        /// `args` or `result`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A key ring specification is invalid.
    #[error("invalid encryption key {what}: {reason}")]
    InvalidKey {
        /// Which key or entry.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// A 256-bit key, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
struct Key(Zeroizing<[u8; 32]>);

/// The keys a process may open values with, by id, and the one it seals new values with.
///
/// ```
/// use stoker::KeyRing;
/// let ring = KeyRing::parse("1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, 2=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")?;
/// assert_eq!(ring.active(), 2); // the highest id seals, unless set
/// assert_eq!(ring.ids(), vec![1, 2]);
/// # Ok::<(), stoker::CryptError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<u32, Key>,
    active: Option<u32>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids only: a key never reaches a log.
        f.debug_struct("KeyRing")
            .field("ids", &self.ids())
            .field("active", &self.active())
            .finish()
    }
}

impl KeyRing {
    /// An empty ring; add keys with [`KeyRing::with_key`].
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// The ring with `key` under id `kid` (replacing a key of the same id).
    pub fn with_key(mut self, kid: u32, key: [u8; 32]) -> Self {
        self.keys.insert(kid, Key(Zeroizing::new(key)));
        self
    }

    /// Seals new values with key `kid` rather than the highest id.
    ///
    /// # Errors
    ///
    /// [`CryptError::InvalidKey`] if the ring has no key `kid`.
    pub fn with_active(mut self, kid: u32) -> Result<Self, CryptError> {
        if !self.keys.contains_key(&kid) {
            return Err(CryptError::InvalidKey {
                what: format!("active id {kid}"),
                reason: format!("no key has id {kid} (ids: {:?})", self.ids()),
            });
        }
        self.active = Some(kid);
        Ok(self)
    }

    /// Parses `id=base64key` entries separated by commas or new lines (`#` starts a comment),
    /// as [`KEYS_ENV`] and a key file hold them. Each key is 32 bytes in standard base64
    /// (`openssl rand -base64 32`); ids are 1 to 4294967295.
    ///
    /// # Errors
    ///
    /// [`CryptError::InvalidKey`] naming the entry: no `=`, an id that is no positive number,
    /// a repeated id, a key that is not base64 or not 32 bytes, or no key at all.
    pub fn parse(spec: &str) -> Result<Self, CryptError> {
        let mut ring = KeyRing::new();
        let entries = spec
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let invalid = |reason: String| CryptError::InvalidKey {
                what: format!("entry {}", index + 1),
                reason,
            };
            let (id, key) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected id=base64key".into()))?;
            let kid: u32 = id
                .trim()
                .parse()
                .ok()
                .filter(|kid| *kid > 0)
                .ok_or_else(|| invalid(format!("id {:?} is not a number from 1", id.trim())))?;
            let bytes = Zeroizing::new(
                BASE64
                    .decode(key.trim())
                    .map_err(|_| invalid(format!("key {kid} is not standard base64")))?,
            );
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                invalid(format!(
                    "key {kid} is {} bytes; it must be 32 (openssl rand -base64 32)",
                    bytes.len()
                ))
            })?;
            if ring.keys.contains_key(&kid) {
                return Err(invalid(format!("id {kid} is given twice")));
            }
            ring = ring.with_key(kid, key);
        }
        if ring.keys.is_empty() {
            return Err(CryptError::InvalidKey {
                what: "ring".into(),
                reason: "no key given".into(),
            });
        }
        Ok(ring)
    }

    /// Reads a key file in the [`KeyRing::parse`] format.
    ///
    /// # Errors
    ///
    /// [`CryptError::InvalidKey`] if the file cannot be read or parsed.
    pub fn from_file(path: &Path) -> Result<Self, CryptError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
            CryptError::InvalidKey {
                what: format!("file {}", path.display()),
                reason: err.to_string(),
            }
        })?);
        KeyRing::parse(&text)
    }

    /// The id new values are sealed with: the one set, else the highest. 0 for an empty ring.
    pub fn active(&self) -> u32 {
        self.active
            .or_else(|| self.keys.keys().next_back().copied())
            .unwrap_or(0)
    }

    /// The ids of the keys in the ring, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    fn cipher(&self, kid: u32) -> Option<XChaCha20Poly1305> {
        self.keys
            .get(&kid)
            .map(|key| XChaCha20Poly1305::new(key.0.as_ref().into()))
    }
}

/// Which jobs are encrypted, and the keys: give it to [`Client::with_encryption`] and
/// [`WorkerBuilder::encryption`](crate::WorkerBuilder::encryption).
///
/// [`Client::with_encryption`]: crate::Client::with_encryption
///
/// ```
/// use stoker::{Encryption, KeyRing};
/// let ring = KeyRing::new().with_key(1, [7; 32]);
/// let encryption = Encryption::kinds(ring, ["charge_card"]);
/// assert!(encryption.applies("charge_card", "default"));
/// assert!(!encryption.applies("send_email", "default"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    ring: Arc<KeyRing>,
    every: bool,
    kinds: BTreeSet<String>,
    queues: BTreeSet<String>,
}

impl Encryption {
    /// Encrypts every job.
    pub fn all(ring: KeyRing) -> Self {
        Encryption {
            ring: Arc::new(ring),
            every: true,
            kinds: BTreeSet::new(),
            queues: BTreeSet::new(),
        }
    }

    /// Encrypts jobs of these kinds.
    pub fn kinds(ring: KeyRing, kinds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Encryption {
            ring: Arc::new(ring),
            every: false,
            kinds: kinds.into_iter().map(Into::into).collect(),
            queues: BTreeSet::new(),
        }
    }

    /// Also encrypts jobs of these queues.
    pub fn and_queues(mut self, queues: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.queues.extend(queues.into_iter().map(Into::into));
        self
    }

    /// Encrypts no new job, but opens sealed ones: for a process that only reads, or a
    /// migration away from encryption.
    pub fn open_only(ring: KeyRing) -> Self {
        Encryption::kinds(ring, Vec::<String>::new())
    }

    /// The key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Whether new jobs of `kind` on `queue` are sealed.
    pub fn applies(&self, kind: &str, queue: &str) -> bool {
        self.every || self.kinds.contains(kind) || self.queues.contains(queue)
    }

    /// Seals `value` as `field` of a job of `kind` and `tenant` under the active key.
    ///
    /// # Errors
    ///
    /// [`CryptError::UnknownKey`] if the ring is empty.
    pub fn seal(
        &self,
        field: Field,
        kind: &str,
        tenant: Option<&str>,
        value: &Value,
    ) -> Result<Value, CryptError> {
        let kid = self.ring.active();
        let cipher = self.ring.cipher(kid).ok_or(CryptError::UnknownKey {
            field: field.as_str(),
            kid,
        })?;
        let plain = Zeroizing::new(serde_json::to_vec(value).expect("a JSON value encodes"));
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(field, kind, tenant);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut envelope = Map::new();
        envelope.insert(ENVELOPE_MARKER.into(), ENVELOPE_VERSION.into());
        envelope.insert("kid".into(), kid.into());
        envelope.insert("n".into(), BASE64.encode(nonce).into());
        envelope.insert("ct".into(), BASE64.encode(sealed).into());
        Ok(Value::Object(envelope))
    }

    /// Opens `value` if it is sealed; a plain value comes back as it is (jobs enqueued before
    /// encryption was turned on, or of kinds it does not cover).
    ///
    /// # Errors
    ///
    /// [`CryptError::UnknownKey`], [`CryptError::Tampered`] or [`CryptError::Malformed`].
    pub fn open(
        &self,
        field: Field,
        kind: &str,
        tenant: Option<&str>,
        value: &Value,
    ) -> Result<Value, CryptError> {
        let Some(envelope) = Envelope::read(field, value)? else {
            return Ok(value.clone());
        };
        let cipher = self
            .ring
            .cipher(envelope.kid)
            .ok_or(CryptError::UnknownKey {
                field: field.as_str(),
                kid: envelope.kid,
            })?;
        let aad = associated_data(field, kind, tenant);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&envelope.nonce),
                    Payload {
                        msg: &envelope.ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| CryptError::Tampered {
                    field: field.as_str(),
                    kid: envelope.kid,
                })?,
        );
        serde_json::from_slice(&plain).map_err(|err| CryptError::Malformed {
            field: field.as_str(),
            reason: format!("the plaintext is not JSON: {err}"),
        })
    }
}

/// The store's args size limit once args are sealed, from the limit on their plaintext: base64
/// adds a third, and the envelope's fields, nonce and tag about 100 bytes.
pub(crate) fn sealed_size_limit(plain_limit: usize) -> usize {
    plain_limit.saturating_mul(4) / 3 + 256
}

/// The key id of a sealed value, or `None` for a plain one.
///
/// ```
/// use serde_json::json;
/// assert_eq!(stoker::sealed_with(&json!({"to": "a@b"})), None);
/// assert_eq!(stoker::sealed_with(&json!({"$enc": "v1", "kid": 3, "n": "", "ct": ""})), Some(3));
/// ```
pub fn sealed_with(value: &Value) -> Option<u32> {
    let object = value.as_object()?;
    object.get(ENVELOPE_MARKER)?;
    object
        .get("kid")?
        .as_u64()
        .and_then(|kid| u32::try_from(kid).ok())
}

struct Envelope {
    kid: u32,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl Envelope {
    fn read(field: Field, value: &Value) -> Result<Option<Envelope>, CryptError> {
        let Some(object) = value.as_object() else {
            return Ok(None);
        };
        let Some(version) = object.get(ENVELOPE_MARKER) else {
            return Ok(None);
        };
        let malformed = |reason: &str| CryptError::Malformed {
            field: field.as_str(),
            reason: reason.into(),
        };
        if version != ENVELOPE_VERSION {
            return Err(malformed("unknown version (expected \"v1\")"));
        }
        let kid = object
            .get("kid")
            .and_then(Value::as_u64)
            .and_then(|kid| u32::try_from(kid).ok())
            .ok_or_else(|| malformed("kid is not a key id"))?;
        let bytes = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .and_then(|text| BASE64.decode(text).ok())
        };
        let nonce = bytes("n")
            .filter(|nonce| nonce.len() == 24)
            .ok_or_else(|| malformed("n is not a base64 24-byte nonce"))?;
        let ciphertext = bytes("ct").ok_or_else(|| malformed("ct is not base64"))?;
        Ok(Some(Envelope {
            kid,
            nonce,
            ciphertext,
        }))
    }
}

fn associated_data(field: Field, kind: &str, tenant: Option<&str>) -> String {
    format!(
        "stoker:{ENVELOPE_VERSION}:{}:{kind}:{}",
        field.as_str(),
        tenant.unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encryption() -> Encryption {
        Encryption::all(KeyRing::new().with_key(1, [1; 32]).with_key(2, [2; 32]))
    }

    #[test]
    fn seals_and_opens() {
        let enc = encryption();
        let args = json!({"card": {"number": "4242424242424242"}});
        let sealed = enc
            .seal(Field::Args, "charge", Some("acme"), &args)
            .unwrap();
        assert_eq!(sealed_with(&sealed), Some(2));
        assert!(!sealed.to_string().contains("4242"));
        let opened = enc
            .open(Field::Args, "charge", Some("acme"), &sealed)
            .unwrap();
        assert_eq!(opened, args);
    }

    #[test]
    fn plain_values_pass_through() {
        let enc = encryption();
        let args = json!({"to": "a@b"});
        assert_eq!(enc.open(Field::Args, "k", None, &args).unwrap(), args);
    }

    #[test]
    fn a_moved_or_altered_ciphertext_does_not_open() {
        let enc = encryption();
        let sealed = enc
            .seal(Field::Args, "charge", Some("acme"), &json!(1))
            .unwrap();
        let err = enc
            .open(Field::Args, "charge", Some("globex"), &sealed)
            .unwrap_err();
        assert_eq!(
            err,
            CryptError::Tampered {
                field: "args",
                kid: 2
            }
        );
        let err = enc
            .open(Field::Result, "charge", Some("acme"), &sealed)
            .unwrap_err();
        assert!(matches!(err, CryptError::Tampered { .. }));
        let mut altered = sealed.clone();
        let ct = altered["ct"].as_str().unwrap().to_owned();
        let mut bytes = BASE64.decode(ct).unwrap();
        bytes[0] ^= 1;
        altered["ct"] = BASE64.encode(bytes).into();
        assert!(matches!(
            enc.open(Field::Args, "charge", Some("acme"), &altered),
            Err(CryptError::Tampered { .. })
        ));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let enc = encryption();
        let sealed = enc.seal(Field::Args, "k", None, &json!(1)).unwrap();
        let old = Encryption::all(KeyRing::new().with_key(1, [1; 32]));
        let err = old.open(Field::Args, "k", None, &sealed).unwrap_err();
        assert_eq!(
            err,
            CryptError::UnknownKey {
                field: "args",
                kid: 2
            }
        );
        assert!(err.to_string().contains("key 2"));
    }

    #[test]
    fn parses_rings_and_names_bad_entries() {
        let key = BASE64.encode([9u8; 32]);
        let ring = KeyRing::parse(&format!("# keys\n3={key}\n1 = {key} , ")).unwrap();
        assert_eq!((ring.ids(), ring.active()), (vec![1, 3], 3));
        assert_eq!(ring.with_active(1).unwrap().active(), 1);
        for bad in [
            "",
            "1",
            "x=abc",
            &format!("0={key}"),
            "1=!!",
            "1=AAAA",
            &format!("1={key},1={key}"),
        ] {
            assert!(
                matches!(KeyRing::parse(bad), Err(CryptError::InvalidKey { .. })),
                "{bad:?} parsed"
            );
        }
        assert!(!format!("{:?}", KeyRing::parse(&format!("1={key}")).unwrap()).contains(&key));
    }
}

// --- Key rotation -----------------------------------------------------------------------------

/// How many jobs one rotation step reads and rewrites, in one short transaction.
pub const ROTATE_BATCH_DEFAULT: u32 = 500;

/// What [`Client::keys_rotate`](crate::Client::keys_rotate) did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotateReport {
    /// The key every value is sealed with afterwards.
    pub active: u32,
    /// Jobs read with a value under another key.
    pub scanned: u64,
    /// Values (args or results) sealed again under the active key.
    pub resealed: u64,
    /// Values that did not open (their key is missing or wrong): left as they were.
    pub unreadable: u64,
    /// Values that changed while being resealed (a worker wrote a result): left for the next
    /// run, which finds them again.
    pub skipped: u64,
}

impl fmt::Display for RotateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "active key {}: {} jobs read, {} values resealed, {} unreadable, {} changed meanwhile",
            self.active, self.scanned, self.resealed, self.unreadable, self.skipped
        )
    }
}

/// How many stored values each key id seals: what [`Client::keys_status`](crate::Client::keys_status)
/// answers. A key can be removed once it seals none.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// The key new values are sealed with (0 if the client has no encryption).
    pub active: u32,
    /// The ids of the keys the client holds.
    pub held: Vec<u32>,
    /// Sealed values (args and results) by key id.
    pub values_by_key: BTreeMap<u32, u64>,
}

impl<S: stoker_core::Store + ?Sized> crate::Client<S> {
    fn require_encryption(&self) -> crate::Result<&Encryption> {
        self.encryption().ok_or_else(|| {
            crate::Error::Config(format!(
                "no encryption keys: set {KEYS_ENV} or the key file to rotate or count keys"
            ))
        })
    }

    /// Seals every stored value that is sealed under another key than the active one again
    /// under the active key, `batch` jobs at a time (each batch one short transaction, so
    /// workers go on meanwhile), calling `progress` after each. Safe to stop and run again: it
    /// walks by job id and a value that changed under it is left for the next run. Values
    /// whose key is missing are counted as unreadable and left as they are.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) without encryption;
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) for a scoped client (the
    /// rotation spans every tenant); a store error (what was resealed stays resealed).
    pub async fn keys_rotate(
        &self,
        batch: u32,
        mut progress: impl FnMut(&RotateReport) + Send,
    ) -> crate::Result<RotateReport> {
        self.require_every_tenant("key rotation")?;
        let encryption = self.require_encryption()?.clone();
        let active = encryption.ring().active();
        let mut report = RotateReport {
            active,
            ..RotateReport::default()
        };
        let mut after = crate::JobId(0);
        loop {
            let jobs = self
                .store()
                .job_sealed_list(stoker_core::JobSealedListParams {
                    after,
                    except_kid: Some(active),
                    limit: batch.max(1),
                })
                .await?;
            let Some(last) = jobs.last() else {
                return Ok(report);
            };
            after = last.id;
            report.scanned += jobs.len() as u64;
            let mut rewrites = Vec::new();
            for job in &jobs {
                let values = [
                    (Field::Args, Some(&job.args)),
                    (Field::Result, job.result.as_ref()),
                ];
                for (field, value) in values {
                    let Some(value) = value else { continue };
                    let (Some(kid), Some(nonce)) = (sealed_with(value), value.get("n")) else {
                        continue;
                    };
                    if kid == active {
                        continue;
                    }
                    let tenant = job.tenant.as_deref();
                    match encryption
                        .open(field, &job.kind, tenant, value)
                        .and_then(|plain| encryption.seal(field, &job.kind, tenant, &plain))
                    {
                        Ok(sealed) => rewrites.push(stoker_core::SealedRewrite {
                            id: job.id,
                            result: field == Field::Result,
                            old_nonce: nonce.as_str().unwrap_or_default().to_owned(),
                            value: sealed,
                        }),
                        Err(err) => {
                            tracing::warn!(job = %job.id, %err, "cannot reseal; left as it is");
                            report.unreadable += 1;
                        }
                    }
                }
            }
            let asked = rewrites.len() as u64;
            let done = self.store().job_sealed_rewrite(rewrites).await?;
            report.resealed += done;
            report.skipped += asked - done.min(asked);
            progress(&report);
        }
    }

    /// Counts the stored values (args and results) sealed under each key id, by one walk
    /// over the jobs (it reads every sealed job: an operator's command, not a dashboard's).
    ///
    /// # Errors
    ///
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) for a scoped client; a store
    /// error.
    pub async fn keys_status(&self) -> crate::Result<KeyStatus> {
        self.require_every_tenant("key status")?;
        let mut status = KeyStatus {
            active: self.encryption().map_or(0, |e| e.ring().active()),
            held: self
                .encryption()
                .map(|e| e.ring().ids())
                .unwrap_or_default(),
            values_by_key: BTreeMap::new(),
        };
        let mut after = crate::JobId(0);
        loop {
            let jobs = self
                .store()
                .job_sealed_list(stoker_core::JobSealedListParams {
                    after,
                    except_kid: None,
                    limit: ROTATE_BATCH_DEFAULT,
                })
                .await?;
            let Some(last) = jobs.last() else {
                return Ok(status);
            };
            after = last.id;
            for job in &jobs {
                for value in [Some(&job.args), job.result.as_ref()].into_iter().flatten() {
                    if let Some(kid) = sealed_with(value) {
                        *status.values_by_key.entry(kid).or_default() += 1;
                    }
                }
            }
        }
    }
}
