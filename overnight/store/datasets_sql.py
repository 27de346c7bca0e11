"""SQL for examples, their content-addressed versions and dataset snapshots. Called by `SqlStore` inside one
write transaction per import, so an import is all-or-nothing. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from overnight.domain.datasets import (
    SPLITS,
    ExampleRow,
    Snapshot,
    SnapshotDetail,
    SnapshotMember,
    StoredExample,
    dataset_hash,
    split_counts,
)
from overnight.domain.hashing import canonical_json
from overnight.errors import SnapshotNotFound
from overnight.store.schema import dataset_snapshots, example_rows, examples, snapshot_members

CHUNK = 5000  # rows per executemany batch


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, for content-addressed rows that may already be stored."""
    build = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for batch in _chunks(rows):
        conn.execute(build(table).on_conflict_do_nothing(), batch)


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield list(rows[start:start + CHUNK])


def upsert_examples(
    conn: Connection, *, signature_id: str, rows: list[ExampleRow], now: int, replace: bool = False
) -> tuple[dict[str, int], Snapshot, bool]:
    """Upsert `rows` by example_id (with `replace`, also remove the current rows they leave out); return the
    counts, the snapshot of the resulting dataset, and whether that snapshot is new. A removed row leaves only the
    current dataset: its versions stay, and so do the snapshots that hold it."""
    current = {r.example_id: (r.split, r.row_hash) for r in conn.execute(
        select(examples.c.example_id, examples.c.split, examples.c.row_hash)
        .where(examples.c.signature_id == signature_id)
    )}
    fresh = [row for row in rows if row.example_id not in current]
    changed = [row for row in rows if row.example_id in current and current[row.example_id][1] != row.row_hash]
    gone = sorted(set(current) - {row.example_id for row in rows}) if replace else []
    _write_examples(conn, signature_id, fresh, changed, now)
    for batch in _chunks(gone):
        conn.execute(delete(examples).where(examples.c.signature_id == signature_id,
                                            examples.c.example_id.in_(batch)))
    for example_id in gone:
        del current[example_id]
    for row in rows:
        current[row.example_id] = (row.split, row.row_hash)
    snapshot, is_new = _snapshot(conn, signature_id, current, now)
    counts = {"inserted": len(fresh), "updated": len(changed), "unchanged": len(rows) - len(fresh) - len(changed),
              "removed": len(gone)}
    return counts, snapshot, is_new


def _values(signature_id: str, row: ExampleRow) -> dict[str, Any]:
    return {"signature_id": signature_id, "example_id": row.example_id, "input_json": canonical_json(row.input),
            "expected_json": canonical_json(row.expected), "split": row.split,
            "tags_json": canonical_json(list(row.tags)), "row_hash": row.row_hash}


def _write_examples(conn: Connection, signature_id: str, fresh: list[ExampleRow], changed: list[ExampleRow],
                    now: int) -> None:
    versions = [{**_values(signature_id, r), "created_at": now} for r in (*fresh, *changed)]
    insert_ignoring_duplicates(conn, example_rows, versions)
    for batch in _chunks([{**_values(signature_id, r), "created_at": now, "updated_at": now} for r in fresh]):
        conn.execute(insert(examples), batch)
    # Bind names are the columns with a `b_` prefix: SQLAlchemy reserves the bare names for the SET clause.
    changing = ("input_json", "expected_json", "split", "tags_json", "row_hash", "updated_at")
    statement = (update(examples)
                 .where(examples.c.signature_id == bindparam("b_signature_id"),
                        examples.c.example_id == bindparam("b_example_id"))
                 .values({column: bindparam(f"b_{column}") for column in changing}))
    params = [{f"b_{k}": v for k, v in {**_values(signature_id, r), "updated_at": now}.items()} for r in changed]
    for batch in _chunks(params):
        conn.execute(statement, batch)


def _snapshot(conn: Connection, signature_id: str, members: dict[str, tuple[str, str]],
              now: int) -> tuple[Snapshot, bool]:
    digest = dataset_hash((eid, split, row_hash) for eid, (split, row_hash) in members.items())
    stored = find_snapshot(conn, signature_id, digest)
    if stored is not None:
        return stored, False
    snapshot = Snapshot(signature_id=signature_id, dataset_hash=digest, example_count=len(members),
                        split_counts=split_counts(split for split, _ in members.values()), created_at=now)
    conn.execute(insert(dataset_snapshots).values(
        signature_id=signature_id, dataset_hash=digest, example_count=snapshot.example_count,
        split_counts_json=canonical_json(snapshot.split_counts), created_at=now,
    ))
    rows = [{"signature_id": signature_id, "dataset_hash": digest, "example_id": eid, "row_hash": row_hash}
            for eid, (_, row_hash) in sorted(members.items())]
    for batch in _chunks(rows):
        conn.execute(insert(snapshot_members), batch)
    return snapshot, True


def find_snapshot(conn: Connection, signature_id: str, digest: str) -> Snapshot | None:
    row = conn.execute(select(dataset_snapshots).where(
        dataset_snapshots.c.signature_id == signature_id, dataset_snapshots.c.dataset_hash == digest,
    )).mappings().first()
    if row is None:
        return None
    stored_counts = json.loads(row["split_counts_json"])
    return Snapshot(signature_id=signature_id, dataset_hash=digest, example_count=row["example_count"],
                    split_counts={split: stored_counts.get(split, 0) for split in SPLITS},
                    created_at=row["created_at"])


def snapshot_detail(conn: Connection, signature_id: str, digest: str) -> SnapshotDetail:
    snapshot = find_snapshot(conn, signature_id, digest)
    if snapshot is None:
        raise SnapshotNotFound(f"no snapshot {digest!r} for {signature_id}")
    query = (select(snapshot_members.c.example_id, snapshot_members.c.row_hash, example_rows.c.split)
             .join(example_rows, (example_rows.c.signature_id == snapshot_members.c.signature_id)
                   & (example_rows.c.row_hash == snapshot_members.c.row_hash))
             .where(snapshot_members.c.signature_id == signature_id, snapshot_members.c.dataset_hash == digest)
             .order_by(snapshot_members.c.example_id))
    members = [SnapshotMember(example_id=r.example_id, split=r.split, row_hash=r.row_hash)
               for r in conn.execute(query)]
    return SnapshotDetail(**snapshot.model_dump(), members=members)


def list_examples(conn: Connection, *, signature_id: str, split: str | None, after: str | None,
                  limit: int | None) -> list[StoredExample]:
    query = select(examples).where(examples.c.signature_id == signature_id).order_by(examples.c.example_id)
    if split is not None:
        query = query.where(examples.c.split == split)
    if after is not None:
        query = query.where(examples.c.example_id > after)
    return [StoredExample(example_id=r["example_id"], input=json.loads(r["input_json"]),
                          expected=json.loads(r["expected_json"]), split=r["split"], tags=json.loads(r["tags_json"]),
                          row_hash=r["row_hash"], created_at=r["created_at"], updated_at=r["updated_at"])
            for r in conn.execute(query.limit(limit)).mappings()]
