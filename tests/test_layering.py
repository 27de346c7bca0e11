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
