"""A Python worker for the TypeScript producer test: runs `py-upper` jobs from $QUEUE until
$JOBS of them are done, then exits."""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from stoker_client import Client, Worker  # noqa: E402

client = Client(os.environ["STOKER_SERVER"], os.environ["STOKER_API_TOKEN"])
worker = Worker(client, queues=[os.environ["QUEUE"]], concurrency=4, name="python-worker", poll_wait_seconds=1)
target = int(os.environ["JOBS"])
done = threading.Event()


@worker.handler("py-upper")
def upper(args, job):
    if worker.processed + 1 >= target:
        done.set()
    return {"text": args["text"].upper(), "by": "python"}


threading.Thread(target=lambda: (done.wait(), worker.stop()), daemon=True).start()
worker.run(handle_signals=False)
print("python worker done", flush=True)
