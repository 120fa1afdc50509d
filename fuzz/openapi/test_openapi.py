"""Fuzzes `stoker serve` from its own OpenAPI document with schemathesis.

Every operation the document lists gets a bounded number of generated requests, valid and
invalid alike. Each response must be documented (status code, content type, body schema), no
request may get a 5xx, a request the server refuses (any 4xx) must leave the job and queue
tables exactly as they were, and the server's log must hold no panic when it stops.

The server runs on a fresh SQLite file with its built-in worker on a queue of its own and its
maintenance services slowed down, so only the fuzzer's requests change the tables. Run it with
`.ci/fuzz-api`, which also puts it in a network namespace with nothing but loopback: generated
webhook jobs can never reach another host.

Environment: `STOKER_BIN` (the `stoker` binary, default `target/debug/stoker`),
`STOKER_FUZZ_EXAMPLES` (cases per operation, default 60).
"""

from __future__ import annotations

import json
import re
import os
import pathlib
import socket
import sqlite3
import subprocess
import time
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("STOKER_BIN", ROOT / "target" / "debug" / "stoker"))
EXAMPLES = int(os.environ.get("STOKER_FUZZ_EXAMPLES", "60"))
# An admin token, so the fuzzer also meets the authentication it is told about.
TOKEN = "stoker-fuzz-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The tables a request can change; each is read whole, in a stable order.
TABLES = {
    "stoker_jobs": "id",
    "stoker_queues": "name",
    "stoker_cron": "name",
}

# Fields whose validity no schema can state, so a 422 naming one of them refuses bad input and
# is not a refusal of schema-valid data: a cron expression and a time zone (issue 15), a URL
# (an alert's receiver), and the search language `q` are known to be valid only by parsing
# them; a token's `expires_at` must be in the future, which depends on when it is sent.
# An alert rule's `resolve_threshold` must lie on the good side of its `threshold`: a rule
# between two fields that JSON Schema cannot state (the rest of a rule's cross-field rules are
# stated: one oneOf branch per metric).
PARSED_FIELDS = {"expr", "tz", "url", "q", "expires_at", "resolve_threshold"}

# A PATCH merges its fields into the stored rule, so whether the result is a valid rule (a
# threshold in its metric's range, a baseline only on throughput, a scope the metric takes)
# depends on what is stored, which no schema of the request can know.
STATEFUL_FIELDS = {
    # Fair queuing (issue 16) is a setting of one queue's limit: it needs `queue` and refuses
    # `kind`, a rule between a limit's fields that its schema (anyOf rate|concurrency|fair|
    # quota) does not state; the server names the field.
    ("PUT", "/v1/limits/{name}"): {"queue", "kind"},
    ("PATCH", "/v1/alerts/{name}"): {
        "threshold",
        "resolve_threshold",
        "baseline",
        "scope.queue",
        "scope.kind",
        "scope.tenant",
    },
}


# --- stream wf ---
# A workflow's graph (issue 18) is valid only as a whole: names unique in the workflow,
# dependencies on its jobs or on existing jobs of the caller's tenant, no cycle, and at most
# 10,000 jobs counting those already in it. No schema can state these, so a 422 naming the
# jobs, a job's `name` or one of its `depends_on` refuses bad input.
WORKFLOW_GRAPH_FIELD = re.compile(r"^jobs(\[\d+\]\.(name|depends_on(\[\d+\])?))?$")


