//! Services that run on exactly one process at a time, the elected leader: the [`Stager`]
//! moves scheduled jobs to their queues when due, the [`Rescuer`] brings back jobs of dead
//! workers, the [`Pruner`] deletes old finished jobs. Each is a [`Service`]: a name, an
//! interval and one pass, run by one loop while the process leads.

// The bulk runner (issue 13).
mod bulk;
mod elector;
mod pruner;
mod rescuer;
mod stager;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use stoker_core::{Clock, Store};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use bulk::{BulkReport, BulkRunner, BulkRunnerConfig};
pub use elector::{Elector, ElectorConfig};
pub use pruner::{PruneReport, Pruner, PrunerConfig};
// --- stream counts ---
pub use pruner::{QueueRetention, StateRetention};
pub use rescuer::{RescueReport, Rescuer, RescuerConfig};
pub use stager::{StageReport, Stager, StagerConfig};

use crate::Registry;

/// One maintenance service: what the elected leader runs every [`interval`](Self::interval).
/// The stager, rescuer and pruner are services; history roll-ups, cron schedules or alerting
/// are added as more.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// The name its log lines carry (`service` in the `maintenance` span).
    fn name(&self) -> &'static str;

    /// How long to wait between two passes (jittered by up to 10%).
    fn interval(&self) -> Duration;

    /// One pass, returning what it did for the debug log. A failed pass is logged and the
    /// service runs again at its next interval.
    async fn pass(&self) -> crate::Result<String>;
}

#[async_trait::async_trait]
impl Service for Stager {
    fn name(&self) -> &'static str {
        "stager"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

#[async_trait::async_trait]
impl Service for Rescuer {
    fn name(&self) -> &'static str {
        "rescuer"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

#[async_trait::async_trait]
impl Service for Pruner {
    fn name(&self) -> &'static str {
        "pruner"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

#[async_trait::async_trait]
impl Service for BulkRunner {
    fn name(&self) -> &'static str {
        "bulk"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

// History (issue 13).
#[async_trait::async_trait]
impl Service for crate::history::HistoryKeeper {
    fn name(&self) -> &'static str {
        "history"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

// --- stream alerts ---
#[async_trait::async_trait]
impl Service for crate::alerts::AlertEvaluator {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn interval(&self) -> Duration {
        self.config().interval
    }

