/** A TypeScript producer feeding the Python client's worker (clients/python), through a real
 * `stoker serve`. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { resolve } from "node:path";

import { Client, defineJob } from "../src/index.js";
import { startServer, uniqueQueue, type TestServer } from "./support.js";

const upper = defineJob<{ text: string }, { text: string; by: string }>("py-upper");
const script = resolve(import.meta.dirname, "../../../python/tests/ts_producer_worker.py");

describe("TypeScript producer, Python worker", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer("sqlite");
  });
  after(() => server.stop());

  test("[S12] jobs enqueued in TypeScript are run by the Python worker", async () => {
    const client = new Client({ url: server.url, token: server.token });
    const queue = uniqueQueue("py");
    const { jobs } = await client.enqueueBulk(
      ["a", "b", "c", "d", "e"].map((text) => ({ job: upper, args: { text }, options: { queue } })),
    );
    const child = spawn("python3", [script], {
      env: { ...process.env, STOKER_SERVER: server.url, STOKER_API_TOKEN: server.token, QUEUE: queue, JOBS: "5" },
      stdio: ["ignore", "inherit", "inherit"],
    });
    const code = await new Promise<number | null>((done) => child.once("exit", done));
    assert.equal(code, 0);
    for (const [index, text] of ["A", "B", "C", "D", "E"].entries()) {
      const job = await client.waitFor(jobs[index]!.id, { job: upper });
      assert.equal(job.state, "completed");
      assert.deepEqual(job.result, { text, by: "python" });
      assert.equal(job.worker, "pull:python-worker");
    }
  });
});
