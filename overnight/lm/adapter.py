"""The adapter every program call runs under: DSPy's JSONAdapter, with the work DSPy repeats on every call done
once. DSPy documents `format` and its parts as the place for a custom adapter to change; the messages are
exactly DSPy's (tests compare them, for every signature and for generated values).

- The system message (field descriptions, the JSON structure with a pydantic TypeAdapter per field, the
  instructions): about a quarter of a call's CPU against a zero-latency LM. It depends on the signature class
  alone — instructions and fields are class attributes, and DSPy's `with_instructions` and `delete` return new
  classes — so it is kept per class, weakly, and dies with it.
- Each input value's JSON form: DSPy's `serialize_for_json` builds a pydantic `TypeAdapter` for the value's type
  on every call (a schema build, a sixth of a call). An adapter for a type is the same every time, so the
  builtin types' adapters are built once.

Must not import the store or the API."""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any

import dspy
from dspy.adapters.utils import format_field_value
from pydantic import TypeAdapter


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

    def format_user_message_content(self, signature: Any, inputs: dict[str, Any], prefix: str = "",
                                    suffix: str = "", main_request: bool = False) -> str:
        """DSPy's `ChatAdapter.format_user_message_content`, each value formatted by `field_value`."""
        parts = [prefix]
        for name, field in signature.input_fields.items():
            if name in inputs:
                parts.append(f"[[ ## {name} ## ]]\n{self.field_value(field, inputs.get(name))}")
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            if requirements is not None:
                parts.append(requirements)
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def field_value(self, field: Any, value: Any) -> str:
        """DSPy's `format_field_value(field, value)` (text form), with the value's type adapter kept."""
        if isinstance(value, list) and field.annotation is str:
            text: str = format_field_value(field_info=field, value=value)  # DSPy's numbered list, no adapter
            return text
        jsonable = self._jsonable(value)
        return json.dumps(jsonable, ensure_ascii=False) if isinstance(jsonable, dict | list) else str(jsonable)

    def _jsonable(self, value: Any) -> Any:
        """DSPy's `serialize_for_json`: the value's JSON form, or its string when pydantic can't handle it."""
        adapter = _BUILTIN_ADAPTERS.get(type(value))
        try:
            return (adapter or TypeAdapter(type(value))).dump_python(value, mode="json", fallback=str)
        except Exception:  # noqa: BLE001 - DSPy's own fallback, kept exactly
            return str(value)

    def remembered(self) -> int:
        """How many signatures' system messages are held (they go with their signature classes)."""
        with self._lock:
            return len(self._system)


# The types a validated input's fields hold at the top (a model's list of models is a `list`): kept for good, as
# there are only these. Any other type gets a new adapter per value, as in DSPy (an adapter holds its type, so a
# cache of them would keep every class it ever saw alive).
_BUILTIN_ADAPTERS: dict[type, TypeAdapter[Any]] = {
    kind: TypeAdapter(kind) for kind in (str, int, float, bool, type(None), list, dict, tuple)}

ADAPTER = JSONAdapter()
