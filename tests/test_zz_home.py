"""Collected last: the suite ran with a throwaway HOME (tests/conftest.py), and nothing may have written there —
no DSPy cache, no litellm files, nothing."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import TEST_HOME


def test_nothing_was_written_to_home() -> None:
    assert os.environ["HOME"] == TEST_HOME
    assert sorted(str(p) for p in Path(TEST_HOME).rglob("*")) == []
