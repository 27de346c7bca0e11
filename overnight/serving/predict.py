"""Predict: validate the input, route (champion, or the canary's arm by a salted hash of the request key), run
the program under `dspy.context`, and write the receipt with the arm's counters and the canary's assessment in
one transaction. An LM failure is a counted error on its arm and a 502 to the caller, never a crash.
Must not import the API."""

from __future__ import annotations

import secrets
import time

from overnight.domain.canary import arm_for, bucket_of
from overnight.domain.hashing import content_hash
from overnight.domain.receipts import Prediction, PredictRequest, Receipt
from overnight.domain.rewards import reward_for
from overnight.domain.signatures import ExampleInvalid
from overnight.errors import InvalidInput, LMCallFailed
from overnight.lm.backends import Backend
from overnight.lm.invoke import invoke
from overnight.registry import RegisteredSignature
from overnight.serving.programs import ProgramCache
from overnight.store import Store


def predict(store: Store, entry: RegisteredSignature, backend: Backend, programs: ProgramCache,
            request: PredictRequest, *, request_id: str) -> Prediction:
    contract = entry.contract
    try:
        given, expected = (contract.check_example(request.input, request.expected) if request.expected is not None
                           else (contract.check_input(request.input), None))
    except ExampleInvalid as exc:
        raise InvalidInput.naming([{"field": field, "message": reason} for field, reason in exc.problems],
                                  field=exc.field) from None
    route = store.serving_route(signature_id=contract.signature_id)
    key = request.request_key or f"random:{secrets.token_hex(8)}"
    arm, compiled_id = "champion", route.champion_id
    if route.canary_id is not None and route.salt is not None:
        arm = arm_for(bucket_of(salt=route.salt, signature_id=contract.signature_id, request_key=key),
                      route.rollout_pct)
        compiled_id = route.candidate_id if arm == "candidate" else route.control_id
    program = (programs.get(store, entry, compiled_id) if compiled_id is not None
               else programs.default(store, entry, backend.lm_id))
    call = invoke(program.program, backend, entry, given, expected, decode=program.decode or None)
    correct = None
    if expected is not None:
        correct = bool(call.ok and reward_for(contract.reward_id)(expected, call.output) == 1.0)
    receipt = Receipt(
        receipt_id=f"rc-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(6)}",
        signature_id=contract.signature_id, compiled_id=program.compiled_id, canary_id=route.canary_id, arm=arm,
        step=route.step, request_key=key, input_hash=content_hash(given), output=call.output, ok=call.ok,
        error_code=call.error_code,
        correct=correct, latency_ms=call.latency_ms, tokens_in=call.tokens_in, tokens_out=call.tokens_out,
        cost_usd=call.cost_usd, lm_id=backend.lm_id, request_id=request_id,
    )
    store.record_receipt(receipt=receipt)
    if not call.ok or call.output is None:
        raise LMCallFailed(f"the LM call failed ({call.error_code}): {call.error}", details={
            "error_code": call.error_code, "receipt_id": receipt.receipt_id, "compiled_id": program.compiled_id,
            "arm": arm, "canary_id": route.canary_id})
    return Prediction(output=call.output, receipt_id=receipt.receipt_id, compiled_id=program.compiled_id, arm=arm,
                      canary_id=route.canary_id, correct=correct, latency_ms=call.latency_ms, lm_id=backend.lm_id)
