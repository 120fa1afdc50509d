// Drains N no-op jobs from Redis with BullMQ's Worker and prints one JSON line, as
// stoker-drain.mjs does. BullMQ is not a dependency of this package: install it anywhere and
// point BULLMQ_DIR at the directory holding its node_modules.
//
// Usage: BULLMQ_DIR=/path node bullmq-drain.mjs <redis-host> <redis-port> <jobs> <concurrency>
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(join(process.env.BULLMQ_DIR ?? process.cwd(), "package.json"));
const { Queue, Worker } = require("bullmq");

const [host = "127.0.0.1", port = "6379", jobsArg = "50000", concurrencyArg = "50"] = process.argv.slice(2);
const total = Number(jobsArg);
const concurrency = Number(concurrencyArg);
const connection = { host, port: Number(port) };
const name = `stoker-bench-${process.pid}`;
const queue = new Queue(name, { connection });
await queue.obliterate({ force: true });
for (let done = 0; done < total; done += 10_000) {
  const count = Math.min(10_000, total - done);
  // removeOnComplete keeps Redis from growing, as a production setup would.
  await queue.addBulk(Array.from({ length: count }, () => ({ name: "noop", data: {}, opts: { removeOnComplete: true } })));
}

let finished = 0;
let resolveAll;
const all = new Promise((resolve) => (resolveAll = resolve));
const started = performance.now();
const worker = new Worker(
  name,
  async () => {},
  { connection, concurrency },
);
worker.on("completed", () => {
  finished++;
  if (finished === total) resolveAll();
});
await all;
const seconds = (performance.now() - started) / 1000;
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
console.log(JSON.stringify({ system: "bullmq", protocol: "redis", jobs: total, concurrency, seconds, jobs_per_second: Math.round(total / seconds) }));
