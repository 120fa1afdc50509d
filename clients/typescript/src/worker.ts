import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

import { Client, type ClientOptions } from "./client.js";
import { LeaseLostError, StokerError } from "./errors.js";
import { sleep } from "./http.js";
import type { JobDefinition } from "./jobs.js";
import type { AckEntry, AckResult, BatchCreated, BatchView, JobView, WorkflowJobSpec } from "./wire.js";

/** What a handler gets besides its args. */
export interface JobContext<Args = unknown> {
  /** The job as reserved (state `running`, with its `fence`). */
  readonly job: JobView<Args>;
  /** Aborted when the job must stop: a cancel was requested (`reason` is a
   * {@link JobCancelledError}), its lease was lost, or the worker is shutting down and the
   * grace period ran out. Pass it to `fetch` and other abortable calls. */
  readonly signal: AbortSignal;
  /** Records progress: a fraction from 0 to 1, what it is doing, and JSON details. */
  progress(fraction: number, message?: string, details?: object): Promise<void>;
  /** Appends lines to the job's log, stored with this attempt and shown by get-job, the CLI
   * (`stoker jobs logs ID`) and the dashboard. At most 100 lines per call, 4096 characters
   * each; a job keeps at most 1,000 lines (256 KiB), beyond which lines are dropped. */
  log(...lines: string[]): Promise<void>;
  /** The job's batch with its counters, or null if it is in no batch. */
  batch(): Promise<BatchView | null>;
  /** Adds jobs to the job's batch, which must still be open (a closed batch refuses them with
   * a 409 `conflict`); each has this job as its parent. Needs a token with the `enqueue` scope
   * besides `work`. */
  addToBatch(...jobs: WorkflowJobSpec[]): Promise<BatchCreated>;
}

/** A handler: takes the job's args and returns its result. */
export type Handler<Args, Result> = (args: Args, context: JobContext<Args>) => Promise<Result> | Result;

/** Thrown by a handler: run the job again after `seconds`, without using up an attempt. */
export class SnoozeJob extends Error {
  constructor(readonly seconds: number) {
    super(`snoozed for ${seconds} s`);
    this.name = "SnoozeJob";
  }
}

/** Thrown by a handler: no retry can fix this; discard the job now. */
export class DiscardJob extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DiscardJob";
  }
}

/** Thrown by a handler: the attempt failed; retry after `retryInSeconds` instead of the
 * job's backoff (e.g. from a `Retry-After` header). */
export class RetryJob extends Error {
  constructor(message: string, readonly retryInSeconds: number) {
    super(message);
    this.name = "RetryJob";
  }
}

/** The abort reason of a job whose cancel was requested. */
export class JobCancelledError extends Error {
  constructor(id: number) {
    super(`job ${id}: cancel requested`);
    this.name = "JobCancelledError";
  }
}

/** A {@link Worker}'s options. */
export interface WorkerOptions extends ClientOptions {
  /** A client to use instead of one built from the connection options. */
  client?: Client;
  /** The queues to take jobs from, in order of preference. Defaults to `["default"]`. */
  queues?: string[];
  /** How many jobs run at once. Defaults to 10. */
  concurrency?: number;
  /** The worker's name, unique per process. Defaults to `<host>-<pid>-<random>`. */
  name?: string;
  /** Each job's lease in seconds, extended by heartbeats. Defaults to 30. */
  leaseSeconds?: number;
  /** How often a running job's lease is extended, in milliseconds. Defaults to a third of the
   * lease. Heartbeats ride in the next batch of reports. */
  heartbeatMs?: number;
  /** How long an idle worker's reserve waits for a job (long-poll), in seconds. Defaults to 10. */
  pollWaitSeconds?: number;
  /** How long running jobs get to finish after `stop()` before they are aborted and handed
   * back, in milliseconds. Defaults to 10,000. */
  shutdownGraceMs?: number;
  /** Stop gracefully on SIGINT and SIGTERM. Defaults to true. */
  handleSignals?: boolean;
  /** `batch` (default): reports and reserves ride together in `POST /v1/pull/ack`, many per
   * request. `single`: one request per report and per reserve (the simple protocol). */
  protocol?: "batch" | "single";
  /** Concurrent report/reserve requests in `batch` mode. Defaults to 2, so one batch is being
   * answered while the next fills. */
  pipeline?: number;
  /** How many reserved jobs may wait in this worker, beyond the `concurrency` running ones,
   * for a slot to free up (`batch` mode). A finished job's slot then takes the next job at
   * once instead of waiting a round trip for it, and each request reserves and reports
   * many jobs at a time. Waiting jobs hold leases (kept alive by heartbeats), so other
   * workers cannot take them; `stop()` hands them back at once. Defaults to `concurrency`;
   * 0 reserves only for free slots. */
  prefetch?: number;
  /** Called with errors the worker handles itself (a lost lease, an unreachable server). */
  onError?: (error: unknown, job?: JobView) => void;
}

