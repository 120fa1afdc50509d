/**
 * The migration guides' runnable examples (`examples/`) run to completion against a real
 * server, so a guide cannot drift from what the client and server do.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

import { startServer, uniqueQueue, type TestServer } from "./support.js";

const run = promisify(execFile);

describe("the migration examples", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer("sqlite");
  });
  after(() => server.stop());

  async function example(name: string): Promise<string> {
    const { stdout } = await run(process.execPath, [join(import.meta.dirname, "..", "examples", `${name}.js`)], {
      env: { ...process.env, STOKER_SERVER: server.url, STOKER_API_TOKEN: server.token, EXAMPLE_SUFFIX: `-${uniqueQueue("x")}` },
      timeout: 120_000,
    });
    return stdout;
  }

  test("from BullMQ: a chained topology, a duplicate, a retry after 429, a schedule", async () => {
    const out = await example("from-bullmq");
    assert.match(out, /the webhook's retry was a duplicate: true/);
    assert.match(out, /event job \d+ completed: \{"forwarded":1\}/);
    assert.match(out, /delivery \d+ completed after 2 attempts/);
    assert.match(out, /housekeeping runs next at \d{4}-/);
  });

  test("from a Prisma queue: addJob, carried-over rows, the dead letter", async () => {
    const out = await example("from-prisma-queue");
    assert.match(out, /the second addJob returned null/);
    assert.match(out, /carried over 2 pending rows/);
    assert.match(out, /lead_import \d+: completed after 2 attempt\(s\)/);
    assert.match(out, /campaign_send \d+: discarded after 2 attempt\(s\)/);
    assert.match(out, /dead: campaign_send \d+: .*no audience/);
    assert.match(out, /retried \d+: available/);
  });
});
