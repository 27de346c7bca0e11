"""Rewards: deterministic scores of a predicted output against the expected one, versioned `name@version`.

Must not import I/O modules or DSPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from overnight.domain.hashing import canonical_json

Reward = Callable[[dict[str, Any], dict[str, Any] | None], float]


def exact_json_match(expected: dict[str, Any], predicted: dict[str, Any] | None) -> float:
    """1.0 when the canonical JSON of both outputs is identical, else 0.0 (a failed call scores 0)."""
    if predicted is None:
        return 0.0
    return 1.0 if canonical_json(expected) == canonical_json(predicted) else 0.0


REWARDS: dict[str, Reward] = {"exact_json_match@1": exact_json_match}


def reward_for(reward_id: str) -> Reward:
    try:
        return REWARDS[reward_id]
    except KeyError:
        raise KeyError(f"unknown reward {reward_id!r}; known: {', '.join(sorted(REWARDS))}") from None
