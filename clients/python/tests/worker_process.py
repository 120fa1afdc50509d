"""A worker process for the kill and SIGTERM scenarios: runs `hang` jobs from $QUEUE with the
sync `Worker` or the `AsyncWorker` ($MODE), printing `started ID` when one starts and
`stopped` when the worker has shut down."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from stoker_client import AsyncClient, AsyncWorker, Client, Worker  # noqa: E402

client = Client(os.environ["STOKER_SERVER"], os.environ["STOKER_API_TOKEN"])
options = dict(
    queues=[os.environ["QUEUE"]],
    name=os.environ["WORKER_NAME"],
    lease_seconds=float(os.environ.get("LEASE_SECONDS", "30")),
    shutdown_grace=float(os.environ.get("GRACE_SECONDS", "10")),
    poll_wait_seconds=1,
)

if os.environ.get("MODE") == "async":
    worker = AsyncWorker(AsyncClient.wrap(client), **options)

    @worker.handler("hang")
    async def hang(args, job):
        print(f"started {job.id}", flush=True)
        await job.cancelled.wait()

    asyncio.run(worker.run())
else:
    worker = Worker(client, **options)

    @worker.handler("hang")
    def hang(args, job):
        print(f"started {job.id}", flush=True)
        job.cancelled.wait()

    worker.run()
print("stopped", flush=True)
