"""The Python client against a real `stoker serve`: every scenario of `clients/SCENARIOS.md`,
tagged `sNN` in the test's name; the worker scenarios run with both `Worker` and
`AsyncWorker`."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import uuid

from stoker_client import (
    AsyncClient,
    AsyncWorker,
    Client,
    DiscardJob,
    LeaseLostError,
    RetryJob,
    SnoozeJob,
    StokerError,
    Worker,
)

from server import Server, stores

HERE = pathlib.Path(__file__).resolve().parent


def queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(what: str, probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Running:
    """A worker of either kind running in a background thread until `stop()`."""

    def __init__(self, worker: Worker | AsyncWorker):
        self.worker = worker
        if isinstance(worker, AsyncWorker):
            target = lambda: asyncio.run(worker.run(handle_signals=False))  # noqa: E731
        else:
            target = lambda: worker.run(handle_signals=False)  # noqa: E731
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the worker did not stop"


class ClientTests(unittest.TestCase):
    store = "sqlite"

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.store)
        cls.client = Client(cls.server.url, cls.server.token)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    # --- the client -------------------------------------------------------------------------

    def test_s01_enqueue_every_option_reads_back(self):
        q = queue("opts")
        job = self.client.enqueue(
            "resize", {"w": 1}, queue=q, priority="HIGH", max_attempts=3, idempotency_key="k-" + q,
            tenant="acme", tags=["a"], correlation_id="c-1", source="py", timeout_seconds=60,
            backoff={"base_seconds": 2, "factor": 3}, delay_seconds=600,
        )
        view = self.client.get(job["id"])
        self.assertEqual((view["queue"], view["priority"], view["max_attempts"]), (q, 10, 3))
        self.assertEqual((view["idempotency_key"], view["tenant"], view["timeout_seconds"]), ("k-" + q, "acme", 60))
        self.assertEqual(view["metadata"]["tags"], ["a"])
        self.assertEqual(view["metadata"]["correlation_id"], "c-1")
        self.assertEqual(view["metadata"]["source"], "py")
        self.assertEqual((view["backoff"]["base_seconds"], view["backoff"]["factor"]), (2, 3))
        self.assertGreater(view["run_at"], view["created_at"])
        again = self.client.enqueue("resize", {"w": 1}, queue=q, tenant="acme", idempotency_key="k-" + q)
        self.assertEqual((again["id"], again["duplicate"]), (job["id"], True))

    def test_s02_bulk_list_paging_cancel_retry(self):
        q = queue("bulk")
        bulk = self.client.enqueue_bulk([("a", {"n": n}, {"queue": q}) for n in range(5)] + [("b", None, {"queue": q})])
        self.assertEqual(bulk["inserted"], 6)
        page = self.client.list(queues=[q], kinds=["a"], limit=3)
        self.assertEqual(len(page["jobs"]), 3)
        rest = self.client.list(queues=[q], kinds=["a"], limit=3, cursor=page["next_cursor"])
        self.assertEqual(len(rest["jobs"]), 2)
        self.assertEqual(len({j["id"] for j in page["jobs"] + rest["jobs"]}), 5)
        first = bulk["jobs"][0]["id"]
        self.assertEqual(self.client.cancel(first)["state"], "cancelled")
        self.assertEqual([j["id"] for j in self.client.list(queues=[q], states=["cancelled"])["jobs"]], [first])
        self.assertEqual(self.client.retry(first)["state"], "available")

    def test_s03_bad_input_is_a_typed_error_and_writes_nothing(self):
        q = queue("bad")
        with self.assertRaises(StokerError) as caught:
            self.client.enqueue("x", queue="no spaces")
        error = caught.exception
        self.assertEqual((error.status, error.code, error.field), (422, "invalid_field", "queue"))
        self.assertTrue(error.message)
        with self.assertRaises(StokerError) as caught:
            self.client.enqueue_bulk([("ok", {}, {"queue": q}), ("bad", {}, {"queue": q, "max_attempts": 0})])
        self.assertEqual(caught.exception.field, "jobs[1].max_attempts")
        self.assertEqual(self.client.list(queues=[q])["jobs"], [])
        with self.assertRaises(StokerError) as caught:
            self.client.get(987_654_321)
        self.assertEqual((caught.exception.status, caught.exception.code), (404, "not_found"))
        with self.assertRaises(StokerError) as caught:
            Client(self.server.url, "wrong").enqueue("x")
        self.assertEqual(caught.exception.code, "unauthorized")
        with self.assertRaises(TypeError):
            self.client.enqueue("x", colour="red")

    def test_s04_stale_fence_fails_only_its_entry(self):
        q = queue("fence")
        self.client.enqueue_bulk([("k", {}, {"queue": q}), ("k", {}, {"queue": q})])
        jobs = self.client.reserve({"worker": "py-fence", "queues": [q], "limit": 2})["jobs"]
        self.assertEqual(len(jobs), 2)
        answer = self.client.ack([
            {"op": "complete", "id": jobs[0]["id"], "fence": jobs[0]["fence"], "result": {"ok": True}},
            {"op": "complete", "id": jobs[1]["id"], "fence": jobs[1]["fence"] + 100},
        ])
        self.assertEqual((answer["results"][0]["ok"], answer["results"][0]["state"]), (True, "completed"))
        self.assertEqual((answer["results"][1]["ok"], answer["results"][1]["error"]["code"]), (False, "lease_lost"))
        self.assertEqual(self.client.get(jobs[1]["id"])["state"], "running")
        with self.assertRaises(LeaseLostError):
            self.client.progress(jobs[0]["id"], jobs[0]["fence"], 0.5)

    def test_s05_transient_errors_retried_unreachable_is_typed(self):
        import http.server

        calls = []
        server_url = self.server.url

        class Flaky(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                calls.append(self.path)
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(calls) <= 2:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error":{"code":"unavailable","message":"try later"}}')
                    return
                import urllib.request

                forward = urllib.request.Request(server_url + self.path, data=body, method="POST", headers={
                    "Content-Type": "application/json", "Authorization": self.headers["Authorization"]})
                with urllib.request.urlopen(forward) as answer:
                    data = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            retrying = Client(f"http://127.0.0.1:{proxy.server_address[1]}", self.server.token, retry_delay=0.001)
            enqueued = retrying.enqueue("flaky", {}, queue=queue("flaky"))
            self.assertEqual(len(calls), 3)
            self.assertFalse(enqueued["duplicate"])
        finally:
            proxy.shutdown()
            proxy.server_close()
        down = Client("http://127.0.0.1:9", "t", retries=1, retry_delay=0.001)
        with self.assertRaises(StokerError) as caught:
            down.get(1)
        self.assertEqual(caught.exception.status, 0)
        self.assertTrue(caught.exception.transient)

    def test_s13_cron_schedule_fires_until_deleted(self):
        q = queue("cron")
        name = f"tick-{q}"
        with self.assertRaises(StokerError) as caught:
            self.client.create_cron(name, "61 * * * *", "tick")
        self.assertEqual(caught.exception.field, "expr")
        created = self.client.create_cron(name, "* * * * * *", "tick", queue=q, args={"n": 1})
        self.assertEqual(len(created["upcoming"]), 5)
        self.assertIn(name, [schedule["name"] for schedule in self.client.list_cron()])
        updated = self.client.update_cron(name, args={"n": 2})
        self.assertEqual(updated["args"], {"n": 2})
        self.assertEqual(self.client.get_cron(name)["revision"], updated["revision"])
        fired = eventually("a fired job", lambda: self.client.list(queues=[q])["jobs"])[0]
        self.assertEqual((fired["kind"], fired["metadata"]["cron"]["name"]), ("tick", name))
        self.assertEqual(self.client.delete_cron(name)["name"], name)
        with self.assertRaises(StokerError) as caught:
            self.client.get_cron(name)
        self.assertEqual(caught.exception.code, "not_found")

    def test_async_client(self):
        async def scenario():
            client = AsyncClient(self.server.url, self.server.token)
            job = await client.enqueue("async-kind", {"n": 1}, queue=queue("async"))
            view = await client.get(job["id"])
            return view["kind"]

        self.assertEqual(asyncio.run(scenario()), "async-kind")

    # --- workers: each scenario with the threaded and the asyncio worker ---------------------

    def make_worker(self, asynchronous: bool, q: str, **options) -> Worker | AsyncWorker:
        options.setdefault("poll_wait_seconds", 1)
        if asynchronous:
            return AsyncWorker(AsyncClient.wrap(self.client), queues=[q], **options)
        return Worker(self.client, queues=[q], **options)

    def both(self, scenario):
        for asynchronous in (False, True):
            with self.subTest(worker="AsyncWorker" if asynchronous else "Worker"):
                scenario(asynchronous)

    def test_s06_drain_with_batched_acks_and_results(self):
        def scenario(asynchronous):
            q = queue("work")
            worker = self.make_worker(asynchronous, q, concurrency=8)
            if asynchronous:
                @worker.handler("add")
                async def add(args, job):
                    await asyncio.sleep(0)
                    return {"sum": args["a"] + args["b"]}
            else:
                @worker.handler("add")
                def add(args, job):
                    return {"sum": args["a"] + args["b"]}
            bulk = self.client.enqueue_bulk([("add", {"a": n, "b": 1}, {"queue": q}) for n in range(200)])
            running = Running(worker)
            try:
                for n, entry in enumerate(bulk["jobs"]):
                    done = self.client.wait_for(entry["id"])
                    self.assertEqual((done["state"], done["result"]), ("completed", {"sum": n + 1}))
            finally:
                running.stop()
            self.assertEqual(worker.processed, 200)

        self.both(scenario)

    def test_s07_retry_backoff_discard_and_snooze(self):
        def scenario(asynchronous):
            q = queue("fail")
            worker = self.make_worker(asynchronous, q)
            attempts = []

            def flaky(args, job):
                attempts.append(job.attempt)
                raise RetryJob(f"attempt {job.attempt} failed", 0)

            def dead(args, job):
                raise DiscardJob("no retry can fix this")

            def later(args, job):
                raise SnoozeJob(3600)

            for kind, function in (("flaky", flaky), ("dead", dead), ("later", later)):
                if asynchronous:
                    async def handler(args, job, function=function):
                        return function(args, job)
                    worker.handler(kind)(handler)
                else:
                    worker.handler(kind)(function)
            flaky_id = self.client.enqueue("flaky", {}, queue=q, max_attempts=2)["id"]
            dead_id = self.client.enqueue("dead", {}, queue=q)["id"]
            later_id = self.client.enqueue("later", {}, queue=q)["id"]
            running = Running(worker)
            try:
                done = self.client.wait_for(flaky_id)
                self.assertEqual((done["state"], len(done["errors"])), ("discarded", 2))
                self.assertIn("attempt 2 failed", done["errors"][1]["message"])
                dead_job = self.client.wait_for(dead_id)
                self.assertEqual((dead_job["state"], dead_job["attempt"]), ("discarded", 1))
                snoozed = eventually("the snooze", lambda: (lambda j: j if j["state"] == "available" and j.get("attempted_at") else None)(self.client.get(later_id)))
                self.assertEqual(snoozed["attempt"], 0)
            finally:
                running.stop()

        self.both(scenario)

    def test_s08_progress_logs_heartbeats_and_cancel(self):
        def scenario(asynchronous):
            q = queue("long")
            worker = self.make_worker(asynchronous, q, lease_seconds=1)
            if asynchronous:
                @worker.handler("slow")
                async def slow(args, job):
                    await job.progress(0.5, "halfway", {"rows": 5})
                    await job.log("read 5 rows", "writing")
                    await asyncio.sleep(3)  # three leases: only heartbeats keep the job
                    return {"done": True}

                @worker.handler("cancellable")
                async def cancellable(args, job):
                    await job.cancelled.wait()
                    raise RuntimeError("stopped on request")
            else:
                @worker.handler("slow")
                def slow(args, job):
                    job.progress(0.5, "halfway", {"rows": 5})
                    job.log("read 5 rows", "writing")
                    time.sleep(3)
                    return {"done": True}

                @worker.handler("cancellable")
                def cancellable(args, job):
                    job.cancelled.wait()
                    raise RuntimeError("stopped on request")
            running = Running(worker)
            try:
                slow_id = self.client.enqueue("slow", {}, queue=q)["id"]
                shown = eventually("progress", lambda: (lambda j: j if j.get("progress") else None)(self.client.get(slow_id)))
                self.assertEqual((shown["progress"]["fraction"], shown["progress"]["message"]), (0.5, "halfway"))
                lines = eventually("logs", lambda: self.client.logs(slow_id))
                self.assertEqual([(line["attempt"], line["line"]) for line in lines], [(1, "read 5 rows"), (1, "writing")])
                done = self.client.wait_for(slow_id)
                self.assertEqual((done["state"], done["attempt"]), ("completed", 1), "the lease never lapsed")
                self.assertEqual([line["line"] for line in done["logs"]], ["read 5 rows", "writing"])
                cancel_id = self.client.enqueue("cancellable", {}, queue=q)["id"]
                eventually("running", lambda: self.client.get(cancel_id)["state"] == "running")
                self.client.cancel(cancel_id)
                self.assertEqual(self.client.wait_for(cancel_id)["state"], "cancelled")
            finally:
                running.stop()

        self.both(scenario)

    def test_s14_live_events_follow_and_snapshots(self):
        q = queue("events")
        seen: list[tuple[int, str]] = []
        stream = self.client.events(queue=q, snapshots=False, timeout_seconds=20)
        opened = threading.Event()

        def read():
            opened.set()
            for event in stream:
                if event["type"] == "job":
                    seen.append((event["job"]["id"], event["job"]["state"]))
                    if event["job"]["state"] == "completed":
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        opened.wait(5)
        time.sleep(0.5)  # the stream opens before the job exists, so every change is seen
        worker = self.make_worker(True, q)

        @worker.handler("add")
        async def add(args, job):
            return {"sum": args["a"] + args["b"]}

        running = Running(worker)
        try:
            job_id = self.client.enqueue("add", {"a": 2, "b": 3}, queue=q)["id"]
            done = self.client.follow(job_id)
            self.assertEqual((done["state"], done["result"]), ("completed", {"sum": 5}))
            reader.join(30)
            self.assertEqual([state for job, state in seen if job == job_id], ["available", "running", "completed"])
        finally:
            running.stop()
        snapshot = next(event["snapshot"] for event in self.client.events(job_events=False, timeout_seconds=3) if event["type"] == "snapshot")
        self.assertGreaterEqual(snapshot["states"]["completed"], 1)
        self.assertIn(q, [entry["name"] for entry in snapshot["queues"]])
        with self.assertRaises(StokerError) as caught:
            next(self.client.events(queue="no spaces"))
        self.assertEqual((caught.exception.status, caught.exception.field), (422, "queue"))

    def test_s09_stop_hands_jobs_back(self):
        def scenario(asynchronous):
            q = queue("stop")
            worker = self.make_worker(asynchronous, q, shutdown_grace=0.3)
            started = threading.Event()
            if asynchronous:
                @worker.handler("hang")
                async def hang(args, job):
                    started.set()
                    await asyncio.sleep(3600)
            else:
                @worker.handler("hang")
                def hang(args, job):
                    started.set()
                    job.cancelled.wait()
            job_id = self.client.enqueue("hang", {}, queue=q)["id"]
            running = Running(worker)
            self.assertTrue(started.wait(30))
            running.stop()
            back = self.client.get(job_id)
            self.assertEqual((back["state"], back["attempt"]), ("available", 0))

        self.both(scenario)

    def test_s15_prefetched_jobs_wait_for_a_slot_and_go_back_at_stop(self):
        def scenario(asynchronous):
            q = queue("prefetch")
            worker = self.make_worker(asynchronous, q, concurrency=2, prefetch=3, shutdown_grace=30)
            lock = threading.Lock()
            counts = {"active": 0, "most": 0, "started": 0}
            gate = threading.Event()

            def enter():
                with lock:
                    counts["active"] += 1
                    counts["started"] += 1
                    counts["most"] = max(counts["most"], counts["active"])

            def leave():
                with lock:
                    counts["active"] -= 1

            if asynchronous:
                @worker.handler("gated")
                async def gated(args, job):
                    enter()
                    while not gate.is_set():
                        await asyncio.sleep(0.01)
                    leave()
            else:
                @worker.handler("gated")
                def gated(args, job):
                    enter()
                    gate.wait(30)
                    leave()
            self.client.enqueue_bulk([("gated", {}, {"queue": q})] * 8)

            def count(state):
                return len(self.client.list(queues=[q], states=[state], limit=100)["jobs"])

            running = Running(worker)
            try:
                # Two run and three wait, all five reserved; three stay in the queue.
                eventually("five reserved", lambda: count("running") == 5)
                eventually("two started", lambda: counts["started"] == 2)
                worker.stop()
                # The waiting ones go back before the running ones finish.
                eventually("the waiting ones handed back", lambda: count("available") == 6)
                self.assertEqual(counts["started"], 2)
            finally:
                gate.set()
                running.stop()
            self.assertEqual(counts["most"], 2)
            self.assertEqual(count("completed"), 2)
            back = self.client.list(queues=[q], states=["available"], limit=100)["jobs"]
            self.assertEqual([job["attempt"] for job in back], [0] * 6)

        self.both(scenario)

    def worker_process(self, mode: str, q: str, name: str, **env) -> subprocess.Popen:
        environment = {**os.environ, "STOKER_SERVER": self.server.url, "STOKER_API_TOKEN": self.server.token,
                       "QUEUE": q, "WORKER_NAME": name, "MODE": mode, **env}
        return subprocess.Popen([sys.executable, str(HERE / "worker_process.py")], env=environment,
                                stdout=subprocess.PIPE, text=True)

    def test_s10_killed_worker_job_runs_elsewhere(self):
        def scenario(asynchronous):
            q = queue("kill")
            job_id = self.client.enqueue("hang", {}, queue=q)["id"]
            child = self.worker_process("async" if asynchronous else "sync", q, "doomed", LEASE_SECONDS="1")
            self.assertEqual(child.stdout.readline().strip(), f"started {job_id}")
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            child.stdout.close()
            self.assertEqual(self.client.get(job_id)["worker"], "pull:doomed")
            rescuer = self.make_worker(False, q, name="rescuer")
            rescuer.handler("hang")(lambda args, job: "finished elsewhere")
            running = Running(rescuer)
            try:
                done = self.client.wait_for(job_id)
                self.assertEqual((done["state"], done["result"], done["attempt"], done["worker"]),
                                 ("completed", "finished elsewhere", 2, "pull:rescuer"))
            finally:
                running.stop()

        self.both(scenario)

    def test_s11_sigterm_stops_gracefully_handing_back(self):
        def scenario(asynchronous):
            q = queue("sigterm")
            job_id = self.client.enqueue("hang", {}, queue=q)["id"]
            child = self.worker_process("async" if asynchronous else "sync", q, "polite", GRACE_SECONDS="0.3")
            self.assertEqual(child.stdout.readline().strip(), f"started {job_id}")
            child.send_signal(signal.SIGTERM)
            self.assertEqual(child.wait(30), 0)
            self.assertEqual(child.stdout.read().strip(), "stopped")
            child.stdout.close()
            back = self.client.get(job_id)
            self.assertEqual((back["state"], back["attempt"]), ("available", 0))

        self.both(scenario)


    # --- stream workflows ---
    def test_batch_lookup_and_add_from_a_handler(self):
        def scenario(asynchronous):
            q = queue("batch")
            created = self.client.request("POST", "/v1/batches", {
                "name": "fan",
                "callback": {"kind": "fan-done", "queue": q},
                "jobs": [{"kind": "fan-out", "queue": q}],
                "open": True,
            }, retry=False)
            batch_id = created["id"]
            seen = []
            worker = self.make_worker(asynchronous, q)

            def close():
                self.client.request("POST", f"/v1/batches/{batch_id}/close", {}, retry=False)

            if asynchronous:
                @worker.handler("fan-out")
                async def fan_out(args, job):
                    seen.append((await job.batch())["total"])
                    await job.add_to_batch(("fan-leaf", {}, {"queue": q}), ("fan-leaf", {}, {"queue": q}))
                    await asyncio.to_thread(close)
                    try:
                        await job.add_to_batch(("fan-leaf", {}, {"queue": q}))
                    except StokerError as err:
                        seen.append((err.status, err.code))
                    return "fanned"

                @worker.handler("fan-leaf")
                async def leaf(args, job):
                    return (await job.batch())["id"]

                @worker.handler("fan-done")
                async def done(args, job):
                    seen.append(await job.batch())
                    return args["batch"]
            else:
                @worker.handler("fan-out")
                def fan_out(args, job):
                    seen.append(job.batch()["total"])
                    job.add_to_batch(("fan-leaf", {}, {"queue": q}), ("fan-leaf", {}, {"queue": q}))
                    close()
                    try:
                        job.add_to_batch(("fan-leaf", {}, {"queue": q}))
                    except StokerError as err:
                        seen.append((err.status, err.code))
                    return "fanned"

                @worker.handler("fan-leaf")
                def leaf(args, job):
                    return job.batch()["id"]

                @worker.handler("fan-done")
                def done(args, job):
                    seen.append(job.batch())
                    return args["batch"]
            running = Running(worker)
            try:
                finished = self.client.wait_for(created["callback_id"])
                self.assertEqual(finished["state"], "completed")
                self.assertEqual(finished["result"], {"id": batch_id, "total": 3, "completed": 3, "discarded": 0, "cancelled": 0})
                self.assertEqual(seen, [1, (409, "conflict"), None])
            finally:
                running.stop()
            with self.assertRaises(TypeError):
                self.client.add_to_batch(1, 1, [("k", {}, {"tenant": "t"})])

        self.both(scenario)


class ScenarioListTests(unittest.TestCase):
    def test_every_shared_scenario_has_a_test(self):
        text = (HERE.parents[1] / "SCENARIOS.md").read_text()
        numbers = [int(tag) for tag in re.findall(r"^\| S(\d+) \|", text, re.M)]
        self.assertGreaterEqual(len(numbers), 14)
        names = [name for name in dir(ClientTests) if name.startswith("test_s")]
        # S12 (a TypeScript producer feeding a Python worker) is one test in the TypeScript
        # suite, running ts_producer_worker.py from here.
        missing = [n for n in numbers if n != 12 and not any(name.startswith(f"test_s{n:02d}_") for name in names)]
        self.assertEqual(missing, [], "scenarios without a Python test")


if "postgres" in stores():

    class PostgresClientTests(ClientTests):
        store = "postgres"


if __name__ == "__main__":
    unittest.main()
