"""runbook.md names every command, every OVERNIGHT_* setting, every endpoint and every error code."""

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
