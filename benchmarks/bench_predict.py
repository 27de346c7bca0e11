"""Predict overhead: `POST …/predict` on the real server (auth, champion lookup, the program run by DSPy against
the zero-latency simulator, receipt written) against a bare FastAPI endpoint returning the same payload, both
served by uvicorn in their own process, driven the same way in the same run.

    make bench-predict                      # SQLite in a temporary directory
    OVERNIGHT_BENCH_PG_URL=postgresql+psycopg://… make bench-predict   # PostgreSQL too

Prints requests per second and p50/p99 latency for each, and the overhead ratio (bare req/s / ours; the figure
of merit, target <= 2x), as medians over rounds that each drive every server in turn; and each server's own CPU
per request (from /proc around the drive) with its ratio to bare's, which does not depend on how the load
generator and the server happen to share the 2 cores. The physical limit: the
bare endpoint is what uvicorn and FastAPI cost per request on this machine; everything above it is ours. The
load comes from this process (CLIENTS threads, one connection each), so on 2 cores client and server share
the CPU equally in both measurements.

Then the same predict with the simulator at SLOW_MS per call and SLOW_CLIENTS clients: a slow LM, where a
predict holds its thread for the whole call, so throughput is bounded by the predicts' concurrency over the
latency (or by the zero-latency throughput, whichever is lower).
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.config import Settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-" + "B" * 40
REQUESTS, CLIENTS, WARMUP = 2000, 8, 100
ROW = json.loads((ROOT / "datasets" / "selecttool.v1.jsonl").read_text(encoding="utf-8").splitlines()[0])
BODY = {"input": ROW["input"]}
PATH = "/api/v1/signatures/SelectTool.v1/predict"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    # our own command lines (this interpreter, our files): nothing untrusted reaches them
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)  # any answer (the bare app's is 404) = up
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return process
    process.kill()
    raise RuntimeError(f"{command} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(base: str, requests: int = REQUESTS, *, clients: int = CLIENTS, warmup: int = WARMUP,
          pid: int | None = None) -> tuple[float, float, float, float]:
    """Requests per second, p50 ms, p99 ms, and the server's own CPU ms per request (`pid`'s, NaN without)."""
    headers = {"authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []

    def client(share: int) -> list[float]:
        seen = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            for _ in range(share):
                begun = time.perf_counter()
                http.post(PATH, json=BODY).raise_for_status()
                seen.append((time.perf_counter() - begun) * 1000)
        return seen

    client(warmup)
    cpu_before = cpu_seconds(pid) if pid is not None else math.nan
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for seen in pool.map(client, [requests // clients] * clients):
            latencies += seen
    elapsed = time.perf_counter() - started
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / len(latencies) if pid is not None else math.nan
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49], cuts[98], cpu_ms


ROUNDS, BARE = 3, "bare"
Figures = tuple[float, float, float, float]  # req/s, p50 ms, p99 ms, server CPU ms per request
Server = tuple[Callable[[int], list[str]], dict[str, str]]  # its command line for a port, its environment


def bare_command(port: int) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "bare_predict.py"), str(port)]


def serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "overnight", "serve", "--host", "127.0.0.1", "--port", str(port)]


def rounds(servers: dict[str, Server], requests: int = REQUESTS) -> list[dict[str, Figures]]:
    """Start every server for the whole benchmark, then
    drive each of them in turn in each of ROUNDS rounds: this is a shared 2-core VM (the bare endpoint alone
    varied 700-1,100 req/s between runs), so a ratio of two separate single runs is mostly noise."""
    running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, (command, env) in servers.items():
            port = free_port()
            running[name] = start(command(port), env, port), port
        return [{name: drive(f"http://127.0.0.1:{port}", requests, pid=process.pid)
                 for name, (process, port) in running.items()}
                for _ in range(ROUNDS)]
    finally:
        for process, _ in running.values():
            process.terminate()
            process.wait(timeout=15)


def serve_env(base_env: dict[str, str], **settings: str) -> dict[str, str]:
    """The environment of a benchmarked `overnight serve`: the bench token, the zero-latency simulator, quiet JSON
    logs, then `settings` (OVERNIGHT_* names) on top."""
    return {**base_env, "OVERNIGHT_TOKENS": f"bench:admin:{TOKEN}", "OVERNIGHT_LM": "sim:seed=1",
            "OVERNIGHT_LOG_LEVEL": "warning", "OVERNIGHT_LOG_FORMAT": "json", **settings}


def main() -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    targets = {"sqlite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"}
    if os.environ.get("OVERNIGHT_BENCH_PG_URL"):
        targets["postgresql"] = os.environ["OVERNIGHT_BENCH_PG_URL"]
    servers: dict[str, Server] = {BARE: (bare_command, base_env)}
    for name, url in targets.items():
        servers[name] = (serve_command, serve_env(base_env, OVERNIGHT_DB_URL=url))
    measured = rounds(servers)
    report(measured, list(targets))
    slow_lm(targets, base_env, {name: statistics.median(each[name][0] for each in measured) for name in targets})


def report(measured: list[dict[str, Figures]], targets: list[str]) -> None:
    def median(name: str, index: int) -> float:
        return statistics.median(each[name][index] for each in measured)

    def ratio(name: str) -> float:  # the median of each round's own ratio: both sides saw the same machine
        return statistics.median(each[BARE][0] / each[name][0] for each in measured)

    def cpu_ratio(name: str) -> float:
        return statistics.median(each[name][3] / each[BARE][3] for each in measured)

    bare = (median(BARE, 0), median(BARE, 1), median(BARE, 2), median(BARE, 3))
    print(f"{REQUESTS} requests x {ROUNDS} rounds, {CLIENTS} concurrent clients, zero-latency simulator; medians")
    print(f"{'server':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'overhead (req/s)':>18}{'(p50)':>8}"
          f"{'CPU ms/req':>12}{'(CPU)':>8}  {'each round (req/s)':>12}")
    print(f"{'bare FastAPI':<22}{bare[0]:>10,.0f}{bare[1]:>10.2f}{bare[2]:>10.2f}{'1.00x':>18}{'1.00x':>8}"
          f"{bare[3]:>12.2f}{'1.00x':>8}  {' / '.join(f'{each[BARE][0]:,.0f}' for each in measured)}")
    record("predict", "req/s, bare FastAPI", bare[0], "/s")
    for name in targets:
        real = (median(name, 0), median(name, 1), median(name, 2), median(name, 3))
        print(f"{'overnight on ' + name:<22}{real[0]:>10,.0f}{real[1]:>10.2f}{real[2]:>10.2f}"
              f"{ratio(name):>17.2f}x{real[1] / bare[1]:>7.2f}x{real[3]:>12.2f}{cpu_ratio(name):>7.2f}x"
              f"  {' / '.join(f'{each[BARE][0] / each[name][0]:.2f}x' for each in measured)}")
        record("predict", f"req/s ({name})", real[0], "/s")
        record("predict", f"overhead, bare req/s / ours ({name})", ratio(name), "x", limit=2.0,
               limit_says="(target)", higher_is_better=False)
        record("predict", f"overhead, server CPU / bare ({name})", cpu_ratio(name), "x", limit=2.0,
               limit_says="(target)", higher_is_better=False)
        record("predict", f"p50 latency ({name}; bare {bare[1]:.1f} ms)", real[1], "ms", limit=bare[1],
               limit_says="(bare)", higher_is_better=False)


SLOW_MS, SLOW_CLIENTS, SLOW_REQUESTS = 500, 200, 4000
DEFAULT_CONCURRENCY = Settings.model_fields["predict_concurrency"].default


def slow_lm(targets: dict[str, str], base_env: dict[str, str], zero_latency: dict[str, float]) -> None:
    """Predicts against an LM that takes SLOW_MS per call, from more clients than one process serves at once.
    The limit is the lower of concurrency / latency (OVERNIGHT_PREDICT_CONCURRENCY predicts, each holding a
    thread for its call) and what the process does with the LM at zero latency (its CPU). Before predicts had a
    pool of their own, anyio's default 40 threads capped this at 80/s."""
    concurrency = int(os.environ.get("OVERNIGHT_PREDICT_CONCURRENCY", DEFAULT_CONCURRENCY))
    by_slots = min(SLOW_CLIENTS, concurrency) / (SLOW_MS / 1000)
    print(f"\nthe LM at {SLOW_MS} ms per call, {SLOW_CLIENTS} concurrent clients, {SLOW_REQUESTS} requests; limit: "
          f"min(clients, predict concurrency {concurrency}) / latency = {by_slots:,.0f} req/s, or the zero-latency "
          "req/s above if lower")
    print(f"{'server':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'limit':>10}{'of it':>8}")
    for name, url in targets.items():
        env = serve_env(base_env, OVERNIGHT_DB_URL=url, OVERNIGHT_LM=f"sim:seed=1,latency_ms={SLOW_MS}",
                        OVERNIGHT_PREDICT_CONCURRENCY=str(concurrency))
        port = free_port()
        process = start(serve_command(port), env, port)
        try:
            rate, p50, p99, _ = drive(f"http://127.0.0.1:{port}", SLOW_REQUESTS, clients=SLOW_CLIENTS, warmup=2)
        finally:
            process.terminate()
            process.wait(timeout=15)
        limit = min(by_slots, zero_latency[name])
        print(f"{'overnight on ' + name:<22}{rate:>10,.0f}{p50:>10.0f}{p99:>10.0f}{limit:>10,.0f}{rate / limit:>8.0%}")
        says = "(slots / latency)" if limit == by_slots else "(zero-latency req/s)"
        record("predict", f"req/s, LM at {SLOW_MS} ms, {SLOW_CLIENTS} clients ({name})", rate, "/s", limit=limit,
               limit_says=says)


if __name__ == "__main__":
    main()
