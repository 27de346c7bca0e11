"""`overnight fake-llm`: the seeded simulator behind an OpenAI-compatible `/v1/chat/completions`, on loopback,
so tests drive the remote path over real HTTP with DSPy's own client.

It reads the prompt the way a model would: the signature is the registered one whose input and output field
names the system prompt lists; the input is parsed from the last user turn's `[[ ## field ## ]]` blocks; the
instruction variant and demo count come from the prompt as in-process. Correct answers come from an oracle of
labeled rows (`--dataset FILE --signature SIG`); without one, answers are valid but never right.
Errors: `raise` → HTTP 500, `timeout` → HTTP 504 after the latency, `garbage` → unparsable text, `hang` → no
answer for an hour (the caller's own timeout has to end the call).
Must not import the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import typing
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from overnight.domain.hashing import canonical_json, sha256_hex
from overnight.lm.sim import GARBAGE, SimSpec, simulate_prompt
from overnight.registry import RegisteredSignature, Registry

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)", re.S)
HANG_S = 3600
Oracle = dict[str, dict[str, Any]]  # (signature_id + canonical input) -> expected output


def oracle_key(signature_id: str, given: BaseModel) -> str:
    return signature_id + "|" + canonical_json(given.model_dump(mode="json"))


def _match(registry: Registry, system: str) -> RegisteredSignature | None:
    for signature_id in registry.ids():
        entry = registry.get(signature_id)
        names = [*entry.dspy_signature.input_fields, *entry.dspy_signature.output_fields]
        if all(f"`{name}`" in system for name in names):
            return entry
    return None


def _parse_input(entry: RegisteredSignature, text: str) -> BaseModel:
    blocks = dict(_FIELD.findall(text))
    model = entry.contract.input_model
    raw: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = blocks.get(name, "")
        raw[name] = value if field.annotation is str or typing.get_origin(field.annotation) is typing.Literal \
            else json.loads(value or "null")
    return model.model_validate(raw)


async def _hold(request: Request) -> None:
    """Answer nothing until the caller gives up (or an hour passes), so a shutdown does not wait on it."""
    for _ in range(HANG_S * 10):
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.1)


def _completion(model: str, content: str, prompt_chars: int) -> dict[str, Any]:
    tokens_in, tokens_out = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {"id": "sim-" + sha256_hex(content)[:12], "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out}}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "server_error", "code": status}}, status_code=status)


def create_fake_llm_app(spec: SimSpec, *, registry: Registry | None = None, oracle: Oracle | None = None) -> FastAPI:
    signatures, labels = registry or Registry(), oracle or {}
    app = FastAPI(title="overnight fake LLM (seeded simulator)")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "sim", "object": "model", "owned_by": "overnight"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        system = "".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
        turns = [str(m.get("content") or "") for m in messages if m.get("role") != "system"]
        entry = _match(signatures, system)
        if entry is None or not turns:
            return _error(400, "fake-llm: the prompt matches no registered signature")
        try:
            given = _parse_input(entry, turns[-1])
        except (ValidationError, json.JSONDecodeError) as exc:
            return _error(400, f"fake-llm: could not read the input from the prompt: {exc}"[:300])
        expected = labels.get(oracle_key(entry.contract.signature_id, given))
        outcome = simulate_prompt(spec, entry, system=system, turns=turns, given=given, expected=expected)
        await asyncio.sleep(spec.latency_ms / 1000)
        if outcome.kind == "raise":
            return _error(500, "simulated provider error")
        if outcome.kind == "timeout":
            return _error(504, "simulated upstream timeout")
        if outcome.kind == "hang":
            await _hold(request)
        content = GARBAGE if outcome.kind == "garbage" else json.dumps(outcome.fields)
        prompt_chars = len(system) + sum(len(t) for t in turns)
        return JSONResponse(_completion(str(body.get("model", "sim")), content, prompt_chars))

    return app


def load_oracle(registry: Registry, pairs: list[tuple[str, bytes]]) -> Oracle:
    """Labeled rows from dataset files, as (signature_id, file bytes) pairs."""
    from overnight.domain.datasets import parse_dataset  # noqa: PLC0415 - only with --dataset

    oracle: Oracle = {}
    for signature_id, body in pairs:
        entry = registry.get(signature_id)
        for row in parse_dataset(entry.contract, body, fmt="jsonl"):
            oracle[oracle_key(signature_id, entry.contract.input_model.model_validate(row.input))] = row.expected
    return oracle
