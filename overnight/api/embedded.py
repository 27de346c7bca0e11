"""Serving an app in-process on a free loopback port: `overnight run` without `--base-url` uses it (the
embedded default), and so do the tests and benchmarks that need real HTTP. Must not import SQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from overnight.errors import OvernightError


@contextmanager
def embedded_server(app: FastAPI, *, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 with a port the OS picks; yield its base URL; stop it on exit."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="overnight-embedded-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise OvernightError("the embedded API server did not start on loopback")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
