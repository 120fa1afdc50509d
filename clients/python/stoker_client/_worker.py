"""Pull workers on the fast protocol: `Worker` runs handlers in threads, `AsyncWorker` runs
`async def` handlers as asyncio tasks; either sends their reports in batches to
`POST /v1/pull/ack`, reserving jobs for the free slots in the same request."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from ._client import AsyncClient, Client, LeaseLostError, StokerError


class SnoozeJob(Exception):
    """Raised by a handler: run again after `seconds` without using up an attempt."""

    def __init__(self, seconds: float):
        super().__init__(f"snoozed for {seconds} s")
        self.seconds = seconds


class DiscardJob(Exception):
    """Raised by a handler: no retry can fix this; discard the job now."""


class RetryJob(Exception):
    """Raised by a handler: retry after `retry_in_seconds` instead of the backoff."""

    def __init__(self, message: str, retry_in_seconds: float):
        super().__init__(message)
        self.retry_in_seconds = retry_in_seconds


class Job:
    """A reserved job as its handler sees it."""

    def __init__(self, worker: "Worker", view: dict):
        self.view = view
        self.id: int = view["id"]
        self.fence: int = view["fence"]
        self.kind: str = view["kind"]
        self.attempt: int = view["attempt"]
        self.cancelled = threading.Event()
        """Set when the job must stop: a cancel was requested, the lease was lost, or the
        worker is shutting down past its grace period."""
        self.settled = False
        self.cancel_requested = False
        """Whether a cancel of this job was requested (then `cancelled` is set too)."""
        self.started = False
        self._worker = worker

    def progress(self, fraction: float, message: str | None = None, details: Any = None) -> None:
        """Records progress: a fraction from 0 to 1, what it is doing, JSON details."""
        self._fenced(lambda: self._worker.client.progress(self.id, self.fence, fraction, message, details))

    def log(self, *lines: str) -> None:
        """Appends lines to the job's log, stored with this attempt and shown by get-job, the
        CLI (`stoker jobs logs ID`) and the dashboard. A job keeps at most 1,000 lines (256
        KiB); lines beyond are dropped."""
        for start in range(0, len(lines), 100):
            chunk = [str(line) for line in lines[start:start + 100]]
            self._fenced(lambda: self._worker.client.append_logs(self.id, self.fence, chunk))

    def batch(self) -> dict | None:
        """The job's batch with its counters, or None if it is in no batch."""
        return self._worker.client.job_batch(self.id)

    def add_to_batch(self, *jobs: tuple) -> dict:
        """Adds jobs, as (kind, args[, options]) tuples, to the job's batch, which must still
        be open (a closed one refuses them with a 409 `conflict`); each has this job as its
        parent. Needs a token with the `enqueue` scope besides `work`."""
        return self._fenced(lambda: self._worker.client.add_to_batch(self.id, self.fence, jobs))

    def _fenced(self, call: Callable[[], Any]) -> Any:
        # A report refused for its fence means the job is no longer this worker's.
        try:
            return call()
        except LeaseLostError:
            self.settled = True
            self.cancelled.set()
            raise


Handler = Callable[[dict, Job], Any]


def _completed(result: Any) -> dict:
    report: dict[str, Any] = {"op": "complete"}
    if result is not None:
        report["result"] = result
    return report


def _failed(err: BaseException, cancel_requested: bool = False) -> dict:
    """The report of a handler that raised: a handler that stops for a requested cancel
    reports the job cancelled, not failed."""
    if isinstance(err, SnoozeJob):
        return {"op": "snooze", "snooze_seconds": err.seconds}
    if cancel_requested:
        return {"op": "cancel", "error": f"{type(err).__name__}: {err}"}
    if isinstance(err, DiscardJob):
        return {"op": "fail", "error": f"DiscardJob: {err}", "discard": True}
    if isinstance(err, RetryJob):
        return {"op": "fail", "error": f"RetryJob: {err}", "retry_in_seconds": err.retry_in_seconds}
    message = f"{type(err).__name__}: {err}"
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=5))
    return {"op": "fail", "error": message + "\n" + trace}


