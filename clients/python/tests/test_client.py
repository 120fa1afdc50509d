"""The Python client against a real `stoker serve`."""

from __future__ import annotations

import asyncio
import threading
import unittest
import uuid

from stoker_client import AsyncClient, Client, DiscardJob, StokerError, Worker

from server import Server, stores


def queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ClientTests(unittest.TestCase):
    store = "sqlite"

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.store)
        cls.client = Client(cls.server.url, cls.server.token)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_enqueue_options_and_errors(self):
        q = queue("opts")
        job = self.client.enqueue(
            "resize", {"w": 1}, queue=q, priority="HIGH", max_attempts=3, tags=["a"],
            correlation_id="c-1", backoff={"base_seconds": 2}, delay_seconds=600,
        )
        view = self.client.get(job["id"])
        self.assertEqual(view["priority"], 10)
        self.assertEqual(view["metadata"]["tags"], ["a"])
        self.assertEqual(view["backoff"]["base_seconds"], 2)
        with self.assertRaises(StokerError) as caught:
            self.client.enqueue("x", queue="no spaces")
        self.assertEqual((caught.exception.status, caught.exception.code, caught.exception.field), (422, "invalid_field", "queue"))
        bulk = self.client.enqueue_bulk([("a", {}, {"queue": q}), ("b", None)])
        self.assertEqual(bulk["inserted"], 2)
        self.assertEqual(self.client.cancel(bulk["jobs"][0]["id"])["state"], "cancelled")
        self.assertEqual(self.client.retry(bulk["jobs"][0]["id"])["state"], "available")
        self.assertEqual(len(self.client.list(queues=[q])["jobs"]), 2)

    def test_worker_runs_jobs_with_batched_acks(self):
        q = queue("work")
        worker = Worker(self.client, queues=[q], concurrency=4, poll_wait_seconds=1)

        @worker.handler("add")
        def add(args, job):
            return {"sum": args["a"] + args["b"]}

        @worker.handler("bad")
        def bad(args, job):
            raise DiscardJob("never")

        ids = [self.client.enqueue("add", {"a": n, "b": 1}, queue=q)["id"] for n in range(20)]
        bad_id = self.client.enqueue("bad", {}, queue=q)["id"]
        thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
        thread.start()
        try:
            done = self.client.wait_for(ids[-1])
            self.assertEqual(done["result"], {"sum": 20})
            self.assertEqual(self.client.wait_for(bad_id)["state"], "discarded")
        finally:
            worker.stop()
            thread.join(30)
        self.assertFalse(thread.is_alive())
        for job_id in ids:
            self.assertEqual(self.client.get(job_id)["state"], "completed")

    def test_async_client(self):
        async def scenario():
            client = AsyncClient(self.server.url, self.server.token)
            job = await client.enqueue("async-kind", {"n": 1}, queue=queue("async"))
            view = await client.get(job["id"])
            return view["kind"]

        self.assertEqual(asyncio.run(scenario()), "async-kind")


if "postgres" in stores():

    class PostgresClientTests(ClientTests):
        store = "postgres"


if __name__ == "__main__":
    unittest.main()
