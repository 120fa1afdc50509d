import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { Client, LeaseLostError, StokerError, defineJob } from "../src/index.js";
import { eventually, startServer, stores, uniqueQueue, type TestServer } from "./support.js";

const resize = defineJob<{ image: string; width: number }, { bytes: number }>("resize", { priority: "HIGH" });

for (const store of stores()) {
  describe(`client on ${store}`, () => {
    let server: TestServer;
    let client: Client;
    before(async () => {
      server = await startServer(store);
      client = new Client({ url: server.url, token: server.token });
    });
    after(() => server.stop());

    test("[S1] enqueue sends every option and get reads them back", async () => {
      const queue = uniqueQueue("opts");
      const runAt = new Date(Date.now() + 3_600_000);
      const enqueued = await client.enqueue(resize, { image: "cat.png", width: 100 }, {
        queue,
        runAt,
        maxAttempts: 3,
        idempotencyKey: "resize-cat",
        tenant: "acme",
        correlationId: "req-1",
        source: "ts-test",
        tags: ["images", "cats"],
        timeoutSeconds: 60,
        backoff: { baseSeconds: 2, factor: 3, maxSeconds: 100, jitter: 0.1 },
      });
      assert.equal(enqueued.duplicate, false);
      assert.equal(enqueued.kind, "resize");
      assert.equal(enqueued.state, "available");
      const job = await client.get(enqueued.id, resize);
      assert.equal(job.args.image, "cat.png");
      assert.equal(job.queue, queue);
      assert.equal(job.priority, 10);
      assert.equal(job.max_attempts, 3);
      assert.equal(job.tenant, "acme");
      assert.equal(job.idempotency_key, "resize-cat");
      assert.deepEqual(job.metadata.tags, ["images", "cats"]);
      assert.equal(job.metadata.correlation_id, "req-1");
      assert.equal(job.timeout_seconds, 60);
      assert.equal(job.backoff?.base_seconds, 2);
      assert.equal(new Date(job.run_at).getTime(), runAt.getTime());

      // The same key again: the same job, nothing written.
      const again = await client.enqueue(resize, { image: "dog.png", width: 1 }, { queue, idempotencyKey: "resize-cat", tenant: "acme" });
      assert.equal(again.duplicate, true);
      assert.equal(again.id, enqueued.id);

      // A delay and a numeric priority.
      const delayed = await client.enqueue("plain", { n: 1 }, { queue, delaySeconds: 600, priority: -3 });
      assert.equal((await client.get(delayed.id)).priority, -3);
    });

    test("[S2] bulk enqueue, list with filters and paging, cancel and retry", async () => {
      const queue = uniqueQueue("bulk");
      const answer = await client.enqueueBulk([
        { job: resize, args: { image: "a", width: 1 }, options: { queue } },
        { job: resize, args: { image: "b", width: 2 }, options: { queue } },
        { kind: "other", args: { x: 1 }, options: { queue } },
      ]);
      assert.equal(answer.inserted, 3);
      assert.equal(answer.jobs.length, 3);

      const first = await client.list({ queues: [queue], limit: 2 });
      assert.equal(first.jobs.length, 2);
      assert.ok(first.nextCursor);
      const second = await client.list({ queues: [queue], limit: 2, cursor: first.nextCursor! });
      assert.equal(second.jobs.length, 1);
      assert.equal(second.nextCursor, undefined);
      const onlyOther = await client.list({ queues: [queue], kinds: ["other"] });
      assert.deepEqual(onlyOther.jobs.map((job) => job.kind), ["other"]);

      const cancelled = await client.cancel(answer.jobs[0]!.id);
      assert.equal(cancelled.state, "cancelled");
      assert.deepEqual((await client.list({ queues: [queue], states: ["cancelled"] })).jobs.map((job) => job.id), [answer.jobs[0]!.id]);
      const retried = await client.retry(answer.jobs[0]!.id);
      assert.equal(retried.state, "available");
    });

    test("[S3] bad input is a typed error with the server's code, message and field", async () => {
      await assert.rejects(client.enqueue("x", {}, { queue: "no spaces allowed" }), (error: unknown) => {
        assert.ok(error instanceof StokerError);
        assert.equal(error.status, 422);
        assert.equal(error.code, "invalid_field");
        assert.equal(error.field, "queue");
        assert.ok(error.message.length > 0);
        return true;
      });
      await assert.rejects(client.enqueueBulk([{ kind: "ok" }, { kind: "bad", options: { maxAttempts: 0 } }]), (error: unknown) => {
        assert.ok(error instanceof StokerError);
        assert.equal(error.field, "jobs[1].max_attempts");
        return true;
      });
      await assert.rejects(client.get(987_654_321), (error: unknown) => error instanceof StokerError && error.code === "not_found" && error.status === 404);
      const anonymous = new Client({ url: server.url, token: "wrong" });
      await assert.rejects(anonymous.enqueue("x"), (error: unknown) => error instanceof StokerError && error.code === "unauthorized");
    });

    test("[S4] a stale fence in a batch fails only its entry", async () => {
      const queue = uniqueQueue("fence");
      await client.enqueueBulk([{ kind: "k", options: { queue } }, { kind: "k", options: { queue } }]);
      const { jobs } = await client.reserve({ worker: "ts-fence", queues: [queue], limit: 2 });
      assert.equal(jobs.length, 2);
      const answer = await client.ack({
        acks: [
          { op: "complete", id: jobs[0]!.id, fence: jobs[0]!.fence, result: { ok: true } },
          { op: "complete", id: jobs[1]!.id, fence: jobs[1]!.fence + 100 },
        ],
      });
      assert.equal(answer.results[0]!.ok, true);
      assert.equal(answer.results[0]!.state, "completed");
      assert.equal(answer.results[1]!.ok, false);
      assert.equal(answer.results[1]!.error?.code, "lease_lost");
      assert.equal((await client.get(jobs[1]!.id)).state, "running");
      // The one-job call gives a typed LeaseLostError.
      await assert.rejects(client.heartbeat(jobs[0]!.id, jobs[0]!.fence), (error: unknown) => error instanceof LeaseLostError && error.status === 409);
    });

    test("[S13] a recurring schedule fires jobs until it is deleted; a bad expression is refused", async () => {
      const queue = uniqueQueue("cron");
      const name = `tick-${queue}`;
      await assert.rejects(client.createCron({ name, expr: "61 * * * *", kind: "tick" }), (error: unknown) => {
        assert.ok(error instanceof StokerError);
        assert.equal(error.field, "expr");
        return true;
      });
      await assert.rejects(client.getCron(name), (error: unknown) => error instanceof StokerError && error.status === 404);
      const created = await client.createCron({ name, expr: "* * * * * *", kind: "tick", queue, args: { n: 1 }, overlap: "allow" });
      assert.equal(created.upcoming.length, 5);
      assert.ok((await client.listCron()).some((schedule) => schedule.name === name));
      const updated = await client.updateCron(name, { args: { n: 2 } });
      assert.deepEqual(updated.args, { n: 2 });
      assert.ok(updated.revision > created.revision);
      const fired = await eventually("a fired job", async () => (await client.list({ queues: [queue] })).jobs[0]);
      assert.equal(fired.kind, "tick");
      assert.equal(fired.metadata.cron?.name, name);
      assert.equal((await client.deleteCron(name)).name, name);
      await assert.rejects(client.getCron(name), (error: unknown) => error instanceof StokerError && error.code === "not_found");
    });

    test("[S5] transient failures are retried; an unreachable server is a typed error", async () => {
      let calls = 0;
      const flaky: typeof fetch = async (input, init) => {
        calls++;
        if (calls <= 2) {
          return new Response(JSON.stringify({ error: { code: "unavailable", message: "try later" } }), {
            status: 503,
            headers: { "content-type": "application/json", "retry-after": "0" },
          });
        }
        return fetch(input, init);
      };
      const retrying = new Client({ url: server.url, token: server.token, fetch: flaky, retryDelayMs: 1 });
      const enqueued = await retrying.enqueue("flaky", {}, { queue: uniqueQueue("flaky") });
      assert.equal(calls, 3);
      assert.equal(enqueued.duplicate, false);

      const down = new Client({ url: "http://127.0.0.1:9", retries: 1, retryDelayMs: 1 });
      await assert.rejects(down.get(1), (error: unknown) => error instanceof StokerError && error.status === 0 && error.transient);
    });
  });
}
