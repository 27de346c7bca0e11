"""Engines and transactions for SQLite and PostgreSQL, and the mapping of driver failures to our errors.

SQLite: WAL, a busy timeout, BEGIN IMMEDIATE for write transactions (so a read-then-write never deadlocks
between processes) and one in-process write lock (so threads queue instead of spinning in the busy handler),
waited on no longer than the busy timeout.
PostgreSQL: psycopg 3, a pooled engine, row locks (SELECT … FOR UPDATE) for serialisation.
Must not import FastAPI or httpx.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from overnight.errors import ConfigError, StoreUnavailable
from overnight.logging import get_logger

log = get_logger(__name__)


def parse_db_url(url: str) -> URL:
    """OVERNIGHT_DB_URL as SQLAlchemy reads it. A string it cannot read, or a SQLite URL with a host (two slashes
    where three were meant), is a ConfigError that says how to write it — without echoing a string that is not a
    URL, which may hold a password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        given = url.strip()
        if given and not any(mark in given for mark in ":@"):  # a bare file path
            raise ConfigError(f"OVERNIGHT_DB_URL is not a database URL: for a SQLite file write sqlite:///{given} "
                              "(four slashes before an absolute path)") from None
        raise ConfigError("OVERNIGHT_DB_URL is not a database URL: use sqlite:///path/to/overnight.db or "
                          "postgresql+psycopg://user:password@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.host:
        meant = "/".join(part for part in (parsed.host, parsed.database) if part)
        raise ConfigError(f"OVERNIGHT_DB_URL {parsed.render_as_string(hide_password=True)} has two slashes, so "
                          f"{parsed.host!r} is read as a host: write sqlite:///{meant}")
    return parsed


def build_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_timeout_s: float = 10.0) -> Engine:
    """An engine for `url`; refuses URLs overnight does not support with a clear message. Each process keeps at
    most 40 connections; a request that finds none free within `pool_timeout_s` is a 503 `store_unavailable`."""
    parsed = parse_db_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, busy_timeout_ms, pool_timeout_s)
    if parsed.drivername == "postgresql+psycopg":
        return create_engine(
            url, pool_size=10, max_overflow=30, pool_timeout=pool_timeout_s, pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
        )
    raise ConfigError(
        f"unsupported OVERNIGHT_DB_URL scheme {parsed.drivername!r}: use sqlite:///path or "
        "postgresql+psycopg://user:password@host/db"
    )


