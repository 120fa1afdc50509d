/**
 * The wire types of Stoker's HTTP API, hand-written after the OpenAPI document served at
 * `/v1/openapi.json`. Field names are the server's (snake_case); the public surface in
 * `client.ts` and `worker.ts` maps them to idiomatic options.
 *
 * Each type has a field list (`WIRE_FIELDS`) that the compiler checks against the type, and
 * that the contract test checks against the served document: a server change that renames,
 * adds or drops a field fails the client's tests.
 */

/** Where a job is in its life. */
export const JOB_STATES = [
  "blocked",
  "available",
  "running",
  "retryable",
  "completed",
  "discarded",
  "cancelled",
] as const;
/** Where a job is in its life. */
export type JobState = (typeof JOB_STATES)[number];

/** The stable error codes of the API (clients branch on these, never on messages). */
export const ERROR_CODES = [
  "malformed_json",
  "unsupported_media_type",
  "body_too_large",
  "invalid_field",
  "unknown_state",
  "invalid_date",
  "not_found",
  "route_not_found",
  "method_not_allowed",
  "unauthorized",
  "missing_scope",
  "tenant_forbidden",
  "lease_lost",
  "conflict",
  "quota_exceeded",
  "unavailable",
  "internal",
  "unknown",
] as const;
/** A stable error code; a code this client does not know yet arrives as a plain string. */
export type ErrorCode = (typeof ERROR_CODES)[number] | (string & {});

/** Why an attempt failed, by category. */
export const ERROR_KINDS = [
  "error",
  "panic",
  "timeout",
  "worker_lost",
  "no_handler",
  "invalid_args",
  "cancelled",
] as const;
/** Why an attempt failed, by category. */
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** The named priority levels; a number from -32768 to 32767 also works (higher runs first). */
export const PRIORITY_NAMES = ["LOW", "NORMAL", "HIGH", "CRITICAL"] as const;
/** A priority: a name or a number from -32768 to 32767. */
export type Priority = (typeof PRIORITY_NAMES)[number] | number;

/** `ErrorDetail`: one error of the API. */
export interface ErrorDetail {
  code: ErrorCode;
  message: string;
  field?: string | null;
}

/** `JobMetadata`. */
export interface JobMetadata {
  correlation_id?: string | null;
  parent_id?: number | null;
  source?: string | null;
  tags?: string[];
  /** Set by the server on a job a cron schedule fired; read only (a request may not set it). */
  readonly cron?: CronJobInfo | null;
}

/** `CronJobInfo`: what a job fired by a cron schedule carries. */
export interface CronJobInfo {
  /** The schedule's name. */
  name: string;
  /** The slot it was fired for (RFC 3339), or the instant of a manual run. */
  slot: string;
  /** Fired late, after an outage, by the catch-up policy. */
  catch_up: boolean;
  /** Fired by hand (`run-now`). */
  run_now: boolean;
}

/** `BackoffSpec`. */
export interface BackoffSpec {
  base_seconds: number;
  factor?: number;
  max_seconds?: number | null;
  jitter?: number;
}

/** `EnqueueRequest`: `POST /v1/jobs`, and each entry of `POST /v1/jobs/bulk`. */
export interface EnqueueRequest {
  kind: string;
  args?: object;
  queue?: string;
  priority?: Priority;
  run_at?: string;
  delay_seconds?: number;
  max_attempts?: number;
  idempotency_key?: string;
  tenant?: string;
  metadata?: JobMetadata;
  timeout_seconds?: number;
  backoff?: BackoffSpec;
  on_finish?: OnFinishSpec;
}

/** `OnFinishSpec`: where a job's outcome is posted when it reaches a final state. */
export interface OnFinishSpec {
  url: string;
  queue?: string;
}

/** `EnqueueResponse`. */
export interface EnqueueResponse {
  id: number;
  duplicate: boolean;
  kind: string;
  queue: string;
  state: JobState;
  run_at: string;
}

/** `EnqueueBulkRequest`. */
export interface EnqueueBulkRequest {
  jobs: EnqueueRequest[];
}

