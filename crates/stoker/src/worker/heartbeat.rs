//! The worker's tick: one statement per interval that keeps its row fresh (so its jobs are not
//! rescued), relays cancel requests, and stands in for polling every queue. An idle worker
//! sends nothing else.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use stoker_core::WorkerHeartbeatParams;
use tokio_util::sync::CancellationToken;

use super::{host_name, Runtime};
use crate::Result;

pub(crate) async fn run(runtime: Arc<Runtime>, stop: CancellationToken) {
    let config = &runtime.config;
    let mut interval = tokio::time::interval(config.poll_interval.min(config.heartbeat_interval));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await; // the first tick is immediate, and start() already beat once
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(err) = beat(&runtime).await {
            tracing::warn!(%err, "heartbeat failed; retrying at the next interval");
        }
    }
}

/// Writes one heartbeat with the counters since the last one; signals the running jobs the
/// store says have a cancel requested (the fallback when events are unavailable), and wakes
/// the producers of queues with due jobs (scheduled jobs coming due, retries whose backoff
/// passed, and other processes' inserts when events do not reach us).
pub(crate) async fn beat(runtime: &Runtime) -> Result<()> {
    let config = &runtime.config;
    let running = runtime
        .running
        .lock()
        .expect("running lock")
        .keys()
        .copied()
        .collect();
    let done = runtime.done.swap(0, Ordering::AcqRel);
    let failed = runtime.failed.swap(0, Ordering::AcqRel);
    let params = WorkerHeartbeatParams {
        details: details(runtime),
        id: runtime.id.clone(),
        host: host_name(),
        pid: std::process::id(),
        queues: config.queues.keys().cloned().collect(),
        concurrency: config.queues.values().sum::<usize>() as u32,
        started_at: runtime.started_at,
        done_delta: done,
        failed_delta: failed,
        running,
        now: config.clock.now(),
    };
    match config.store.worker_heartbeat(params).await {
        Ok(reply) => {
            for id in reply.cancel_requested {
                runtime.cancel_running(id);
            }
            for queue in reply.due_queues {
                runtime.wake(&queue);
            }
            if reply.leader_vacant {
                runtime.leader_vacant.notify_one();
            }
            Ok(())
        }
        Err(err) => {
            // Keep the counts for the next heartbeat.
            runtime.done.fetch_add(done, Ordering::AcqRel);
            runtime.failed.fetch_add(failed, Ordering::AcqRel);
            Err(err.into())
        }
    }
}

/// What the registry shows of this worker (issue 13): version, whether it is stopping, total
/// run time, and the process's memory and CPU where the platform tells (Linux `/proc`).
fn details(runtime: &Runtime) -> stoker_core::WorkerDetails {
    stoker_core::WorkerDetails {
        version: Some(runtime.config.version.clone()),
        stopping: runtime.stop_fetching.is_cancelled(),
        // The store fills it from the heartbeat's `running`.
        running: Vec::new(),
        run_ms_total: runtime.run_ms.load(Ordering::Acquire),
        rss_bytes: rss_bytes(),
        cpu_ms: cpu_ms(),
        // A worker process serves every tenant; only pull workers are bound to one.
        tenant: None,
    }
}

/// Resident memory from `/proc/self/status` (`VmRSS`, in kB).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time from `/proc/self/stat` (fields 14 and 15, in clock ticks; Linux
/// uses 100 ticks a second on every architecture Rust supports).
fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * 10)
}