interface Running {
  job: JobView;
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
  /** The job was handed back or its lease was lost: its handler's outcome is not reported. */
  settled: boolean;
}

/**
 * Runs jobs from a Stoker server's pull protocol with registered handlers.
 *
 * Reports (complete, fail, snooze, cancel, heartbeat) are batched into `POST /v1/pull/ack`
 * requests that also reserve new jobs for the free slots, so a busy worker pays one round trip
 * per batch rather than two per job. `stop()` (and SIGINT/SIGTERM) stops reserving, lets
 * running jobs finish for the grace period, then aborts the rest and hands them back (a
 * snooze of zero, which uses up no attempt) for another worker to run.
 */
export class Worker {
  /** The client the worker calls through. */
  readonly client: Client;
  /** The worker's name (its jobs show `worker: "pull:<name>"`). */
  readonly name: string;
  private readonly handlers = new Map<string, Handler<never, unknown>>();
  private readonly queues: string[];
  private readonly concurrency: number;
  private readonly leaseSeconds: number;
  private readonly heartbeatMs: number;
  private readonly pollWaitSeconds: number;
  private readonly graceMs: number;
  private readonly handleSignals: boolean;
  private readonly protocol: "batch" | "single";
  private readonly pipeline: number;
  private readonly prefetch: number;
  private readonly onError: (error: unknown, job?: JobView) => void;

  /** Every job reserved and not yet reported: running, or waiting in `queued` for a slot. */
  private readonly running = new Map<number, Running>();
  /** Reserved jobs waiting for a slot (prefetched), oldest first. */
  private queued: Running[] = [];
  private pending: AckEntry[] = [];
  /** Slots promised to reserves in flight. */
  private reserving = 0;
  private waiters: Array<() => void> = [];
  private state: "idle" | "running" | "stopping" | "stopped" = "idle";
  private done: Promise<void> | undefined;
  private readonly signalHandler = () => void this.stop();
  private processed = 0;

