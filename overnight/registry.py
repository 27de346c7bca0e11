"""The signature registry: discovers the modules of the `signatures` package and pairs each contract with its
DSPy Signature class. An unknown id is `SignatureNotFound` (404) everywhere.

Discovery imports the modules (and so DSPy) on first use, not at import time. Must not import SQL or the API.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from overnight.domain.signatures import SignatureContract
from overnight.errors import ConfigError, SignatureNotFound


@dataclass(frozen=True)
class RegisteredSignature:
    """What a `signatures/<name>.py` module exports as `SIGNATURE`."""

    contract: SignatureContract
    dspy_signature: Any  # a dspy.Signature subclass (DSPy is untyped)
    to_output: Callable[[dict[str, Any]], dict[str, Any]]  # a prediction's fields -> the output JSON
    to_fields: Callable[[dict[str, Any]], dict[str, Any]]  # the output JSON -> the prediction's fields
    alternatives: Callable[[Any], list[dict[str, Any]]]  # every valid output for a (validated) input
    sample_input: dict[str, Any]  # one realistic input, for `overnight lm check`

    def allowed_fields(self, given: Any) -> list[dict[str, Any]]:
        """Every valid answer for a validated input, as the DSPy output fields an adapter parses."""
        return [self.to_fields(output) for output in self.alternatives(given)]


class Registry:
    def __init__(self, package: str = "signatures") -> None:
        self._package = package
        self._found: dict[str, RegisteredSignature] | None = None
        self._lock = threading.Lock()

    def _discover(self) -> dict[str, RegisteredSignature]:
        with self._lock:
            if self._found is None:
                self._found = _load(self._package)
            return self._found

    def ids(self) -> list[str]:
        return sorted(self._discover())

    def get(self, signature_id: str) -> RegisteredSignature:
        found = self._discover()
        if signature_id not in found:
            raise SignatureNotFound(
                f"unknown signature {signature_id!r}; known: {', '.join(sorted(found)) or 'none'}"
            )
        return found[signature_id]

    def contract(self, signature_id: str) -> SignatureContract:
        return self.get(signature_id).contract


def _load(package_name: str) -> dict[str, RegisteredSignature]:
    package = importlib.import_module(package_name)
    found: dict[str, RegisteredSignature] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package_name}.{info.name}")
        entry = getattr(module, "SIGNATURE", None)
        if not isinstance(entry, RegisteredSignature):
            raise ConfigError(f"{package_name}.{info.name} does not export SIGNATURE = RegisteredSignature(...)")
        sig_id = entry.contract.signature_id
        if sig_id in found:
            raise ConfigError(f"signature {sig_id} is declared twice ({package_name}.{info.name})")
        found[sig_id] = entry
    return found
