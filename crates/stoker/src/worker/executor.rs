//! Runs one attempt: finds the handler, applies the timeout, catches panics, and turns what
//! happened into an [`Outcome`].

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use stoker_core::{AttemptError, ErrorKind, JobFinish, JobRow, Outcome};
use tokio::sync::OwnedSemaphorePermit;

use super::{Ack, RunningJob, Runtime, StopReason};
use crate::backoff::{after, failed_attempt};
use crate::error::JobErrorAction;
use crate::{Handler, JobContext};

pub(crate) fn spawn(runtime: &Arc<Runtime>, job: JobRow, permit: OwnedSemaphorePermit) {
    let entry = Arc::new(RunningJob::new());
    runtime
        .running
        .lock()
        .expect("running lock")
        .insert(job.id, Arc::clone(&entry));
    let runtime = Arc::clone(runtime);
    let jobs = runtime.jobs.clone();
    jobs.spawn(async move {
        let (id, fence, attempt) = (job.id, job.fence, job.attempt);
        let (queue, kind) = (job.queue.clone(), job.kind.clone());
        let pickup_latency = job
            .attempted_at
            .and_then(|started| (started - job.run_at).to_std().ok())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        // Set by the handler's context when its `Ok` must wait for its children (issue 18).
        let waits = Arc::new(AtomicBool::new(false));
        let outcome = execute(&runtime, job, &entry, &waits).await;
        let run_time = started.elapsed();
        runtime.running.lock().expect("running lock").remove(&id);
        drop(permit);
        runtime.ack(Ack {
            finish: JobFinish { id, fence, outcome },
            attempt,
            queue,
            kind,
            run_time,
            pickup_latency,
            wait_children: waits.load(Ordering::Acquire),
        });
    });
}

async fn execute(
    runtime: &Runtime,
    mut job: JobRow,
    entry: &RunningJob,
    waits: &Arc<AtomicBool>,
) -> Outcome {
    let config = &runtime.config;
    // --- stream crypt ---
    // Sealed args are opened here, so the handler (and its context) see plaintext. A job whose
    // key is missing or wrong waits, snoozed without using an attempt, until a process with
    // the right key runs it: a key problem is the operator's to fix, and losing the job to it
    // would be worse than waiting. The log names the job and key id, never the payload.
    let args_sealed = crate::sealed_with(&job.args).is_some();
    if let Err(err) = config.client.open_claimed(&mut job) {
        tracing::error!(job = %job.id, kind = %job.kind, %err, "cannot open the job's args; it waits");
        return Outcome::Snooze {
            run_at: after(config.clock.now(), crate::KEY_MISSING_RETRY),
        };
    }
    let Some(handler) = config.registry.get(&job.kind).cloned() else {
        let message = format!("no handler registered for kind {:?}", job.kind);
        return failed(
            runtime,
            &job,
            Retry::DEFAULT,
            ErrorKind::NoHandler,
            message,
            None,
        );
    };
    let timeout = job
        .timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .or_else(|| handler.timeout());
    let ctx = JobContext::new(
        job.clone(),
        config.client.clone(),
        entry.token.clone(),
        Arc::clone(waits),
    );
    let work = AssertUnwindSafe(Tracked(handler.perform(job.args.clone(), ctx))).catch_unwind();
    let attempt = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.map_err(|_| limit),
            None => Ok(work.await),
        }
    };
    let result = tokio::select! {
        result = attempt => result,
        // Shutdown's last resort: the handler ignored its cancellation. Dropping it here stops
        // it at its next await; the job goes back to the queue unharmed.
        () = runtime.hard_stop.cancelled() => return Outcome::HandBack,
    };
    let stop = entry.reason();
    let now = config.clock.now();
    match result {
        Err(limit) => {
            entry.token.cancel();
            if stop == StopReason::Shutdown {
                return Outcome::HandBack;
            }
            let message = format!("timed out after {limit:?}");
            failed(
                runtime,
                &job,
                Retry {
                    handler: Some(&handler),
                    delay: None,
                },
                ErrorKind::Timeout,
                message,
                None,
            )
        }
        Ok(Err(panic)) => {
            IN_JOB.with(|flag| flag.set(false));
            let backtrace = LAST_BACKTRACE.with(|last| last.borrow_mut().take());
            let message = format!("panicked: {}", panic_message(panic.as_ref()));
            failed(
                runtime,
                &job,
                Retry {
                    handler: Some(&handler),
                    delay: None,
                },
                ErrorKind::Panic,
                message,
                backtrace,
            )
        }
        Ok(Ok(Ok(result))) => Outcome::Completed {
            result: config.client.seal_result(&job, args_sealed, result),
        },
        Ok(Ok(Err(err))) => {
            let error = |kind| attempt_error(&job, now, kind, err.message.clone(), None);
            match (stop, err.action) {
                (StopReason::Shutdown, _) => Outcome::HandBack,
                (StopReason::Cancelled, _) | (_, JobErrorAction::Cancel) => Outcome::Cancel {
                    error: Some(error(ErrorKind::Cancelled)),
                },
                (_, JobErrorAction::Retry(delay)) => failed(
                    runtime,
                    &job,
                    Retry {
                        handler: Some(&handler),
                        delay,
                    },
                    ErrorKind::Error,
                    err.message.clone(),
                    None,
                ),
                (_, JobErrorAction::Discard) => Outcome::Discard {
                    error: error(ErrorKind::Error),
                },
                (_, JobErrorAction::Snooze(delay)) => Outcome::Snooze {
                    run_at: after(now, delay),
                },
            }
        }
    }
}

/// When a failed attempt runs again: after the given delay, else the handler's backoff, else
/// the default backoff.
struct Retry<'a> {
    handler: Option<&'a Arc<dyn Handler>>,
    delay: Option<Duration>,
}

impl Retry<'_> {
    const DEFAULT: Retry<'static> = Retry {
        handler: None,
        delay: None,
    };
}

/// A failed attempt, by the one rule ([`failed_attempt`]).
fn failed(
    runtime: &Runtime,
    job: &JobRow,
    retry: Retry<'_>,
    kind: ErrorKind,
    message: String,
    backtrace: Option<String>,
) -> Outcome {
    let now = runtime.config.clock.now();
    let error = attempt_error(job, now, kind, message, backtrace);
    failed_attempt(
        job,
        error,
        now,
        retry.delay,
        retry.handler.map(|handler| &**handler),
    )
}

fn attempt_error(
    job: &JobRow,
    at: chrono::DateTime<chrono::Utc>,
    kind: ErrorKind,
    message: String,
    backtrace: Option<String>,
) -> AttemptError {
    AttemptError {
        attempt: job.attempt,
        at,
        kind,
        message,
        backtrace,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

thread_local! {
    /// Set while a job's future is being polled on this thread.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
    /// The backtrace of the last panic inside a job on this thread.
    static LAST_BACKTRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static PANIC_HOOK: Once = Once::new();

/// Wraps a handler's future so that a panic inside it records a backtrace for the job's error
/// history. The panic hook is chained: whatever hook was installed before still runs.
struct Tracked<F>(F);

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if IN_JOB.with(Cell::get) {
                    let backtrace = Backtrace::force_capture().to_string();
                    LAST_BACKTRACE.with(|last| *last.borrow_mut() = Some(backtrace));
                }
                previous(info);
            }));
        });
        IN_JOB.with(|flag| flag.set(true));
        let poll = Pin::new(&mut self.0).poll(cx);
        IN_JOB.with(|flag| flag.set(false));
        poll
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        // A panic unwinds through poll without resetting the flag.
        IN_JOB.with(|flag| flag.set(false));
    }
}
