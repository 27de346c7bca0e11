"""The signature registry: discovers the modules of the `signatures` package and pairs each contract with its
DSPy Signature class. An unknown id is `SignatureNotFound` (404) everywhere.

Discovery imports the modules (and so DSPy) on first use, not at import time, and checks each one's DSPy class,
sample input and output mappings against its models (no LM call): a mistake in a module is a `ConfigError` naming
its file, when a command starts, not a night of failed calls. Must not import SQL or the API.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from overnight.domain.signatures import ExampleInvalid, SignatureContract
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
    """Every module of the package, all or nothing: one broken module stops discovery (a server serving the rest
    would answer the broken signature `signature_not_found`, which reads as a typo in the runner, not as a mistake
    in the module)."""
    package = importlib.import_module(package_name)
    found: dict[str, RegisteredSignature] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        name = f"{package_name}.{info.name}"
        spec = importlib.util.find_spec(name)
        where = f"{name} ({spec.origin if spec is not None else '?'})"
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure in an operator's module is theirs to fix: said, not raised
            raise ConfigError(f"{where}: cannot be imported{_line(exc, spec)}: {_said(exc)}") from None
        entry = getattr(module, "SIGNATURE", None)
        if not isinstance(entry, RegisteredSignature):
            raise ConfigError(f"{where}: does not export SIGNATURE = RegisteredSignature(...)")
        problems = _problems(entry)
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        sig_id = entry.contract.signature_id
        if sig_id in found:
            raise ConfigError(f"signature {sig_id} is declared twice ({name})")
        found[sig_id] = entry
    return found


def _problems(entry: RegisteredSignature) -> list[str]:
    """What would make the module fail at night rather than now: its DSPy class and its contract disagreeing (the
    calls would fail, or the default program served would not be the one compile scored), or its sample input and
    output mappings not fitting its models (every answer would be counted an error, or a correct one scored wrong).
    Checked on the module's own sample input, without an LM call."""
    contract, dspy_signature = entry.contract, entry.dspy_signature
    if not _is_dspy_signature(dspy_signature):
        return [f"dspy_signature is {dspy_signature!r}, not a dspy.Signature class"]
    problems = []
    inputs, expected_inputs = list(dspy_signature.input_fields), list(contract.input_model.model_fields)
    if set(inputs) != set(expected_inputs):
        problems.append(f"the DSPy signature's input fields ({', '.join(inputs)}) are not the input model's "
                        f"({', '.join(expected_inputs)})")
    if dspy_signature.instructions != contract.default_instructions:
        problems.append("the DSPy signature's instructions are not the contract's first instruction variant: use "
                        f"{dspy_signature.__name__}.with_instructions(CONTRACT.default_instructions)")
    try:
        given = contract.input_model.model_validate(contract.check_input(entry.sample_input))
    except ExampleInvalid as exc:
        problems.append(f"sample_input is not a valid input: {exc.every()}")
        return problems
    return problems + _output_problems(entry, given, list(dspy_signature.output_fields))


def _is_dspy_signature(value: Any) -> bool:
    import dspy  # noqa: PLC0415 - the modules have imported it by now; importing the registry should not

    return isinstance(value, type) and issubclass(value, dspy.Signature)


def _output_problems(entry: RegisteredSignature, given: Any, output_fields: list[str]) -> list[str]:
    """The sample input's valid outputs, each through `to_fields` (as demos and constrained decoding see it) and
    back through `to_output` (as a prediction is scored): the first that does not come back itself."""
    try:
        outputs = entry.alternatives(given)
    except Exception as exc:  # noqa: BLE001 - the operator's code: said, not raised
        return [f"alternatives(sample_input) raises {_said(exc)}"]
    if not outputs:
        return ["alternatives(sample_input) is empty: it must list every valid output for an input"]
    for output in outputs:
        problem = _round_trip_problem(entry, given, output, output_fields)
        if problem is not None:
            return [problem]
    return []


def _round_trip_problem(entry: RegisteredSignature, given: Any, output: Any, output_fields: list[str]) -> str | None:
    contract = entry.contract
    try:
        valid = contract.check_output(given, output)
    except ExampleInvalid as exc:
        return f"alternatives(sample_input) gives an invalid output {output!r}: {exc.every()}"
    try:
        fields = entry.to_fields(valid)
        back = entry.to_output(fields)
    except Exception as exc:  # noqa: BLE001 - the operator's code: said, not raised
        return f"to_output(to_fields({valid!r})) raises {_said(exc)}"
    if set(fields) != set(output_fields):
        return (f"to_fields() gives the fields ({', '.join(fields)}), not the DSPy signature's output fields "
                f"({', '.join(output_fields)})")
    try:
        scored = contract.check_output(given, back)
    except ExampleInvalid:
        scored = back
    if scored != valid:
        return f"to_output(to_fields({valid!r})) gives {back!r}: a correct answer would be scored wrong"
    return None


def _said(exc: BaseException) -> str:
    """An exception on one line: pydantic's validation errors as `field: reason`, anything else its first line."""
    if isinstance(exc, ValidationError):
        count, reasons = exc.error_count(), ExampleInvalid.from_validation(exc).every()
        return f"ValidationError: {count} validation error{'s' if count > 1 else ''} for {exc.title}: {reasons}"
    first = exc.msg if isinstance(exc, SyntaxError) else (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _line(exc: BaseException, spec: Any) -> str:
    """` (line N)`: the module's own line the failure came from, when the traceback passes through it."""
    origin = getattr(spec, "origin", None)
    lines = [line for frame, line in traceback.walk_tb(exc.__traceback__) if frame.f_code.co_filename == origin]
    if not lines and isinstance(exc, SyntaxError) and exc.filename == origin and exc.lineno:
        lines = [exc.lineno]
    return f" (line {lines[-1]})" if lines else ""
