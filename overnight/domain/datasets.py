"""Dataset rows: parsing a JSONL file (or a JSON list) all-or-nothing, row hashes and dataset hashes.

Row format, one JSON object per line:
    {"example_id": "…", "input": {…}, "expected": {…}, "split": "train|holdout|test", "tags": ["…"]}
`input` and `expected` are validated against the signature's models (and its cross-check). One bad line
rejects the whole file: every problem is reported with its line, field and reason, and nothing is written.
Must not import I/O modules, the clock, SQL or DSPy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from overnight.domain.hashing import content_hash
from overnight.domain.runs import is_valid_identifier
from overnight.domain.signatures import ExampleInvalid, SignatureContract
from overnight.errors import DatasetInvalid

SPLITS = ("train", "holdout", "test")
Split = Literal["train", "holdout", "test"]
ROW_FIELDS = frozenset({"example_id", "input", "expected", "split", "tags"})
REQUIRED_FIELDS = ("example_id", "input", "expected", "split")
MAX_REPORTED = 50


class ExampleRow(BaseModel):
    """One validated, canonical row and its content hash."""

    model_config = ConfigDict(frozen=True)

    example_id: str
    input: dict[str, Any]
    expected: dict[str, Any]
    split: Split
    tags: tuple[str, ...]
    row_hash: str


class RowProblem(BaseModel):
    line: int  # 0: the whole body (no rows at all)
    field: str  # "line" or "body": the line as a whole
    reason: str

    def sentence(self) -> str:
        if self.line == 0:
            return self.reason
        return f"line {self.line}" + ("" if self.field in ("line", "body") else f", {self.field}") + f": {self.reason}"


def row_hash(*, example_id: str, input: dict[str, Any], expected: dict[str, Any], split: str,
             tags: Iterable[str]) -> str:
    return content_hash({"example_id": example_id, "input": input, "expected": expected, "split": split,
                         "tags": sorted(set(tags))})


def dataset_hash(members: Iterable[tuple[str, str, str]]) -> str:
    """sha256 of the canonical JSON of every (example_id, split, row_hash), sorted — all rows, no cap."""
    return content_hash(sorted([example_id, split, digest] for example_id, split, digest in members))


def split_counts(splits: Iterable[str]) -> dict[str, int]:
    counts = Counter(splits)
    return {split: counts.get(split, 0) for split in SPLITS}


def parse_dataset(contract: SignatureContract, body: bytes, *, fmt: Literal["jsonl", "json"]) -> list[ExampleRow]:
    """Every row of `body`, validated; raises `DatasetInvalid` listing each bad line."""
    problems: list[RowProblem] = []
    rows: list[ExampleRow] = []
    first_line: dict[str, int] = {}
    for line, raw in _records(body, fmt, problems):
        row = _row(contract, line, raw, problems)
        if row is None:
            continue
        if row.example_id in first_line:
            problems.append(RowProblem(line=line, field="example_id",
                                       reason=f"duplicate example_id {row.example_id!r} (first on line "
                                              f"{first_line[row.example_id]})"))
            continue
        first_line[row.example_id] = line
        rows.append(row)
    if not rows and not problems:
        problems.append(RowProblem(line=0, field="body", reason="the file holds no rows"))
    if problems:
        problems.sort(key=lambda p: p.line)
        first, more = problems[0], len(problems) - 1
        raise DatasetInvalid(
            f"dataset rejected, nothing imported: {first.sentence()}"
            + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""),
            details={"errors": [p.model_dump() for p in problems[:MAX_REPORTED]], "problem_count": len(problems)},
        )
    return rows


def _records(body: bytes, fmt: str, problems: list[RowProblem]) -> list[tuple[int, Any]]:
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a byte order mark, which JSON lets a parser ignore
    except UnicodeDecodeError as exc:
        problems.append(RowProblem(line=text_line(body, exc.start), field="body", reason="not UTF-8 text"))
        return []
    if fmt == "json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(line=exc.lineno, field="body", reason=f"bad JSON: {exc.msg}"))
            return []
        if not isinstance(items, list):
            problems.append(RowProblem(line=1, field="body", reason="a JSON body must be a list of rows"))
            return []
        return list(enumerate(items, start=1))  # for a JSON list, "line" is the row's position
    records: list[tuple[int, Any]] = []
    # Lines end at \n only (and \r\n): str.splitlines() would also end one at U+2028, U+0085…, which a JSON string
    # may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(line=number, field="line", reason=f"bad JSON: {exc.msg} at column {exc.colno}"))
            continue
        if isinstance(record, list):
            problems.append(RowProblem(line=number, field="line", reason=(
                "a row must be a JSON object; this line is a JSON list: a list of rows is read from a .json file "
                "(API: ?format=json or content-type application/json)")))
            continue
        records.append((number, record))
    return records


def _row(contract: SignatureContract, line: int, raw: Any, problems: list[RowProblem]) -> ExampleRow | None:
    problem = _shape_problem(raw)
    if problem is not None:
        problems.append(RowProblem(line=line, field=problem[0], reason=problem[1]))
        return None
    try:
        parsed_input, parsed_expected = contract.check_example(raw["input"], raw["expected"])
    except ExampleInvalid as exc:
        problems.append(RowProblem(line=line, field=exc.field, reason=exc.reason))
        return None
    tags = tuple(sorted(set(raw.get("tags", []))))
    return ExampleRow(
        example_id=raw["example_id"], input=parsed_input, expected=parsed_expected, split=raw["split"], tags=tags,
        row_hash=row_hash(example_id=raw["example_id"], input=parsed_input, expected=parsed_expected,
                          split=raw["split"], tags=tags),
    )


def _shape_problem(raw: Any) -> tuple[str, str] | None:  # noqa: PLR0911 - one return per rule reads best
    """(field, reason) for the first thing wrong with the row's envelope, or None."""
    if not isinstance(raw, dict):
        return "line", "a row must be a JSON object"
    for name in REQUIRED_FIELDS:
        if name not in raw:
            return name, "missing field"
    unknown = sorted(set(raw) - ROW_FIELDS)
    if unknown:
        return unknown[0], f"unknown field (a row has {', '.join(sorted(ROW_FIELDS))})"
    if not isinstance(raw["example_id"], str) or not is_valid_identifier(raw["example_id"]):
        return "example_id", "must be 1-128 characters of letters, digits and . _ : - (starting alphanumeric)"
    if raw["split"] not in SPLITS:
        return "split", f"unknown split {raw['split']!r}; use one of {', '.join(SPLITS)}"
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        return "tags", "must be a list of strings of 1 to 64 characters"
    return None


