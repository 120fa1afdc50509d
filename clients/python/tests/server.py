"""Starts a real `stoker serve` for the tests (SQLite, or PostgreSQL in its own schema)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import tempfile
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[3]


def stoker_bin() -> str:
    if os.environ.get("STOKER_BIN"):
        return os.environ["STOKER_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "stoker")


def stores() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get("STOKER_TEST_DATABASE_URL") else ["sqlite"]


class Server:
    def __init__(self, store: str = "sqlite"):
        self.dir = tempfile.TemporaryDirectory()
        self.token = f"py-test-{uuid.uuid4().hex[:16]}"
        if store == "sqlite":
            database = ["--database-url", f"sqlite://{self.dir.name}/stoker.sqlite3"]
        else:
            database = [
                "--database-url", os.environ["STOKER_TEST_DATABASE_URL"],
                "--database-schema", f"py_client_{uuid.uuid4().hex[:12]}",
            ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOKER_") or k == "STOKER_TEST_DATABASE_URL"}
        env["RUST_LOG"] = "warn"
        # The token goes in the environment: on the command line every user could read it.
        env["STOKER_API_TOKEN"] = self.token
        self.process = subprocess.Popen(
            [stoker_bin(), "serve", *database, "--bind", "127.0.0.1:0", "--rescue-interval", "200ms"],
            cwd=self.dir.name, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        for line in self.process.stdout:
            match = re.search(r"API:\s+(\S+)", line)
            if match:
                self.url = match.group(1).removesuffix("/v1")
                break
        else:
            raise RuntimeError("stoker serve did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.dir.cleanup()
