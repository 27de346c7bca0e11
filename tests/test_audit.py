"""scripts/audit.py, run as CI runs it, against a stand-in pip-audit (the vulnerability services are outside
services: this machine reaches neither). The stand-in answers per service from a canned report, or fails the way
pip-audit fails when a service cannot be reached (a traceback, no report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
service, out = args[args.index("-s") + 1], args[args.index("-o") + 1]
names = [line.split("==") for line in open(args[args.index("-r") + 1]).read().split()]
answer = os.environ["FAKE_AUDIT_" + service.upper()]
if answer == "down":
    sys.exit("requests.exceptions.ConnectionError: cannot resolve the " + service + " service")
vulns = json.loads(answer)
deps = []
for name, version in names:
    if vulns.get(name) == "skip":
        deps.append({{"name": name, "skip_reason": "Dependency not found on PyPI and could not be audited"}})
    else:
        deps.append({{"name": name, "version": version, "vulns": vulns.get(name, [])}})
json.dump({{"dependencies": deps, "fixes": []}}, open(out, "w"))
sys.exit(1 if any(d.get("vulns") for d in deps) else 0)
"""


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    fake = tmp_path / "pip-audit"
    fake.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)

    def run(osv: Any, pypi: Any, *flags: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FAKE_AUDIT_OSV": osv if osv == "down" else json.dumps(osv),
               "FAKE_AUDIT_PYPI": pypi if pypi == "down" else json.dumps(pypi)}
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "audit.py"), "--python", sys.executable, "--pip-audit", str(fake),
             *flags], capture_output=True, text=True, env=env, check=False)

    return run


def test_a_clean_environment_passes_and_says_how_many_dependencies_were_audited(audit: Any) -> None:
    done = audit({}, "down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip-audit (osv): " in done.stdout
    assert "0 known vulnerabilities with a fix, 0 without" in done.stdout
    audited, total = done.stdout.split("pip-audit (osv): ")[1].split(" dependencies audited")[0].split(" of ")
    assert audited == total
    assert int(total) > 10
    assert "NOT AUDITED" not in done.stdout


def test_a_vulnerability_with_a_fix_fails_and_names_the_package_the_advisory_and_the_fix(audit: Any) -> None:
    done = audit({"httpx": [{"id": "GHSA-test-0001", "fix_versions": ["9.9.9"]}]}, "down")
    assert done.returncode == 1
    assert "FIX AVAILABLE  httpx " in done.stdout
    assert "GHSA-test-0001 (fixed in 9.9.9)" in done.stdout


def test_a_vulnerability_without_a_fix_is_reported_but_does_not_fail(audit: Any) -> None:
    done = audit({"httpx": [{"id": "GHSA-test-0002", "fix_versions": []}]}, "down")
    assert done.returncode == 0
    assert "no fix yet" in done.stdout
    assert "GHSA-test-0002 (no fix released)" in done.stdout


def test_when_no_service_answers_the_report_says_nothing_was_audited_instead_of_clean(audit: Any) -> None:
    done = audit("down", "down")
    assert done.returncode == 0
    assert "NOTHING WAS AUDITED" in done.stdout
    assert "cannot resolve the osv service" in done.stdout
    assert "No known vulnerabilities" not in done.stdout
    assert audit("down", "down", "--require").returncode == 2


def test_pypi_answers_when_osv_is_down_and_every_skipped_dependency_is_named(audit: Any) -> None:
    done = audit("down", {"httpx": "skip"})
    assert done.returncode == 0
    assert "pip-audit (pypi): " in done.stdout
    assert "NOT AUDITED: 1 dependencies (httpx)" in done.stdout
    assert audit("down", {"httpx": "skip"}, "--require").returncode == 2
