"""Where a predict's overhead goes: the real server with one part of `POST …/predict` taken out at a time,
driven exactly as `bench_predict.py` drives it, against the same bare FastAPI endpoint, in the same rounds.

    make bench-parts

Servers (SQLite; every one is `create_app` over a real store unless it says bare):
    bare                    benchmarks/bare_predict.py: uvicorn + FastAPI parsing the body, a fixed answer
    bare + program call     a bare endpoint that runs the signature's default DSPy program (overnight.lm.invoke)
                            against the zero-latency simulator: what DSPy alone costs per request
    overnight, no work      the whole app (auth, middleware, dependencies, body and response models) with the
                            predict function replaced by a fixed answer
    overnight, no program   the real predict with the program call replaced by a fixed valid answer
    overnight, no receipt   the real predict with the receipt write replaced by nothing
    overnight               everything, as `make bench-predict` measures it

Each replacement is made in this script's own server process (`bench_parts.py serve PART PORT`), never in the
product. The figures say which parts a 2x target has room for: see benchmarks/README.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import bench_predict as predict_bench  # benchmarks/ is on sys.path when a script runs
from figures import record

PARTS = {
    "bare": "bare FastAPI",
    "program": "bare + program call",
    "no-work": "overnight, no work",
    "no-program": "overnight, no program",
    "no-receipt": "overnight, no receipt",
    "full": "overnight",
}
REQUESTS = 1000
OUTPUT = {"action": "tool", "tool_name": "send_email"}


def serve(part: str, port: int) -> None:
    """Serve one part on `port` (the benchmark's own subprocess)."""
    import uvicorn  # noqa: PLC0415 - only the server subprocess needs these
    from fastapi import FastAPI  # noqa: PLC0415

    from overnight.api.app import create_app  # noqa: PLC0415
    from overnight.config import Settings  # noqa: PLC0415
    from overnight.domain.lm import Invocation  # noqa: PLC0415
    from overnight.domain.receipts import Prediction  # noqa: PLC0415
    from overnight.lm.backends import build_backend  # noqa: PLC0415
    from overnight.lm.invoke import default_program, invoke  # noqa: PLC0415
    from overnight.logging import configure_logging  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.store import build_store  # noqa: PLC0415

    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secret_values())
    if part == "program":
        backend, entry = build_backend(settings), Registry().get("SelectTool.v1")
        program = default_program(entry)
        bare = FastAPI()

        @bare.post(predict_bench.PATH)
        def run_program(body: dict[str, Any]) -> dict[str, Any]:
            call = invoke(program, backend, entry, body["input"])
            return {"output": call.output, "receipt_id": "r" * 32, "compiled_id": "c" * 64, "arm": "champion",
                    "canary_id": None, "correct": None, "latency_ms": call.latency_ms, "lm_id": backend.lm_id}

        uvicorn.run(bare, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    store = build_store(settings)
    if part == "no-work":
        import overnight.api.routes.serving as routes  # noqa: PLC0415

        fixed = Prediction(output=OUTPUT, receipt_id="rc-" + "0" * 26, compiled_id="c" * 64, arm="champion",
                           canary_id=None, correct=None, latency_ms=0, lm_id="sim:bench")
        routes.predict = lambda *_args, **_kwargs: fixed  # type: ignore[attr-defined]
    elif part == "no-program":
        import overnight.serving.predict as serving  # noqa: PLC0415

        answer = Invocation(ok=True, output=OUTPUT, latency_ms=0, tokens_in=1, tokens_out=1)
        serving.invoke = lambda *_args, **_kwargs: answer  # type: ignore[attr-defined]
    elif part == "no-receipt":
        store.record_receipt = lambda **_kwargs: None  # type: ignore[method-assign]
    uvicorn.run(create_app(settings, store), host="127.0.0.1", port=port, log_config=None, access_log=False)


def main() -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    servers: dict[str, predict_bench.Server] = {predict_bench.BARE: (predict_bench.bare_command, base_env)}
    for part in [each for each in PARTS if each != predict_bench.BARE]:
        db_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'parts.db'}"
        servers[part] = (partial(part_command, part), predict_bench.serve_env(base_env, OVERNIGHT_DB_URL=db_url))
    report(predict_bench.rounds(servers, REQUESTS))


def part_command(part: str, port: int) -> list[str]:
    return [sys.executable, __file__, "serve", part, str(port)]


def report(rounds: list[dict[str, predict_bench.Figures]]) -> None:
    print(f"{REQUESTS} requests x {predict_bench.ROUNDS} rounds, {predict_bench.CLIENTS} concurrent clients, "
          "zero-latency simulator, SQLite; medians")
    print(f"{'server':<26}{'req/s':>9}{'p50 ms':>9}{'bare req/s / this':>20}{'(bare + program)':>18}"
          f"{'CPU ms/req':>12}{'/ bare':>8}  {'each round':>12}")
    for part, name in PARTS.items():
        rate = statistics.median(each[part][0] for each in rounds)
        p50 = statistics.median(each[part][1] for each in rounds)
        ratios = [each["bare"][0] / each[part][0] for each in rounds]
        over_program = statistics.median(each["program"][0] / each[part][0] for each in rounds)
        cpu = statistics.median(each[part][3] for each in rounds)
        cpu_ratio = statistics.median(each[part][3] / each["bare"][3] for each in rounds)
        print(f"{name:<26}{rate:>9,.0f}{p50:>9.2f}{statistics.median(ratios):>19.2f}x{over_program:>17.2f}x"
              f"{cpu:>12.2f}{cpu_ratio:>7.2f}x  {' / '.join(f'{r:.2f}x' for r in ratios)}")
        if part != "bare":
            record("parts", f"overhead, bare req/s / {name}", statistics.median(ratios), "x", limit=2.0,
                   limit_says="(predict target)", higher_is_better=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
