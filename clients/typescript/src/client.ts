import { randomUUID } from "node:crypto";

import { Http, sleep, type ConnectionOptions } from "./http.js";
import type { EnqueueOptions, JobDefinition } from "./jobs.js";
import { eventsQuery, type EventFilter, type JobEvent, type Snapshot, type StokerEvent } from "./events.js";
import type {
  AckBatchResponse,
  AckRequest,
  AppendLogsRequest,
  AppendLogsResponse,
  BatchCreated,
  BatchView,
  CronCreateRequest,
  CronList,
  CronUpdateRequest,
  CronView,
  EnqueueBulkResponse,
  EnqueueRequest,
  EnqueueResponse,
  JobBatchView,
  JobList,
  JobLogList,
  JobLogView,
  JobState,
  JobView,
  LeaseResponse,
  ProgressRequest,
  PullBatchAddRequest,
  ReserveRequest,
  ReserveResponse,
  WorkflowJobSpec,
} from "./wire.js";

/** A {@link Client}'s options. */
export interface ClientOptions extends ConnectionOptions {
  /** Give every enqueue without an idempotency key a random one, so a request retried after a
   * lost answer cannot enqueue twice. Defaults to true. */
  autoIdempotencyKey?: boolean;
}

/** One job of {@link Client.enqueueBulk}. */
export type BulkEntry<J extends JobDefinition<object, unknown> = JobDefinition<object, unknown>> =
  J extends JobDefinition<infer A, unknown>
    ? { job: J; args: A; options?: EnqueueOptions }
    : never;

/** One untyped job of {@link Client.enqueueBulk}. */
export interface RawBulkEntry {
  kind: string;
  args?: object;
  options?: EnqueueOptions;
}

/** Filters and paging of {@link Client.list}. */
export interface ListOptions {
  states?: JobState[];
  kinds?: string[];
  queues?: string[];
  tenant?: string;
  /** `nextCursor` of the previous page. */
  cursor?: number;
  /** Page size, 1 to 1000. */
  limit?: number;
}

/** A page of {@link Client.list}. */
export interface JobPage {
  jobs: JobView[];
  /** Pass as `cursor` for the next page; absent on the last. */
  nextCursor?: number;
}

/** The states in which a job will not run again by itself. */
const FINISHED: readonly JobState[] = ["completed", "discarded", "cancelled"];

/**
 * A client of a Stoker server: enqueue jobs (typed by {@link JobDefinition}s), read, list,
 * cancel and retry them. Transient failures (network, 429, 502-504) are retried with backoff,
 * honouring `Retry-After`; errors are {@link StokerError}s with the server's code and field.
 */
export class Client {
  /** The HTTP side, shared with workers built on this client. */
  readonly http: Http;
  private readonly autoKey: boolean;

  constructor(options: ClientOptions = {}) {
    this.http = new Http(options);
    this.autoKey = options.autoIdempotencyKey ?? true;
  }

  /** Enqueues one job of a defined kind; its args are checked at compile time. */
  enqueue<A extends object, R>(job: JobDefinition<A, R>, args: A, options?: EnqueueOptions): Promise<EnqueueResponse>;
  /** Enqueues one job of a kind named by a string. */
  enqueue(kind: string, args?: object, options?: EnqueueOptions): Promise<EnqueueResponse>;
  async enqueue(
    job: string | JobDefinition<object, unknown>,
    args: object = {},
    options: EnqueueOptions = {},
  ): Promise<EnqueueResponse> {
    const body = this.request(job, args, options);
    // Safe to repeat only with a key: then a retry finds the job the lost answer created.
    return this.http.request<EnqueueResponse>("POST", "/v1/jobs", body, { retry: body.idempotency_key !== undefined });
  }

  /** Enqueues many jobs in one request (at most 10,000): all or none are written. */
  async enqueueBulk(entries: ReadonlyArray<BulkEntry | RawBulkEntry>): Promise<EnqueueBulkResponse> {
    const jobs = entries.map((entry) =>
      "job" in entry ? this.request(entry.job, entry.args, entry.options ?? {}) : this.request(entry.kind, entry.args ?? {}, entry.options ?? {}),
    );
    const retry = jobs.every((job) => job.idempotency_key !== undefined);
    return this.http.request<EnqueueBulkResponse>("POST", "/v1/jobs/bulk", { jobs }, { retry });
  }

  /** One job, with its args and result typed by `job` when given. */
  async get<A extends object = Record<string, unknown>, R = unknown>(id: number, _job?: JobDefinition<A, R>): Promise<JobView<A, R>> {
    return this.http.request<JobView<A, R>>("GET", `/v1/jobs/${id}`);
  }