def _sqlite_engine(url: str, database: str | None, busy_timeout_ms: int, pool_timeout_s: float) -> Engine:
    if not database or database == ":memory:":
        raise ConfigError("OVERNIGHT_DB_URL must name a SQLite file (sqlite:///path); in-memory is not shared")
    path = Path(database).expanduser()
    _refuse_a_file_that_is_not_sqlite(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, pool_size=8, max_overflow=32, pool_timeout=pool_timeout_s,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    opened: list[tuple[int, int]] = []  # (device, inode) of the file the first connection opened

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        # synchronous=FULL: each commit is on disk before it is acknowledged, so an event, receipt or alias move
        # that got a 2xx survives a power loss or an OS crash too, as on PostgreSQL (WAL with NORMAL only survives
        # the process dying; it costs an fsync per commit, ~0.2 ms on the build machine's disk).
        for pragma in ("journal_mode=WAL", f"busy_timeout={busy_timeout_ms}", "synchronous=FULL",
                       "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()
        if not opened:
            opened.append(_file_identity(path))

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("overnight_statement", False):
            return  # one statement, its own transaction (the driver's autocommit, set at connect)
        _refuse_a_file_no_longer_there(path, opened[0])
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("overnight_write", False) else "BEGIN")

    return engine


def _file_identity(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (status.st_dev, status.st_ino)


def _refuse_a_file_no_longer_there(path: Path, identity: tuple[int, int]) -> None:
    """SQLite keeps using the file it opened after that file is deleted or another is moved to its path: what it
    wrote then would be on no path, and lost when the process stops. One stat() per transaction (microseconds)
    refuses that instead of acknowledging it."""
    if _file_identity(path) == identity:
        return
    log.error("sqlite_file_gone", path=str(path))
    raise StoreUnavailable(f"the SQLite file {path} was deleted or replaced while overnight had it open: what it "
                           "wrote now would be on no path and lost, so it writes nothing; restart the server (after "
                           "restoring the file, if it was not meant to go)")


_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def _refuse_a_file_that_is_not_sqlite(path: Path) -> None:
    """A URL naming some other file (the dataset, a log) would be met by a DatabaseError on the first statement,
    after SQLite had left -wal and -shm files beside it; an empty file is a new database, so only a non-empty one
    is read, and only its header."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return  # made on first use, or refused by SQLite itself with its own sentence (store_unavailable)
    if header and header != _SQLITE_HEADER:
        raise ConfigError(f"OVERNIGHT_DB_URL names {path}, which is not a SQLite database (it does not begin with "
                          "SQLite's header); point it at the store's file, or at a new path to make one")


class Transactions:
    """Opens read and write transactions on one engine and turns driver outages into `StoreUnavailable`."""

    def __init__(self, engine: Engine, *, write_wait_s: float = 30.0) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._write_wait_s = write_wait_s

    @contextmanager
    def write(self, *, roll_back: bool = False) -> Iterator[Connection]:
        """A write transaction, committed when the block ends; `roll_back`: rolled back instead (a dry run)."""
        with self._writer_turn(), self._open(write=True, roll_back=roll_back) as conn:
            yield conn

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """SQLite: this process's writers one at a time, each waiting no longer than SQLite's busy timeout would
        for another process's write lock."""
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=self._write_wait_s):
            log.error("store_unavailable", error_type="WriteLockWait", waited_s=self._write_wait_s)
            raise StoreUnavailable("the store is busy (another write in this process held SQLite's write lock past "
                                   "OVERNIGHT_DB_BUSY_TIMEOUT_MS); retry later")
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._open(write=False) as conn:
            yield conn

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A connection for a read that is one statement, outside any transaction: a statement sees one snapshot
        on both stores, so BEGIN and COMMIT add nothing but two round trips (PostgreSQL) or two calls (SQLite).
        For the reads on every request; anything that reads twice uses `read`."""
        with outages_as_unavailable(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(overnight_statement=True)
            else:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def _open(self, *, write: bool, roll_back: bool = False) -> Iterator[Connection]:
        with outages_as_unavailable(), self.engine.connect() as conn:
            if write:
                conn.execution_options(overnight_write=True)
            with conn.begin() as transaction:
                yield conn
                if roll_back:
                    transaction.rollback()


@contextmanager
def outages_as_unavailable() -> Iterator[None]:
    """Turn a lost or refused database connection, or no free connection in time, into `StoreUnavailable` (503);
    other errors pass."""
    try:
        yield
    except PoolTimeout as exc:
        raise _no_free_connection(exc) from exc
    except (OperationalError, InterfaceError) as exc:
        raise _unavailable(exc) from exc
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlite_errorname", None) in _DAMAGED:
            raise _damaged(exc) from exc
        if exc.connection_invalidated:
            raise _unavailable(exc) from exc
        raise


_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})  # the file's pages are not what SQLite wrote


def _damaged(exc: DBAPIError) -> StoreUnavailable:
    return store_damaged(f"{getattr(exc.orig, 'sqlite_errorname', '')}: {exc.orig}")


def store_damaged(cause: str, *, outcome: str = "") -> StoreUnavailable:
    """The one sentence for a SQLite file whose pages are not what SQLite wrote (`outcome`: what the command did
    about it), logged as `store_damaged`."""
    log.error("store_damaged", error=cause)
    return StoreUnavailable(f"the store's SQLite file is damaged ({cause}){outcome}: retrying will not help; stop "
                            "every server that uses it and restore it from a backup (`sqlite3 FILE .recover | sqlite3 "
                            "NEW` salvages what is left into a new file)")


def _no_free_connection(exc: PoolTimeout) -> StoreUnavailable:
    log.error("store_unavailable", error_type="PoolTimeout", error=str(exc))
    return StoreUnavailable.retry_later("the store is unavailable (every connection stayed in use past "
                                        "OVERNIGHT_DB_POOL_TIMEOUT_S)")


def _unavailable(exc: DBAPIError) -> StoreUnavailable:
    log.error("store_unavailable", error_type=type(exc.orig).__name__, error=str(exc.orig))
    return StoreUnavailable.retry_later(f"the store is unavailable ({type(exc.orig).__name__})")
