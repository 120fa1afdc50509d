//! Services that run on exactly one process at a time, the elected leader: the [`Stager`]
//! moves scheduled jobs to their queues when due, the [`Rescuer`] brings back jobs of dead
//! workers, the [`Pruner`] deletes old finished jobs.

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

pub use elector::{Elector, ElectorConfig};
pub use pruner::{PruneReport, Pruner, PrunerConfig};
pub use rescuer::{RescueReport, Rescuer, RescuerConfig};
pub use stager::{StageReport, Stager, StagerConfig};

use crate::Registry;

/// The settings of every maintenance service.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaintenanceConfig {
    pub(crate) stager: StagerConfig,
    pub(crate) rescuer: RescuerConfig,
    pub(crate) pruner: PrunerConfig,
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
        let stager = Stager::new(Arc::clone(&store), Arc::clone(&clock), config.stager);
        let rescuer = Rescuer::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            registry,
            config.rescuer,
        );
        let pruner = Pruner::new(store, clock, config.pruner);
        let tasks = vec![
            tokio::spawn(elector.run(stop.clone())),
            tokio::spawn({
                let interval = stager.config().interval;
                run_while_leader(
                    "stager",
                    interval,
                    leader.clone(),
                    stop.clone(),
                    move || {
                        let stager = stager.clone();
                        async move { stager.run_once().await.map(|report| report.to_string()) }
                    },
                )
            }),
            tokio::spawn({
                let interval = rescuer.config().interval;
                run_while_leader(
                    "rescuer",
                    interval,
                    leader.clone(),
                    stop.clone(),
                    move || {
                        let rescuer = rescuer.clone();
                        async move { rescuer.run_once().await.map(|report| report.to_string()) }
                    },
                )
            }),
            tokio::spawn({
                let interval = pruner.config().interval;
                run_while_leader(
                    "pruner",
                    interval,
                    leader.clone(),
                    stop.clone(),
                    move || {
                        let pruner = pruner.clone();
                        async move { pruner.run_once().await.map(|report| report.to_string()) }
                    },
                )
            }),
        ];
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

/// Runs `pass` every `interval` (with up to 10% jitter, so services of many processes do not
/// fire in step) while this process leads, until `stop`. A failed pass is logged and the
/// service carries on: a store outage must not kill maintenance for good.
async fn run_while_leader<F, Fut>(
    name: &'static str,
    interval: Duration,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
    pass: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::Result<String>>,
{
    loop {
        // Wait until we lead.
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
        let span = tracing::info_span!("maintenance", service = name);
        let _enter = span.enter();
        match pass().await {
            Ok(report) => tracing::debug!(%report, "pass done"),
            Err(err) => tracing::warn!(%err, "pass failed; will retry next interval"),
        }
        drop(_enter);
        let sleep = jittered(interval);
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