  /** One page of jobs, newest first. */
  async list(options: ListOptions = {}): Promise<JobPage> {
    const query = new URLSearchParams();
    if (options.states?.length) query.set("state", options.states.join(","));
    if (options.kinds?.length) query.set("kind", options.kinds.join(","));
    if (options.queues?.length) query.set("queue", options.queues.join(","));
    if (options.tenant !== undefined) query.set("tenant", options.tenant);
    if (options.cursor !== undefined) query.set("cursor", String(options.cursor));
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    const text = query.toString();
    const page = await this.http.request<JobList>("GET", `/v1/jobs${text ? `?${text}` : ""}`);
    return page.next_cursor == null ? { jobs: page.jobs } : { jobs: page.jobs, nextCursor: page.next_cursor };
  }

  /** Cancels a job: a waiting one at once, a running one when its worker stops. */
  async cancel(id: number): Promise<JobView> {
    return this.http.request<JobView>("POST", `/v1/jobs/${id}/cancel`);
  }

  /** Runs a finished (or waiting) job again now. */
  async retry(id: number): Promise<JobView> {
    return this.http.request<JobView>("POST", `/v1/jobs/${id}/retry`);
  }

  /** Polls a job until it is `completed`, `discarded` or `cancelled` (or `signal` aborts),
   * and returns it. */
  async waitFor<A extends object = Record<string, unknown>, R = unknown>(
    id: number,
    options: { job?: JobDefinition<A, R>; intervalMs?: number; signal?: AbortSignal } = {},
  ): Promise<JobView<A, R>> {
    for (;;) {
      const job = await this.get<A, R>(id);
      if (FINISHED.includes(job.state) || options.signal?.aborted) {
        return job;
      }
      await sleep(options.intervalMs ?? 100, options.signal);
    }
  }

  // --- The pull protocol, as the Worker uses it -----------------------------------------

  /** `POST /v1/pull/reserve`. */
  async reserve(request: ReserveRequest, signal?: AbortSignal): Promise<ReserveResponse> {
    // Not retried: a lost answer's jobs are held until their lease ends, then run again.
    return this.http.request<ReserveResponse>("POST", "/v1/pull/reserve", request, {
      retry: false,
      extraTimeoutMs: (request.wait_seconds ?? 0) * 1000,
      ...(signal ? { signal } : {}),
    });
  }

  /** `POST /v1/pull/ack`: many fenced reports, each answered on its own, and optionally a
   * reservation of new jobs in the same round trip. */
  async ack(request: AckRequest): Promise<AckBatchResponse> {
    // Reports are fenced, so a retried batch applies each at most once; a retry is refused
    // only for a reserve part, whose lost jobs would wait out their leases.
    return this.http.request<AckBatchResponse>("POST", "/v1/pull/ack", request, {
      retry: request.reserve === undefined,
      extraTimeoutMs: (request.reserve?.wait_seconds ?? 0) * 1000,
    });
  }

  /** `POST /v1/pull/jobs/{id}/heartbeat`. */
  async heartbeat(id: number, fence: number, leaseSeconds?: number): Promise<LeaseResponse> {
    const body = leaseSeconds === undefined ? { fence } : { fence, lease_seconds: leaseSeconds };
    return this.http.request<LeaseResponse>("POST", `/v1/pull/jobs/${id}/heartbeat`, body);
  }

  /** `POST /v1/pull/jobs/{id}/progress`. */
  async progress(id: number, request: ProgressRequest): Promise<void> {
    await this.http.request<void>("POST", `/v1/pull/jobs/${id}/progress`, request);
  }

  /** `POST /v1/pull/jobs/{id}/logs`: appends lines (1 to 100, each at most 4096 characters)
   * to a job this worker holds; fenced like every report. */
  async appendLogs(id: number, fence: number, lines: string[]): Promise<AppendLogsResponse> {
    return this.http.request<AppendLogsResponse>("POST", `/v1/pull/jobs/${id}/logs`, { fence, lines } satisfies AppendLogsRequest);
  }

  // --- stream workflows ---
  /** `GET /v1/pull/jobs/{id}/batch`: the batch of a job, with its counters; null for a job
   * in no batch. */
  async jobBatch(id: number): Promise<BatchView | null> {
    return (await this.http.request<JobBatchView>("GET", `/v1/pull/jobs/${id}/batch`)).batch;
  }

  /** `POST /v1/pull/jobs/{id}/batch/jobs`: adds jobs to the open batch of a job this worker
   * holds (fenced like every report; needs the `work` and `enqueue` scopes). Each job has the
   * held job as its parent unless its metadata says otherwise. */
  async addToBatch(id: number, fence: number, jobs: WorkflowJobSpec[]): Promise<BatchCreated> {
    return this.http.request<BatchCreated>("POST", `/v1/pull/jobs/${id}/batch/jobs`, { fence, jobs } satisfies PullBatchAddRequest);
  }

  /** The lines a job's handlers logged, oldest first. */
  async logs(id: number): Promise<JobLogView[]> {
    return (await this.http.request<JobLogList>("GET", `/v1/jobs/${id}/logs`)).lines;
  }

  // --- Live events --------------------------------------------------------------------------

