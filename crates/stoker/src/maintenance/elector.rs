//! Leader election over the store: one process at a time holds a lease it keeps renewing.

use std::sync::Arc;
use std::time::Duration;

use stoker_core::{Clock, LeaderElectParams, Store};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Settings of the [`Elector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectorConfig {
    /// How often the leader renews its term. Defaults to 1 second.
    pub interval: Duration,
    /// How long a term lasts without renewal: a dead leader is replaced within about this
    /// plus one heartbeat interval. Defaults to 3 seconds.
    pub ttl: Duration,
    /// How often a follower asks for the lease when no heartbeat has reported the seat
    /// vacant. Followers learn of a vacancy from their heartbeat, so this is only a fallback.
    /// Defaults to 30 seconds.
    pub follower_interval: Duration,
}

impl Default for ElectorConfig {
    fn default() -> Self {
        ElectorConfig {
            interval: Duration::from_secs(1),
            ttl: Duration::from_secs(3),
            follower_interval: Duration::from_secs(30),
        }
    }
}

/// Keeps trying to lead, and publishes whether this process leads now.
///
/// The leader renews its term every `interval`. A follower costs almost nothing: it asks for
/// the lease when told the seat is vacant ([`Elector::with_vacancy`]) (the worker's heartbeat saw the seat
/// free), and otherwise only every `follower_interval`.
pub struct Elector {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    id: String,
    config: ElectorConfig,
    leader: watch::Sender<bool>,
    vacancy: Arc<Notify>,
}

impl Elector {
    /// An elector standing for `id`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        id: String,
        config: ElectorConfig,
    ) -> Self {
        let (leader, _) = watch::channel(false);
        Elector {
            store,
            clock,
            id,
            config,
            leader,
            vacancy: Arc::new(Notify::new()),
        }
    }

    /// Follows whether this process leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Listens on `vacancy` for news that the leader's seat is free (the worker's heartbeat
    /// signals it), so a follower asks for the lease at once instead of at its next
    /// `follower_interval`.
    pub fn with_vacancy(mut self, vacancy: Arc<Notify>) -> Self {
        self.vacancy = vacancy;
        self
    }

    /// One attempt to become leader or renew the term; returns whether we lead now.
    ///
    /// # Errors
    ///
    /// A store error; the caller should assume it does not lead.
    pub async fn run_once(&self) -> crate::Result<bool> {
        let leads = self
            .store
            .leader_attempt_elect(LeaderElectParams {
                leader_id: self.id.clone(),
                now: self.clock.now(),
                ttl: self.config.ttl,
            })
            .await?;
        Ok(leads)
    }

    /// Runs until `stop`, then resigns if it leads.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let leads = match self.run_once().await {
                Ok(leads) => leads,
                Err(err) => {
                    // Without a confirmed renewal our term may lapse: stop acting as leader.
                    tracing::warn!(%err, "leader election failed");
                    false
                }
            };
            self.leader.send_if_modified(|current| {
                let changed = *current != leads;
                if changed {
                    tracing::info!(worker = %self.id, leads, "leadership changed");
                }
                *current = leads;
                changed
            });
            let wait = if leads {
                self.config.interval
            } else {
                self.config.follower_interval
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.vacancy.notified(), if !leads => {}
                () = stop.cancelled() => break,
            }
        }
        if *self.leader.borrow() {
            self.leader.send_replace(false);
            if let Err(err) = self.store.leader_resign(&self.id).await {
                tracing::warn!(%err, "could not resign leadership; it will expire");
            }
        }
    }
}
