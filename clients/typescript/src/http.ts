import { StokerError, errorFor, isTransientStatus } from "./errors.js";
import type { ErrorDetail } from "./wire.js";

/** How to reach a Stoker server. */
export interface ConnectionOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080` (with or without `/v1`). Defaults to
   * `$STOKER_SERVER`, else `http://127.0.0.1:8080`. */
  url?: string;
  /** An API token, sent as `Authorization: Bearer <token>`. Defaults to `$STOKER_API_TOKEN`. */
  token?: string;
  /** How many times a request is retried after a transient failure (a network error, 429,
   * 502, 503, 504). Defaults to 4. */
  retries?: number;
  /** The first retry's delay in milliseconds, doubled each time with jitter, unless the server
   * sent `Retry-After`. Defaults to 100. */
  retryDelayMs?: number;
  /** Abort a request that has not answered in this many milliseconds (long-polls get their
   * wait added). Defaults to 30,000. */
  timeoutMs?: number;
  /** The `fetch` to use (tests, proxies). Defaults to the global one. */
  fetch?: typeof fetch;
}

/** A request's options. */
export interface RequestOptions {
  /** Whether a transient failure is retried: only for requests that are safe to repeat. */
  retry?: boolean;
  /** Extra time the server may take (a long-poll's wait), in milliseconds. */
  extraTimeoutMs?: number;
  /** Cancels the request. */
  signal?: AbortSignal;
}

/** The HTTP side shared by the client and the worker: auth, JSON, typed errors, retries. */
export class Http {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(options: ConnectionOptions = {}) {
    const url = options.url ?? process.env.STOKER_SERVER ?? "http://127.0.0.1:8080";
    this.baseUrl = url.replace(/\/+$/, "").replace(/\/v1$/, "");
    this.token = options.token ?? process.env.STOKER_API_TOKEN ?? undefined;
    this.retries = options.retries ?? 4;
    this.retryDelayMs = options.retryDelayMs ?? 100;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchFn = options.fetch ?? fetch;
  }

  /** Sends a request and returns its JSON answer (`undefined` for 204). Throws
   * {@link StokerError} for an error answer, with status 0 when the server was unreachable. */
  async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const retry = options.retry ?? true;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(method, path, body, options);
      } catch (err) {
        const transient = err instanceof StokerError && err.transient;
        if (!retry || !transient || attempt >= this.retries || options.signal?.aborted) {
          throw err;
        }
        await sleep(this.delay(attempt, (err as RetryAfter).retryAfterMs), options.signal);
      }
    }
  }

  private delay(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) {
      return retryAfterMs;
    }
    const base = this.retryDelayMs * 2 ** attempt;
    // Full jitter, so many clients retrying after one outage do not arrive together.
    return base / 2 + Math.random() * (base / 2);
  }

  /** Opens a `text/event-stream` answer of `GET path` and yields its events until the server
   * ends the stream or `signal` aborts. An error answer throws {@link StokerError} before the
   * first event; the connection is not retried (the caller knows what it missed). */
  async *stream(path: string, signal?: AbortSignal): AsyncGenerator<ServerSentEvent> {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.token) {
      headers.authorization = `Bearer ${this.token}`;
    }
    let response: Response;
    try {
      response = await this.fetchFn(this.baseUrl + path, { method: "GET", headers, ...(signal ? { signal } : {}) });
    } catch (cause) {
      if (signal?.aborted) {
        return;
      }
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new StokerError(0, { code: "unavailable", message: `GET ${path}: ${message}` }, { cause });
    }
    if (!response.ok || !response.body) {
      await this.fail(response, await response.text());
    }
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // a keep-alive comment
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = value;
            else if (field === "data") data.push(value);
          }
          if (data.length > 0) {
            yield { event, data: data.join("\n") };
          }
        }
      }
    } catch (cause) {
      if (signal?.aborted) {
        return;
      }
      throw cause;
    }
  }

  private async once<T>(method: string, path: string, body: unknown, options: RequestOptions): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
    }
    if (this.token) {
      headers.authorization = `Bearer ${this.token}`;
    }
    const timeout = AbortSignal.timeout(this.timeoutMs + (options.extraTimeoutMs ?? 0));
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetchFn(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new StokerError(0, { code: "unavailable", message: `${method} ${path}: ${message}` }, { cause });
    }
    const text = await response.text();
    if (response.ok) {
      return (text ? JSON.parse(text) : undefined) as T;
    }
    return this.fail(response, text);
  }

  /** Throws the typed error of an error answer. */
  private async fail(response: Response, text: string): Promise<never> {
    let detail: ErrorDetail;
    try {
      detail = (JSON.parse(text) as { error: ErrorDetail }).error;
    } catch {
      detail = { code: isTransientStatus(response.status) ? "unavailable" : "unknown", message: text || response.statusText };
    }
    const error = errorFor(response.status, detail) as StokerError & RetryAfter;
    const retryAfter = Number(response.headers.get("retry-after"));
    if (Number.isFinite(retryAfter) && retryAfter > 0) {
      error.retryAfterMs = Math.min(retryAfter * 1000, 60_000);
    }
    throw error;
  }
}

/** An open server-sent-events stream: its events, as the server names them. */
export interface ServerSentEvent {
  event: string;
  data: string;
}

interface RetryAfter {
  retryAfterMs?: number;
}

/** Waits `ms`, or less if `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
