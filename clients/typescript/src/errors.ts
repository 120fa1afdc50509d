import type { ErrorCode, ErrorDetail } from "./wire.js";

/**
 * An error answer of the server, carrying its stable `code`, its `message`, and the request
 * `field` at fault (`kind`, `jobs[3].queue`, `acks[0].fence`...), as the API sent them.
 */
export class StokerError extends Error {
  /** The HTTP status (0 when the server could not be reached). */
  readonly status: number;
  /** The server's stable error code; branch on this, never on the message. */
  readonly code: ErrorCode;
  /** The request field at fault, when one is. */
  readonly field: string | undefined;

  constructor(status: number, detail: ErrorDetail, options?: { cause?: unknown }) {
    super(detail.message, options);
    this.name = "StokerError";
    this.status = status;
    this.code = detail.code;
    this.field = detail.field ?? undefined;
  }

  /** Whether a later identical request may succeed (the server or network was unavailable). */
  get transient(): boolean {
    return isTransientStatus(this.status);
  }
}

/** A report whose fence is no longer the job's: its lease ended, it finished, or it was
 * reserved again. The worker must drop the job. */
export class LeaseLostError extends StokerError {
  constructor(status: number, detail: ErrorDetail) {
    super(status, detail);
    this.name = "LeaseLostError";
  }
}

/** The error for an error answer, typed by its code. */
export function errorFor(status: number, detail: ErrorDetail): StokerError {
  return detail.code === "lease_lost" ? new LeaseLostError(status, detail) : new StokerError(status, detail);
}

/** Statuses worth retrying: the network (0), rate limits, and the server being unavailable. */
export function isTransientStatus(status: number): boolean {
  return status === 0 || status === 429 || status === 502 || status === 503 || status === 504;
}
