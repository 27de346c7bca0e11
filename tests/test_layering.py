"""The import rules of DESIGN §1, checked on the source: each layer imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "overnight"
FORBIDDEN = {
    "domain": ("sqlalchemy", "alembic", "psycopg", "httpx", "fastapi", "starlette", "uvicorn", "dspy", "time",
               "datetime", "overnight.store", "overnight.api"),
    "store": ("fastapi", "starlette", "httpx", "uvicorn", "overnight.api"),
    "api": ("sqlalchemy", "alembic", "psycopg"),
    "compile": ("fastapi", "starlette", "sqlalchemy", "overnight.api"),
    "lm": ("sqlalchemy", "overnight.store", "overnight.api"),
    "serving": ("fastapi", "starlette", "sqlalchemy", "httpx", "overnight.api"),
    "review": ("fastapi", "starlette", "sqlalchemy", "httpx", "uvicorn", "dspy", "overnight.api",
               "overnight.lm", "overnight.compile"),
    "client.py": ("sqlalchemy", "fastapi", "dspy", "overnight.store", "overnight.api", "overnight.serving",
                  "overnight.lm", "overnight.compile"),
    "runner.py": ("sqlalchemy", "fastapi", "dspy", "overnight.store", "overnight.api", "overnight.serving",
                  "overnight.lm", "overnight.compile", "httpx"),
    "nightly.py": ("sqlalchemy", "dspy"),
    "cli.py": ("sqlalchemy", "alembic", "psycopg"),
    "config.py": ("sqlalchemy", "fastapi", "httpx", "overnight.store", "overnight.api"),
    "errors.py": ("sqlalchemy", "fastapi", "httpx", "pydantic", "overnight."),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_forbidden(layer: str) -> None:
    target = PACKAGE / layer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files
    for path in files:
        for module in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                forbidden = module == banned or module.startswith(banned.rstrip(".") + ".")
                assert not forbidden, f"{path.relative_to(PACKAGE)} imports {module}, which {layer} must not"


def test_the_runner_and_its_client_load_neither_dspy_nor_the_store() -> None:
    """Transitively, not just directly: importing them must not pull in DSPy, SQLAlchemy or FastAPI."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    probe = ("import sys, overnight.runner, overnight.client; "
             "print(sorted(m for m in ('dspy', 'sqlalchemy', 'fastapi') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_every_cli_command_starts_without_loading_what_only_some_need() -> None:
    """`overnight --help`, `runs` and `show` are typed by people: the CLI module loads only what every command
    needs; each command imports its own heavy parts (the store, DSPy, the API, the review's model) when it runs."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    heavy = ("dspy", "sqlalchemy", "fastapi", "httpx", "overnight.store", "overnight.runner", "overnight.domain.review",
             "overnight.domain.canary", "overnight.domain.compiling")
    probe = f"import sys, overnight.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
