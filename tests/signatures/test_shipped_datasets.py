"""The shipped datasets: valid, varied, every label on both sides, and no holdout row that copies a train row."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from overnight.domain.datasets import ExampleRow, parse_dataset
from overnight.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DATASETS = {"SelectTool.v1": ROOT / "datasets" / "selecttool.v1.jsonl",
            "SupportTriage.v1": ROOT / "datasets" / "supporttriage.v1.jsonl"}
NEAR_DUPLICATE = 0.8  # difflib ratio of normalised messages at or above which two rows count as the same


def rows(signature_id: str) -> list[ExampleRow]:
    return parse_dataset(Registry().contract(signature_id), DATASETS[signature_id].read_bytes(), fmt="jsonl")


def label(row: ExampleRow) -> str:
    return json.dumps(row.expected, sort_keys=True)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_select_tool_dataset_is_big_varied_and_balanced() -> None:
    found = rows("SelectTool.v1")
    holdout = [r for r in found if r.split == "holdout"]
    tags = Counter(tag for r in found for tag in r.tags)
    tools = {t["name"] for r in found for t in r.input["tools"]}
    assert len(found) >= 60
    assert len(holdout) >= 20
    assert len(tools) >= 7
    assert {"chit-chat", "personal-info", "typo", "indirect", "multi-part"} <= set(tags)
    assert sum(n for tag, n in tags.items() if tag.startswith("lang:")) >= 5


def test_every_select_tool_label_is_in_train_and_in_holdout() -> None:
    found = rows("SelectTool.v1")
    by_split = {split: {label(r) for r in found if r.split == split} for split in ("train", "holdout")}
    assert by_split["train"] == by_split["holdout"]
    assert len(by_split["holdout"]) == 9  # eight tools and none


@pytest.mark.parametrize("field", ["category", "priority"])
def test_every_triage_value_is_in_train_and_in_holdout(field: str) -> None:
    found = rows("SupportTriage.v1")
    by_split = {split: {r.expected[field] for r in found if r.split == split} for split in ("train", "holdout")}
    assert by_split["train"] == by_split["holdout"]
    assert len(by_split["holdout"]) == (5 if field == "category" else 3)


@pytest.mark.parametrize("signature_id", sorted(DATASETS))
def test_no_holdout_row_duplicates_or_nearly_duplicates_a_train_row(signature_id: str) -> None:
    found = rows(signature_id)
    train = [(r.example_id, normalise(r.input["message"])) for r in found if r.split == "train"]
    clashes = []
    for row in (r for r in found if r.split == "holdout"):
        message = normalise(row.input["message"])
        for train_id, train_message in train:
            ratio = difflib.SequenceMatcher(None, message, train_message).ratio()
            if ratio >= NEAR_DUPLICATE:
                clashes.append((row.example_id, train_id, round(ratio, 2)))
    assert clashes == []


def test_the_near_duplicate_check_can_fail() -> None:
    a, b = normalise("Remind me to call Mom at 6pm!"), normalise("remind me to call mom at 6 pm")
    assert difflib.SequenceMatcher(None, a, b).ratio() >= NEAR_DUPLICATE
