/**
 * A hand-made PostgreSQL queue (a Prisma `JobQueue` table polled by a worker) moved to
 * Stoker (docs/migrating-from-a-postgres-queue.md): the same `addJob` call shape, processors
 * registered per job type, the pending rows of the old table carried over without running any
 * of them twice, and the dead letter replaced by discarded jobs that can be retried.
 *
 * Run it against a server: `stoker serve` in one terminal, then
 * `npm run build && node dist/examples/from-prisma-queue.js`.
 */
import { Client, Worker, defineJob, type EnqueueOptions, type JobDefinition } from "../src/index.js";

const suffix = process.env.EXAMPLE_SUFFIX ?? "";
const queue = `app${suffix}`;
const aiGeneration = defineJob<{ conversationId: string; messageId: string; companyId: string }, { text: string }>(
  "ai_generation",
  { queue, maxAttempts: 3, backoff: { baseSeconds: 2, factor: 2 } },
);
const campaignSend = defineJob<{ campaignId: string; companyId: string }, { sent: number }>("campaign_send", { queue });
const leadImport = defineJob<{ fileUrl: string; companyId: string }, { imported: number }>("lead_import", { queue, timeoutSeconds: 900 });

/** The old `queue.addJob(type, payload, options)`, kept so call sites do not change. */
interface LegacyOptions {
  priority?: number; // 0-10, higher = more urgent (the same direction as Stoker's)
  idempotencyKey?: string;
  maxAttempts?: number;
  scheduledFor?: Date;
}
const client = new Client();
const jobsByType = { ai_generation: aiGeneration, campaign_send: campaignSend, lead_import: leadImport } as const;

async function addJob<K extends keyof typeof jobsByType>(type: K, payload: object, options: LegacyOptions = {}) {
  const job = jobsByType[type] as JobDefinition<object, unknown>;
  const stoker: EnqueueOptions = {};
  if (options.priority !== undefined) stoker.priority = options.priority;
  if (options.idempotencyKey !== undefined) stoker.idempotencyKey = options.idempotencyKey;
  if (options.maxAttempts !== undefined) stoker.maxAttempts = options.maxAttempts;
  if (options.scheduledFor !== undefined) stoker.runAt = options.scheduledFor;
  const enqueued = await client.enqueue(job, payload, stoker);
  // The old driver returned null for a duplicate idempotency key.
  return enqueued.duplicate ? null : enqueued;
}

// The processors: one handler per job type instead of a switch in a polling loop. No
// `PROCESSING` row to reset by hand after a crash: a job whose worker dies is run again when
// its lease runs out.
const worker = new Worker({ client, queues: [queue], concurrency: 10 });
worker.register(aiGeneration, async (args, { progress }) => {
  await progress(0.5, "calling the model");
  return { text: `reply to ${args.messageId}` };
});
let imports = 0;
worker.register(leadImport, async () => {
  imports += 1;
  if (imports === 1) {
    throw new Error("the CSV host timed out"); // retried with the job's backoff
  }
  return { imported: 42 };
});
worker.register(campaignSend, async () => {
  throw new Error("campaign has no audience"); // fails every attempt: ends discarded
});
const running = worker.run();

const first = await addJob("ai_generation", { conversationId: "conv_123", messageId: "msg_456", companyId: "comp_789" }, { priority: 5, idempotencyKey: `unique_key_123${suffix}` });
const duplicate = await addJob("ai_generation", { conversationId: "conv_123", messageId: "msg_456", companyId: "comp_789" }, { idempotencyKey: `unique_key_123${suffix}` });
console.log(`ai_generation job ${first?.id}; the second addJob returned ${duplicate}`);

// Carrying over the old table's PENDING rows: one bulk enqueue (all or none), each keyed by
// its old row id so running the migration twice enqueues nothing twice.
const legacyRows = [
  { id: "row-1", type: "lead_import", payload: { fileUrl: "https://example.invalid/leads.csv", companyId: "comp_789" }, priority: 3, maxAttempts: 4, scheduledFor: null },
  { id: "row-2", type: "campaign_send", payload: { campaignId: "camp_1", companyId: "comp_789" }, priority: 0, maxAttempts: 2, scheduledFor: null },
] as const;
const carried = await client.enqueueBulk(
  legacyRows.map((row) => ({
    job: jobsByType[row.type] as JobDefinition<object, unknown>,
    args: row.payload,
    options: { priority: row.priority, maxAttempts: row.maxAttempts, idempotencyKey: `legacy-${row.id}${suffix}` },
  })),
);
console.log(`carried over ${carried.inserted} pending rows`);

for (const job of carried.jobs) {
  const finished = await client.waitFor(job.id);
  console.log(`${finished.kind} ${finished.id}: ${finished.state} after ${finished.attempt} attempt(s)`);
}
await client.waitFor(first!.id);

// The old DEAD_LETTER status: Stoker's `discarded` jobs keep every attempt's error; list them,
// then retry one (or a whole failure group: `stoker failures`, `POST /v1/failures/.../retry`).
const dead = await client.list({ states: ["discarded"], queues: [queue] });
for (const job of dead.jobs) {
  console.log(`dead: ${job.kind} ${job.id}: ${job.errors.at(-1)?.message}`);
}
await worker.stop();
await running;
if (dead.jobs.length > 0) {
  const retried = await client.retry(dead.jobs[0]!.id);
  console.log(`retried ${retried.id}: ${retried.state}`);
}
