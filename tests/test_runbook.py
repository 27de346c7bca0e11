"""runbook.md names every command with every option it takes, every OVERNIGHT_* setting, every endpoint and every
error code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from overnight.api.app import route_inventory
from overnight.cli import app
from overnight.config import Settings
from overnight.errors import all_error_classes

RUNBOOK = (Path(__file__).resolve().parents[1] / "runbook.md").read_text(encoding="utf-8")


def command_paths(command: Any, prefix: str = "overnight") -> list[str]:
    if getattr(command, "commands", None):  # a group (typer vendors its own click, so no isinstance)
        found = [prefix] if prefix != "overnight" else []
        for name, sub in command.commands.items():
            found += command_paths(sub, f"{prefix} {name}")
        return found
    return [prefix]


def test_every_command_is_documented() -> None:
    commands = command_paths(typer.main.get_command(app))
    assert {"overnight serve", "overnight db upgrade", "overnight runs", "overnight show"} <= set(commands)
    for command in commands:
        assert f"`{command}" in RUNBOOK, command


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`OVERNIGHT_{name.upper()}`" in RUNBOOK, name


def test_every_error_code_is_documented() -> None:
    for cls in all_error_classes():
        assert f"`{cls.code}`" in RUNBOOK, cls.code


def test_every_endpoint_is_documented() -> None:
    for method, path, _ in route_inventory():
        assert f"`{method} {path}`" in RUNBOOK, (method, path)


def test_every_option_is_in_its_commands_row() -> None:
    """Each command's row in the table starts with its synopsis: every long option the command takes is in it (an
    option added to a command without the runbook saying so, such as a new `--base-url`, fails here)."""
    rows = [line.split("` |")[0] for line in RUNBOOK.splitlines() if line.startswith("| `overnight ")]
    root = typer.main.get_command(app)
    for path in command_paths(root):
        command = root
        for name in path.split()[1:]:
            command = command.commands[name]  # type: ignore[attr-defined]
        synopsis = next((row for row in rows if row == f"| `{path}" or row.startswith(f"| `{path} ")), None)
        options = [o for param in command.params for o in param.opts if o.startswith("--") and o != "--help"]
        assert synopsis is not None or not options, path  # `db` and `lm` are only groups; `runs` is a command too
        assert [o for o in options if o not in (synopsis or "")] == [], (path, synopsis)