/** `EnqueuedItem`. */
export interface EnqueuedItem {
  id: number;
  duplicate: boolean;
  state: JobState;
  run_at: string;
}

/** `EnqueueBulkResponse`. */
export interface EnqueueBulkResponse {
  jobs: EnqueuedItem[];
  inserted: number;
  duplicates: number;
}

/** `AttemptErrorView`. */
export interface AttemptErrorView {
  attempt: number;
  at: string;
  kind: ErrorKind;
  message: string;
  backtrace?: string | null;
}

/** `ProgressView`. */
export interface ProgressView {
  fraction: number;
  at: string;
  message?: string | null;
  details?: object | null;
}

/** `JobView`: a job as the API shows it. */
export interface JobView<Args = unknown, Result = unknown> {
  id: number;
  kind: string;
  queue: string;
  args: Args;
  state: JobState;
  priority: number;
  attempt: number;
  fence: number;
  max_attempts: number;
  run_at: string;
  idempotency_key?: string | null;
  tenant?: string | null;
  metadata: JobMetadata;
  errors: AttemptErrorView[];
  result?: Result | null;
  progress?: ProgressView | null;
  timeout_seconds?: number | null;
  backoff?: BackoffSpec | null;
  created_at: string;
  attempted_at?: string | null;
  finished_at?: string | null;
  worker?: string | null;
  cancel_requested_at?: string | null;
  lease_expires_at?: string | null;
  /** The lines its attempts logged, oldest first: in get-job only, absent when none. */
  logs?: JobLogView[];
  /** Its completion callback, if it was enqueued with one. */
  on_finish?: OnFinishSpec;
}

/** Missed cron slots: dropped, the newest fired once, or every one (bounded). */
export type CatchUpPolicy = "skip" | "latest" | "all";
/** Whether a cron slot fires while the previous run is unfinished. */
export type OverlapPolicy = "allow" | "skip";

/** `CronCreateRequest`: `POST /v1/cron`, a recurring schedule (BullMQ's repeatable job). */
export interface CronCreateRequest {
  /** 1 to 128 letters, digits, `_`, `-` and `.`. */
  name: string;
  /** 5 fields (minute hour day month weekday), 6 with seconds first, or `@daily` and kin. */
  expr: string;
  /** The IANA time zone the expression is read in. Defaults to `UTC`. */
  tz?: string;
  kind: string;
  args?: object;
  queue?: string;
  priority?: Priority;
  max_attempts?: number;
  tenant?: string;
  metadata?: JobMetadata;
  catch_up?: CatchUpPolicy;
  catch_up_window_seconds?: number;
  catch_up_max?: number;
  overlap?: OverlapPolicy;
  /** False to create it paused. */
  enabled?: boolean;
}

/** `CronUpdateRequest`: `PATCH /v1/cron/{name}`, the fields to change. */
export type CronUpdateRequest = Partial<Omit<CronCreateRequest, "name" | "enabled">>;

/** `CronView`: a schedule as stored, with its next slots. */
export interface CronView {
  name: string;
  expr: string;
  tz: string;
  kind: string;
  queue: string;
  args: object;
  priority: number;
  max_attempts: number;
  tenant?: string | null;
  metadata: JobMetadata;
  catch_up: CatchUpPolicy;
  catch_up_window_seconds: number;
  catch_up_max: number;
  overlap: OverlapPolicy;
  enabled: boolean;
  /** The first slot not yet fired (RFC 3339). */
  next_slot: string;
  last_slot?: string | null;
  /** The next five slots (none while paused). */
  upcoming: string[];
  revision: number;
  created_at: string;
  updated_at: string;
}

/** `CronList`. */
export interface CronList {
  schedules: CronView[];
}

/** `JobLogList`: a job's log lines, oldest first. */
export interface JobLogList {
  lines: JobLogView[];
}

/** `AppendLogsRequest`: lines a worker appends to a job it holds. */
export interface AppendLogsRequest {
  /** The `fence` the job was reserved with. */
  fence: number;
  /** 1 to 100 lines, each at most 4096 characters. */
  lines: string[];
}

