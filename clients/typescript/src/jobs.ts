import type { Priority } from "./wire.js";

/** A job's own retry backoff: the wait after failed attempt `n` is
 * `baseSeconds * factor^(n - 1)`, at most `maxSeconds`, moved at random by up to `jitter`. */
export interface Backoff {
  baseSeconds: number;
  /** Defaults to 2. */
  factor?: number;
  /** Defaults to one hour. */
  maxSeconds?: number;
  /** A fraction from 0 to 1; defaults to 0. */
  jitter?: number;
}

/** Every option of an enqueue. */
export interface EnqueueOptions {
  /** The queue: 1 to 128 letters, digits, `_`, `-`, `.`, `:`. Defaults to `default`. */
  queue?: string;
  /** Higher runs first: `LOW`, `NORMAL` (default), `HIGH`, `CRITICAL`, or a number. */
  priority?: Priority;
  /** Run no earlier than this instant. Not with `delaySeconds`. */
  runAt?: Date | string;
  /** Run no earlier than this many seconds from now. Not with `runAt`. */
  delaySeconds?: number;
  /** The most attempts, at least 1. Defaults to 5. */
  maxAttempts?: number;
  /** While a job with this key exists, an enqueue returns it (`duplicate: true`) and writes
   * nothing. Without one the client generates one per call (see `autoIdempotencyKey`), so a
   * retried request cannot enqueue twice. */
  idempotencyKey?: string;
  /** The tenant the job belongs to. */
  tenant?: string;
  /** Ties together every job of one request or workflow. */
  correlationId?: string;
  /** The job that enqueued this one. */
  parentId?: number;
  /** Who enqueued it. */
  source?: string;
  /** Labels for searching and grouping, at most 100. */
  tags?: string[];
  /** How long one attempt may run, in seconds. */
  timeoutSeconds?: number;
  /** The job's own retry backoff. */
  backoff?: Backoff;
  /** Post the job's outcome to this http(s) URL when it completes, is discarded or is
   * cancelled (a `webhook` job on the `default` queue, or on `queue` when given). */
  onFinish?: string | { url: string; queue?: string };
}

/**
 * A job kind with its argument and result types: enqueueing it checks the args at compile
 * time, and a worker's handler for it must take those args and return that result.
 *
 * ```ts
 * const sendEmail = defineJob<{ to: string; subject: string }, { messageId: string }>("send-email", { queue: "mail" });
 * await client.enqueue(sendEmail, { to: "a@b.c", subject: "hi" });
 * worker.register(sendEmail, async (args) => ({ messageId: await send(args) }));
 * ```
 */
export interface JobDefinition<Args extends object = Record<string, unknown>, Result = unknown> {
  /** The kind, as the server knows it. */
  readonly kind: string;
  /** Options every enqueue of this kind starts from. */
  readonly defaults: EnqueueOptions;
  /** Carries the types only; never set at run time. */
  readonly __types?: { args: Args; result: Result };
}

/** Defines a job kind with its argument and result types (see {@link JobDefinition}). */
export function defineJob<Args extends object = Record<string, unknown>, Result = unknown>(
  kind: string,
  defaults: EnqueueOptions = {},
): JobDefinition<Args, Result> {
  return Object.freeze({ kind, defaults: Object.freeze({ ...defaults }) });
}

/** The args type of a job definition. */
export type ArgsOf<J> = J extends JobDefinition<infer A, unknown> ? A : never;
/** The result type of a job definition. */
export type ResultOf<J> = J extends JobDefinition<object, infer R> ? R : never;
