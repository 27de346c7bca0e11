"""SelectTool.v1: an agent's router. Given the user's message and the agent's context (its name, the user's
handle, the tools it has with one-line descriptions), answer `{"action": "none"}` or
`{"action": "tool", "tool_name": <one of the listed tools>}`. Chit-chat, requests for other people's personal
information and requests no listed tool can serve must not act."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import dspy
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from overnight.domain.signatures import Budget, SearchSpace, SignatureContract
from overnight.registry import RegisteredSignature

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,47}$")]


class ToolInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ToolName
    description: str = Field(min_length=1, max_length=200)


class SelectToolInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4000)
    agent_name: str = Field(min_length=1, max_length=64)
    user_handle: str = Field(min_length=1, max_length=64)
    tools: list[ToolInfo] = Field(min_length=1, max_length=20)

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, tools: list[ToolInfo]) -> list[ToolInfo]:
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be unique")
        return tools


class SelectToolOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["none", "tool"]
    tool_name: ToolName | None = None

    @model_validator(mode="after")
    def _tool_name_iff_tool(self) -> SelectToolOutput:
        if self.action == "tool" and self.tool_name is None:
            raise ValueError("action 'tool' needs a tool_name")
        if self.action == "none" and self.tool_name is not None:
            raise ValueError("action 'none' takes no tool_name")
        return self


def _tool_is_offered(given: BaseModel, answer: BaseModel) -> str | None:
    assert isinstance(given, SelectToolInput)  # noqa: S101 - the registry pairs these models
    assert isinstance(answer, SelectToolOutput)  # noqa: S101
    offered = [t.name for t in given.tools]
    if answer.tool_name is not None and answer.tool_name not in offered:
        return f"tool_name {answer.tool_name!r} is not one of the input's tools ({', '.join(offered)})"
    return None


INSTRUCTIONS = (
    "Decide whether the assistant should call one of the available tools for the user's message. Answer "
    "action 'tool' with the exact name of that tool, or action 'none' when no listed tool fits, when the "
    "message is small talk, or when it asks for someone's personal information.",
    "You route requests for an AI agent. Read the message and the list of tools. If one tool clearly does "
    "what the user asks, choose it by its exact name. Otherwise choose none. Never act on chit-chat or on "
    "requests for private data about people.",
    "Pick the single best tool from the list for this request, or none. Choose none for greetings, thanks, "
    "opinions, questions you can answer yourself, tools that are not in the list, and any request for another "
    "person's private details such as an address, phone number, email address or salary.",
)

CONTRACT = SignatureContract(
    signature_id="SelectTool.v1",
    description="An agent's router: call one listed tool for the user's message, or none.",
    input_model=SelectToolInput,
    output_model=SelectToolOutput,
    search_space=SearchSpace(instructions=INSTRUCTIONS, demo_counts=(0, 4, 8)),
    reward_id="exact_json_match@1",
    budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=0.002),
    cross_check=_tool_is_offered,
)


class _SelectToolFields(dspy.Signature):
    message: str = dspy.InputField(desc="what the user wrote")
    agent_name: str = dspy.InputField(desc="the assistant's name")
    user_handle: str = dspy.InputField(desc="who is asking")
    tools: list[ToolInfo] = dspy.InputField(desc="the tools the assistant may call, each with what it does")
    action: Literal["none", "tool"] = dspy.OutputField(desc="'tool' to call one tool, 'none' to call nothing")
    tool_name: str = dspy.OutputField(desc="the exact name of the chosen tool; empty when action is none")


def to_output(fields: dict[str, Any]) -> dict[str, Any]:
    """A DSPy prediction's fields as the output JSON: an empty or 'none' tool name means no tool. Anything
    else malformed is passed through for the output model to reject (a counted parse failure)."""
    action = str(fields.get("action") or "").strip()
    name = str(fields.get("tool_name") or "").strip()
    if action == "tool" and name.lower() not in ("", "none"):
        return {"action": "tool", "tool_name": name}
    return {"action": action}


def to_fields(output: dict[str, Any]) -> dict[str, Any]:
    return {"action": output["action"], "tool_name": output.get("tool_name", "")}


def alternatives(given: SelectToolInput) -> list[dict[str, Any]]:
    """Every valid answer: none, or one of the offered tools."""
    return [{"action": "none"}, *({"action": "tool", "tool_name": t.name} for t in given.tools)]


SIGNATURE = RegisteredSignature(
    contract=CONTRACT,
    dspy_signature=_SelectToolFields.with_instructions(CONTRACT.default_instructions),
    to_output=to_output,
    to_fields=to_fields,
    alternatives=alternatives,
    sample_input={
        "message": "can you email Priya that the launch moved to Thursday?", "agent_name": "Autopilot",
        "user_handle": "@sam", "tools": [
            {"name": "web_search", "description": "Search the public web for current information"},
            {"name": "send_email", "description": "Send an email on the user's behalf"},
            {"name": "set_reminder", "description": "Remind the user about something at a given time"},
        ],
    },
)