    async fn pass(&self) -> crate::Result<String> {
        self.run_once().await.map(|report| report.to_string())
    }
}

/// The settings of every maintenance service.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaintenanceConfig {
    pub(crate) stager: StagerConfig,
    pub(crate) rescuer: RescuerConfig,
    pub(crate) pruner: PrunerConfig,
    pub(crate) bulk: BulkRunnerConfig,
    /// History (issue 13).
    pub(crate) history: crate::history::HistoryKeeperConfig,
    // --- stream alerts ---
    /// The alert evaluator (issue 13, item 8).
    pub(crate) alerts: crate::alerts::AlertEvaluatorConfig,
}

/// What [`Maintenance::start`] runs besides the leader's services.
pub(crate) struct MaintenanceExtras {
    /// The cron firer (issue 15), run in every process.
    pub(crate) cron: Option<crate::cron::CronFirer>,
    // --- stream events ---
    /// Where the rescuer publishes its rescues.
    pub(crate) events: Option<crate::EventHub>,
    // --- stream counts ---
    /// The process's history recorder: the rescuer records the attempts it ends there.
    pub(crate) history: Option<crate::history::History>,
}

/// The maintenance services of one process: an elector, and the services it runs while it
/// leads.
pub(crate) struct Maintenance {
    stop: CancellationToken,
    leader: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Maintenance {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        registry: Arc<Registry>,
        id: String,
        config: MaintenanceConfig,
        vacancy: Arc<Notify>,
        extras: MaintenanceExtras,
    ) -> Self {
        let stop = CancellationToken::new();
        let elector = Elector::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            id,
            ElectorConfig::default(),
        )
        .with_vacancy(vacancy);
        let leader = elector.subscribe();
        let services: Vec<Arc<dyn Service>> = vec![
            Arc::new(Stager::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                config.stager,
            )),
            Arc::new({
                let rescuer = Rescuer::new(
                    Arc::clone(&store),
                    Arc::clone(&clock),
                    registry,
                    config.rescuer,
                );
                // --- stream events ---
                let rescuer = match extras.events.clone() {
                    Some(hub) => rescuer.with_event_hub(hub),
                    None => rescuer,
                };
                // --- stream counts ---
                match extras.history.clone() {
                    Some(history) => rescuer.with_history(history),
                    None => rescuer,
                }
            }),
            Arc::new(Pruner::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                config.pruner,
            )),
            Arc::new({
                let runner = BulkRunner::new(Arc::clone(&store), Arc::clone(&clock), config.bulk);
                // --- stream history ---
                match extras.events.clone() {
                    Some(hub) => runner.with_event_hub(hub),
                    None => runner,
                }
            }),
            // History (issue 13).
            Arc::new(crate::history::HistoryKeeper::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                config.history,
            )),
            // --- stream alerts ---
            Arc::new(crate::alerts::AlertEvaluator::new(
                crate::Client::new(store).with_clock(clock),
                config.alerts,
            )),
        ];
        let mut tasks = vec![tokio::spawn(elector.run(stop.clone()))];
        // Cron (issue 15) runs in every process, leader or not: exactly-once comes from the
        // compare-and-set in the database, so a leadership hand-over can neither double nor
        // drop a slot.
        if let Some(firer) = extras.cron {
            tasks.push(tokio::spawn(firer.run(stop.clone())));
        }
        // A task per service, so a long prune never holds up staging or rescue.
        tasks.extend(
            services.into_iter().map(|service| {
                tokio::spawn(run_while_leader(service, leader.clone(), stop.clone()))
            }),
        );
        Maintenance {
            stop,
            leader,
            tasks,
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops every service; the elector resigns so another process takes over at once.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Runs a service's pass every interval (with up to 10% jitter, so services of many processes
/// do not fire in step) while this process leads, until `stop`. A failed pass is logged and
/// the service carries on: a store outage must not kill maintenance for good.
async fn run_while_leader(
    service: Arc<dyn Service>,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        // Wait until we lead.
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
        // Instrumented, not entered: a guard held across the pass's awaits would leave the
        // span entered on the thread while the pass waits, around other tasks' log lines.
        async {
            match service.pass().await {
                Ok(report) => tracing::debug!(%report, "pass done"),
                Err(err) => tracing::warn!(%err, "pass failed; will retry next interval"),
            }
        }
        .instrument(tracing::info_span!("maintenance", service = service.name()))
        .await;
        let sleep = jittered(service.interval());
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.9..=1.1);
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use super::*;

    /// Records, for every event, the names of the spans it was logged in.
    struct Scopes(Arc<Mutex<Vec<Vec<&'static str>>>>);

    impl<S> Layer<S> for Scopes
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            let spans = ctx
                .event_scope(event)
                .map(|scope| scope.map(|span| span.name()).collect())
                .unwrap_or_default();
            self.0.lock().unwrap().push(spans);
        }
    }

    /// A service whose pass awaits, then logs.
    struct Sleepy(&'static str);

    #[async_trait::async_trait]
    impl Service for Sleepy {
        fn name(&self) -> &'static str {
            self.0
        }

        fn interval(&self) -> Duration {
            Duration::from_millis(1)
        }

        async fn pass(&self) -> crate::Result<String> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            tracing::info!("a pass ran");
            Ok(String::new())
        }
    }

    /// Services share the runtime's threads: a pass that awaits must not leave its span
    /// entered on the thread, or every other service's log lines land inside it.
    #[test]
    fn each_pass_logs_inside_its_own_span_only() {
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let _default = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(Scopes(Arc::clone(&scopes))),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_leading, leader) = watch::channel(true);
            let stop = CancellationToken::new();
            let services: Vec<_> = ["stager", "rescuer", "pruner"]
                .into_iter()
                .map(|name| {
                    tokio::spawn(run_while_leader(
                        Arc::new(Sleepy(name)),
                        leader.clone(),
                        stop.clone(),
                    ))
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
            for service in services {
                service.await.unwrap();
            }
        });
        let scopes = scopes.lock().unwrap();
        assert!(scopes.len() >= 3, "{scopes:?}");
        for spans in scopes.iter() {
            assert_eq!(spans, &["maintenance"], "{scopes:?}");
        }
    }
}
