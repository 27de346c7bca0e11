"""Pluggable demo selection, by optimizer id (recorded in the job spec and every artifact's params):

- `grid@1` (default): a seeded draw from train (`domain.candidates.select_demos`);
- `labeled_fewshot@1`: DSPy's `LabeledFewShot(k)` over the train split in a seeded order.

Unknown ids are refused with the list of known ones. Must not import the API.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import dspy

from overnight.domain.candidates import select_demos
from overnight.errors import InvalidInput
from overnight.registry import RegisteredSignature

DemoSelector = Callable[[list[str], int, int], tuple[str, ...]]


def _labeled_fewshot(entry: RegisteredSignature) -> DemoSelector:
    def select(train_ids: list[str], count: int, seed: int) -> tuple[str, ...]:
        order = sorted(train_ids)
        random.Random(f"labeled_fewshot|{seed}").shuffle(order)  # noqa: S311 - a recorded, reproducible order
        trainset = [dspy.Example(example_id=example_id) for example_id in order]
        student = dspy.Predict(entry.dspy_signature)
        compiled = dspy.LabeledFewShot(k=count).compile(student, trainset=trainset) if count else student
        return tuple(sorted(demo["example_id"] for demo in compiled.demos))

    return select


def demo_selector(optimizer_id: str, entry: RegisteredSignature) -> DemoSelector:
    if optimizer_id == "grid@1":
        return select_demos
    if optimizer_id == "labeled_fewshot@1":
        return _labeled_fewshot(entry)
    raise InvalidInput(f"unknown optimizer {optimizer_id!r}; known: grid@1, labeled_fewshot@1",
                       details={"errors": [{"field": "optimizer", "message": "unknown optimizer"}]})

