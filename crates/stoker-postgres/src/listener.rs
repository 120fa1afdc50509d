//! The background task that turns `NOTIFY`s on the store's channel into [`StoreEvent`]s.
//!
//! One task per store, started by the first [`subscribe`](stoker_core::Store::subscribe). It
//! holds one dedicated connection (outside the store's pool, so it never takes a slot that
//! queries need), fans events out on a broadcast channel, sends [`StoreEvent::Resync`] each
//! time it starts listening (events sent before that were missed) and stops when the store's
//! last clone is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use stoker_core::{JobId, StoreEvent};
use tokio::sync::{broadcast, oneshot, watch};

/// Events a subscriber may fall behind by before it sees `Lagged` (and re-checks everything).
const EVENTS_CAPACITY: usize = 1024;
/// The first wait before reconnecting after an error; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long acquiring the listener's connection may take before it counts as an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a notifying operation waits for a starting listener before it goes on anyway.
/// Only the first wait can take this long: after a timeout, operations stop waiting.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A running listener task. Dropping it (with the store) stops the task.
#[derive(Debug)]
pub(crate) struct Listener {
    events: broadcast::Sender<StoreEvent>,
    ready: watch::Receiver<bool>,
    /// Set once a wait for readiness timed out, so a listener that cannot connect delays one
    /// operation, not every one.
    gave_up: Arc<AtomicBool>,
    /// Never sent: the task stops when this is dropped.
    _stop: oneshot::Sender<()>,
}

impl Listener {
    /// Starts listening on `channel` on `runtime`, with a connection made from `options`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        options: PgConnectOptions,
        channel: String,
    ) -> Listener {
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let (ready_tx, ready) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let task = Task {
            // A pool of one, used by PgListener to (re)connect; nothing else shares it.
            pool: PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(CONNECT_TIMEOUT)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(options),
            channel,
            events: events.clone(),
            ready: ready_tx,
        };
        runtime.spawn(task.run(stopped));
        Listener {
            events,
            ready,
            gave_up: Arc::new(AtomicBool::new(false)),
            _stop: stop,
        }
    }

    /// A new receiver of the listener's events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// A handle to wait for the listener to start listening for the first time.
    pub(crate) fn ready(&self) -> Ready {
        Ready {
            ready: self.ready.clone(),
            gave_up: Arc::clone(&self.gave_up),
        }
    }
}

/// Waits, bounded, until a listener has started listening for the first time, so that a
/// notification its own store sends right after [`Listener::subscribe`] is not missed.
#[derive(Debug)]
pub(crate) struct Ready {
    ready: watch::Receiver<bool>,
    gave_up: Arc<AtomicBool>,
}

impl Ready {
    pub(crate) async fn wait(mut self) {
        if *self.ready.borrow() || self.gave_up.load(Ordering::Relaxed) {
            return;
        }
        // On timeout or a stopped task, go on: events are hints and workers also poll.
        let waited = tokio::time::timeout(READY_TIMEOUT, self.ready.wait_for(|ready| *ready)).await;
        if waited.is_err() {
            tracing::warn!("the store listener is not listening yet; notifications may go unheard");
            self.gave_up.store(true, Ordering::Relaxed);
        }
    }
}

struct Task {
    pool: PgPool,
    channel: String,
    events: broadcast::Sender<StoreEvent>,
    ready: watch::Sender<bool>,
}

impl Task {
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let connected = tokio::select! {
                _ = &mut stopped => break,
                connected = self.listen() => connected,
            };
            match connected {
                Ok(listener) => {
                    backoff = BACKOFF_MIN;
                    self.ready.send_replace(true);
                    // Whatever was sent before LISTEN took effect was missed.
                    let _ = self.events.send(StoreEvent::Resync);
                    match self.forward(listener, &mut stopped).await {
                        None => break,
                        Some(err) => tracing::warn!(
                            channel = %self.channel,
                            error = %err,
                            "store listener failed; reconnecting"
                        ),
                    }
                }
                Err(err) => tracing::warn!(
                    channel = %self.channel,
                    error = %err,
                    "store listener could not listen; retrying"
                ),
            }
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        // Close the connection cleanly rather than leaving it to the server to notice.
        self.pool.close().await;
    }

    /// Forwards notifications until the store is dropped (`None`) or the listener fails.
    async fn forward(
        &self,
        mut listener: PgListener,
        stopped: &mut oneshot::Receiver<()>,
    ) -> Option<sqlx::Error> {
        loop {
            let received = tokio::select! {
                _ = &mut *stopped => return None,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match parse_payload(notification.payload()) {
                    // No receivers is fine: nobody is waiting right now.
                    Some(event) => {
                        let _ = self.events.send(event);
                    }
                    None => tracing::debug!(
                        channel = %self.channel,
                        payload = notification.payload(),
                        "ignoring an unknown notification"
                    ),
                },
                Ok(None) => {
                    // The connection was lost; PgListener reconnected and listens again, but
                    // notifications sent in between were lost.
                    tracing::warn!(
                        channel = %self.channel,
                        "store listener reconnected; events may have been lost"
                    );
                    let _ = self.events.send(StoreEvent::Resync);
                }
                Err(err) => return Some(err),
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(&self.channel).await?;
        Ok(listener)
    }
}

/// Parses a payload sent by this crate: `a:<queue>` (jobs available) or `c:<id>` (cancel
/// requested).
pub(crate) fn parse_payload(payload: &str) -> Option<StoreEvent> {
    match payload.split_once(':')? {
        ("a", queue) if !queue.is_empty() => Some(StoreEvent::JobsAvailable {
            queue: queue.to_owned(),
        }),
        ("c", id) => id
            .parse()
            .ok()
            .map(|id| StoreEvent::JobCancelRequested { id: JobId(id) }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_crates_payloads() {
        assert_eq!(
            parse_payload("a:emails:high"),
            Some(StoreEvent::JobsAvailable {
                queue: "emails:high".into()
            })
        );
        assert_eq!(
            parse_payload("c:42"),
            Some(StoreEvent::JobCancelRequested { id: JobId(42) })
        );
        for unknown in ["", "a:", "c:x", "x:1", "nothing"] {
            assert_eq!(parse_payload(unknown), None, "{unknown:?}");
        }
    }
}
