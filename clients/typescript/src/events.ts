import type { JobState } from "./wire.js";

/** A job changed state (`event: job` of `GET /v1/events`). */
export interface JobEvent {
  id: number;
  state: JobState;
  queue: string;
  kind: string;
  tenant: string | null;
  correlation_id: string | null;
  attempt: number;
  /** When the change was seen (RFC 3339). */
  at: string;
  /** The error message when the job is `retryable` or `discarded`. */
  error: string | null;
}

/** Jobs by state. `available` is due work; `scheduled` is available but not yet due. */
export interface SnapshotStates {
  available: number;
  scheduled: number;
  running: number;
  retryable: number;
  completed: number;
  discarded: number;
  cancelled: number;
  /** Workflow jobs waiting for their dependencies. */
  blocked: number;
}

/** One queue in a {@link Snapshot}. */
export interface SnapshotQueue {
  name: string;
  paused: boolean;
  states: SnapshotStates;
  /** How long its oldest due job has waited, in seconds. */
  oldest_waiting_secs: number;
}

/** The current minute's counts in a {@link Snapshot}. */
export interface SnapshotMinute {
  enqueued: number;
  started: number;
  completed: number;
  failed: number;
  discarded: number;
}

/** The once-a-second picture of the whole server (`event: snapshot`): the same object for
 * every subscriber. Tenant-bound tokens get none. */
export interface Snapshot {
  at: string;
  states: SnapshotStates;
  queues: SnapshotQueue[];
  minute: SnapshotMinute;
  workers_alive: number;
}

/** One event of a {@link Client.events} stream. `end`: every followed job has finished; the
 * stream is over. */
export type StokerEvent = { type: "job"; job: JobEvent } | { type: "snapshot"; snapshot: Snapshot } | { type: "end" };

/** What a {@link Client.events} stream carries; every filter narrows it (all must match). */
export interface EventFilter {
  /** Follow these jobs (at most 100): their changes, then `end` once all have finished, even
   * when another server runs them. */
  jobs?: number[];
  correlationId?: string;
  queue?: string;
  kind?: string;
  tenant?: string;
  /** Include the once-a-second snapshots. Defaults to true. */
  snapshots?: boolean;
  /** Include job events. Defaults to true. */
  jobEvents?: boolean;
  /** The server closes the stream after this many seconds (1 to 86,400). */
  timeoutSeconds?: number;
}

/** The fields of each event's JSON, checked against a live server in the contract test. */
export const EVENT_FIELDS = {
  JobEvent: ["id", "state", "queue", "kind", "tenant", "correlation_id", "attempt", "at", "error"],
  Snapshot: ["at", "states", "queues", "minute", "workers_alive"],
  SnapshotStates: ["available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled", "blocked"],
  SnapshotQueue: ["name", "paused", "states", "oldest_waiting_secs"],
  SnapshotMinute: ["enqueued", "started", "completed", "failed", "discarded"],
} as const satisfies {
  JobEvent: readonly (keyof JobEvent)[];
  Snapshot: readonly (keyof Snapshot)[];
  SnapshotStates: readonly (keyof SnapshotStates)[];
  SnapshotQueue: readonly (keyof SnapshotQueue)[];
  SnapshotMinute: readonly (keyof SnapshotMinute)[];
};

/** The query string of a filter. */
export function eventsQuery(filter: EventFilter): string {
  const query = new URLSearchParams();
  if (filter.jobs?.length) query.set("job", filter.jobs.join(","));
  if (filter.correlationId !== undefined) query.set("correlation_id", filter.correlationId);
  if (filter.queue !== undefined) query.set("queue", filter.queue);
  if (filter.kind !== undefined) query.set("kind", filter.kind);
  if (filter.tenant !== undefined) query.set("tenant", filter.tenant);
  if (filter.snapshots !== undefined) query.set("snapshot", String(filter.snapshots));
  if (filter.jobEvents !== undefined) query.set("jobs", String(filter.jobEvents));
  if (filter.timeoutSeconds !== undefined) query.set("timeout_secs", String(filter.timeoutSeconds));
  const text = query.toString();
  return text ? `?${text}` : "";
}
