import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";

import { Client, DiscardJob, RetryJob, SnoozeJob, StokerError, Worker, defineJob, type JobContext, type Snapshot } from "../src/index.js";
import { eventually, startServer, stores, uniqueQueue, type TestServer } from "./support.js";

const add = defineJob<{ a: number; b: number }, { sum: number }>("add");

for (const store of stores()) {
  describe(`worker on ${store}`, () => {
    let server: TestServer;
    let client: Client;
    before(async () => {
      server = await startServer(store);
      client = new Client({ url: server.url, token: server.token });
    });
    after(() => server.stop());

    function worker(queue: string, options: Partial<ConstructorParameters<typeof Worker>[0]> = {}): Worker {
      return new Worker({ client, queues: [queue], handleSignals: false, pollWaitSeconds: 1, onError: () => {}, ...options });
    }

    test("[S14] live events: a queue's job changes, a job followed to its end, snapshots; a bad filter is typed", async () => {
      const queue = uniqueQueue("events");
      const seen: Array<[number, string]> = [];
      const controller = new AbortController();
      const opened = (async () => {
        for await (const event of client.events({ queue, snapshots: false }, controller.signal)) {
          if (event.type === "job") seen.push([event.job.id, event.job.state]);
        }
      })();
      // Let the stream open before the job exists, so every change is seen.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const w = worker(queue).register(add, async ({ a, b }) => ({ sum: a + b }));
      const running = w.run();
      const job = await client.enqueue(add, { a: 2, b: 3 }, { queue });
      const done = await client.follow(job.id, { job: add });
      assert.equal(done.state, "completed");
      assert.deepEqual(done.result, { sum: 5 });
      await eventually("the queue's events", async () => (seen.some(([id, state]) => id === job.id && state === "completed") ? true : undefined));
      assert.deepEqual(seen.filter(([id]) => id === job.id).map(([, state]) => state), ["available", "running", "completed"]);
      controller.abort();
      await opened;

      let snapshot: Snapshot | undefined;
      for await (const event of client.events({ jobEvents: false, timeoutSeconds: 3 })) {
        if (event.type === "snapshot") {
          snapshot = event.snapshot;
          break;
        }
      }
      assert.ok(snapshot && snapshot.states.completed >= 1, JSON.stringify(snapshot));
      assert.ok(snapshot.queues.some((entry) => entry.name === queue));

      await assert.rejects(
        (async () => {
          for await (const _ of client.events({ queue: "no spaces" })) break;
        })(),
        (error: unknown) => error instanceof StokerError && error.status === 422 && error.field === "queue",
      );
      await w.stop();
      await running;
    });

    test("[S6] runs many jobs through batched acks with results", async () => {
      const queue = uniqueQueue("sum");
      const w = worker(queue, { concurrency: 8 }).register(add, async ({ a, b }) => ({ sum: a + b }));
      const running = w.run();
      const entries = Array.from({ length: 200 }, (_, n) => ({ job: add, args: { a: n, b: 1 }, options: { queue } }));
      const { jobs } = await client.enqueueBulk(entries);
      const last = await client.waitFor(jobs[199]!.id, { job: add });
      await eventually("every job completed", async () => {
        const page = await client.list({ queues: [queue], states: ["completed"], limit: 1000 });
        return page.jobs.length === 200 ? true : undefined;
      });
      assert.equal(last.state, "completed");
      assert.deepEqual(last.result, { sum: 200 });
      assert.equal(last.worker, `pull:${w.name}`);
      await w.stop();
      await running;
      assert.equal(w.processedCount, 200);
    });

    test("[S7] fail retries with the job's backoff, then discards; snooze and discard", async () => {
      const queue = uniqueQueue("fail");
      let attempts = 0;
      const w = worker(queue)
        .register("flaky", async () => {
          attempts++;
          throw new RetryJob(`attempt ${attempts} failed`, 0);
        })
        .register("dead", async () => {
          throw new DiscardJob("no retry can fix this");
        })
        .register("later", async (_args, context) => {
          if (context.job.errors.length === 0 && context.job.attempt === 1 && !(context.job.args as { snoozed?: boolean }).snoozed) {
            throw new SnoozeJob(3600);
          }
          return "ran";
        });
      const running = w.run();
      const flaky = await client.enqueue("flaky", {}, { queue, maxAttempts: 2 });
      const dead = await client.enqueue("dead", {}, { queue });
      const later = await client.enqueue("later", {}, { queue });
      const flakyDone = await client.waitFor(flaky.id);
      assert.equal(flakyDone.state, "discarded");
      assert.equal(flakyDone.errors.length, 2);
      assert.match(flakyDone.errors[1]!.message, /attempt 2 failed/);
      const deadDone = await client.waitFor(dead.id);
      assert.equal(deadDone.state, "discarded");
      assert.equal(deadDone.attempt, 1);
      const snoozed = await eventually("the snooze", async () => {
        const job = await client.get(later.id);
        return job.state === "available" && job.attempted_at ? job : undefined;
      });
      assert.equal(snoozed.attempt, 0);
      assert.ok(new Date(snoozed.run_at).getTime() > Date.now() + 3_000_000);
      await w.stop();
      await running;
    });

    test("[S8] progress, logs, heartbeats keep a short lease, and a cancel aborts the signal", async () => {
      const queue = uniqueQueue("long");
      let progressed = false;
      const heartbeatsSeen: number[] = [];
      const w = worker(queue, { leaseSeconds: 1, heartbeatMs: 200 })
        .register("slow", async (_args, context: JobContext) => {
          await context.progress(0.5, "halfway", { rows: 5 });
          await context.log("read 5 rows", "writing");
          progressed = true;
          // Outlive the lease several times over: only heartbeats keep the job.
          for (let i = 0; i < 15; i++) {
            await new Promise((resolve) => setTimeout(resolve, 200));
            const job = await client.get(context.job.id);
            heartbeatsSeen.push(job.attempt);
          }
          return { done: true };
        })
        .register("cancellable", async (_args, context) => {
          await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve()));
          throw context.signal.reason;
        });
      const running = w.run();
      const slow = await client.enqueue("slow", {}, { queue });
      await eventually("progress", async () => (progressed ? true : undefined));
      const shown = await client.get(slow.id);
      assert.equal(shown.progress?.fraction, 0.5);
      assert.equal(shown.progress?.message, "halfway");
      const lines = await client.logs(slow.id);
      assert.deepEqual(lines.map((line) => [line.attempt, line.line]), [[1, "read 5 rows"], [1, "writing"]]);
      assert.deepEqual((await client.get(slow.id)).logs?.map((line) => line.line), ["read 5 rows", "writing"]);
      const done = await client.waitFor(slow.id);
      assert.equal(done.state, "completed");
      assert.equal(done.attempt, 1, "the lease never lapsed");
      assert.ok(heartbeatsSeen.every((attempt) => attempt === 1));

      const cancellable = await client.enqueue("cancellable", {}, { queue });
      await eventually("the job running", async () => ((await client.get(cancellable.id)).state === "running" ? true : undefined));
      await client.cancel(cancellable.id);
      const cancelled = await client.waitFor(cancellable.id);
      assert.equal(cancelled.state, "cancelled");
      await w.stop();
      await running;
    });

    test("[S9] stop hands unfinished jobs back without using an attempt", async () => {
      const queue = uniqueQueue("stop");
      let started = false;
      const w = worker(queue, { shutdownGraceMs: 100 }).register("stuck", async () => {
        started = true;
        // Ignores its signal: the grace period ends and the job is handed back.
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      });
      const running = w.run();
      const job = await client.enqueue("stuck", {}, { queue });
      await eventually("the job started", async () => (started ? true : undefined));
      await w.stop();
      await running;
      const back = await client.get(job.id);
      assert.equal(back.state, "available");
      assert.equal(back.attempt, 0);
    });

    test("[S15] prefetched jobs wait for a free slot; stop hands the waiting ones back at once", async () => {
      const queue = uniqueQueue("prefetch");
      let active = 0;
      let most = 0;
      let started = 0;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const w = worker(queue, { concurrency: 2, prefetch: 3, shutdownGraceMs: 30_000 }).register("gated", async () => {
        active++;
        started++;
        most = Math.max(most, active);
        await gate;
        active--;
      });
      await client.enqueueBulk(Array.from({ length: 8 }, () => ({ kind: "gated", options: { queue } })));
      const count = async (state: "running" | "available" | "completed") =>
        (await client.list({ queues: [queue], states: [state], limit: 100 })).jobs;
      const running = w.run();
      // Two run and three wait, all five reserved; three stay in the queue.
      await eventually("five reserved", async () => ((await count("running")).length === 5 ? true : undefined));
      await eventually("two started", async () => (started === 2 ? true : undefined));
      const stopping = w.stop();
      // The waiting ones go back before the running ones finish.
      await eventually("the waiting ones handed back", async () => ((await count("available")).length === 6 ? true : undefined));
      assert.equal(started, 2);
      release();
      await stopping;
      await running;
      assert.equal(most, 2);
      assert.equal((await count("completed")).length, 2);
      assert.deepEqual((await count("available")).map((job) => job.attempt), [0, 0, 0, 0, 0, 0]);
    });

    test("[S10] a worker killed mid-job: its job runs again elsewhere", async () => {
      const queue = uniqueQueue("kill");
      const job = await client.enqueue("hang", {}, { queue });
      const child = spawn(process.execPath, [join(import.meta.dirname, "fixtures", "child-worker.js")], {
        env: { ...process.env, STOKER_SERVER: server.url, STOKER_API_TOKEN: server.token, QUEUE: queue, WORKER_NAME: "doomed", LEASE_SECONDS: "1" },
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines = createInterface({ input: child.stdout! });
      await new Promise<void>((resolve) => lines.on("line", (line) => line === `started ${job.id}` && resolve()));
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
      assert.equal((await client.get(job.id)).worker, "pull:doomed");

      const rescuer = worker(queue, { name: "rescuer" }).register("hang", async () => "finished elsewhere");
      const running = rescuer.run();
      const done = await client.waitFor(job.id);
      assert.equal(done.state, "completed");
      assert.equal(done.result, "finished elsewhere");
      assert.equal(done.attempt, 2);
      assert.equal(done.worker, "pull:rescuer");
      await rescuer.stop();
      await running;
    });

    // --- stream workflows ---
    test("a handler reads its job's batch and adds to it; the callback waits for the added jobs", async () => {
      const queue = uniqueQueue("batch");
      const created = await fetch(`${server.url}/v1/batches`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${server.token}` },
        body: JSON.stringify({ name: "fan", callback: { kind: "fan-done", queue }, jobs: [{ kind: "fan-out", queue }], open: true }),
      });
      assert.equal(created.status, 201);
      const batch = (await created.json()) as { id: number; callback_id: number };
      const seen: Array<number | undefined> = [];
      let refused: unknown;
      const w = worker(queue)
        .register("fan-out", async (_args, context) => {
          const mine = await context.batch();
          seen.push(mine?.total);
          await context.addToBatch({ kind: "fan-leaf", queue }, { kind: "fan-leaf", queue });
          await fetch(`${server.url}/v1/batches/${batch.id}/close`, { method: "POST", headers: { authorization: `Bearer ${server.token}` } });
          try {
            await context.addToBatch({ kind: "fan-leaf", queue });
          } catch (error) {
            refused = error;
          }
          return "fanned";
        })
        .register("fan-leaf", async (_args, context) => {
          assert.equal((await context.batch())?.id, batch.id);
          return "leaf";
        })
        .register("fan-done", async (args: Record<string, unknown>, context) => {
          assert.equal(await context.batch(), null, "the callback is in no batch");
          return args.batch;
        });
      const running = w.run();
      const done = await client.waitFor(batch.callback_id);
      assert.equal(done.state, "completed");
      assert.deepEqual(done.result, { id: batch.id, total: 3, completed: 3, discarded: 0, cancelled: 0 });
      assert.deepEqual(seen, [1]);
      assert.ok(refused instanceof StokerError && refused.status === 409 && refused.code === "conflict", String(refused));
      await w.stop();
      await running;
    });

    test("[S11] SIGTERM stops a worker process gracefully, handing its job back", async () => {
      const queue = uniqueQueue("sigterm");
      const job = await client.enqueue("hang", {}, { queue });
      const child = spawn(process.execPath, [join(import.meta.dirname, "fixtures", "child-worker.js")], {
        env: { ...process.env, STOKER_SERVER: server.url, STOKER_API_TOKEN: server.token, QUEUE: queue, WORKER_NAME: "polite", LEASE_SECONDS: "30", GRACE_MS: "300" },
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines = createInterface({ input: child.stdout! });
      const output: string[] = [];
      const started = new Promise<void>((resolve) =>
        lines.on("line", (line) => {
          output.push(line);
          if (line === `started ${job.id}`) resolve();
        }),
      );
      await started;
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      assert.equal(await exited, 0);
      assert.ok(output.includes("stopped"), output.join("\n"));
      // The grace period ended with the job unfinished: it went back to its queue with its
      // attempt returned, and the process exited on its own.
      const back = await client.get(job.id);
      assert.equal(back.state, "available");
      assert.equal(back.attempt, 0);
    });
  });
}