/** `AppendLogsResponse`: what an append kept. */
export interface AppendLogsResponse {
  /** Lines stored. */
  accepted: number;
  /** Lines dropped: the job reached its limit (1,000 lines or 256 KiB). */
  dropped: number;
}

/** `JobLogView`: one line a handler logged to its job. */
export interface JobLogView {
  /** Its place among the job's lines, from 1. */
  seq: number;
  /** The attempt that wrote it. */
  attempt: number;
  /** When it was written (RFC 3339). */
  at: string;
  line: string;
}

/** `JobList`: one page of jobs. */
export interface JobList {
  jobs: JobView[];
  next_cursor?: number | null;
  // --- stream search ---
  /** The cursor for newer jobs (with `direction=newer`). */
  prev_cursor?: number | null;
  /** Whether the page stopped at its scan budget: more may match past `next_cursor`. */
  partial: boolean;
  /** Rows the page read. */
  scanned: number;
  /** The count of matching jobs, when asked for with `count=true`. */
  count?: JobCountView | null;
}

/** `JobCountView`: a bounded count; `exact: false` means "at least". */
export interface JobCountView {
  count: number;
  exact: boolean;
}

/** `ReserveRequest`: `POST /v1/pull/reserve`, and the `reserve` part of `POST /v1/pull/ack`. */
export interface ReserveRequest {
  worker: string;
  queues: string[];
  kinds?: string[];
  limit?: number;
  lease_seconds?: number;
  wait_seconds?: number;
  host?: string;
  pid?: number;
}

/** `ReserveResponse`. */
export interface ReserveResponse {
  jobs: JobView[];
}

/** `ProgressRequest`: `POST /v1/pull/jobs/{id}/progress`. */
export interface ProgressRequest {
  fence: number;
  fraction: number;
  message?: string;
  details?: object;
}

/** `LeaseResponse`. */
export interface LeaseResponse {
  lease_expires_at: string;
  cancel_requested: boolean;
}

/** `AckResponse`: the answer of a one-job report. */
export interface AckResponse {
  id: number;
  state: JobState;
  run_at?: string | null;
}

/** One report of `POST /v1/pull/ack` (`AckEntry`), chosen by `op`. */
export type AckEntry =
  | { op: "complete"; id: number; fence: number; result?: unknown }
  | {
      op: "fail";
      id: number;
      fence: number;
      error: string;
      retry_in_seconds?: number;
      discard?: boolean;
    }
  | { op: "snooze"; id: number; fence: number; snooze_seconds: number }
  | { op: "cancel"; id: number; fence: number; error?: string }
  | { op: "heartbeat"; id: number; fence: number; lease_seconds?: number };

/** `AckRequest`: `POST /v1/pull/ack`. */
export interface AckRequest {
  acks?: AckEntry[];
  reserve?: ReserveRequest;
}

/** `AckResult`: the answer to one report. */
export interface AckResult {
  id: number;
  ok: boolean;
  state?: JobState | null;
  run_at?: string | null;
  lease_expires_at?: string | null;
  cancel_requested?: boolean | null;
  error?: ErrorDetail | null;
}

/** `AckBatchResponse`. */
export interface AckBatchResponse {
  results: AckResult[];
  jobs: JobView[];
  reserve_error?: ErrorDetail | null;
}

// --- stream workflows ---
/** `WorkflowJobSpec`: a job of a batch (or workflow), as `POST /v1/jobs` takes it without
 * `idempotency_key`, `tenant` and `on_finish`. */
export type WorkflowJobSpec = Omit<EnqueueRequest, "idempotency_key" | "tenant" | "on_finish">;

/** `BatchState`. */
export type BatchState = "open" | "running" | "finished" | "cancelled";

/** `BatchView`: a batch with its counters (one row's read). */
export interface BatchView {
  id: number;
  name: string;
  tenant?: string;
  state: BatchState;
  /** Jobs added. */
  total: number;
  /** Jobs not finished. */
  pending: number;
  completed: number;
  discarded: number;
  cancelled: number;
  /** The callback job, released once the batch is closed and nothing is pending. */
  callback_id?: number;
  created_at: string;
  closed_at?: string;
  finished_at?: string;
  cancelled_at?: string;
}

