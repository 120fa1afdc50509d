/**
 * Starts a real `stoker serve` for the tests: SQLite in a temporary directory, or PostgreSQL
 * (its own schema) when `STOKER_TEST_DATABASE_URL` is set and the test asks for it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";

/** The `stoker` binary: `$STOKER_BIN`, else the workspace's debug build. */
export function stokerBin(): string {
  if (process.env.STOKER_BIN) {
    return process.env.STOKER_BIN;
  }
  const target = process.env.CARGO_TARGET_DIR ?? resolve(import.meta.dirname, "../../../../target");
  const bin = join(target, "debug", "stoker");
  if (!existsSync(bin)) {
    throw new Error(`no stoker binary at ${bin}: run \`cargo build --bin stoker\` or set STOKER_BIN`);
  }
  return bin;
}

/** The stores the tests run on: SQLite always, PostgreSQL when configured. */
export function stores(): Array<"sqlite" | "postgres"> {
  return process.env.STOKER_TEST_DATABASE_URL ? ["sqlite", "postgres"] : ["sqlite"];
}

/** A running server. */
export interface TestServer {
  url: string;
  token: string;
  store: "sqlite" | "postgres";
  stop(): Promise<void>;
}

/** Starts `stoker serve` on `store` with a fresh database, a token, and fast rescues. */
export async function startServer(store: "sqlite" | "postgres", extra: string[] = []): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "stoker-ts-"));
  const token = `ts-test-${randomBytes(8).toString("hex")}`;
  const database =
    store === "sqlite"
      ? ["--database-url", `sqlite://${join(dir, "stoker.sqlite3")}`]
      : [
          "--database-url",
          process.env.STOKER_TEST_DATABASE_URL!,
          "--database-schema",
          `ts_client_${randomBytes(6).toString("hex")}`,
        ];
  const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: "warn" };
  for (const name of ["STOKER_DATABASE_URL", "STOKER_SERVER", "STOKER_API_TOKEN", "STOKER_CONFIG", "STOKER_BIND", "STOKER_QUEUES"]) {
    delete env[name];
  }
  // The token goes in the environment: on the command line every user could read it.
  env.STOKER_API_TOKEN = token;
  const child: ChildProcess = spawn(
    stokerBin(),
    ["serve", ...database, "--bind", "127.0.0.1:0", "--rescue-interval", "200ms", ...extra],
    { cwd: dir, env, stdio: ["ignore", "pipe", "inherit"] },
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error("stoker serve did not start within 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`stoker serve exited with ${code}`)));
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const match = /API:\s+(\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]!.replace(/\/v1$/, ""));
      }
    });
  });
  return {
    url,
    token,
    store,
    async stop() {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A queue name no other test uses. */
export function uniqueQueue(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** Polls `check` until it returns a value (not undefined), for at most 30 s. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((done) => setTimeout(done, 50));
  }
}
