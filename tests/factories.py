"""Builders shared by the tests: settings, tokens, a stepping clock, live servers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from overnight.api.app import create_app
from overnight.api.embedded import embedded_server
from overnight.config import Settings
from overnight.store import SqlStore, build_store

ADMIN_TOKEN = "adm-" + "A" * 40
READ_TOKEN = "rd-" + "R" * 40
SERVE_TOKEN = "srv-" + "S" * 40
TOKENS = f"ops-agent:admin:{ADMIN_TOKEN},alice:read:{READ_TOKEN},app:serve:{SERVE_TOKEN}"
ALL_TOKENS = (ADMIN_TOKEN, READ_TOKEN, SERVE_TOKEN)
# The split test fails one fair canary in a thousand per step (SRM_THRESHOLD_P): canaries in tests about
# something else use a threshold no fair split reaches, so that coin cannot decide them.
FAIR_SPLIT_P = 1e-9
START_MS = 1_790_000_000_000  # 2026-09-21, a fixed instant for the stepping clock


def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class SteppingClock:
    """A clock tests move by hand: no sleeps, no wall clock."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now

    def advance(self, *, seconds: float) -> None:
        self.now += int(seconds * 1000)


def make_settings(db_url: str, **overrides: Any) -> Settings:
    return Settings(db_url=db_url, tokens=TOKENS, **overrides)


def make_store(db_url: str, clock: SteppingClock | None = None, **overrides: Any) -> SqlStore:
    settings = make_settings(db_url, **overrides)
    return build_store(settings, clock=clock) if clock else build_store(settings)


@dataclass
class LiveServer:
    """The real app on a real loopback port (uvicorn in a thread of this process)."""

    base_url: str
    store: SqlStore
    clock: SteppingClock | None
    settings: Settings
    app: FastAPI = field(repr=False)

    def client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Client:
        headers = auth(token) if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


@contextmanager
def live_server(db_url: str, *, clock: SteppingClock | None = None,
                customize: Callable[[FastAPI], None] | None = None, **overrides: Any) -> Iterator[LiveServer]:
    settings = make_settings(db_url, **overrides)
    store = build_store(settings, clock=clock) if clock else build_store(settings)
    app = create_app(settings, store)
    if customize is not None:
        customize(app)
    try:
        with embedded_server(app) as base_url:
            yield LiveServer(base_url, store, clock, settings, app)
    finally:
        store.close()


def wait_for(check: Callable[[], bool], timeout: float = 120) -> None:
    """Poll `check` every 0.1 s until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServeProcess:
    """`overnight serve` in a child process: the black-box server, with its whole log captured."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Client:
        headers = auth(token) if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)


@contextmanager
def serve_process(db_url: str, log_path: Path, *, python_args: tuple[str, ...] = ("-m", "overnight"),
                  **env_overrides: str) -> Iterator[ServeProcess]:
    """`python_args` start the command: `("-c", code)` runs `code` first (it must end by calling the CLI's `main`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    env.update({"OVERNIGHT_DB_URL": db_url, "OVERNIGHT_TOKENS": TOKENS, "OVERNIGHT_LOG_FORMAT": "json",
                "OVERNIGHT_LOG_LEVEL": "debug", **env_overrides})
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, *python_args, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    served = ServeProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(served)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(served: ServeProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"overnight serve exited {served.process.returncode}:\n{served.log()}")
        try:
            if httpx.get(f"{served.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"overnight serve did not become healthy:\n{served.log()}")


TOOLS = [{"name": "web_search", "description": "Search the web"},
         {"name": "send_email", "description": "Send an email"}]


def select_tool_row(example_id: str = "ex-1", *, message: str = "email bob the notes", split: str = "train",
                    expected: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """One valid SelectTool.v1 row; override any field to break it."""
    row = {"example_id": example_id,
           "input": {"message": message, "agent_name": "Nova", "user_handle": "@ana", "tools": TOOLS},
           "expected": expected or {"action": "tool", "tool_name": "send_email"}, "split": split, "tags": ["t"]}
    row.update(overrides)
    return row


def jsonl(*rows: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