def _sets_by_query(case) -> bool:
    """Whether the request carries a non-empty search-language `q` (query or body)."""
    for part in (case.query, case.body):
        if isinstance(part, dict) and isinstance(part.get("q"), str) and part["q"].strip():
            return True
    return False

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`stoker serve` on a temporary SQLite file, for the whole session."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.db = workdir / "fuzz.sqlite3"
        self.log_path = workdir / "server.log"
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: build it with `cargo build --bin stoker`")
        args = [
            str(BINARY),
            "serve",
            "--database-url",
            f"sqlite://{self.db}",
            "--bind",
            self.url.removeprefix("http://"),
            # The built-in worker gets a queue the fuzzer does not name.
            "--api-token",
            TOKEN,
            "--queue",
            "stoker-fuzz-builtin=1",
            # Long-polls end at once, and the leader's passes stay out of the way.
            "--pull-max-wait",
            "100ms",
            "--stage-interval",
            "1h",
            "--rescue-interval",
            "1h",
            "--prune-interval",
            "1h",
            "--bulk-interval",
            "1h",
        ]
        env = {**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"}
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stoker serve exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"stoker serve did not answer /health within 60 s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tables(self) -> dict[str, list[tuple]]:
        """Every row of the tables a request can change."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return {
                table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
                for table, key in TABLES.items()
            }
        finally:
            conn.close()

    def seed(self) -> None:
        """A few jobs in every state a route can act on, so ids and names in generated
        requests sometimes hit something."""
        def post(path: str, body: dict) -> None:
            request = urllib.request.Request(
                f"{self.url}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", **AUTH},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()

        for index in range(5):
            post("/v1/jobs", {"kind": "fuzz", "queue": "default", "args": {"n": index}})


SERVER: Server | None = None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    global SERVER
    instance = Server(tmp_path_factory.mktemp("stoker-fuzz"))
    instance.start()
    instance.seed()
    SERVER = instance
    yield instance
    instance.stop()
    log = instance.log()
    panics = [line for line in log.splitlines() if "panicked" in line]
    assert not panics, "the server panicked:\n" + "\n".join(panics)


@pytest.fixture(scope="session")
def api_schema(server: Server):
    return schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
# While developing a route: fuzz only the paths this regular expression matches.
if os.environ.get("STOKER_FUZZ_PATHS"):
    schema = schema.include(path_regex=os.environ["STOKER_FUZZ_PATHS"])


@schemathesis.auth()
class AdminToken:
    """Every generated request carries the admin token; schemathesis's own checks still send
    requests without it, which must answer 401."""

    def get(self, case, context):
        return TOKEN

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    # The same cases on every run, so CI meets what a developer saw.
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation(case, server: Server) -> None:
    before = server.tables()
    # stream events: `GET /v1/events` streams until the client leaves; a generated request
    # gets a short documented `timeout_secs` so it ends (invalid values are left for the
    # server to refuse).
    if case.path == "/v1/events":
        case.query = dict(case.query or {})
        limit = case.query.get("timeout_secs")
        if limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > 2):
            case.query["timeout_secs"] = 1
    response = case.call(base_url=server.url, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:2000]}\n{case.as_curl_command()}"
    )
    if 400 <= response.status_code < 500:
        after = server.tables()
        for table in TABLES:
            assert after[table] == before[table], (
                f"{case.method} {case.formatted_path} was refused with "
                f"{response.status_code} but changed {table}:\n{case.as_curl_command()}"
            )
    # A body over max_body_bytes is refused with 413 before it is read: the right refusal of
    # a too-long list, which schemathesis's negative-data check does not count as one.
    excluded = [negative_data_rejection] if response.status_code == 413 else []
    if response.status_code == 422:
        try:
            field = response.json().get("error", {}).get("field")
        except ValueError:
            field = None
        # A fair queue's weights are a map keyed by tenant: the range of each (1 to 1000) is
        # in the field's description, and the server names the tenant's entry.
        weight = case.path == "/v1/limits/{name}" and str(field).startswith("fair.weights")
        if (
            weight
            or field in PARSED_FIELDS
            or field in STATEFUL_FIELDS.get((case.method, case.path), ())
        ):
            excluded.append(positive_data_acceptance)
        elif _sets_by_query(case) and "given twice" in response.text:
            # The search language `q` sets filter fields too; a field given both ways with
            # different values is refused, which only parsing `q` can tell.
            excluded.append(positive_data_acceptance)
        # --- stream wf ---
        elif isinstance(field, str) and case.path.startswith("/v1/workflows") \
                and WORKFLOW_GRAPH_FIELD.match(field):
            excluded.append(positive_data_acceptance)
    case.validate_response(response, excluded_checks=excluded)


def test_server_is_alive_after_fuzzing(server: Server) -> None:
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
        assert response.status == 200