class Worker:
    """Runs jobs of registered kinds from a Stoker server, each in a thread of a pool of
    `concurrency`.

    `prefetch` reserved jobs (default: `concurrency`) may wait beyond the running ones for a
    slot, so a finished job's slot takes the next one at once instead of after a round trip,
    and each request reserves and reports many jobs. Waiting jobs hold leases (kept alive by
    heartbeats); `stop()` hands them back at once. 0 reserves only for free slots.
    """

    def __init__(
        self,
        client: Client,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        name: str | None = None,
        lease_seconds: float = 30.0,
        poll_wait_seconds: float = 10.0,
        shutdown_grace: float = 10.0,
        prefetch: int | None = None,
    ):
        self.client = client
        self.queues = queues or ["default"]
        self.concurrency = concurrency
        self.prefetch = concurrency if prefetch is None else prefetch
        if self.prefetch < 0:
            raise ValueError("prefetch must be at least 0")
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.heartbeat_every = lease_seconds / 3
        self.poll_wait_seconds = poll_wait_seconds
        self.shutdown_grace = shutdown_grace
        self.handlers: dict[str, Handler] = {}
        self.processed = 0
        self._lock = threading.Condition()
        self._pending: list[dict] = []
        self._running: dict[int, Job] = {}
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stoker-job")

    def handler(self, kind: str) -> Callable[[Handler], Handler]:
        """Registers the decorated function as the handler of `kind`."""

        def register(function: Handler) -> Handler:
            self.handlers[kind] = function
            return function

        return register

    def stop(self) -> None:
        """Stops reserving; running jobs get the grace period, then are handed back."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    def run(self, *, handle_signals: bool = True) -> None:
        """Works until `stop()` (or SIGINT/SIGTERM), then hands unfinished jobs back."""
        if not self.handlers:
            raise RuntimeError("register at least one handler before run()")
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        beat = threading.Thread(target=self._heartbeats, daemon=True)
        beat.start()
        stop_at: float | None = None
        while True:
            with self._lock:
                stopping = self._stopping.is_set()
                if stopping and stop_at is None:
                    stop_at = time.monotonic() + self.shutdown_grace
                    # Jobs waiting for a thread have not started: they go back at once.
                    for job in list(self._running.values()):
                        if not job.started:
                            self._finish(job, {"op": "snooze", "snooze_seconds": 0}, hand_back=True)
                if stopping and stop_at is not None and time.monotonic() >= stop_at:
                    for job in list(self._running.values()):
                        self._finish(job, {"op": "snooze", "snooze_seconds": 0}, hand_back=True)
                free = 0 if stopping else self.concurrency + self.prefetch - len(self._running)
                if stopping and not self._pending and not self._running:
                    break
                if not self._pending and (free <= 0 or (self._running and stopping)):
                    self._lock.wait(0.1 if stopping else 1.0)
                    continue
                acks, self._pending = self._pending[:1000], self._pending[1000:]
            wait = self.poll_wait_seconds if not acks and not self._running else 0
            reserve = None
            if free > 0:
                reserve = {
                    "worker": self.name,
                    "queues": self.queues,
                    "kinds": list(self.handlers),
                    "limit": min(free, 100),
                    "lease_seconds": self.lease_seconds,
                    "wait_seconds": wait,
                    "host": socket.gethostname()[:255],
                    "pid": os.getpid(),
                }
            try:
                answer = self.client.ack(acks, reserve)
            except StokerError as err:
                if err.transient:
                    with self._lock:
                        self._pending[:0] = acks
                    time.sleep(0.5)
                continue
            for ack, result in zip(acks, answer["results"]):
                self._answered(ack, result)
            for view in answer["jobs"]:
                job = Job(self, view)
                with self._lock:
                    self._running[job.id] = job
                self._pool.submit(self._execute, job)
            if not answer["jobs"] and self._running and not acks:
                with self._lock:
                    self._lock.wait(1.0)
        self._pool.shutdown(wait=False)

    def _answered(self, ack: dict, result: dict) -> None:
        with self._lock:
            job = self._running.get(ack["id"])
        if job is None:
            return
        if not result["ok"]:
            job.settled = True
            job.cancelled.set()
        elif result.get("cancel_requested"):
            job.cancel_requested = True
            job.cancelled.set()

    def _heartbeats(self) -> None:
        while not (self._stopping.is_set() and not self._running):
            self._stopping.wait(self.heartbeat_every)
            with self._lock:
                queued = {ack["id"] for ack in self._pending}
                for job in self._running.values():
                    if not job.settled and job.id not in queued:
                        self._pending.append({"op": "heartbeat", "id": job.id, "fence": job.fence, "lease_seconds": self.lease_seconds})
                self._lock.notify_all()

    def _execute(self, job: Job) -> None:
        with self._lock:
            if job.settled:
                # Handed back or its lease lost while it waited for a thread: not ours to run.
                self._finish(job, {})
                return
            job.started = True
        handler = self.handlers.get(job.kind)
        try:
            if job.cancel_requested:
                raise RuntimeError("cancel requested before the job started")
            if handler is None:
                raise DiscardJob(f"no handler for kind {job.kind}")
            report = _completed(handler(job.view["args"], job))
        except Exception as err:  # noqa: BLE001 - any failure of the handler is the job's
            report = _failed(err, job.cancel_requested)
        with self._lock:
            self._finish(job, report)

    def _finish(self, job: Job, report: dict, hand_back: bool = False) -> None:
        """Queues a job's report; the lock is held."""
        if self._running.get(job.id) is job:
            del self._running[job.id]
        if job.settled:
            self._lock.notify_all()
            return
        job.settled = True
        if hand_back:
            job.cancelled.set()
        self.processed += 1
        self._pending = [ack for ack in self._pending if ack["id"] != job.id]
        self._pending.append({"id": job.id, "fence": job.fence, **report})
        self._lock.notify_all()


