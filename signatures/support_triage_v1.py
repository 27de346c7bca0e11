"""SupportTriage.v1: file an incoming support message under one category and one priority."""

from __future__ import annotations

from typing import Any, Literal, get_args

import dspy
from pydantic import BaseModel, ConfigDict, Field

from overnight.domain.signatures import Budget, SearchSpace, SignatureContract
from overnight.registry import RegisteredSignature

Category = Literal["billing", "bug", "account", "feature_request", "how_to"]
Priority = Literal["low", "normal", "urgent"]


class SupportTriageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4000)
    customer_tier: Literal["free", "pro", "enterprise"]


class SupportTriageOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Category
    priority: Priority


INSTRUCTIONS = (
    "Classify the support message. category: billing (charges, invoices, refunds), bug (something is broken), "
    "account (login, access, settings of the account), feature_request (asks for something new) or how_to "
    "(asks how to do something that works). priority: urgent when the customer is blocked or losing money or "
    "data now, low for nice-to-haves and questions, normal otherwise.",
    "You triage a support inbox. Give the one category that fits best and a priority. Urgent means the "
    "customer cannot work or is losing money or data right now; enterprise customers blocked are always urgent.",
    "Read the message and the customer's tier. Category is billing, bug, account, feature_request or how_to. "
    "Priority is urgent, normal or low.",
)

CONTRACT = SignatureContract(
    signature_id="SupportTriage.v1",
    description="Triage a support message into a category and a priority.",
    input_model=SupportTriageInput,
    output_model=SupportTriageOutput,
    search_space=SearchSpace(instructions=INSTRUCTIONS, demo_counts=(0, 3, 6)),
    reward_id="exact_json_match@1",
    budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=0.002),
)


class _SupportTriageFields(dspy.Signature):
    message: str = dspy.InputField(desc="the customer's message")
    customer_tier: Literal["free", "pro", "enterprise"] = dspy.InputField(desc="the customer's plan")
    category: Category = dspy.OutputField()
    priority: Priority = dspy.OutputField()


def to_output(fields: dict[str, Any]) -> dict[str, Any]:
    return {"category": fields.get("category"), "priority": fields.get("priority")}


def to_fields(output: dict[str, Any]) -> dict[str, Any]:
    return dict(output)


def alternatives(_given: SupportTriageInput) -> list[dict[str, Any]]:
    return [{"category": c, "priority": p} for c in get_args(Category) for p in get_args(Priority)]


SIGNATURE = RegisteredSignature(
    contract=CONTRACT,
    dspy_signature=_SupportTriageFields.with_instructions(CONTRACT.default_instructions),
    to_output=to_output,
    to_fields=to_fields,
    alternatives=alternatives,
    sample_input={"message": "I was billed twice this month, please refund one charge", "customer_tier": "pro"},
)
