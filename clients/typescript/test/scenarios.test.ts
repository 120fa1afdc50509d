/**
 * Every scenario of the shared list (`clients/SCENARIOS.md`) has a test of this suite whose
 * name carries its tag, so a scenario added to the list fails here until it is covered.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** `clients/SCENARIOS.md`, found upwards from here (the tests run compiled, from `dist/test`). */
function scenarioList(): string {
  for (let dir = here; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      return readFileSync(join(dir, "SCENARIOS.md"), "utf8");
    } catch {
      // not here; look one level up
    }
  }
  throw new Error(`no SCENARIOS.md above ${here}`);
}

test("every shared scenario has a test", () => {
  const list = scenarioList();
  const tags = [...list.matchAll(/^\| (S\d+) \|/gm)].map((match) => match[1]);
  assert.ok(tags.length >= 14, `SCENARIOS.md lists ${tags.length} scenarios`);
  const sources = readdirSync(here)
    .filter((name) => /\.test\.[jt]s$/.test(name) && !name.startsWith("scenarios."))
    .map((name) => readFileSync(join(here, name), "utf8"))
    .join("\n");
  const missing = tags.filter((tag) => !new RegExp(`test\\(\\s*\`?"?\\[${tag}\\]`).test(sources));
  assert.deepEqual(missing, [], "scenarios without a TypeScript test");
});
