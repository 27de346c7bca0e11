"""The claims on Idempotency-Keys a statement acts on, and their answers, in the caller's transaction. Must not
import FastAPI or httpx."""

from __future__ import annotations

from sqlalchemy import Connection, and_, update
from sqlalchemy.sql.elements import ColumnElement

from overnight.store.schema import idempotency_keys


def this_key(actor: str, key: str) -> ColumnElement[bool]:
    return and_(idempotency_keys.c.actor == actor, idempotency_keys.c.key == key)


def held(actor: str, key: str, holder: str) -> ColumnElement[bool]:
    """The claim, still unanswered and still this holder's."""
    return and_(this_key(actor, key), idempotency_keys.c.holder == holder, idempotency_keys.c.state == "pending")


def answer(conn: Connection, *, actor: str, key: str, holder: str, status_code: int, response_body: str) -> bool:
    """Keep the answer to the holder's claim; False when the claim is no longer the holder's to answer (a retry
    took it over after its lease lapsed)."""
    return int(conn.execute(update(idempotency_keys).where(held(actor, key, holder)).values(
        state="done", status_code=status_code, response_body=response_body)).rowcount) == 1
