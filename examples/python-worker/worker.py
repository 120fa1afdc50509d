#!/usr/bin/env python3
"""A Stoker worker in Python, using only the standard library.

It speaks the server's pull protocol (see README.md next to this file):

1. ``POST /v1/pull/reserve`` reserves a job, waiting for one to arrive (long-poll);
2. while the handler runs, ``POST /v1/pull/jobs/{id}/heartbeat`` extends the job's lease
   (and says whether someone cancelled it), and ``.../progress`` records progress;
3. ``.../complete`` stores the handler's result, ``.../fail`` records an error (retried
   with backoff, after a given delay, or discarded), ``.../snooze`` puts the job back, and
   ``.../cancel`` acknowledges a cancel request.

Every call after the reserve carries the ``fence`` the job was reserved with (a token no
later reservation of the job repeats). If the server answers 409 ``lease_lost``, the lease
ended and the job went back to the queue (or it finished): the worker drops it.

Run it against a server (it takes the ``python`` queue by default; the server's built-in
worker would leave these kinds alone in any queue, taking only its own kinds)::

    stoker serve --api-token "$STOKER_API_TOKEN" &
    python3 worker.py --server http://127.0.0.1:7700 --token "$STOKER_API_TOKEN"
    stoker enqueue greet --args '{"name": "Ada"}' --queue python \\
        --server http://127.0.0.1:7700 --token "$STOKER_API_TOKEN"

Add your own handlers with the ``@handler("kind")`` decorator below: a function taking
``(args, ctx)`` and returning the job's result (anything JSON can encode). Raise
``Retry``, ``Discard`` or ``Snooze`` to say what a failure means; any other exception is a
failed attempt retried with the server's backoff.
"""

import argparse
import collections
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("stoker-worker")


# --- What handlers raise ------------------------------------------------------------------


class Retry(Exception):
    """A failed attempt, retried after ``after_seconds`` (or the server's backoff if None)."""

    def __init__(self, message, after_seconds=None):
        super().__init__(message)
        self.after_seconds = after_seconds


class Discard(Exception):
    """A failure no retry can fix: the job is discarded (dead letter) at once."""


class Snooze(Exception):
    """Not now: run the job again after ``seconds`` without using up an attempt."""

    def __init__(self, seconds):
        super().__init__(f"snoozed for {seconds}s")
        self.seconds = seconds


class Cancelled(Exception):
    """Raised by ``ctx.check_cancelled()`` once someone cancelled the job."""


