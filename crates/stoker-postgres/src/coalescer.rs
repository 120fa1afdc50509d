//! Coalescing of "jobs available" notifications on the sending side.
//!
//! Every `NOTIFY` takes a database-wide lock at commit and wakes every listener, so a burst of
//! 10,000 single inserts must not send 10,000 of them. Per queue, this process sends at most
//! one notification per interval:
//!
//! - the first insert in a quiet period notifies at once, inside its own statement (the
//!   leading edge: a lone insert is picked up immediately);
//! - an insert within the interval after that sends nothing itself; once it has committed it
//!   makes sure one trailing notification goes out after its commit, at the end of the
//!   interval, so the last job of a burst never waits for a poll.
//!
//! The trailing decision is taken after the commit, never before: a trailing notification sent
//! while an insert is still running would wake workers before its jobs are visible.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many queues are remembered before quiet ones are forgotten.
const FORGET_AFTER_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When the latest notification for the queue went out, or was decided to go out.
    last_sent: Instant,
    /// Whether a trailing notification is scheduled and has not gone out yet.
    trailing: bool,
}

/// Per-queue notification state of one store.
#[derive(Debug)]
pub(crate) struct Coalescer {
    interval: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Coalescer {
    /// A coalescer sending at most one notification per queue per `interval`; a zero interval
    /// turns coalescing off.
    pub(crate) fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Before an insert into `queue` at `now`: whether the insert should notify in its own
    /// statement (the queue was quiet). A true answer counts as a notification sent.
    pub(crate) fn lead(&self, queue: &str, now: Instant) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let mut slots = self.slots();
        match slots.get_mut(queue) {
            Some(slot) if now.duration_since(slot.last_sent) < self.interval => false,
            Some(slot) => {
                slot.last_sent = now;
                true
            }
            None => {
                if slots.len() >= FORGET_AFTER_ENTRIES {
                    let interval = self.interval;
                    slots.retain(|_, slot| {
                        slot.trailing || now.duration_since(slot.last_sent) < interval
                    });
                }
                slots.insert(
                    queue.to_owned(),
                    Slot {
                        last_sent: now,
                        trailing: false,
                    },
                );
                true
            }
        }
    }

    /// After an insert into `queue` that did not lead has committed, at `now`: the delay after
    /// which the caller must send a trailing notification (then call [`Coalescer::sent`]), or
    /// `None` when one is already scheduled, which will go out after this commit.
    pub(crate) fn trail(&self, queue: &str, now: Instant) -> Option<Duration> {
        let mut slots = self.slots();
        let slot = slots.entry(queue.to_owned()).or_insert(Slot {
            last_sent: now,
            trailing: false,
        });
        if slot.trailing {
            return None;
        }
        slot.trailing = true;
        Some(
            self.interval
                .saturating_sub(now.duration_since(slot.last_sent)),
        )
    }

    /// Records that the trailing notification for `queue` is going out at `now`. Call it
    /// before sending, so that commits from now on schedule another one.
    pub(crate) fn sent(&self, queue: &str, now: Instant) {
        self.slots().insert(
            queue.to_owned(),
            Slot {
                last_sent: now,
                trailing: false,
            },
        );
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // The map stays consistent whatever panicked while holding it.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn leading_edge_then_one_trailing_per_interval() {
        let coalescer = Coalescer::new(2 * MS);
        let t0 = Instant::now();
        assert!(coalescer.lead("q", t0));
        // Within the interval: no leading notification; the first commit schedules the
        // trailing one for the end of the interval, later commits are covered by it.
        assert!(!coalescer.lead("q", t0 + MS / 2));
        assert_eq!(coalescer.trail("q", t0 + MS / 2), Some(MS * 3 / 2));
        assert!(!coalescer.lead("q", t0 + MS));
        assert_eq!(coalescer.trail("q", t0 + MS), None);
        // Other queues are independent.
        assert!(coalescer.lead("other", t0 + MS));
        // The trailing notification starts a new interval.
        coalescer.sent("q", t0 + 2 * MS);
        assert!(!coalescer.lead("q", t0 + 3 * MS));
        assert_eq!(coalescer.trail("q", t0 + 3 * MS), Some(MS));
        coalescer.sent("q", t0 + 4 * MS);
        // After a quiet interval the next insert leads again.
        assert!(coalescer.lead("q", t0 + 10 * MS));
    }

    #[test]
    fn a_commit_after_the_interval_trails_at_once() {
        let coalescer = Coalescer::new(2 * MS);
        let t0 = Instant::now();
        assert!(coalescer.lead("q", t0));
        assert!(!coalescer.lead("q", t0 + MS));
        // A slow insert commits long after the interval ended.
        assert_eq!(coalescer.trail("q", t0 + 50 * MS), Some(Duration::ZERO));
    }

    #[test]
    fn zero_interval_always_leads() {
        let coalescer = Coalescer::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(coalescer.lead("q", t0));
        assert!(coalescer.lead("q", t0));
    }

    #[test]
    fn forgets_quiet_queues() {
        let coalescer = Coalescer::new(MS);
        let t0 = Instant::now();
        for i in 0..FORGET_AFTER_ENTRIES {
            coalescer.lead(&format!("q{i}"), t0);
        }
        coalescer.lead("late", t0 + 10 * MS);
        assert_eq!(coalescer.slots().len(), 1);
    }
}
