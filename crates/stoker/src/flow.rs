//! Flow control (issue 16) through the [`Client`]: limits set, listed and deleted, their
//! usage, and the push-back a handler uses when its provider answers HTTP 429.
//!
//! Limits are enforced by the store in the claim itself (see
//! [`stoker_core::FlowGate`]), so every worker process on every machine shares them; the
//! client only manages them.

use std::time::Duration;

use stoker_core::{LimitPushBackParams, LimitRow, LimitSetParams, LimitSpec, LimitUsage, Store};

use crate::{Client, Error, JobContext, JobError, Result};

impl<S: Store + ?Sized> Client<S> {
    /// Creates or replaces a limit by name. It applies at once on this node and within a
    /// second on every other.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field (a rate of 0, a burst of 0, an unknown key
    /// expression...), with nothing written; a store error.
    pub async fn limit_set(&self, spec: LimitSpec) -> Result<LimitRow> {
        self.require_every_tenant("limits")?;
        let now = self.clock().now();
        let entry = self.audit_entry(
            "limit.set",
            Some(format!("limit {}", spec.name)),
            None,
            None,
        );
        let action = stoker_core::AuditedAction::LimitSet(LimitSetParams { spec, now });
        Ok(self.store().audited(action, entry).await?.limit()?)
    }

    /// Every limit, by name. A client scoped to a tenant (issue 17) gets only its tenant's
    /// limits: those keyed by tenant (`key = tenant`), which give each tenant a limiter of
    /// its own. The others are shared by every tenant, and setting, deleting or reconciling
    /// limits stays with a client that spans every tenant.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn limits(&self) -> Result<Vec<LimitRow>> {
        let rows = self.store().limit_list().await?;
        Ok(match self.tenant() {
            None => rows,
            Some(_) => rows
                .into_iter()
                .filter(|row| row.spec.key == stoker_core::LimitKey::Tenant)
                .collect(),
        })
    }

    /// Deletes a limit; its jobs run unlimited from then on.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such limit; a store error.
    pub async fn limit_delete(&self, name: &str) -> Result<LimitRow> {
        self.require_every_tenant("limits")?;
        let entry = self.audit_entry("limit.delete", Some(format!("limit {name}")), None, None);
        let action = stoker_core::AuditedAction::LimitDelete(name.to_owned());
        Ok(self.store().audited(action, entry).await?.limit()?)
    }

    /// Every limiter running jobs or throttled now: how much of each limit is in use. A client
    /// scoped to a tenant gets only its own limiters: those of its tenant's limits (see
    /// [`Client::limits`]) whose key is its tenant.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn limit_usage(&self) -> Result<Vec<LimitUsage>> {
        let usage = self.store().limit_usage(self.clock().now()).await?;
        let Some(own) = self.tenant() else {
            return Ok(usage);
        };
        let own_limits: Vec<String> = self
            .limits()
            .await?
            .into_iter()
            .map(|row| row.spec.name)
            .collect();
        Ok(usage
            .into_iter()
            .filter(|row| row.key == own && own_limits.contains(&row.name))
            .collect())
    }

    /// Holds limiter `key` of limit `name` back for `retry_after`: none of its jobs is
    /// claimed before then, on any node.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such limit; `Invalid` if
    /// `retry_after` is too long to add to now; a store error.
    pub async fn limit_push_back(
        &self,
        name: &str,
        key: &str,
        retry_after: Duration,
    ) -> Result<()> {
        let now = self.clock().now();
        let until = chrono::Duration::from_std(retry_after)
            .ok()
            .and_then(|wait| now.checked_add_signed(wait))
            .ok_or_else(|| {
                Error::Invalid(stoker_core::InvalidInput::new(
                    "retry_after",
                    format!("{retry_after:?} is too long"),
                ))
            })?;
        Ok(self
            .store()
            .limit_push_back(LimitPushBackParams {
                name: name.to_owned(),
                key: key.to_owned(),
                until,
                now,
            })
            .await?)
    }

    /// Recounts every limiter's running jobs from the jobs, fixing any drift; returns how
    /// many it corrected (0 unless something is wrong).
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn limit_reconcile(&self) -> Result<u64> {
        self.require_every_tenant("limits")?;
        Ok(self.store().limit_reconcile().await?)
    }
}

impl JobContext {
    /// The provider said "too many requests": holds this job's limiter of limit `limit` back
    /// for `retry_after` (every node stops claiming its jobs until then), and returns the
    /// error that snoozes this job for as long, without using an attempt.
    ///
    /// The limiter is the one this job falls in (its tenant's, its `args.shop_id`'s...). If
    /// the limit does not exist or the job has no key for it, the job is still snoozed.
    ///
    /// ```ignore
    /// if response.status() == 429 {
    ///     return Err(ctx.rate_limited("openai", retry_after).await);
    /// }
    /// ```
    pub async fn rate_limited(&self, limit: &str, retry_after: Duration) -> JobError {
        let job = self.job();
        let client = self.client();
        let key = match client.store().limit_list().await {
            Ok(limits) => limits
                .into_iter()
                .find(|row| row.spec.name == limit)
                .and_then(|row| {
                    row.spec
                        .key
                        .key_of(job.tenant.as_deref(), &job.args, &job.metadata)
                }),
            Err(err) => {
                tracing::warn!(%limit, %err, "reading the limits for a push-back failed");
                None
            }
        };
        match key {
            Some(key) => {
                if let Err(err) = client.limit_push_back(limit, &key, retry_after).await {
                    tracing::warn!(%limit, %key, %err, "pushing a limiter back failed");
                }
            }
            None => tracing::warn!(
                %limit,
                id = %job.id,
                "rate_limited: no such limit, or the job has no key for it; snoozing only"
            ),
        }
        JobError::snooze(retry_after)
    }
}
