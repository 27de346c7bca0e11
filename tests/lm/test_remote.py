"""The remote (OpenAI-compatible) path, against `overnight fake-llm` on loopback: real HTTP, DSPy's own client,
nothing mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import Request, Response

from overnight.api.embedded import embedded_server
from overnight.config import Settings
from overnight.lm.backends import build_backend
from overnight.lm.fake_server import create_fake_llm_app, load_oracle
from overnight.lm.invoke import check, default_program, invoke
from overnight.lm.sim import SimSpec
from overnight.registry import Registry
from tests.factories import free_port

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "datasets" / "selecttool.v1.jsonl"
ENTRY = Registry().get("SelectTool.v1")


@contextmanager
def fake_llm(spec: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / f"fake-{port}.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "overnight", "fake-llm", "--port", str(port), "--spec", spec,
         "--dataset", str(DATASET), "--signature", "SelectTool.v1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/models", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / f"fake-{port}.log").read_text()
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def holdout(limit: int) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["split"] == "holdout"][:limit]


def test_remote_path_gives_validated_predictions_with_token_usage(tmp_path: Path) -> None:
    with fake_llm("seed=4,acc=1", tmp_path) as base:
        backend = build_backend(Settings(lm="openai/sim", lm_api_base=base, lm_api_key="sk-test", lm_retries=0,
                                         lm_price_in_per_1k=0.15, lm_price_out_per_1k=0.6))
        results = [(row, invoke(default_program(ENTRY), backend, ENTRY, row["input"])) for row in holdout(6)]
    assert backend.kind == "remote"
    assert backend.lm_id == "remote:openai/sim|temperature=0,max_tokens=256"
    for row, result in results:
        assert result.ok, result.error
        assert result.output == row["expected"]  # the fake's oracle knows the labels; acc=1
        assert result.tokens_in > 100
        assert result.tokens_out > 0
        assert result.cost_usd == pytest.approx(result.tokens_in / 1000 * 0.15 + result.tokens_out / 1000 * 0.6)


@pytest.mark.parametrize(("errors", "code"), [("raise", "lm_error"), ("garbage", "parse_failure"),
                                              ("timeout", "timeout")])  # a 504 is DSPy's timeout error
def test_remote_failures_are_counted_not_raised(tmp_path: Path, errors: str, code: str) -> None:
    with fake_llm(f"seed=1,err=1,errors={errors}", tmp_path) as base:
        backend = build_backend(Settings(lm="openai/sim", lm_api_base=base, lm_api_key="sk-test", lm_retries=0))
        result = invoke(default_program(ENTRY), backend, ENTRY, holdout(1)[0]["input"])
    assert not result.ok
    assert result.error_code == code
    assert "sk-test" not in (result.error or "")


def test_with_a_response_cache_only_compile_calls_are_answered_from_it(tmp_path: Path) -> None:
    """OVERNIGHT_LM_CACHE_DIR caches a remote model's answers for compile; a predict (so each canary arm) and the
    LM check always reach the LM: a cached success for every repeated input would hide the errors and latency the
    gates measure."""
    calls: list[str] = []
    fake = create_fake_llm_app(SimSpec.parse("seed=4,acc=1"), oracle=load_oracle(
        Registry(), [("SelectTool.v1", DATASET.read_bytes())]))

    @fake.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        calls.append(request.url.path)
        return await call_next(request)

    row = holdout(1)[0]
    with embedded_server(fake) as base:
        backend = build_backend(Settings(lm="openai/sim", lm_api_base=f"{base}/v1", lm_api_key="sk-test",
                                         lm_retries=0, lm_cache_dir=str(tmp_path / "lm-cache")))
        program = default_program(ENTRY)
        compiled = [invoke(program, backend, ENTRY, row["input"], cached=True) for _ in range(3)]
        after_compile = len(calls)
        served = [invoke(program, backend, ENTRY, row["input"]) for _ in range(3)]
        after_serving = len(calls)
        checked = check(ENTRY, backend)
    assert all(call.ok for call in compiled + served)
    assert checked.ok
    assert after_compile == 1  # compile: one call, then the cache
    assert after_serving - after_compile == 3  # serving: every call reached the LM
    assert len(calls) - after_serving == 1  # the check too
    assert (tmp_path / "lm-cache").is_dir()
