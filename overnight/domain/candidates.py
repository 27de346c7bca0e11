"""Compile candidates: the grid of instruction variants x few-shot demo counts x decode variants, with demos
chosen from train by a seeded, recorded selection, and the successive-halving schedule that searches it.

Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from overnight.domain.signatures import SearchSpace


class CandidateParams(BaseModel):
    """Everything that makes one candidate program, recorded in its artifact and in the report."""

    model_config = ConfigDict(frozen=True)

    instruction_index: int
    demo_count: int
    decode_index: int
    demo_ids: tuple[str, ...]
    decode: dict[str, Any]

    @property
    def is_default(self) -> bool:
        """The signature's default program: first instructions, no demos, first decode."""
        return self.instruction_index == 0 and self.demo_count == 0 and self.decode_index == 0


def select_demos(train_ids: list[str], count: int, seed: int) -> tuple[str, ...]:
    """`count` train example ids, chosen by a seeded draw that depends only on (seed, count, the train set)."""
    pool = sorted(train_ids)
    draw = random.Random(f"demos|{seed}|{count}")  # noqa: S311 - a reproducible selection, not a secret
    return tuple(sorted(draw.sample(pool, min(count, len(pool)))))


def grid(space: SearchSpace, train_ids: list[str], seed: int,
         selector: Callable[[list[str], int, int], tuple[str, ...]] = select_demos) -> list[CandidateParams]:
    """Every candidate, default first. `selector(train_ids, count, seed)` picks the demos (default: seeded)."""
    return [
        CandidateParams(instruction_index=i, demo_count=k, decode_index=d, demo_ids=selector(train_ids, k, seed),
                        decode=dict(space.decode[d]))
        for i in range(len(space.instructions)) for k in sorted(space.demo_counts) for d in range(len(space.decode))
    ]


def halving_schedule(
    *, candidates: int, train_size: int, first_slice: int, eta: int, finalists: int
) -> list[tuple[int, int]]:
    """Rungs of successive halving as (candidates evaluated, train examples each): start with every candidate on
    `first_slice` examples, keep the best 1/eta, grow the slice eta-fold, until `finalists` remain or the slice
    is the whole train split."""
    rungs, alive, size = [], candidates, min(first_slice, train_size)
    while True:
        rungs.append((alive, size))
        if alive <= finalists or size >= train_size:
            return rungs
        alive, size = max(finalists, math.ceil(alive / eta)), min(train_size, size * eta)