  constructor(options: WorkerOptions = {}) {
    this.client = options.client ?? new Client(options);
    this.name = options.name ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.queues = options.queues ?? ["default"];
    this.concurrency = options.concurrency ?? 10;
    this.leaseSeconds = options.leaseSeconds ?? 30;
    this.heartbeatMs = options.heartbeatMs ?? (this.leaseSeconds * 1000) / 3;
    this.pollWaitSeconds = options.pollWaitSeconds ?? 10;
    this.graceMs = options.shutdownGraceMs ?? 10_000;
    this.handleSignals = options.handleSignals ?? true;
    this.protocol = options.protocol ?? "batch";
    this.pipeline = Math.max(1, options.pipeline ?? 2);
    this.prefetch = this.protocol === "batch" ? (options.prefetch ?? this.concurrency) : 0;
    this.onError = options.onError ?? ((error) => console.error("stoker worker:", error));
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RangeError("concurrency must be a whole number of at least 1");
    }
    if (!Number.isInteger(this.prefetch) || this.prefetch < 0) {
      throw new RangeError("prefetch must be a whole number of at least 0");
    }
  }

  /** Registers the handler of a defined job kind: its args and result types must match. */
  register<A extends object, R>(job: JobDefinition<A, R>, handler: Handler<A, R>): this;
  /** Registers the handler of a kind named by a string. */
  register(kind: string, handler: Handler<Record<string, unknown>, unknown>): this;
  register(job: string | JobDefinition<object, unknown>, handler: Handler<never, unknown>): this {
    this.handlers.set(typeof job === "string" ? job : job.kind, handler);
    return this;
  }

  /** How many jobs this worker has finished (reported or handed back). */
  get processedCount(): number {
    return this.processed;
  }

  /** Starts working; resolves once the worker has stopped (see {@link stop}). */
  run(): Promise<void> {
    if (this.handlers.size === 0) {
      throw new Error("register at least one handler before run()");
    }
    if (this.done) {
      return this.done;
    }
    this.state = "running";
    if (this.handleSignals) {
      process.on("SIGINT", this.signalHandler);
      process.on("SIGTERM", this.signalHandler);
    }
    const lanes = this.protocol === "batch" ? this.pipeline : 1;
    this.done = Promise.all(Array.from({ length: lanes }, () => this.lane())).then(() => {
      this.state = "stopped";
      if (this.handleSignals) {
        process.off("SIGINT", this.signalHandler);
        process.off("SIGTERM", this.signalHandler);
      }
    });
    return this.done;
  }

  /**
   * Stops gracefully: no new jobs; running ones get the grace period to finish, then are
   * aborted and handed back to the queue unfinished. Resolves when every report is sent.
   */
  async stop(): Promise<void> {
    if (this.state === "running") {
      this.state = "stopping";
      // Jobs waiting for a slot have not started: they go back to the queue at once.
      for (const entry of this.queued.splice(0)) {
        this.handBack(entry);
      }
      this.wake();
      const deadline = Date.now() + this.graceMs;
      while (this.running.size > 0 && Date.now() < deadline) {
        await this.nextWake(Math.min(100, deadline - Date.now()));
      }
      for (const entry of this.running.values()) {
        this.handBack(entry);
      }
      this.wake();
    }
    await this.done;
  }

  // --- The request loop --------------------------------------------------------------------

  private async lane(): Promise<void> {
    let idleWaited = false;
    for (;;) {
      const stopping = this.state !== "running";
      if (stopping && this.pending.length === 0 && this.running.size === 0 && this.reserving === 0) {
        return;
      }
      const free = stopping ? 0 : this.concurrency + this.prefetch - this.running.size - this.reserving;
      if (this.pending.length === 0) {
        if (free <= 0 || stopping) {
          await this.nextWake(1000);
          continue;
        }
        // Jobs are running and the queue looked empty: ask again when one finishes, or
        // after a second, instead of holding a long-poll that would delay their reports.
        if (this.running.size > 0 && !idleWaited) {
          idleWaited = !(await this.nextWake(1000));
          continue;
        }
      }
      idleWaited = false;
      const acks = this.pending.splice(0, 1000);
      const limit = Math.min(free, 100);
      const wait = acks.length === 0 && this.running.size === 0 ? this.pollWaitSeconds : 0;
      this.reserving += Math.max(limit, 0);
      try {
        if (this.protocol === "batch") {
          await this.exchange(acks, limit, wait);
        } else {
          await this.exchangeSingly(acks, limit, wait);
        }
      } catch (error) {
        this.onError(error);
        if (error instanceof StokerError && !error.transient) {
          // A refused request will be refused again: its reports are dropped, and their jobs
          // run again once their leases end.
          continue;
        }
        // The reports were not applied (or the answer was lost): they are fenced, so sending
        // them again applies each at most once.
        this.pending.unshift(...acks.filter((ack) => !this.pending.some((p) => p.id === ack.id)));
        await sleep(500);
      } finally {
        this.reserving -= Math.max(limit, 0);
      }
    }
  }

  private reserveRequest(limit: number, wait: number) {
    return {
      worker: this.name,
      queues: this.queues,
      kinds: [...this.handlers.keys()],
      limit,
      lease_seconds: this.leaseSeconds,
      wait_seconds: wait,
      host: hostname().slice(0, 255),
      pid: process.pid,
    };
  }

  private async exchange(acks: AckEntry[], limit: number, wait: number): Promise<void> {
    const answer = await this.client.ack({
      acks,
      ...(limit > 0 ? { reserve: this.reserveRequest(limit, wait) } : {}),
    });
    answer.results.forEach((result, index) => this.answered(acks[index]!, result));
    if (answer.reserve_error) {
      this.onError(new StokerError(503, answer.reserve_error));
    }
    for (const job of answer.jobs) {
      this.start(job);
    }
  }

  /** The simple protocol: one request per report, then one reserve. */
  private async exchangeSingly(acks: AckEntry[], limit: number, wait: number): Promise<void> {
    await Promise.all(
      acks.map(async (ack) => {
        const { op, id, ...body } = ack;
        try {
          const answer = await this.client.http.request<Record<string, unknown>>("POST", `/v1/pull/jobs/${id}/${op}`, body);
          this.answered(ack, { id, ok: true, ...answer } as AckResult);
        } catch (error) {
          if (!(error instanceof StokerError) || error.status === 0 || error.transient) throw error;
          this.answered(ack, { id, ok: false, error: { code: error.code, message: error.message } });
        }
      }),
    );
    if (limit > 0) {
      const answer = await this.client.reserve(this.reserveRequest(limit, wait));
      for (const job of answer.jobs) {
        this.start(job);
      }
    }
  }

  private answered(ack: AckEntry, result: AckResult): void {
    const entry = this.running.get(ack.id);
    if (!result.ok) {
      if (entry && !entry.settled) {
        // The lease is gone: another worker may run the job now; stop and drop it.
        entry.settled = true;
        entry.controller.abort(new LeaseLostError(409, result.error ?? { code: "lease_lost", message: "lease lost" }));
        const waiting = this.queued.indexOf(entry);
        if (waiting >= 0) {
          // It never started: nothing will finish it, so drop it here.
          this.queued.splice(waiting, 1);
          this.finish(entry, undefined);
        }
      }
      if (result.error?.code !== "lease_lost") {
        this.onError(new StokerError(0, result.error ?? { code: "unknown", message: "report refused" }), entry?.job);
      }
      return;
    }
    if (ack.op === "heartbeat" && result.cancel_requested && entry && !entry.controller.signal.aborted) {
      entry.controller.abort(new JobCancelledError(ack.id));
    }
  }

  // --- Running jobs ------------------------------------------------------------------------

  private start(job: JobView): void {
    const entry: Running = { job, controller: new AbortController(), timer: undefined, settled: false };
    this.running.set(job.id, entry);
    // The lease runs from the reservation: a job waiting for a slot is kept alive too.
    entry.timer = setInterval(() => this.queueHeartbeat(entry), this.heartbeatMs);
    if (this.state !== "running") {
      // Reserved by a request that was in flight when stop() began.
      this.handBack(entry);
      return;
    }
    this.queued.push(entry);
    this.dispatch();
  }

  /** Starts waiting jobs while slots are free. */
  private dispatch(): void {
    while (this.queued.length > 0 && this.running.size - this.queued.length < this.concurrency) {
      void this.execute(this.queued.shift()!);
    }
  }

  private queueHeartbeat(entry: Running): void {
    if (entry.settled || this.pending.some((ack) => ack.id === entry.job.id)) {
      return;
    }
    this.push({ op: "heartbeat", id: entry.job.id, fence: entry.job.fence, lease_seconds: this.leaseSeconds });
  }

  private async execute(entry: Running): Promise<void> {
    const { job, controller } = entry;
    const handler = this.handlers.get(job.kind) as Handler<unknown, unknown> | undefined;
    // A report refused for its fence means the job is no longer ours: stop the handler.
    const fenced = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (error) {
        if (error instanceof LeaseLostError && !entry.settled) {
          entry.settled = true;
          controller.abort(error);
        }
        throw error;
      }
    };
    const context: JobContext = {
      job,
      signal: controller.signal,
      progress: (fraction, message, details) =>
        fenced(() =>
          this.client.progress(job.id, {
            fence: job.fence,
            fraction,
            ...(message !== undefined ? { message } : {}),
            ...(details !== undefined ? { details } : {}),
          }),
        ),
      log: async (...lines) => {
        for (let start = 0; start < lines.length; start += 100) {
          await fenced(() => this.client.appendLogs(job.id, job.fence, lines.slice(start, start + 100)));
        }
      },
      batch: () => this.client.jobBatch(job.id),
      addToBatch: (...jobs) => fenced(() => this.client.addToBatch(job.id, job.fence, jobs)),
    };
    let ack: AckEntry;
    const base = { id: job.id, fence: job.fence };
    try {
      if (controller.signal.aborted) {
        // A cancel was requested while the job waited for a slot: it never runs.
        throw controller.signal.reason;
      }
      if (!handler) {
        throw new DiscardJob(`no handler for kind ${job.kind} in worker ${this.name}`);
      }
      const result = await handler(job.args, context);
      ack = { op: "complete", ...base, ...(result === undefined ? {} : { result }) };
    } catch (error) {
      ack = this.failure(base, error, controller.signal);
    }
    this.finish(entry, ack);
  }

  private failure(base: { id: number; fence: number }, error: unknown, signal: AbortSignal): AckEntry {
    if (error instanceof SnoozeJob) {
      return { op: "snooze", ...base, snooze_seconds: error.seconds };
    }
    if (signal.aborted && signal.reason instanceof JobCancelledError) {
      return { op: "cancel", ...base, error: describe(error) };
    }
    if (error instanceof DiscardJob) {
      return { op: "fail", ...base, error: describe(error), discard: true };
    }
    if (error instanceof RetryJob) {
      return { op: "fail", ...base, error: describe(error), retry_in_seconds: error.retryInSeconds };
    }
    return { op: "fail", ...base, error: describe(error) };
  }

  /** Hands a job back unfinished: a snooze of zero, which uses up no attempt. */
  private handBack(entry: Running): void {
    if (entry.settled) {
      return;
    }
    entry.controller.abort(new Error("worker shutting down"));
    this.finish(entry, { op: "snooze", id: entry.job.id, fence: entry.job.fence, snooze_seconds: 0 });
  }

  /** Ends a held job: reports `ack` unless the job was already settled (lease lost), frees
   * its slot and starts the next waiting job. */
  private finish(entry: Running, ack: AckEntry | undefined): void {
    clearInterval(entry.timer);
    if (this.running.get(entry.job.id) === entry) {
      this.running.delete(entry.job.id);
    }
    this.dispatch();
    if (entry.settled || ack === undefined) {
      this.wake();
      return;
    }
    entry.settled = true;
    this.processed++;
    // One report per job per batch: a queued heartbeat gives way to the outcome.
    this.pending = this.pending.filter((pending) => pending.id !== ack.id);
    this.push(ack);
  }

  private push(ack: AckEntry): void {
    this.pending.push(ack);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Waits for a wake-up or `ms`; true if woken. */
  private nextWake(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== woken);
        resolve(false);
      }, ms);
      const woken = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(woken);
    });
  }
}

/** An error as the job's error history records it. */
function describe(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.trim() || "handler failed without a message";
}
