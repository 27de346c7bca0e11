"""OVERNIGHT_LM_CACHE_DIR: DSPy's disk cache (diskcache) unpickles what it finds in its directory, so the directory
must be overnight's own: made 0700 when missing, refused when anyone else may write to it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from overnight.config import Settings
from overnight.errors import ConfigError
from overnight.lm.backends import backend_at_start, lm_cache_dir


def settings(cache: Path | str | None, lm: str = "sim:seed=1") -> Settings:
    return Settings(lm=lm, lm_cache_dir=None if cache is None else str(cache))


def test_unset_means_no_cache_directory() -> None:
    assert lm_cache_dir(settings(None)) is None


def test_a_missing_directory_is_made_for_this_user_only(tmp_path: Path) -> None:
    wanted = tmp_path / "deeper" / "lm-cache"
    assert lm_cache_dir(settings(wanted)) == wanted
    assert stat.S_IMODE(wanted.stat().st_mode) & 0o077 == 0
    assert wanted.stat().st_uid == os.getuid()


def test_an_existing_directory_of_ones_own_that_others_can_only_read_is_used(tmp_path: Path) -> None:
    tmp_path.joinpath("cache").mkdir(mode=0o755)
    tmp_path.joinpath("cache").chmod(0o755)
    assert lm_cache_dir(settings(tmp_path / "cache")) == tmp_path / "cache"


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_a_directory_others_may_write_to_is_refused_naming_the_setting_and_the_risk(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        lm_cache_dir(settings(shared))
    assert refused.value.message.startswith(f"OVERNIGHT_LM_CACHE_DIR={shared}: writable by group or others")
    assert "unpickles" in refused.value.message
    with pytest.raises(ConfigError):  # serve's start check refuses it too, for the local model as well
        backend_at_start(settings(shared, lm="local"))


def test_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot make or read it as a directory"):
        lm_cache_dir(settings(path))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the directory to another user")
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # nobody
    with pytest.raises(ConfigError, match="owned by uid 65534, not by this user"):
        lm_cache_dir(settings(theirs))
