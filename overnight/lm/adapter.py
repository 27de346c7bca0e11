"""The adapter every program call runs under: DSPy's JSONAdapter, with each signature's system message built
once. DSPy rebuilds it on every call (field descriptions, the JSON structure with a pydantic TypeAdapter per
field, the instructions): about a quarter of a call's CPU against a zero-latency LM. The message depends on the
signature class alone — instructions and fields are class attributes, and DSPy's `with_instructions` and
`delete` return new classes — so it is keyed by the class, weakly, and dies with it. DSPy documents `format`
and its parts as the place for a custom adapter to change. Must not import the store or the API."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import dspy


class JSONAdapter(dspy.JSONAdapter):
    def __init__(self) -> None:
        super().__init__()
        self._system: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def format_system_message(self, signature: Any) -> str:
        with self._lock:
            found = self._system.get(signature)
        if found is None:
            found = super().format_system_message(signature)
            with self._lock:
                self._system[signature] = found
        return found

    def remembered(self) -> int:
        """How many signatures' system messages are held (they go with their signature classes)."""
        with self._lock:
            return len(self._system)


ADAPTER = JSONAdapter()