def text_line(body: bytes, offset: int) -> int:
    return body[:offset].count(b"\n") + 1


class Snapshot(BaseModel):
    """An immutable dataset version: which rows (by content hash) a signature had at one moment."""

    model_config = ConfigDict(frozen=True)

    signature_id: str
    dataset_hash: str
    example_count: int
    split_counts: dict[str, int]
    created_at: int


class SnapshotMember(BaseModel):
    example_id: str
    split: str
    row_hash: str


class SnapshotDetail(Snapshot):
    members: list[SnapshotMember]


class StoredExample(BaseModel):
    example_id: str
    input: dict[str, Any]
    expected: dict[str, Any]
    split: str
    tags: list[str]
    row_hash: str
    created_at: int
    updated_at: int


class DatasetCheck(BaseModel):
    """A dataset body that would import cleanly: its row count per split (nothing written)."""

    signature_id: str
    rows: int
    splits: dict[str, int]


class ExamplePage(BaseModel):
    examples: list[StoredExample]
    next_after: str | None


class ImportResult(BaseModel):
    """What an import did: counts per outcome, the dataset hash after it, and its snapshot."""

    signature_id: str
    rows_in_file: int
    inserted: int
    updated: int
    unchanged: int
    removed: int = Field(default=0, description="current rows the file left out, with `replace`; kept in old snapshots")
    dataset_hash: str
    new_snapshot: bool
    snapshot: Snapshot
    run_id: str | None = None
    dry_run: bool = Field(default=False, description="what an import would do: nothing was written")

    def counted(self) -> str:
        """`3 inserted, 1 updated, 73 unchanged of 77 rows` (then `, 2 removed` when a replace removed any)."""
        said = f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
        return f"{said} of {self.rows_in_file} rows" + (f", {self.removed} removed" if self.removed else "")