class AsyncJob:
    """A reserved job as an asyncio handler sees it."""

    def __init__(self, worker: "AsyncWorker", view: dict):
        self.view = view
        self.id: int = view["id"]
        self.fence: int = view["fence"]
        self.kind: str = view["kind"]
        self.attempt: int = view["attempt"]
        self.cancelled = asyncio.Event()
        """Set when the job must stop: a cancel was requested or the lease was lost. (At the
        end of a shutdown's grace period the handler's task is cancelled instead.)"""
        self.cancel_requested = False
        self.settled = False
        self.started = False
        self._worker = worker

    async def progress(self, fraction: float, message: str | None = None, details: Any = None) -> None:
        """Records progress: a fraction from 0 to 1, what it is doing, JSON details."""
        await self._fenced(self._worker.client.progress, self.id, self.fence, fraction, message, details)

    async def log(self, *lines: str) -> None:
        """Appends lines to the job's log (see `Job.log`)."""
        for start in range(0, len(lines), 100):
            chunk = [str(line) for line in lines[start:start + 100]]
            await self._fenced(self._worker.client.append_logs, self.id, self.fence, chunk)

    async def batch(self) -> dict | None:
        """The job's batch with its counters, or None (see `Job.batch`)."""
        return await self._worker.client.job_batch(self.id)

    async def add_to_batch(self, *jobs: tuple) -> dict:
        """Adds jobs to the job's open batch (see `Job.add_to_batch`)."""
        return await self._fenced(self._worker.client.add_to_batch, self.id, self.fence, jobs)

    async def _fenced(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        try:
            return await call(*args)
        except LeaseLostError:
            self.settled = True
            self.cancelled.set()
            raise


AsyncHandler = Callable[[dict, AsyncJob], Awaitable[Any]]


class AsyncWorker:
    """Runs jobs with `async def` handlers on one asyncio event loop: each job is a task, so
    a thousand waiting on the network cost no threads. Same protocol as `Worker`: reports
    ride in batches on `POST /v1/pull/ack`, which also reserves jobs for free slots.

    `prefetch` reserved jobs (default: `concurrency`) may wait beyond the running ones for a
    slot, so a finished job's slot takes the next one at once instead of after a round trip,
    and each request reserves and reports many jobs. Waiting jobs hold leases (kept alive by
    heartbeats); `stop()` hands them back at once. 0 reserves only for free slots.

        worker = AsyncWorker(AsyncClient(url, token), queues=["mail"], concurrency=100)

        @worker.handler("send-email")
        async def send_email(args, job):
            await job.log("sending to", args["to"])
            return {"id": await deliver(args)}

        asyncio.run(worker.run())
    """

    def __init__(
        self,
        client: AsyncClient | Client,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        name: str | None = None,
        lease_seconds: float = 30.0,
        poll_wait_seconds: float = 10.0,
        shutdown_grace: float = 10.0,
        prefetch: int | None = None,
    ):
        self.client = client if isinstance(client, AsyncClient) else AsyncClient.wrap(client)
        self.queues = queues or ["default"]
        self.concurrency = concurrency
        self.prefetch = concurrency if prefetch is None else prefetch
        if self.prefetch < 0:
            raise ValueError("prefetch must be at least 0")
        self._slots: asyncio.Semaphore | None = None
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self.heartbeat_every = lease_seconds / 3
        self.poll_wait_seconds = poll_wait_seconds
        self.shutdown_grace = shutdown_grace
        self.handlers: dict[str, AsyncHandler] = {}
        self.processed = 0
        self._pending: list[dict] = []
        self._running: dict[int, tuple[AsyncJob, asyncio.Task]] = {}
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def handler(self, kind: str) -> Callable[[AsyncHandler], AsyncHandler]:
        """Registers the decorated coroutine function as the handler of `kind`."""

        def register(function: AsyncHandler) -> AsyncHandler:
            if not asyncio.iscoroutinefunction(function):
                raise TypeError(f"the handler of {kind} must be an async function")
            self.handlers[kind] = function
            return function

        return register

    def stop(self) -> None:
        """Stops reserving; running jobs get the grace period, then are handed back. Safe to
        call from any thread."""
        self._stopping = True
        loop, wake = self._event_loop, self._wake
        if loop is None or wake is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Works until `stop()` (or SIGINT/SIGTERM), then hands unfinished jobs back."""
        if not self.handlers:
            raise RuntimeError("register at least one handler before run()")
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._event_loop = loop
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        beat = asyncio.create_task(self._heartbeats())
        try:
            await self._loop()
        finally:
            beat.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def _loop(self) -> None:
        stop_at: float | None = None
        while True:
            if self._stopping and stop_at is None:
                stop_at = time.monotonic() + self.shutdown_grace
                # Jobs waiting for a slot have not started: they go back at once.
                for job, task in list(self._running.values()):
                    if not job.started:
                        task.cancel()
                        self._finish(job, {"op": "snooze", "snooze_seconds": 0}, hand_back=True)
            if stop_at is not None and time.monotonic() >= stop_at:
                for job, task in list(self._running.values()):
                    task.cancel()
                    self._finish(job, {"op": "snooze", "snooze_seconds": 0}, hand_back=True)
            free = 0 if self._stopping else self.concurrency + self.prefetch - len(self._running)
            if self._stopping and not self._pending and not self._running:
                return
            if not self._pending and (free <= 0 or (self._running and self._stopping)):
                await self._sleep(0.1 if self._stopping else 1.0)
                continue
            acks, self._pending = self._pending[:1000], self._pending[1000:]
            reserve = None
            if free > 0:
                reserve = {
                    "worker": self.name,
                    "queues": self.queues,
                    "kinds": list(self.handlers),
                    "limit": min(free, 100),
                    "lease_seconds": self.lease_seconds,
                    "wait_seconds": self.poll_wait_seconds if not acks and not self._running else 0,
                    "host": socket.gethostname()[:255],
                    "pid": os.getpid(),
                }
            try:
                answer = await self.client.ack(acks, reserve)
            except StokerError as err:
                if err.transient:
                    self._pending[:0] = acks
                    await asyncio.sleep(0.5)
                continue
            for ack, result in zip(acks, answer["results"]):
                entry = self._running.get(ack["id"])
                if entry is None:
                    continue
                job = entry[0]
                if not result["ok"]:
                    job.settled = True
                    job.cancelled.set()
                elif result.get("cancel_requested"):
                    job.cancel_requested = True
                    job.cancelled.set()
            for view in answer["jobs"]:
                job = AsyncJob(self, view)
                self._running[job.id] = (job, asyncio.create_task(self._execute(job)))
            if not answer["jobs"] and self._running and not acks:
                await self._sleep(1.0)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            queued = {ack["id"] for ack in self._pending}
            for job, _ in self._running.values():
                if not job.settled and job.id not in queued:
                    self._pending.append({"op": "heartbeat", "id": job.id, "fence": job.fence, "lease_seconds": self.lease_seconds})
            if self._wake is not None:
                self._wake.set()

    async def _execute(self, job: AsyncJob) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                if job.settled:
                    # Its lease was lost while it waited for a slot: not ours to run.
                    self._finish(job, {})
                    return
                job.started = True
                report = await self._run_handler(job)
        except asyncio.CancelledError:
            # Only the shutdown cancels a job's task, and it has queued the hand-back.
            return
        self._finish(job, report)

    async def _run_handler(self, job: AsyncJob) -> dict:
        handler = self.handlers.get(job.kind)
        try:
            if job.cancel_requested:
                raise RuntimeError("cancel requested before the job started")
            if handler is None:
                raise DiscardJob(f"no handler for kind {job.kind}")
            return _completed(await handler(job.view["args"], job))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the handler is the job's
            return _failed(err, job.cancel_requested)

    def _finish(self, job: AsyncJob, report: dict, hand_back: bool = False) -> None:
        entry = self._running.get(job.id)
        if entry is not None and entry[0] is job:
            del self._running[job.id]
        if self._wake is not None:
            self._wake.set()
        if job.settled:
            return
        job.settled = True
        if hand_back:
            job.cancelled.set()
        self.processed += 1
        self._pending = [ack for ack in self._pending if ack["id"] != job.id]
        self._pending.append({"id": job.id, "fence": job.fence, **report})
