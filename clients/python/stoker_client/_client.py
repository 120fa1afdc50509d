"""The HTTP side: JSON, bearer tokens, typed errors, retries of transient failures."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping

TRANSIENT = {0, 429, 502, 503, 504}
FINISHED = {"completed", "discarded", "cancelled"}


class StokerError(Exception):
    """An error answer of the server: its stable `code`, `message`, the request `field` at
    fault, and the HTTP `status` (0 when the server could not be reached)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later."""
        return self.status in TRANSIENT

    def __repr__(self) -> str:
        return f"StokerError({self.status}, {self.code!r}, {self.message!r}, field={self.field!r})"


class LeaseLostError(StokerError):
    """A report whose fence is no longer the job's: drop the job."""


def _error(status: int, detail: Mapping[str, Any]) -> StokerError:
    kind = LeaseLostError if detail.get("code") == "lease_lost" else StokerError
    return kind(status, detail.get("code", "unknown"), detail.get("message", ""), detail.get("field"))


class Client:
    """A synchronous client of a Stoker server."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        retries: int = 4,
        retry_delay: float = 0.1,
        timeout: float = 30.0,
        auto_idempotency_key: bool = True,
    ):
        url = url or os.environ.get("STOKER_SERVER") or "http://127.0.0.1:8080"
        self.base_url = url.rstrip("/").removesuffix("/v1")
        self.token = token if token is not None else os.environ.get("STOKER_API_TOKEN")
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.auto_idempotency_key = auto_idempotency_key

    # --- HTTP ---------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, retry: bool = True, extra_timeout: float = 0.0) -> Any:
        """Sends a request; returns its JSON answer (None for 204). Raises StokerError."""
        attempt = 0
        while True:
            try:
                return self._once(method, path, body, extra_timeout)
            except StokerError as err:
                if not retry or not err.transient or attempt >= self.retries:
                    raise
                delay = getattr(err, "retry_after", None)
                if delay is None:
                    base = self.retry_delay * 2**attempt
                    delay = base / 2 + random.random() * base / 2
                time.sleep(delay)
                attempt += 1

    def _once(self, method: str, path: str, body: Any, extra_timeout: float) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout + extra_timeout) as response:
                text = response.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            with err:
                text = err.read()
            try:
                detail = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                code = "unavailable" if err.code in TRANSIENT else "unknown"
                detail = {"code": code, "message": text.decode(errors="replace") or str(err)}
            error = _error(err.code, detail)
            retry_after = err.headers.get("Retry-After")
            if retry_after and retry_after.isdigit() and int(retry_after) > 0:
                error.retry_after = min(int(retry_after), 60)
            raise error from None
        except (urllib.error.URLError, OSError) as err:
            raise StokerError(0, "unavailable", f"{method} {path}: {err}") from err

    # --- Jobs ---------------------------------------------------------------------------

    def _enqueue_request(self, kind: str, args: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict:
        allowed = {
            "queue", "priority", "run_at", "delay_seconds", "max_attempts", "idempotency_key",
            "tenant", "metadata", "timeout_seconds", "backoff",
            "correlation_id", "parent_id", "source", "tags", "on_finish",
        }
        unknown = set(options) - allowed
        if unknown:
            raise TypeError(f"unknown enqueue options: {sorted(unknown)}")
        request: dict[str, Any] = {"kind": kind, "args": dict(args or {})}
        metadata = dict(options.get("metadata") or {})
        for key, value in options.items():
            if value is None:
                continue
            if key in ("correlation_id", "parent_id", "source", "tags"):
                metadata[key] = list(value) if key == "tags" else value
            elif key == "run_at" and isinstance(value, datetime):
                request[key] = value.isoformat()
            elif key == "on_finish" and isinstance(value, str):
                request[key] = {"url": value}
            elif key != "metadata":
                request[key] = value
        if metadata:
            request["metadata"] = metadata
        if "idempotency_key" not in request and self.auto_idempotency_key:
            request["idempotency_key"] = str(uuid.uuid4())
        return request

    def enqueue(self, kind: str, args: Mapping[str, Any] | None = None, **options: Any) -> dict:
        """Enqueues one job. Options: queue, priority, run_at, delay_seconds, max_attempts,
        idempotency_key, tenant, correlation_id, parent_id, source, tags, timeout_seconds,
        backoff (a dict of base_seconds, factor, max_seconds, jitter), on_finish (a URL, or a
        dict of url and queue: the job's outcome is posted there when it completes, is
        discarded or is cancelled)."""
        body = self._enqueue_request(kind, args, options)
        return self.request("POST", "/v1/jobs", body, retry="idempotency_key" in body)

    def enqueue_bulk(self, jobs: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any]] | tuple[str, Mapping[str, Any] | None]]) -> dict:
        """Enqueues many jobs, given as (kind, args[, options]) tuples, all or none."""
        requests = [self._enqueue_request(job[0], job[1], job[2] if len(job) > 2 else {}) for job in jobs]
        retry = all("idempotency_key" in job for job in requests)
        return self.request("POST", "/v1/jobs/bulk", {"jobs": requests}, retry=retry)

    def get(self, job_id: int) -> dict:
        """One job."""
        return self.request("GET", f"/v1/jobs/{job_id}")

    def list(self, *, states: Iterable[str] = (), kinds: Iterable[str] = (), queues: Iterable[str] = (), tenant: str | None = None, cursor: int | None = None, limit: int | None = None) -> dict:
        """One page of jobs, newest first: {"jobs": [...], "next_cursor": id or absent}."""
        query = {
            "state": ",".join(states),
            "kind": ",".join(kinds),
            "queue": ",".join(queues),
            "tenant": tenant,
            "cursor": cursor,
            "limit": limit,
        }
        text = urllib.parse.urlencode({k: v for k, v in query.items() if v not in (None, "")})
        return self.request("GET", "/v1/jobs" + (f"?{text}" if text else ""))

    def cancel(self, job_id: int) -> dict:
        """Cancels a job."""
        return self.request("POST", f"/v1/jobs/{job_id}/cancel")

    def retry(self, job_id: int) -> dict:
        """Runs a job again now."""
        return self.request("POST", f"/v1/jobs/{job_id}/retry")

    def wait_for(self, job_id: int, *, interval: float = 0.1, timeout: float = 60.0) -> dict:
        """Polls a job until it is completed, discarded or cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in FINISHED or time.monotonic() > deadline:
                return job
            time.sleep(interval)

    # --- The pull protocol ---------------------------------------------------------------

    def reserve(self, request: Mapping[str, Any]) -> dict:
        """`POST /v1/pull/reserve` (not retried: a lost answer's jobs wait out their lease)."""
        return self.request("POST", "/v1/pull/reserve", dict(request), retry=False, extra_timeout=request.get("wait_seconds", 0))

    def ack(self, acks: list[dict], reserve: Mapping[str, Any] | None = None) -> dict:
        """`POST /v1/pull/ack`: fenced reports, each answered on its own, and optionally a
        reservation of new jobs in the same round trip."""
        body: dict[str, Any] = {"acks": acks}
        if reserve is not None:
            body["reserve"] = dict(reserve)
        wait = (reserve or {}).get("wait_seconds", 0)
        return self.request("POST", "/v1/pull/ack", body, retry=reserve is None, extra_timeout=wait)

    def progress(self, job_id: int, fence: int, fraction: float, message: str | None = None, details: Any = None) -> None:
        """`POST /v1/pull/jobs/{id}/progress`."""
        body: dict[str, Any] = {"fence": fence, "fraction": fraction}
        if message is not None:
            body["message"] = message
        if details is not None:
            body["details"] = details
        self.request("POST", f"/v1/pull/jobs/{job_id}/progress", body)


    def append_logs(self, job_id: int, fence: int, lines: list[str]) -> dict:
        """`POST /v1/pull/jobs/{id}/logs`: appends 1 to 100 lines (each at most 4096
        characters) to a held job; answers {"accepted", "dropped"}."""
        return self.request("POST", f"/v1/pull/jobs/{job_id}/logs", {"fence": fence, "lines": list(lines)})

    def logs(self, job_id: int) -> list[dict]:
        """The lines a job's handlers logged, oldest first: {seq, attempt, at, line}."""
        return self.request("GET", f"/v1/jobs/{job_id}/logs")["lines"]

    # --- stream workflows ---
    def job_batch(self, job_id: int) -> dict | None:
        """`GET /v1/pull/jobs/{id}/batch`: the batch of a job with its counters (id, name,
        state, total, pending, completed, discarded, cancelled, callback_id, ...), or None for
        a job in no batch."""
        return self.request("GET", f"/v1/pull/jobs/{job_id}/batch")["batch"]

    def add_to_batch(self, job_id: int, fence: int, jobs: Iterable[tuple[str, Mapping[str, Any] | None, Mapping[str, Any]] | tuple[str, Mapping[str, Any] | None]]) -> dict:
        """`POST /v1/pull/jobs/{id}/batch/jobs`: adds jobs, given as (kind, args[, options])
        tuples, to the open batch of a job this worker holds, fenced like every report (the
        token needs the `work` and `enqueue` scopes). Each job has the held job as its parent
        unless its options say otherwise; a batch's job takes the batch's tenant and has no
        idempotency key nor completion callback of its own. Answers {"id", "jobs"}."""
        specs = []
        for job in jobs:
            options = dict(job[2]) if len(job) > 2 else {}
            refused = {"idempotency_key", "tenant", "on_finish"} & set(options)
            if refused:
                raise TypeError(f"a batch's job cannot take {sorted(refused)}")
            spec = self._enqueue_request(job[0], job[1], options)
            spec.pop("idempotency_key", None)
            specs.append(spec)
        return self.request("POST", f"/v1/pull/jobs/{job_id}/batch/jobs", {"fence": fence, "jobs": specs}, retry=False)


    # --- Live events ----------------------------------------------------------------------

    def events(self, *, jobs: Iterable[int] = (), correlation_id: str | None = None, queue: str | None = None,
               kind: str | None = None, tenant: str | None = None, snapshots: bool = True,
               job_events: bool = True, timeout_seconds: int | None = None) -> Iterator[dict]:
        """Live events from `GET /v1/events`, as dicts: {"type": "job", "job": {...}},
        {"type": "snapshot", "snapshot": {...}} once a second, and {"type": "end"} when every
        followed job (`jobs`) has finished. Ends when the server ends the stream; close the
        generator to stop early."""
        query = {
            "job": ",".join(str(job) for job in jobs),
            "correlation_id": correlation_id, "queue": queue, "kind": kind, "tenant": tenant,
            "snapshot": None if snapshots else "false", "jobs": None if job_events else "false",
            "timeout_secs": timeout_seconds,
        }
        text = urllib.parse.urlencode({k: v for k, v in query.items() if v not in (None, "")})
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + "/v1/events" + (f"?{text}" if text else ""), headers=headers)
        try:
            # No read timeout: the server sends a keep-alive comment every 15 seconds.
            response = urllib.request.urlopen(request)
        except urllib.error.HTTPError as err:
            with err:
                body = err.read()
            try:
                detail = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                detail = {"code": "unknown", "message": body.decode(errors="replace")}
            raise _error(err.code, detail) from None
        except (urllib.error.URLError, OSError) as err:
            raise StokerError(0, "unavailable", f"GET /v1/events: {err}") from err
        with response:
            name, data = "message", []
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        payload = json.loads("\n".join(data))
                        if name == "end":
                            yield {"type": "end"}
                            return
                        if name in ("job", "snapshot"):
                            yield {"type": name, name: payload}
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)

    def follow(self, job_id: int) -> dict:
        """Follows one job to its end through the event stream (no polling, whichever server
        runs it) and returns it finished."""
        for event in self.events(jobs=[job_id], snapshots=False):
            if event["type"] == "end":
                break
        return self.get(job_id)

    # --- Recurring schedules (cron) ------------------------------------------------------

    def create_cron(self, name: str, expr: str, kind: str, **fields: Any) -> dict:
        """Creates a recurring schedule: a job of `kind` enqueued at every slot of `expr` (5
        fields, 6 with seconds first, or `@daily` and kin), once per slot however many
        servers run. Fields: tz, args, queue, priority, max_attempts, tenant, metadata,
        catch_up, catch_up_window_seconds, catch_up_max, overlap, enabled."""
        return self.request("POST", "/v1/cron", {"name": name, "expr": expr, "kind": kind, **fields})

    def list_cron(self) -> list[dict]:
        """Every schedule."""
        return self.request("GET", "/v1/cron")["schedules"]

    def get_cron(self, name: str) -> dict:
        """One schedule, with its next slots."""
        return self.request("GET", f"/v1/cron/{urllib.parse.quote(name, safe='')}")

    def update_cron(self, name: str, **changes: Any) -> dict:
        """Changes the given fields of a schedule; a new `expr` or `tz` counts from now."""
        return self.request("PATCH", f"/v1/cron/{urllib.parse.quote(name, safe='')}", changes)

    def delete_cron(self, name: str) -> dict:
        """Deletes a schedule (jobs it already enqueued stay)."""
        return self.request("DELETE", f"/v1/cron/{urllib.parse.quote(name, safe='')}")


class AsyncClient:
    """The same client for asyncio: each call runs the synchronous one in a thread, so the
    event loop never blocks on the network."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.sync = Client(*args, **kwargs)

    @classmethod
    def wrap(cls, client: Client) -> "AsyncClient":
        """The asyncio face of an existing synchronous client (same URL, token, retries)."""
        wrapped = cls.__new__(cls)
        wrapped.sync = client
        return wrapped

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sync, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
