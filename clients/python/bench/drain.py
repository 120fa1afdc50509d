"""Drains N no-op jobs from `stoker serve` with the Python client and prints one JSON line:
{"system", "client", "worker", "jobs", "concurrency", "seconds", "jobs_per_second"}, the same
shape as the TypeScript client's bench/stoker-drain.mjs.

Usage: python3 drain.py <server-url> <token> <jobs> <concurrency> <async|threads>
"""

import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from stoker_client import AsyncClient, AsyncWorker, Client, Worker  # noqa: E402

url, token = sys.argv[1], sys.argv[2]
total = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 50
mode = sys.argv[5] if len(sys.argv) > 5 else "async"
queue = f"bench-py-{mode}-{os.getpid()}"
client = Client(url, token, auto_idempotency_key=False)

# Enqueue first, as the other drains do: the drain alone is timed.
for done in range(0, total, 10_000):
    client.enqueue_bulk([("noop", None, {"queue": queue})] * min(10_000, total - done))

finished = 0
all_done = threading.Event()

if mode == "async":
    worker = AsyncWorker(AsyncClient.wrap(client), queues=[queue], concurrency=concurrency, poll_wait_seconds=1)

    @worker.handler("noop")
    async def noop(args, job):
        global finished
        finished += 1
        if finished == total:
            worker.stop()

    started = time.perf_counter()
    asyncio.run(worker.run(handle_signals=False))
else:
    worker = Worker(client, queues=[queue], concurrency=concurrency, poll_wait_seconds=1)
    lock = threading.Lock()

    @worker.handler("noop")
    def noop(args, job):
        global finished
        with lock:
            finished += 1
            if finished == total:
                all_done.set()

    threading.Thread(target=lambda: (all_done.wait(), worker.stop()), daemon=True).start()
    started = time.perf_counter()
    worker.run(handle_signals=False)
# run() returns once every report is sent: the drain is over when the last is applied.
seconds = time.perf_counter() - started
print(json.dumps({"system": "stoker", "client": "python", "worker": mode, "jobs": total,
                  "concurrency": concurrency, "seconds": round(seconds, 3),
                  "jobs_per_second": round(total / seconds)}))