  /**
   * Live events from `GET /v1/events`: job state changes matching `filter`, and a snapshot of
   * the server's counters once a second. Ends when the server ends the stream (followed jobs
   * finished, `timeoutSeconds`) or `signal` aborts.
   *
   * ```ts
   * for await (const event of client.events({ queue: "mail", snapshots: false })) {
   *   if (event.type === "job") console.log(event.job.id, event.job.state);
   * }
   * ```
   */
  async *events(filter: EventFilter = {}, signal?: AbortSignal): AsyncGenerator<StokerEvent> {
    for await (const { event, data } of this.http.stream(`/v1/events${eventsQuery(filter)}`, signal)) {
      if (event === "job") yield { type: "job", job: JSON.parse(data) as JobEvent };
      else if (event === "snapshot") yield { type: "snapshot", snapshot: JSON.parse(data) as Snapshot };
      else if (event === "end") {
        yield { type: "end" };
        return;
      }
    }
  }

  /** Follows one job to its end through the event stream and returns it finished: no polling,
   * whichever server or worker runs it. */
  async follow<A extends object = Record<string, unknown>, R = unknown>(id: number, options: { job?: JobDefinition<A, R>; signal?: AbortSignal } = {}): Promise<JobView<A, R>> {
    for await (const event of this.events({ jobs: [id], snapshots: false }, options.signal)) {
      if (event.type === "end") break;
    }
    return this.get<A, R>(id);
  }

  // --- Recurring schedules (cron) ---------------------------------------------------------

  /** Creates a recurring schedule: a job of `kind` enqueued at every slot of `expr`, exactly
   * once per slot however many servers run. Needs an admin token. */
  async createCron(request: CronCreateRequest): Promise<CronView> {
    return this.http.request<CronView>("POST", "/v1/cron", request);
  }

  /** Every schedule. */
  async listCron(): Promise<CronView[]> {
    return (await this.http.request<CronList>("GET", "/v1/cron")).schedules;
  }

  /** One schedule. */
  async getCron(name: string): Promise<CronView> {
    return this.http.request<CronView>("GET", `/v1/cron/${encodeURIComponent(name)}`);
  }

  /** Changes the given fields of a schedule; a new `expr` or `tz` counts from now. */
  async updateCron(name: string, changes: CronUpdateRequest): Promise<CronView> {
    return this.http.request<CronView>("PATCH", `/v1/cron/${encodeURIComponent(name)}`, changes);
  }

  /** Deletes a schedule (jobs it already enqueued stay). */
  async deleteCron(name: string): Promise<CronView> {
    return this.http.request<CronView>("DELETE", `/v1/cron/${encodeURIComponent(name)}`);
  }

  /** The wire request of one enqueue: the kind's defaults, then the call's options. */
  private request(job: string | JobDefinition<object, unknown>, args: object, options: EnqueueOptions): EnqueueRequest {
    const kind = typeof job === "string" ? job : job.kind;
    const merged: EnqueueOptions = typeof job === "string" ? options : { ...job.defaults, ...options };
    const request: EnqueueRequest = { kind, args };
    if (merged.queue !== undefined) request.queue = merged.queue;
    if (merged.priority !== undefined) request.priority = merged.priority;
    if (merged.runAt !== undefined) {
      request.run_at = merged.runAt instanceof Date ? merged.runAt.toISOString() : merged.runAt;
    }
    if (merged.delaySeconds !== undefined) request.delay_seconds = merged.delaySeconds;
    if (merged.maxAttempts !== undefined) request.max_attempts = merged.maxAttempts;
    const key = merged.idempotencyKey ?? (this.autoKey ? randomUUID() : undefined);
    if (key !== undefined) request.idempotency_key = key;
    if (merged.tenant !== undefined) request.tenant = merged.tenant;
    if (
      merged.correlationId !== undefined ||
      merged.parentId !== undefined ||
      merged.source !== undefined ||
      merged.tags !== undefined
    ) {
      request.metadata = {};
      if (merged.correlationId !== undefined) request.metadata.correlation_id = merged.correlationId;
      if (merged.parentId !== undefined) request.metadata.parent_id = merged.parentId;
      if (merged.source !== undefined) request.metadata.source = merged.source;
      if (merged.tags !== undefined) request.metadata.tags = merged.tags;
    }
    if (merged.timeoutSeconds !== undefined) request.timeout_seconds = merged.timeoutSeconds;
    if (merged.backoff !== undefined) {
      const { baseSeconds, factor, maxSeconds, jitter } = merged.backoff;
      request.backoff = { base_seconds: baseSeconds };
      if (factor !== undefined) request.backoff.factor = factor;
      if (maxSeconds !== undefined) request.backoff.max_seconds = maxSeconds;
      if (jitter !== undefined) request.backoff.jitter = jitter;
    }
    if (merged.onFinish !== undefined) {
      request.on_finish = typeof merged.onFinish === "string" ? { url: merged.onFinish } : { ...merged.onFinish };
    }
    return request;
  }
}
