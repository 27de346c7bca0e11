"""One program call, measured: input validated, the call scoped and run under `dspy.context(lm=…)`, the answer
mapped back and validated against the signature, failures turned into counted error codes (never a crash),
tokens and latency recorded. Used by `lm check` now, and by compile and serving.

Error codes: `lm_error` (the provider failed), `timeout`, `parse_failure` (the answer could not be parsed into
the signature's fields), `invalid_output` (parsed, but not a valid output for this input).
Must not import the store or the API.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import dspy
from dspy.utils.exceptions import LMNotConfiguredError

from overnight.domain.lm import Invocation, LMCheck
from overnight.domain.signatures import ExampleInvalid
from overnight.lm.adapter import ADAPTER
from overnight.lm.backends import Backend
from overnight.lm.scope import call_scope
from overnight.registry import RegisteredSignature


def default_program(entry: RegisteredSignature) -> Any:
    """The signature's default program: one Predict with the default instructions and no demos."""
    return dspy.Predict(entry.dspy_signature)


def classify(exc: BaseException) -> str:
    """The error code for a failed call, looking through the wrappers DSPy puts around engine errors."""
    for seen in _causes(exc):
        name = type(seen).__name__.lower()
        if isinstance(seen, TimeoutError) or "timeout" in name:
            return "timeout"
        if "adapterparse" in name:
            return "parse_failure"
    return "lm_error"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and each one it was raised from."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__


def _described(exc: BaseException) -> str:
    """The failure as said to an operator: DSPy's words, and for a missing API key first our setting for it."""
    said = f"{type(exc).__name__}: {exc}"
    seen = next((e for e in _causes(exc) if isinstance(e, LMNotConfiguredError) and "api key" in str(e).lower()),
                None)
    if seen is None:
        return said
    named = re.search(r"\bSet ([A-Z][A-Z0-9_]*_KEY)\b", str(seen))  # DSPy names the provider's variable
    theirs = f", e.g. {named.group(1)}" if named else ""
    return f"the LM has no API key: set OVERNIGHT_LM_API_KEY (or the provider's own variable{theirs}): {said}"


def invoke(program: Any, backend: Backend, entry: RegisteredSignature, raw_input: dict[str, Any],
           expected: dict[str, Any] | None = None, *, decode: dict[str, Any] | None = None,
           cached: bool = False) -> Invocation:
    """Run `program` on one input. Invalid *input* raises (the caller's mistake); everything the LM does wrong
    comes back as an `Invocation` with an error code. Only `cached` calls (compile's) may be answered from the LM
    response cache (OVERNIGHT_LM_CACHE_DIR): a predict or a check measures the LM itself."""
    given = entry.contract.input_model.model_validate(raw_input)
    started = time.perf_counter()
    try:
        with call_scope(entry, given, expected), dspy.context(
            lm=backend.lm if cached else backend.live_lm, adapter=ADAPTER, track_usage=True, disable_history=True,
        ):
            inputs = {name: getattr(given, name) for name in type(given).model_fields}
            prediction = program(**inputs, config=decode) if decode else program(**inputs)
        output = entry.contract.check_output(given, entry.to_output(dict(prediction)))
    except ExampleInvalid as exc:
        return _failed("invalid_output", str(exc), started)
    except Exception as exc:  # noqa: BLE001 - an LM failure is a measurement, not a crash (STYLE 3)
        return _failed(classify(exc), _described(exc)[:500], started)
    tokens_in, tokens_out = _usage(prediction)
    return Invocation(ok=True, output=output, latency_ms=_ms(started), tokens_in=tokens_in, tokens_out=tokens_out,
                      cost_usd=backend.cost_usd(tokens_in, tokens_out))


def _usage(prediction: Any) -> tuple[int, int]:
    usage = prediction.get_lm_usage() or {}
    tokens_in = sum(int(u.get("prompt_tokens") or 0) for u in usage.values())
    tokens_out = sum(int(u.get("completion_tokens") or 0) for u in usage.values())
    return tokens_in, tokens_out


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _failed(code: str, message: str, started: float) -> Invocation:
    return Invocation(ok=False, output=None, error_code=code, error=message, latency_ms=_ms(started))


def check(entry: RegisteredSignature, backend: Backend) -> LMCheck:
    """One call of the default program on the signature's sample input: does the LM answer, validly?"""
    result = invoke(default_program(entry), backend, entry, entry.sample_input)
    return LMCheck(backend=backend.kind, model=backend.model, lm_id=backend.lm_id,
                   signature=entry.contract.signature_id, input=entry.sample_input, **result.model_dump())
