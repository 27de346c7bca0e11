"""One LM call, measured (`Invocation`), and what an LM check reports about it. Must not import I/O modules or
DSPy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Invocation(BaseModel):
    ok: bool
    output: dict[str, Any] | None
    error_code: str | None = None
    error: str | None = None
    latency_ms: int
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None


class LMCheck(Invocation):
    """One call of a signature's default program on its sample input, with the backend that answered."""

    backend: str
    model: str
    lm_id: str
    signature: str
    input: dict[str, Any]
