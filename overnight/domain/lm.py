"""What an LM check reports: one call on a signature's sample input. Must not import I/O modules or DSPy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class LMCheck(BaseModel):
    backend: str
    model: str
    lm_id: str
    signature: str
    input: dict[str, Any]
    ok: bool
    output: dict[str, Any] | None
    error_code: str | None = None
    error: str | None = None
    latency_ms: int
    tokens_in: int = 0
    tokens_out: int = 0
