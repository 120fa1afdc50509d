//! Checkpoints the write-ahead log off the write path.
//!
//! SQLite copies the WAL back into the database file (a checkpoint, with an fsync of each file)
//! inside whichever commit brings the log past 1,000 pages: that commit, and every statement
//! queued behind it on the one writer connection, waits. Under a steady trickle of jobs this
//! was most of the tail of pickup latency: with commit-time checkpoints switched off, the p99
//! of jobs enqueued at 200/s fell from 1.0–2.3 ms to 0.7–0.8 ms. So the store checkpoints from
//! a connection of its own, every 100 ms while the log grows (p99 0.7–1.0 ms, measured against
//! 1.2–1.9 ms alternately), backing off to every 2 seconds while it does not.
//!
//! Under a heavy write load (a drain, a bulk enqueue) the log passes 1,000 pages between two
//! of these checkpoints anyway, so the commit-time checkpoint runs regardless, and copying the
//! same hot pages more often than it does is only extra work: while the log grows that fast,
//! the task steps back to its longest pause. Drains measured the same with and without the
//! task, alternately, within the machine's noise.
//!
//! A passive checkpoint never waits for a lock or blocks a reader or the writer; one that
//! finds another process checkpointing simply does less.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::watch;

/// The pause between checkpoints while the log grows.
const BUSY_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause: reached by doubling while there is nothing new to copy, and taken at
/// once while writes outpace the commit-time checkpoint.
const IDLE_INTERVAL: Duration = Duration::from_secs(2);
/// Pages appended since the last checkpoint from which the commit-time checkpoint is left to
/// do the work: SQLite's default threshold for it.
const HEAVY_PAGES: i64 = 1_000;

/// Runs passive checkpoints on `pool` until `stop`'s sender is dropped or the pool is closed.
pub(crate) async fn run(pool: SqlitePool, mut stop: watch::Receiver<()>) {
    let mut interval = BUSY_INTERVAL;
    // The log's length at the last checkpoint.
    let mut last_log = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
        let frames = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await;
        match frames {
            Ok((_busy, log, _copied)) => {
                // A writer starts the log over once everything in it was copied.
                let appended = if log >= last_log { log - last_log } else { log };
                interval = match appended {
                    0 => (interval * 2).min(IDLE_INTERVAL),
                    HEAVY_PAGES.. => IDLE_INTERVAL,
                    _ => BUSY_INTERVAL,
                };
                last_log = log;
            }
            Err(_) if pool.is_closed() => return,
            Err(error) => {
                // The commit-time checkpoint still bounds the log meanwhile.
                tracing::debug!(%error, "checkpointing the WAL failed; trying again later");
                interval = IDLE_INTERVAL;
            }
        }
    }
}
