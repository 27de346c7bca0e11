"""DSPy custom engines (DSPy 3.4's `dspy.LM(model, engine=…, async_engine=…)` seam): the seeded simulator, and
the bundled GGUF model run in-process by llama-cpp-python with its output constrained to the answers valid for
the current input. Must not import the store or the API.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from dspy.lm15 import Message, Response, TextPart, Usage

from overnight.lm.scope import CallScope, allowed_fields, current_scope
from overnight.lm.sim import GARBAGE, SimSpec, simulate_prompt


class SimulatedLMError(RuntimeError):
    """The simulator's stand-in for a provider failure."""


class EngineMisuse(RuntimeError):
    """An engine that needs the call scope was called outside `overnight.lm.invoke`."""


def _text(parts: Any) -> str:
    if parts is None:
        return ""
    return parts if isinstance(parts, str) else "".join(getattr(p, "text", "") or "" for p in parts)


def _response(model: str, text: str, tokens_in: int, tokens_out: int) -> Response:
    return Response(id=None, model=model, message=Message.assistant([TextPart(text)]), finish_reason="stop",
                    usage=Usage(input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_in + tokens_out))


def _scope() -> CallScope:
    scope = current_scope()
    if scope is None:
        raise EngineMisuse("this engine answers only inside overnight.lm.invoke (it needs the call scope)")
    return scope


class SimEngine:
    """The simulator as a synchronous DSPy engine."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.calls = 0  # every call that reached the simulator, for tests that count LM spend
        self._lock = threading.Lock()

    def answer(self, request: Any) -> tuple[str, int, int]:
        with self._lock:
            self.calls += 1
        scope = _scope()
        system = _text(request.system)
        outcome = simulate_prompt(self.spec, scope.entry, system=system, turns=[m.text or "" for m in request.messages],
                                  given=scope.input, expected=scope.expected)
        if outcome.kind == "raise":
            raise SimulatedLMError("simulated provider error")
        if outcome.kind in ("timeout", "hang"):  # in-process, a hang ends at the client's timeout: a timeout
            raise TimeoutError("simulated LM timeout")
        text = GARBAGE if outcome.kind == "garbage" else json.dumps(outcome.fields)
        prompt_chars = len(system) + sum(len(m.text or "") for m in request.messages)
        return text, max(1, prompt_chars // 4), max(1, len(text) // 4)

    def complete(self, request: Any) -> Response:
        if self.spec.latency_ms:  # sleep(0) would still hand the GIL over on every call
            time.sleep(self.spec.latency_ms / 1000)
        return _response("sim", *self.answer(request))

    def close(self) -> None:
        return None


class AsyncSimEngine:
    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine

    async def complete(self, request: Any) -> Response:
        await asyncio.sleep(self.engine.spec.latency_ms / 1000)
        return _response("sim", *self.engine.answer(request))

    async def aclose(self) -> None:
        return None


def answer_schema(allowed: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema that admits exactly the allowed answers (one object per answer, every field a const)."""
    return {"anyOf": [
        {"type": "object", "properties": {k: {"const": v} for k, v in answer.items()},
         "required": list(answer), "additionalProperties": False}
        for answer in allowed
    ]}


class LlamaCppEngine:
    """A llama.cpp model in this process. One lock around it: `Llama` is not thread-safe."""

    def __init__(self, llama: Any, *, model_name: str, max_tokens: int, temperature: float) -> None:
        self.llama = llama
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.lock = threading.Lock()

    def complete(self, request: Any) -> Response:
        schema = answer_schema(allowed_fields(_scope()))
        messages = [{"role": "system", "content": _text(request.system)}] if request.system else []
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        with self.lock:
            out = self.llama.create_chat_completion(
                messages=messages, max_tokens=request.config.max_tokens or self.max_tokens,
                temperature=self.temperature if request.config.temperature is None else request.config.temperature,
                response_format={"type": "json_object", "schema": schema},
            )
        usage = out["usage"]
        return _response(self.model_name, out["choices"][0]["message"]["content"] or "",
                         usage["prompt_tokens"], usage["completion_tokens"])

    def close(self) -> None:
        return None


class AsyncLlamaCppEngine:
    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine

    async def complete(self, request: Any) -> Response:
        return await asyncio.to_thread(self.engine.complete, request)

    async def aclose(self) -> None:
        return None
