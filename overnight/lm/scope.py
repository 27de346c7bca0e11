"""The call scope: which signature, input and (when known) expected output the current LM call serves.

Set by `invoke()` around one program call; read by engines that need it — the local engine to constrain its
output to the answers valid for this input, the simulator to know what a correct answer is. A ContextVar, so
it follows the call into DSPy's worker threads and `asyncio.to_thread`. Must not import the store or the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from overnight.registry import RegisteredSignature


@dataclass(frozen=True)
class CallScope:
    entry: RegisteredSignature
    input: BaseModel
    expected: dict[str, Any] | None


_SCOPE: ContextVar[CallScope | None] = ContextVar("overnight_call_scope", default=None)


@contextmanager
def call_scope(entry: RegisteredSignature, given: BaseModel, expected: dict[str, Any] | None) -> Iterator[None]:
    token = _SCOPE.set(CallScope(entry, given, expected))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> CallScope | None:
    return _SCOPE.get()


def allowed_fields(scope: CallScope) -> list[dict[str, Any]]:
    """Every valid answer for the scope's input, as the DSPy output fields the adapter parses."""
    return scope.entry.allowed_fields(scope.input)
