"""A damaged SQLite store (a disk fault, a copy taken mid-write): every command says so in one sentence and exits 1,
with what to do, instead of printing SQLAlchemy's DatabaseError traceback."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tests.factories import TOKENS
from tests.test_cli import overnight

DATASET = Path(__file__).resolve().parents[2] / "datasets" / "selecttool.v1.jsonl"
COMMANDS = [("runs",), ("show",), ("db", "upgrade"), ("import", "-s", "SelectTool.v1", str(DATASET)),
            ("serve", "--port", "0")]


def damaged_store(tmp_path: Path, pages: slice, seed: int) -> Path:
    """A store with a dataset imported, its WAL checkpointed into the file, then the bytes of `pages` overwritten."""
    db = tmp_path / "o.db"
    made = overnight("import", "-s", "SelectTool.v1", str(DATASET), db=db)
    assert made.returncode == 0, made.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    noise = random.Random(seed)
    data[pages] = bytes(noise.randrange(256) for _ in range(len(data[pages])))
    db.write_bytes(bytes(data))
    return db


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    return damaged_store(tmp_path, slice(4096, None), seed=7)  # every page after the first


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_damaged_sqlite_store_is_named_as_such_by_every_command(damaged: Path, command: tuple[str, ...]) -> None:
    result = overnight(*command, db=damaged, OVERNIGHT_LM="sim:seed=1", OVERNIGHT_TOKENS=TOKENS)
    assert result.returncode == 1, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("store_unavailable: ")]
    assert said == ["store_unavailable: the store's SQLite file is damaged (SQLITE_CORRUPT: database disk image is "
                    "malformed): retrying will not help; stop every server that uses it and restore it from a backup "
                    "(`sqlite3 FILE .recover | sqlite3 NEW` salvages what is left into a new file)"], result.stderr
    assert "Traceback" not in result.stderr
    assert "DatabaseError" not in result.stderr


def test_a_backup_of_a_damaged_store_is_refused_and_leaves_no_file(damaged: Path, tmp_path: Path) -> None:
    """A copy of damaged pages is no backup: nothing is given the name an operator would restore from."""
    result = overnight("db", "backup", str(tmp_path / "backup.db"), db=damaged)
    assert result.returncode == 1, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("store_unavailable: ")]
    assert said[0].startswith("store_unavailable: the store's SQLite file is damaged (SQLITE_CORRUPT"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".backup", "backup"))) == []


def test_a_backup_of_a_store_damaged_past_its_first_tables_fails_its_check_and_leaves_no_file(tmp_path: Path) -> None:
    """Damage the commands do not meet at once (the last pages): the copy is checked before it is named."""
    db = damaged_store(tmp_path, slice(-8192, None), seed=3)  # the last two pages
    result = overnight("db", "backup", str(tmp_path / "backup.db"), db=db)
    assert result.returncode == 1, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("store_unavailable: ")]
    assert said[0].startswith("store_unavailable: the store's SQLite file is damaged"), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".backup", "backup"))) == []
