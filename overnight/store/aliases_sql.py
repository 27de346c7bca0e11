"""SQL for the champion alias and its append-only history.

A move is conditional on the champion the caller saw (`UPDATE … WHERE compiled_id = :seen`, or an INSERT … ON
CONFLICT DO NOTHING), so two replicas racing to move it can't both win: the loser gets `alias_moved`.
Must not import FastAPI or httpx.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from overnight.domain.hashing import canonical_json
from overnight.domain.promotion import AliasMove
from overnight.errors import AliasMoved
from overnight.store.schema import alias_history, aliases

CHAMPION = "champion"


# built once: keying a freshly built statement cost a third of a short read
_CURRENT = select(aliases.c.compiled_id).where(aliases.c.signature_id == bindparam("signature_id"),
                                               aliases.c.alias == CHAMPION)


def current(conn: Connection, signature_id: str) -> str | None:
    row = conn.execute(_CURRENT, {"signature_id": signature_id}).first()
    return row.compiled_id if row else None


def history(conn: Connection, signature_id: str, *, limit: int | None = None,
            run_id: str | None = None) -> list[AliasMove]:
    query = select(alias_history).where(alias_history.c.signature_id == signature_id,
                                        alias_history.c.alias == CHAMPION)
    if run_id is not None:
        query = query.where(alias_history.c.run_id == run_id)
    if limit is not None:
        query = query.order_by(alias_history.c.id.desc()).limit(limit)
        rows = list(reversed(conn.execute(query).mappings().all()))
    else:
        rows = list(conn.execute(query.order_by(alias_history.c.id)).mappings())
    return [_move(row) for row in rows]


def on_runs(conn: Connection, run_ids: Collection[str]) -> list[AliasMove]:
    if not run_ids:
        return []
    query = select(alias_history).where(alias_history.c.alias == CHAMPION, alias_history.c.run_id.in_(run_ids))
    return [_move(row) for row in conn.execute(query.order_by(alias_history.c.id)).mappings()]


def _move(row: Any) -> AliasMove:
    return AliasMove(id=row["id"], signature_id=row["signature_id"], alias=row["alias"], from_id=row["from_id"],
                     to_id=row["to_id"], action=row["action"], actor=row["actor"], reason=row["reason"],
                     run_id=row["run_id"], evidence=json.loads(row["evidence_json"]), created_at=row["created_at"])


def move(conn: Connection, *, signature_id: str, seen: str | None, to_id: str | None, action: str, actor: str,
         reason: str, run_id: str | None, evidence: dict[str, Any], now: int) -> AliasMove:
    """Point the champion at `to_id` (None: the default program) if it still is `seen`; record the move."""
    where = (aliases.c.signature_id == signature_id, aliases.c.alias == CHAMPION)
    if seen is None and to_id is not None:
        build = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        inserted = conn.execute(build(aliases).values(
            signature_id=signature_id, alias=CHAMPION, compiled_id=to_id, updated_at=now,
        ).on_conflict_do_nothing().returning(aliases.c.compiled_id)).first()
        changed = 0 if inserted is None else 1
    elif seen is None:
        changed = 1 if current(conn, signature_id) is None else 0
    elif to_id is None:
        changed = conn.execute(delete(aliases).where(*where, aliases.c.compiled_id == seen)).rowcount
    else:
        changed = conn.execute(update(aliases).where(*where, aliases.c.compiled_id == seen).values(
            compiled_id=to_id, updated_at=now)).rowcount
    if changed != 1:
        raise AliasMoved(f"the champion of {signature_id} changed while this {action} was being decided; "
                         "look again and retry")
    new_id = conn.execute(insert(alias_history).values(
        signature_id=signature_id, alias=CHAMPION, from_id=seen, to_id=to_id, action=action, actor=actor,
        reason=reason, run_id=run_id, evidence_json=canonical_json(evidence), created_at=now,
    ).returning(alias_history.c.id)).scalar_one()
    return AliasMove(id=new_id, signature_id=signature_id, alias=CHAMPION, from_id=seen, to_id=to_id,
                     action=action, actor=actor, reason=reason, run_id=run_id, evidence=evidence,
                     created_at=now)