/** `JobBatchView`: `GET /v1/pull/jobs/{id}/batch`. */
export interface JobBatchView {
  /** Null for a job in no batch. */
  batch: BatchView | null;
}

/** `PullBatchAddRequest`: jobs a worker adds to the batch of a job it holds. */
export interface PullBatchAddRequest {
  /** The `fence` the job was reserved with. */
  fence: number;
  /** 1 to 10,000 jobs; each has the held job as its parent unless its metadata says otherwise. */
  jobs: WorkflowJobSpec[];
}

/** `BatchCreated`: what an add wrote. */
export interface BatchCreated {
  /** The batch. */
  id: number;
  /** The jobs' ids, in request order. */
  jobs: number[];
  callback_id?: number;
}

/** Every field of `T`, exactly: the compiler refuses a missing or an unknown one. */
type Fields<T> = { readonly [K in keyof Required<T>]: true };

/**
 * The fields of each wire type, by its schema name in the OpenAPI document. The compiler
 * keeps each list equal to its TypeScript type; the contract test keeps it equal to the
 * served document.
 */
export const WIRE_FIELDS = {
  ErrorDetail: { code: true, message: true, field: true } satisfies Fields<ErrorDetail>,
  JobMetadata: {
    correlation_id: true,
    parent_id: true,
    source: true,
    tags: true,
    cron: true,
  } satisfies Fields<JobMetadata>,
  CronJobInfo: { name: true, slot: true, catch_up: true, run_now: true } satisfies Fields<CronJobInfo>,
  BackoffSpec: {
    base_seconds: true,
    factor: true,
    max_seconds: true,
    jitter: true,
  } satisfies Fields<BackoffSpec>,
  EnqueueRequest: {
    kind: true,
    args: true,
    queue: true,
    priority: true,
    run_at: true,
    delay_seconds: true,
    max_attempts: true,
    idempotency_key: true,
    tenant: true,
    metadata: true,
    timeout_seconds: true,
    backoff: true,
    on_finish: true,
  } satisfies Fields<EnqueueRequest>,
  EnqueueResponse: {
    id: true,
    duplicate: true,
    kind: true,
    queue: true,
    state: true,
    run_at: true,
  } satisfies Fields<EnqueueResponse>,
  EnqueueBulkRequest: { jobs: true } satisfies Fields<EnqueueBulkRequest>,
  EnqueuedItem: { id: true, duplicate: true, state: true, run_at: true } satisfies Fields<EnqueuedItem>,
  EnqueueBulkResponse: {
    jobs: true,
    inserted: true,
    duplicates: true,
  } satisfies Fields<EnqueueBulkResponse>,
  AttemptErrorView: {
    attempt: true,
    at: true,
    kind: true,
    message: true,
    backtrace: true,
  } satisfies Fields<AttemptErrorView>,
  ProgressView: { fraction: true, at: true, message: true, details: true } satisfies Fields<ProgressView>,
  JobView: {
    id: true,
    kind: true,
    queue: true,
    args: true,
    state: true,
    priority: true,
    attempt: true,
    fence: true,
    max_attempts: true,
    run_at: true,
    idempotency_key: true,
    tenant: true,
    metadata: true,
    errors: true,
    result: true,
    progress: true,
    timeout_seconds: true,
    backoff: true,
    created_at: true,
    attempted_at: true,
    finished_at: true,
    worker: true,
    cancel_requested_at: true,
    lease_expires_at: true,
    logs: true,
    on_finish: true,
  } satisfies Fields<JobView>,
  OnFinishSpec: { url: true, queue: true } satisfies Fields<OnFinishSpec>,
  JobLogView: { seq: true, attempt: true, at: true, line: true } satisfies Fields<JobLogView>,
  JobLogList: { lines: true } satisfies Fields<JobLogList>,
  CronCreateRequest: { name: true, expr: true, tz: true, kind: true, args: true, queue: true, priority: true, max_attempts: true, tenant: true, metadata: true, catch_up: true, catch_up_window_seconds: true, catch_up_max: true, overlap: true, enabled: true } satisfies Fields<CronCreateRequest>,
  CronUpdateRequest: { expr: true, tz: true, kind: true, args: true, queue: true, priority: true, max_attempts: true, tenant: true, metadata: true, catch_up: true, catch_up_window_seconds: true, catch_up_max: true, overlap: true } satisfies Fields<CronUpdateRequest>,
  CronView: { name: true, expr: true, tz: true, kind: true, queue: true, args: true, priority: true, max_attempts: true, tenant: true, metadata: true, catch_up: true, catch_up_window_seconds: true, catch_up_max: true, overlap: true, enabled: true, next_slot: true, last_slot: true, upcoming: true, revision: true, created_at: true, updated_at: true } satisfies Fields<CronView>,
  CronList: { schedules: true } satisfies Fields<CronList>,
  AppendLogsRequest: { fence: true, lines: true } satisfies Fields<AppendLogsRequest>,
  AppendLogsResponse: { accepted: true, dropped: true } satisfies Fields<AppendLogsResponse>,
  JobList: {
    jobs: true,
    next_cursor: true,
    // --- stream search ---
    prev_cursor: true,
    partial: true,
    scanned: true,
    count: true,
  } satisfies Fields<JobList>,
  // --- stream search ---
  JobCountView: { count: true, exact: true } satisfies Fields<JobCountView>,
  ReserveRequest: {
    worker: true,
    queues: true,
    kinds: true,
    limit: true,
    lease_seconds: true,
    wait_seconds: true,
    host: true,
    pid: true,
  } satisfies Fields<ReserveRequest>,
  ReserveResponse: { jobs: true } satisfies Fields<ReserveResponse>,
  ProgressRequest: { fence: true, fraction: true, message: true, details: true } satisfies Fields<ProgressRequest>,
  LeaseResponse: { lease_expires_at: true, cancel_requested: true } satisfies Fields<LeaseResponse>,
  AckResponse: { id: true, state: true, run_at: true } satisfies Fields<AckResponse>,
  AckRequest: { acks: true, reserve: true } satisfies Fields<AckRequest>,
  AckResult: {
    id: true,
    ok: true,
    state: true,
    run_at: true,
    lease_expires_at: true,
    cancel_requested: true,
    error: true,
  } satisfies Fields<AckResult>,
  AckBatchResponse: { results: true, jobs: true, reserve_error: true } satisfies Fields<AckBatchResponse>,
  // --- stream workflows ---
  WorkflowJobSpec: {
    kind: true,
    args: true,
    queue: true,
    priority: true,
    run_at: true,
    delay_seconds: true,
    max_attempts: true,
    metadata: true,
    timeout_seconds: true,
    backoff: true,
  } satisfies Fields<WorkflowJobSpec>,
  BatchView: {
    id: true,
    name: true,
    tenant: true,
    state: true,
    total: true,
    pending: true,
    completed: true,
    discarded: true,
    cancelled: true,
    callback_id: true,
    created_at: true,
    closed_at: true,
    finished_at: true,
    cancelled_at: true,
  } satisfies Fields<BatchView>,
  JobBatchView: { batch: true } satisfies Fields<JobBatchView>,
  PullBatchAddRequest: { fence: true, jobs: true } satisfies Fields<PullBatchAddRequest>,
  BatchCreated: { id: true, jobs: true, callback_id: true } satisfies Fields<BatchCreated>,
} as const;

/** The fields of each `op` of `AckEntry`, checked against the document's `oneOf` branches. */
export const ACK_ENTRY_FIELDS = {
  complete: ["op", "id", "fence", "result"],
  fail: ["op", "id", "fence", "error", "retry_in_seconds", "discard"],
  snooze: ["op", "id", "fence", "snooze_seconds"],
  cancel: ["op", "id", "fence", "error"],
  heartbeat: ["op", "id", "fence", "lease_seconds"],
} as const satisfies { [Op in AckEntry["op"]]: readonly (keyof Extract<AckEntry, { op: Op }>)[] };
