//! The audit log (issue 17, item 3) through the [`Client`].
//!
//! Every management action a client takes (cancelling, retrying or deleting a job, retrying
//! in bulk, pausing a queue, starting or aborting a bulk operation, changing a cron schedule,
//! an alert rule or a stored token, cleaning old jobs) appends one row: who acted (the
//! client's [`Actor`]), through which face, for which tenant (a scoped client's), on what
//! and to how many jobs, and from where. Enqueues and workers' reports are not audited one by
//! one (the history counts them); a bulk enqueue by a server's token is.
//!
//! The row is written in the action's own store transaction
//! ([`Store::audited`](stoker_core::Store::audited)): it exists if and only if the change
//! committed. An action that fails writes no row, and a crash cannot separate the two.
//! Work done in many transactions (a retry or clean over many jobs, in batches) writes one
//! row per batch that changed something, each with its count.

use std::time::Duration;

use serde_json::Value;
use stoker_core::{AuditEntry, AuditListParams, AuditRow, InvalidInput, Store, AUDIT_VIAS};

use crate::{Client, Result};

/// How many rows one [`Client::audit_prune`] statement deletes at most.
const PRUNE_BATCH: u32 = 1000;

/// The default age after which [`Client::audit_prune`] deletes rows: 90 days.
pub const AUDIT_RETENTION_DEFAULT: Duration = Duration::from_secs(90 * 86_400);

/// Who acts through a client, as the audit log records it.
///
/// ```
/// # async fn demo() -> stoker::Result<()> {
/// use std::sync::Arc;
/// use stoker::core::AuditListParams;
/// use stoker::{Actor, Client, EnqueueOptions};
///
/// let store = Arc::new(stoker::sqlite::SqliteStore::connect("sqlite::memory:").await?);
/// let client = Client::new(store).with_actor(Actor::new("nightly-script", "library"));
/// client.migrate().await?;
/// let job = client.enqueue_raw("email", serde_json::json!({}), EnqueueOptions::new()).await?;
/// client.cancel(job.id).await?;
/// let rows = client.audit_list(AuditListParams { limit: 10, ..Default::default() }).await?;
/// assert_eq!(rows[0].entry.action, "job.cancel");
/// assert_eq!(rows[0].entry.actor, "nightly-script");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A name: a token's name, `library`, `cli`, or `anonymous` on a server without tokens.
    pub name: String,
    /// The stored token's id, when the actor presented one.
    pub token_id: Option<String>,
    /// The face: `api`, `dashboard`, `cli` or `library`.
    pub via: String,
    /// The caller's network address, for actions over the network.
    pub source: Option<String>,
}

impl Actor {
    /// An actor named `name` acting through `via` (`api`, `dashboard`, `cli` or `library`;
    /// anything else is recorded as `library`).
    pub fn new(name: impl Into<String>, via: &str) -> Self {
        let via = if AUDIT_VIAS.contains(&via) {
            via
        } else {
            "library"
        };
        Actor {
            name: name.into(),
            token_id: None,
            via: via.to_owned(),
            source: None,
        }
    }

    /// Code using the library directly: what a client records unless told otherwise.
    pub fn library() -> Self {
        Actor::new("library", "library")
    }
}

impl Default for Actor {
    fn default() -> Self {
        Actor::library()
    }
}

impl<S: Store + ?Sized> Client<S> {
    /// The same client recording its management actions as done by `actor`.
    pub fn with_actor(&self, actor: Actor) -> Self {
        self.with_actor_inner(actor)
    }

    /// Appends a row to the audit log for an action this client just took outside the store
    /// operations [`Store::audited`] covers (a bulk enqueue by a server's token): `action`
    /// (e.g. `job.enqueue_bulk`), on `target` or over `filter`, affecting `affected` jobs. The
    /// client's actor and tenant are recorded with it. A failure to write is logged, not
    /// returned: the action already happened.
    pub async fn audit_record(
        &self,
        action: &str,
        target: Option<String>,
        filter: Option<Value>,
        affected: Option<i64>,
    ) {
        let entry = self.audit_entry(action, target, filter, affected);
        if let Err(err) = self.store().audit_append(entry).await {
            tracing::error!(action, error = %err, "could not write the audit log");
        }
    }

    /// The audit row of `action` by this client's actor and tenant, for
    /// [`Store::audited`]: `action` (e.g. `job.cancel`), on `target` or over `filter`,
    /// affecting `affected` jobs (the store sets the count of actions over many jobs).
    pub(crate) fn audit_entry(
        &self,
        action: &str,
        target: Option<String>,
        filter: Option<Value>,
        affected: Option<i64>,
    ) -> AuditEntry {
        let actor = self.actor();
        AuditEntry {
            at: self.clock().now(),
            actor: actor.name.clone(),
            token_id: actor.token_id.clone(),
            via: actor.via.clone(),
            tenant: self.tenant().map(str::to_owned),
            action: action.to_owned(),
            target,
            filter,
            affected,
            source: actor.source.clone(),
        }
    }

    /// Rows of the audit log, newest first. A client limited to a tenant reads only its
    /// tenant's rows (naming another tenant is refused).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming the field;
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden); a store error.
    pub async fn audit_list(&self, mut params: AuditListParams) -> Result<Vec<AuditRow>> {
        params.tenant = self.tenant_for(params.tenant.take(), "tenant")?;
        params.validate()?;
        Ok(self.store().audit_list(params).await?)
    }

    /// Deletes audit rows older than `older_than` (in batches), and returns how many. The only
    /// way rows leave the log; spans every tenant, and is itself recorded.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) naming `older_than` for an age under a day;
    /// [`Error::TenantForbidden`](crate::Error::TenantForbidden) for a scoped client; a
    /// store error.
    pub async fn audit_prune(&self, older_than: Duration) -> Result<u64> {
        self.require_every_tenant("audit pruning")?;
        if older_than < Duration::from_secs(86_400) {
            return Err(InvalidInput::new("older_than", "must be at least a day").into());
        }
        let age = chrono::Duration::from_std(older_than)
            .map_err(|_| InvalidInput::new("older_than", "is too long"))?;
        let before = self
            .clock()
            .now()
            .checked_sub_signed(age)
            .ok_or_else(|| InvalidInput::new("older_than", "is too long"))?;
        let mut deleted = 0;
        loop {
            let batch = self.store().audit_prune(before, PRUNE_BATCH).await?;
            deleted += batch;
            if batch < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        self.audit_record(
            "audit.prune",
            None,
            Some(serde_json::json!({"before": before})),
            Some(i64::try_from(deleted).unwrap_or(i64::MAX)),
        )
        .await;
        Ok(deleted)
    }
}
