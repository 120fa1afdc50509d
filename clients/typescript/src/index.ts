/**
 * The TypeScript client of Stoker: {@link Client} enqueues and manages jobs, {@link Worker}
 * runs them through the server's pull protocol, {@link defineJob} types a kind's args and
 * result.
 */
export { Client, type ClientOptions, type BulkEntry, type RawBulkEntry, type ListOptions, type JobPage } from "./client.js";
export { Worker, type WorkerOptions, type JobContext, type Handler, SnoozeJob, DiscardJob, RetryJob, JobCancelledError } from "./worker.js";
export { defineJob, type JobDefinition, type EnqueueOptions, type Backoff, type ArgsOf, type ResultOf } from "./jobs.js";
export { StokerError, LeaseLostError } from "./errors.js";
export { EVENT_FIELDS, type EventFilter, type JobEvent, type Snapshot, type SnapshotMinute, type SnapshotQueue, type SnapshotStates, type StokerEvent } from "./events.js";
export { type ConnectionOptions } from "./http.js";
export * from "./wire.js";