# --- The HTTP API -------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the API: its HTTP status and ``{"error": {"code", "message"}}``."""

    def __init__(self, status, code, message):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Api:
    """A JSON client of one Stoker server."""

    def __init__(self, server, token, timeout=30.0):
        self.base = server.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout

    def post(self, path, body, timeout=None):
        """POSTs ``body`` as JSON and returns the decoded answer (None for 204).

        Raises ApiError for an error answer, OSError (URLError, timeouts) when the server
        cannot be reached.
        """
        request = urllib.request.Request(
            urllib.parse.urljoin(self.base, path),
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            data = err.read()
            try:
                error = json.loads(data)["error"]
                raise ApiError(err.code, error.get("code"), error.get("message")) from None
            except (ValueError, KeyError, TypeError):
                text = data.decode("utf-8", "replace")[:300]
                raise ApiError(err.code, "http_error", text) from None
        return json.loads(data) if data else None


# --- One job ------------------------------------------------------------------------------


class Context:
    """What a handler can see and do: the job, progress, cancellation."""

    def __init__(self, api, job):
        self.api = api
        self.job = job
        self.id = job["id"]
        self.kind = job["kind"]
        self.attempt = job["attempt"]
        self.fence = job["fence"]
        self.max_attempts = job["max_attempts"]
        self._cancelled = threading.Event()
        self._lost = threading.Event()

    @property
    def cancelled(self):
        """True once someone cancelled the job: stop, and raise Cancelled."""
        return self._cancelled.is_set()

    @property
    def lost(self):
        """True once the lease lapsed and the job went back to the queue."""
        return self._lost.is_set()

    def check_cancelled(self):
        """Raises Cancelled if the job was cancelled (or lost)."""
        if self.cancelled or self.lost:
            raise Cancelled("cancelled while running")

    def progress(self, fraction, message=None, details=None):
        """Records progress, from 0.0 to 1.0, with what the handler is doing now and any
        JSON details (e.g. ``{"rows": 1200, "of": 5000}``)."""
        body = {"fence": self.fence, "fraction": fraction}
        if message is not None:
            body["message"] = message
        if details is not None:
            body["details"] = details
        try:
            self.api.post(f"v1/pull/jobs/{self.id}/progress", body)
        except ApiError as err:
            if err.code == "lease_lost":
                self._lost.set()
            else:
                log.warning("job %s: progress not recorded: %s", self.id, err)
        except OSError as err:
            log.warning("job %s: progress not recorded: %s", self.id, err)


class Heartbeat(threading.Thread):
    """Extends a job's lease every third of it, until stopped."""

    def __init__(self, ctx, lease_seconds):
        super().__init__(name=f"heartbeat-{ctx.id}", daemon=True)
        self.ctx = ctx
        self.lease_seconds = lease_seconds
        self.stopped = threading.Event()

    def run(self):
        interval = max(self.lease_seconds / 3.0, 0.2)
        while not self.stopped.wait(interval):
            body = {"fence": self.ctx.fence, "lease_seconds": self.lease_seconds}
            try:
                lease = self.ctx.api.post(f"v1/pull/jobs/{self.ctx.id}/heartbeat", body)
            except ApiError as err:
                if err.code in ("lease_lost", "not_found"):
                    log.warning("job %s: lost its lease (%s)", self.ctx.id, err.message)
                    self.ctx._lost.set()
                    return
                log.warning("job %s: heartbeat failed: %s", self.ctx.id, err)
                continue
            except OSError as err:
                log.warning("job %s: heartbeat failed: %s", self.ctx.id, err)
                continue
            if lease and lease.get("cancel_requested"):
                self.ctx._cancelled.set()

    def stop(self):
        self.stopped.set()


# --- Handlers -----------------------------------------------------------------------------

HANDLERS = {}


def handler(kind):
    """Registers a function ``(args, ctx) -> result`` as the handler of ``kind``."""

    def register(function):
        HANDLERS[kind] = function
        return function

    return register


@handler("greet")
def greet(args, ctx):
    """``{"name": "Ada"}`` -> ``{"greeting": "Hello, Ada!", "by": "python"}``."""
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise Discard("args.name must be a non-empty string")
    ctx.progress(0.5, f"greeting {name}")
    return {"greeting": f"Hello, {name}!", "by": "python", "attempt": ctx.attempt}


@handler("word_count")
def word_count(args, ctx):
    """``{"text": "..."}`` -> how many words, and the three most common."""
    text = args.get("text")
    if not isinstance(text, str):
        raise Discard("args.text must be a string")
    lines = text.splitlines() or [""]
    counts = collections.Counter()
    for number, line in enumerate(lines, start=1):
        ctx.check_cancelled()
        counts.update(word.strip(".,;:!?\"'()").lower() for word in line.split())
        ctx.progress(
            number / len(lines),
            f"counted {number} of {len(lines)} lines",
            details={"lines": number, "of": len(lines), "words": sum(counts.values())},
        )
    counts.pop("", None)
    return {
        "words": sum(counts.values()),
        "top": [[word, count] for word, count in counts.most_common(3)],
        "by": "python",
    }


# --- The worker ---------------------------------------------------------------------------


class Budget:
    """How many more jobs to take with --exit-after (None: no limit)."""

    def __init__(self, limit):
        self.lock = threading.Lock()
        self.left = limit

    def take(self):
        with self.lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def give_back(self):
        with self.lock:
            if self.left is not None:
                self.left += 1

    def exhausted(self):
        with self.lock:
            return self.left is not None and self.left <= 0


class Worker:
    """Reserves jobs of its queues with ``concurrency`` threads and runs them."""

    def __init__(self, api, name, queues, concurrency, lease_seconds, wait_seconds, exit_after):
        self.api = api
        self.name = name
        self.queues = queues
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.budget = Budget(exit_after)
        self.stopping = threading.Event()
        self.done = 0
        self.done_lock = threading.Lock()

    def run(self):
        threads = [
            threading.Thread(target=self.loop, name=f"worker-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        log.info("stopped after %d job(s)", self.done)

    def stop(self):
        self.stopping.set()

    def loop(self):
        delay = 1.0
        while not self.stopping.is_set():
            if not self.budget.take():
                return
            try:
                jobs = self.reserve()
            except (ApiError, OSError) as err:
                self.budget.give_back()
                if isinstance(err, ApiError) and err.status in (401, 403, 422):
                    log.error("the server refused the worker: %s", err)
                    self.stop()
                    return
                log.warning("reserve failed (%s); retrying in %.0fs", err, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            if not jobs:
                self.budget.give_back()
                continue
            for job in jobs:
                self.process(job)
            with self.done_lock:
                self.done += len(jobs)

    def reserve(self):
        body = {
            "worker": self.name,
            "queues": self.queues,
            "kinds": sorted(HANDLERS),
            "limit": 1,
            "lease_seconds": self.lease_seconds,
            "wait_seconds": self.wait_seconds,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        answer = self.api.post("v1/pull/reserve", body, timeout=self.wait_seconds + 30)
        return answer["jobs"]

    def process(self, job):
        ctx = Context(self.api, job)
        function = HANDLERS.get(job["kind"])
        log.info("job %s (%s): attempt %s of %s", ctx.id, ctx.kind, ctx.attempt, ctx.max_attempts)
        heartbeat = Heartbeat(ctx, self.lease_seconds)
        heartbeat.start()
        try:
            if function is None:
                raise Retry(f"no handler for kind {job['kind']!r} in this worker")
            result = function(job.get("args") or {}, ctx)
            outcome = ("complete", {"fence": ctx.fence, "result": result})
        except Retry as err:
            body = {"fence": ctx.fence, "error": str(err)}
            if err.after_seconds is not None:
                body["retry_in_seconds"] = err.after_seconds
            outcome = ("fail", body)
        except Discard as err:
            outcome = ("fail", {"fence": ctx.fence, "error": str(err), "discard": True})
        except Snooze as err:
            outcome = ("snooze", {"fence": ctx.fence, "snooze_seconds": err.seconds})
        except Cancelled as err:
            outcome = ("cancel", {"fence": ctx.fence, "error": str(err)})
        except Exception as err:  # any other failure is a failed attempt, retried
            outcome = ("fail", {"fence": ctx.fence, "error": f"{type(err).__name__}: {err}"})
        finally:
            heartbeat.stop()
        if ctx.lost:
            log.warning("job %s: lease lost; the job went back to its queue", ctx.id)
            return
        self.report(ctx, *outcome)

    def report(self, ctx, action, body):
        delay = 0.5
        for _ in range(6):
            try:
                answer = self.api.post(f"v1/pull/jobs/{ctx.id}/{action}", body)
                log.info("job %s (%s): %s", ctx.id, ctx.kind, answer.get("state") if answer else action)
                return
            except ApiError as err:
                log.warning("job %s: %s not recorded: %s", ctx.id, action, err)
                return
            except OSError as err:
                # The server may be restarting: try again while the lease lasts.
                log.warning("job %s: %s failed (%s); retrying", ctx.id, action, err)
                time.sleep(delay)
                delay *= 2
        log.error("job %s: gave up reporting %s; the lease will return it to its queue", ctx.id, action)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A Stoker pull worker in Python (standard library only)."
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("STOKER_SERVER", "http://127.0.0.1:7700"),
        help="the server's URL [env STOKER_SERVER; default http://127.0.0.1:7700]",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("STOKER_API_TOKEN"),
        help="an API token with the work scope [env STOKER_API_TOKEN]",
    )
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        help="a queue to take jobs from; repeat for several [default: python]",
    )
    parser.add_argument(
        "--name",
        default=f"python-{socket.gethostname()}-{os.getpid()}",
        help="this worker's name, unique per process [default: python-HOST-PID]",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="jobs at a time [default: 1]")
    parser.add_argument(
        "--lease", type=float, default=30.0, help="seconds each job is held between heartbeats [default: 30]"
    )
    parser.add_argument(
        "--wait", type=float, default=20.0, help="seconds one reserve waits for a job [default: 20]"
    )
    parser.add_argument(
        "--exit-after", type=int, default=None, metavar="N", help="exit after N jobs [default: never]"
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.exit_after is not None and args.exit_after < 1:
        parser.error("--exit-after must be at least 1")

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    worker = Worker(
        Api(args.server, args.token),
        args.name,
        args.queues or ["python"],
        args.concurrency,
        args.lease,
        args.wait,
        args.exit_after,
    )

    def on_signal(signum, _frame):
        if worker.stopping.is_set():
            log.warning("second signal: exiting now; unfinished jobs return when their lease lapses")
            os._exit(130)
        log.info("signal %d: finishing the current job(s), then exiting", signum)
        worker.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "worker %s serving %s on %s (kinds: %s)",
        args.name,
        ", ".join(worker.queues),
        args.server,
        ", ".join(sorted(HANDLERS)),
    )
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
