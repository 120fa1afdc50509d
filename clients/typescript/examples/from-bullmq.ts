/**
 * A BullMQ topology moved to Stoker (docs/migrating-from-bullmq.md): Shopify events are
 * normalised on `events`, evaluated on `automations`, and delivered on `delivery`, each step
 * enqueueing the next; a repeatable housekeeping job becomes a cron schedule.
 *
 * Run it against a server: `stoker serve` in one terminal, then
 * `npm run build && node dist/examples/from-bullmq.js` (uses $STOKER_SERVER and
 * $STOKER_API_TOKEN when set).
 */
import { Client, DiscardJob, RetryJob, Worker, defineJob } from "../src/index.js";

// BullMQ: `new Queue("events")` + `queue.add("orders/paid", data, opts)`. In Stoker a job has a
// kind (the BullMQ job name) and a queue; `defineJob` types its args and result and carries
// the options every enqueue starts from (BullMQ's `defaultJobOptions`).
const suffix = process.env.EXAMPLE_SUFFIX ?? "";
const shopifyEvent = defineJob<{ topic: string; shopId: string; objectId: string }, { forwarded: number }>(
  "events:orders-paid",
  { queue: `events${suffix}`, maxAttempts: 5, backoff: { baseSeconds: 1, factor: 2, maxSeconds: 60 } },
);
const evaluate = defineJob<{ shopId: string; trigger: string; phone: string }, { send: boolean }>(
  "automations:evaluate",
  { queue: `automations${suffix}`, maxAttempts: 3 },
);
const deliver = defineJob<{ shopId: string; phone: string; body: string }, { providerId: string }>(
  "delivery:send",
  // BullMQ `priority: 1` is the most urgent; in Stoker higher runs first (or a name).
  { queue: `delivery${suffix}`, priority: "HIGH", maxAttempts: 8, backoff: { baseSeconds: 2, jitter: 0.2 } },
);

const client = new Client();
const worker = new Worker({ client, queues: [shopifyEvent.defaults.queue!, evaluate.defaults.queue!, deliver.defaults.queue!], concurrency: 20, handleSignals: true });

worker.register(shopifyEvent, async (args, { job, log }) => {
  await log(`normalising ${args.topic} for ${args.shopId}`);
  // BullMQ: `automationsQueue.add(...)` from inside the processor. `parentId` and
  // `correlationId` tie the chain together for search and the dashboard.
  await client.enqueue(
    evaluate,
    { shopId: args.shopId, trigger: args.topic, phone: "+15550100" },
    { parentId: job.id, correlationId: `order-${args.objectId}`, idempotencyKey: `evaluate-${args.objectId}` },
  );
  return { forwarded: 1 };
});

worker.register(evaluate, async (args, { job }) => {
  if (!args.phone.startsWith("+")) {
    // BullMQ: `throw new UnrecoverableError(...)`.
    throw new DiscardJob("no valid phone number; retrying cannot fix it");
  }
  await client.enqueue(
    deliver,
    { shopId: args.shopId, phone: args.phone, body: "Thanks for your order!" },
    { parentId: job.id, correlationId: job.metadata.correlation_id ?? undefined, idempotencyKey: `deliver-${job.id}` },
  );
  return { send: true };
});

let providerCalls = 0;
worker.register(deliver, async (_args, { signal }) => {
  providerCalls += 1;
  if (providerCalls === 1) {
    // BullMQ: a rate-limited provider and `worker.rateLimit(ms)`. Here: fail this attempt and
    // retry after the provider's Retry-After instead of the backoff.
    throw new RetryJob("provider answered 429", 1);
  }
  signal.throwIfAborted(); // pass `signal` to fetch() so a cancel or shutdown aborts the call
  return { providerId: `sms-${Date.now()}` };
});

const running = worker.run();

// BullMQ: `queue.add(name, data, { jobId })` ignores a second add with the same jobId; Stoker's
// `idempotencyKey` does the same and tells you (`duplicate: true`).
const first = await client.enqueue(shopifyEvent, { topic: "orders/paid", shopId: "shop-1", objectId: "1001" }, { idempotencyKey: `shopify-1001${suffix}` });
const again = await client.enqueue(shopifyEvent, { topic: "orders/paid", shopId: "shop-1", objectId: "1001" }, { idempotencyKey: `shopify-1001${suffix}` });
console.log(`event job ${first.id}; the webhook's retry was a duplicate: ${again.duplicate}`);

// BullMQ: `queueEvents.on("completed")` or `job.waitUntilFinished(queueEvents)`.
const done = await client.waitFor(first.id, { job: shopifyEvent });
console.log(`event job ${done.id} ${done.state}: ${JSON.stringify(done.result)}`);
const delivery = await waitForKind(`order-1001`, deliver.kind);
console.log(`delivery ${delivery.id} ${delivery.state} after ${delivery.attempt} attempts`);

// BullMQ: `queue.add("cleanup", {}, { repeat: { pattern: "0 3 * * *" } })` (or
// `upsertJobScheduler`). Exactly one job per slot, however many servers run.
const schedule = await client.createCron({
  name: `housekeeping${suffix}`,
  expr: "0 3 * * *",
  tz: "Europe/London",
  kind: "housekeeping:cleanup",
  queue: `housekeeping${suffix}`,
});
console.log(`housekeeping runs next at ${schedule.next_slot}`);
await client.deleteCron(schedule.name);

await worker.stop();
await running;

/** The job of `kind` in the chain `correlationId`, once it has finished. */
async function waitForKind(correlationId: string, kind: string) {
  for (;;) {
    const page = await client.list({ kinds: [kind], queues: [deliver.defaults.queue!] });
    const job = page.jobs.find((candidate) => candidate.metadata.correlation_id === correlationId);
    if (job) {
      return client.waitFor(job.id);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
