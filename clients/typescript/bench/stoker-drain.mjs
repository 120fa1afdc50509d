// Drains N no-op jobs from `stoker serve` with the TypeScript client's Worker and prints
// one JSON line: {"system", "protocol", "jobs", "seconds", "jobs_per_second"}.
//
// Usage: node stoker-drain.mjs <server-url> <token> <jobs> <concurrency> <batch|single> [prefetch]
// (`prefetch` defaults to the Worker's default, `concurrency`; 0 reserves only for free slots.)
import { Client, Worker } from "../dist/src/index.js";

const [url, token, jobsArg = "50000", concurrencyArg = "50", protocol = "batch", prefetchArg] = process.argv.slice(2);
const total = Number(jobsArg);
const concurrency = Number(concurrencyArg);
const queue = `bench-${protocol}-${process.pid}`;
const client = new Client({ url, token, autoIdempotencyKey: false });

// Enqueue first, as BullMQ's side does: the drain alone is timed.
for (let done = 0; done < total; done += 10_000) {
  const count = Math.min(10_000, total - done);
  await client.enqueueBulk(Array.from({ length: count }, () => ({ kind: "noop", options: { queue } })));
}

let finished = 0;
let resolveAll;
const all = new Promise((resolve) => (resolveAll = resolve));
const prefetch = prefetchArg === undefined ? undefined : Number(prefetchArg);
const worker = new Worker({ client, queues: [queue], concurrency, protocol, handleSignals: false, pollWaitSeconds: 1, ...(prefetch === undefined ? {} : { prefetch }) });
worker.register("noop", async () => {
  finished++;
  if (finished === total) resolveAll();
});
const started = performance.now();
const running = worker.run();
await all;
await worker.stop();
await running;
// Every report is sent once stop() resolves: the drain is over when the last is applied.
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ system: "stoker", protocol, jobs: total, concurrency, prefetch: prefetch ?? concurrency, seconds, jobs_per_second: Math.round(total / seconds) }));
