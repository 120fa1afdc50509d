/**
 * The client's wire types against the OpenAPI document the server serves: every field the
 * client knows is the server's, every field the server has is the client's, and the enums
 * match. A server change that breaks the client fails here.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import { ACK_ENTRY_FIELDS, Client, ERROR_CODES, ERROR_KINDS, EVENT_FIELDS, JOB_STATES, PRIORITY_NAMES, WIRE_FIELDS } from "../src/index.js";
import { startServer, type TestServer } from "./support.js";

interface Schema {
  properties?: Record<string, unknown>;
  enum?: string[];
  oneOf?: Schema[];
  additionalProperties?: boolean;
  required?: string[];
}

describe("the OpenAPI contract", () => {
  let server: TestServer;
  let schemas: Record<string, Schema>;
  let paths: Record<string, Record<string, unknown>>;
  before(async () => {
    server = await startServer("sqlite");
    const doc = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as {
      components: { schemas: Record<string, Schema> };
      paths: Record<string, Record<string, unknown>>;
    };
    schemas = doc.components.schemas;
    paths = doc.paths;
  });
  after(() => server.stop());

  test("every wire type has exactly the document's fields", () => {
    for (const [name, fields] of Object.entries(WIRE_FIELDS)) {
      const schema = schemas[name];
      assert.ok(schema, `the document has no schema ${name}`);
      assert.deepEqual(Object.keys(fields).sort(), Object.keys(schema.properties ?? {}).sort(), name);
    }
  });

  test("the ack entries match the document's branches", () => {
    const branches = schemas.AckEntry?.oneOf ?? [];
    const byOp = new Map<string, string[]>();
    for (const branch of branches) {
      const op = (branch.properties?.op as Schema | undefined)?.enum?.[0];
      assert.ok(op, JSON.stringify(branch));
      byOp.set(op, Object.keys(branch.properties ?? {}).sort());
    }
    assert.deepEqual([...byOp.keys()].sort(), Object.keys(ACK_ENTRY_FIELDS).sort());
    for (const [op, fields] of Object.entries(ACK_ENTRY_FIELDS)) {
      assert.deepEqual([...fields].sort(), byOp.get(op), op);
    }
  });

  test("enums match", () => {
    assert.deepEqual([...JOB_STATES].sort(), [...(schemas.JobState?.enum ?? [])].sort());
    assert.deepEqual([...ERROR_CODES].sort(), [...(schemas.ErrorCode?.enum ?? [])].sort());
    assert.deepEqual([...ERROR_KINDS].sort(), [...(schemas.ErrorKind?.enum ?? [])].sort());
    const names = schemas.PriorityLevel?.oneOf?.find((branch) => branch.enum)?.enum ?? [];
    assert.deepEqual([...PRIORITY_NAMES].sort(), [...names].sort());
  });

  test("the live events carry exactly the client's fields", async () => {
    // The events' JSON is not a schema of the document (an SSE event's data is a string), so
    // it is checked against a live stream instead.
    const client = new Client({ url: server.url, token: server.token });
    const job = await client.enqueue("contract-event", {}, { queue: "contract-events", runAt: new Date(Date.now() + 3_600_000) });
    await client.cancel(job.id);
    let snapshot: Record<string, unknown> | undefined;
    for await (const event of client.events({ jobEvents: false, timeoutSeconds: 3 })) {
      if (event.type === "snapshot") {
        snapshot = event.snapshot as unknown as Record<string, unknown>;
        break;
      }
    }
    assert.ok(snapshot);
    const keys = (value: unknown) => Object.keys(value as object).sort();
    assert.deepEqual(keys(snapshot), [...EVENT_FIELDS.Snapshot].sort());
    assert.deepEqual(keys(snapshot.states), [...EVENT_FIELDS.SnapshotStates].sort());
    assert.deepEqual(keys(snapshot.minute), [...EVENT_FIELDS.SnapshotMinute].sort());
    const queues = snapshot.queues as unknown[];
    assert.ok(queues.length > 0);
    assert.deepEqual(keys(queues[0]), [...EVENT_FIELDS.SnapshotQueue].sort());
    // A followed job that has finished: its last state, then the end.
    const events = [];
    for await (const event of client.events({ jobs: [job.id], snapshots: false })) {
      events.push(event);
    }
    const first = events[0];
    assert.ok(first?.type === "job", JSON.stringify(events));
    assert.deepEqual(keys(first.job), [...EVENT_FIELDS.JobEvent].sort());
    assert.equal(events.at(-1)?.type, "end");
  });

  test("every route the client calls is in the document", () => {
    const routes: Array<[string, string]> = [
      ["/v1/jobs", "post"],
      ["/v1/jobs", "get"],
      ["/v1/jobs/bulk", "post"],
      ["/v1/jobs/{id}", "get"],
      ["/v1/jobs/{id}/cancel", "post"],
      ["/v1/jobs/{id}/retry", "post"],
      ["/v1/pull/reserve", "post"],
      ["/v1/pull/ack", "post"],
      ["/v1/pull/jobs/{id}/heartbeat", "post"],
      ["/v1/pull/jobs/{id}/progress", "post"],
      ["/v1/pull/jobs/{id}/logs", "post"],
      ["/v1/jobs/{id}/logs", "get"],
      ["/v1/events", "get"],
      ["/v1/cron", "post"],
      ["/v1/cron", "get"],
      ["/v1/cron/{name}", "get"],
      ["/v1/cron/{name}", "patch"],
      ["/v1/cron/{name}", "delete"],
      ["/v1/pull/jobs/{id}/complete", "post"],
      ["/v1/pull/jobs/{id}/fail", "post"],
      ["/v1/pull/jobs/{id}/snooze", "post"],
      ["/v1/pull/jobs/{id}/cancel", "post"],
    ];
    for (const [path, method] of routes) {
      assert.ok(paths[path]?.[method], `${method.toUpperCase()} ${path}`);
    }
  });
});
