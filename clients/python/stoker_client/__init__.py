"""The Python client of Stoker: enqueue and manage jobs, and run them with a pull worker on the
fast protocol (batched, fenced reports with reserve-with-ack). Standard library only.

    from stoker_client import Client, Worker

    client = Client("http://127.0.0.1:8080", token="...")
    client.enqueue("send-email", {"to": "ada@example.com"}, queue="mail", priority="HIGH")

    worker = Worker(client, queues=["mail"], concurrency=8)

    @worker.handler("send-email")
    def send_email(args, job):
        return {"message_id": deliver(args["to"])}

    worker.run()  # until SIGINT/SIGTERM or worker.stop()

`AsyncClient` is the same client for asyncio code, and `AsyncWorker` runs `async def`
handlers as tasks on one event loop:

    worker = AsyncWorker(AsyncClient(url, token), queues=["mail"], concurrency=100)

    @worker.handler("send-email")
    async def send_email(args, job):
        await job.log(f"sending to {args['to']}")
        return {"message_id": await deliver(args["to"])}

    asyncio.run(worker.run())
"""

from ._client import AsyncClient, Client, StokerError, LeaseLostError
from ._worker import AsyncJob, AsyncWorker, DiscardJob, Job, RetryJob, SnoozeJob, Worker

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "AsyncWorker",
    "Client",
    "DiscardJob",
    "Job",
    "LeaseLostError",
    "RetryJob",
    "SnoozeJob",
    "StokerError",
    "Worker",
]
