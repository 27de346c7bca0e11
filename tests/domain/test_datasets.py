"""Parsing dataset files all-or-nothing, and the hashes that identify rows and datasets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overnight.domain.datasets import dataset_hash, parse_dataset, row_hash
from overnight.errors import DatasetInvalid
from overnight.registry import Registry
from tests.factories import jsonl, select_tool_row

CONTRACT = Registry().contract("SelectTool.v1")


def problems(body: bytes, fmt: str = "jsonl") -> list[dict[str, Any]]:
    with pytest.raises(DatasetInvalid) as refused:
        parse_dataset(CONTRACT, body, fmt=fmt)  # type: ignore[arg-type]
    assert refused.value.status == 422
    return refused.value.details["errors"]


def test_valid_rows_parse_to_canonical_rows() -> None:
    rows = parse_dataset(CONTRACT, jsonl(select_tool_row("a", tags=["z", "a", "z"]),
                                         select_tool_row("b", expected={"action": "none"}, split="holdout")),
                         fmt="jsonl")
    assert [r.example_id for r in rows] == ["a", "b"]
    assert rows[0].tags == ("a", "z")
    assert rows[1].expected == {"action": "none"}
    assert rows[0].row_hash == row_hash(example_id="a", input=rows[0].input, expected=rows[0].expected,
                                        split="train", tags=["z", "a"])


@pytest.mark.parametrize(("body", "line", "field", "reason"), [
    (jsonl(select_tool_row("a"), "{not json"), 2, "line", "bad JSON"),
    (jsonl(select_tool_row("a"), {k: v for k, v in select_tool_row("b").items() if k != "expected"}), 2,
     "expected", "missing field"),
    (jsonl(select_tool_row("a", split="dev")), 1, "split", "unknown split 'dev'"),
    (jsonl(select_tool_row("a", expected={"action": "tool", "tool_name": "get_weather"})), 1, "expected",
     "not one of the input's tools"),
    (jsonl(select_tool_row("a", expected={"action": "tool"})), 1, "expected", "needs a tool_name"),
    (jsonl(select_tool_row("a", expected={"action": "maybe"})), 1, "expected.action", "Input should be"),
    (jsonl(select_tool_row("a", input={"message": "hi"})), 1, "input.agent_name", "Field required"),
    (jsonl(select_tool_row("a"), select_tool_row("a")), 2, "example_id", "duplicate example_id 'a' (first on line 1)"),
    (jsonl(select_tool_row("a", extra=1)), 1, "extra", "unknown field"),
    (jsonl(select_tool_row("bad id")), 1, "example_id", "must be"),
    (jsonl(select_tool_row("a", tags="x")), 1, "tags", "list of strings"),
    (jsonl("[1, 2]"), 1, "line", "JSON object"),
    (b"\n\n", 0, "body", "no rows"),
    (b'{"example_id": "a"}\n\xff\xfe\n', 2, "body", "not UTF-8"),
])
def test_each_malformed_case_names_line_field_and_reason(body: bytes, line: int, field: str, reason: str) -> None:
    first = problems(body)[0]
    assert (first["line"], first["field"]) == (line, field)
    assert reason in first["reason"]


def test_every_bad_line_is_reported_in_line_order() -> None:
    body = jsonl(select_tool_row("a", split="x"), select_tool_row("b"), "nope", select_tool_row("c", split="y"))
    found = problems(body)
    assert [(p["line"], p["field"]) for p in found] == [(1, "split"), (3, "line"), (4, "split")]


@pytest.mark.parametrize(("bad_lines", "counted"), [
    (1, ""), (2, " (and 1 more problem)"), (3, " (and 2 more problems)")])
def test_the_message_counts_the_problems_after_the_first(bad_lines: int, counted: str) -> None:
    with pytest.raises(DatasetInvalid) as refused:
        parse_dataset(CONTRACT, jsonl(*["nope"] * bad_lines), fmt="jsonl")
    assert str(refused.value.message).endswith(f"line 1: bad JSON: Expecting value at column 1{counted}")


def test_json_list_body() -> None:
    body = json.dumps([select_tool_row("a"), select_tool_row("b")]).encode()
    assert len(parse_dataset(CONTRACT, body, fmt="json")) == 2
    assert problems(b'{"a": 1}', fmt="json")[0]["reason"] == "a JSON body must be a list of rows"
    assert problems(json.dumps([select_tool_row("a"), {"x": 1}]).encode(), fmt="json")[0]["line"] == 2


def test_dataset_hash_covers_every_row() -> None:
    members = [(f"ex-{n}", "train", f"{n:064x}") for n in range(10_000)]
    base = dataset_hash(members)
    assert dataset_hash([*members[:-1], ("ex-9999", "train", "f" * 64)]) != base
    assert dataset_hash([*members[:-1], ("ex-9999", "holdout", members[-1][2])]) != base
    assert dataset_hash(members[:-1]) != base


@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), st.sampled_from(["train", "holdout"]),
                          st.text(min_size=1, max_size=5)), unique_by=lambda m: m[0], max_size=20), st.randoms())
def test_dataset_hash_ignores_order(members: list[tuple[str, str, str]], rnd: Any) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    assert dataset_hash(shuffled) == dataset_hash(members)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_leading_utf8_byte_order_mark_is_ignored(fmt: str) -> None:
    """Editors and spreadsheet exports on Windows start a UTF-8 file with a BOM; JSON lets a parser ignore it."""
    rows = [select_tool_row("a"), select_tool_row("b", message="find cats")]
    body = jsonl(*rows) if fmt == "jsonl" else json.dumps(rows).encode()
    parsed = parse_dataset(CONTRACT, b"\xef\xbb\xbf" + body, fmt=fmt)  # type: ignore[arg-type]
    assert [r.example_id for r in parsed] == ["a", "b"]
    assert [r.row_hash for r in parsed] == [r.row_hash for r in parse_dataset(CONTRACT, body, fmt=fmt)]  # type: ignore[arg-type]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_row_is_a_line_ended_by_newline_only(separator: str) -> None:
    """JSON may hold U+2028 and friends unescaped inside a string (json.dumps(ensure_ascii=False) writes them so);
    they are not line ends in JSONL, though Python's str.splitlines() treats them as such."""
    row = select_tool_row("a", message=f"first part{separator}second part")
    body = (json.dumps(row, ensure_ascii=False) + "\r\n" + json.dumps(select_tool_row("b")) + "\n").encode()
    parsed = parse_dataset(CONTRACT, body, fmt="jsonl")
    assert [r.example_id for r in parsed] == ["a", "b"]
    assert parsed[0].input["message"] == f"first part{separator}second part"


def test_a_json_list_sent_as_jsonl_says_how_to_send_a_list() -> None:
    found = problems(json.dumps([select_tool_row("a"), select_tool_row("b")]).encode())
    assert found[0]["line"] == 1
    assert found[0]["reason"] == ("a row must be a JSON object; this line is a JSON list: a list of rows is read "
                                  "from a .json file (API: ?format=json or content-type application/json)")
