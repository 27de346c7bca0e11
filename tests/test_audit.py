"""scripts/audit.py, run as CI runs it, against a stand-in pip-audit (the vulnerability services are outside
services: this machine reaches neither). The stand-in answers per service from a canned report, or fails the way
pip-audit fails when a service cannot be reached (a traceback, no report). PyPI's project listing, which the
script reads for what pip-audit could not audit, is a loopback server answering from canned listings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from overnight.api.embedded import embedded_server
from tests.factories import free_port

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


HTTPX = metadata.version("httpx")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Listings:
    """PyPI's project listing on loopback: `/pypi/<name>/json`, each project at the latest release given here
    (default: the version installed, so everything not given is at its latest release with no vulnerability)."""

    latest: dict[str, str] = field(default_factory=dict)
    vulns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/pypi/{name}/json")
        def listing(name: str) -> Response:
            name = canonical(name)
            self.asked.append(name)
            try:
                version = self.latest.get(name) or metadata.version(name)
            except metadata.PackageNotFoundError:
                return Response(status_code=404)
            return JSONResponse({"info": {"name": name, "version": version},
                                 "vulnerabilities": self.vulns.get(name, [])})

        return app


@pytest.fixture
def listings() -> Iterator[Listings]:
    served = Listings()
    with embedded_server(served.app()) as base:
        served.url = f"{base}/pypi"
        yield served


@pytest.fixture
def audit(tmp_path: Path, listings: Listings) -> Any:
    fake = tmp_path / "pip-audit"
    fake.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)

    def run(osv: Any, pypi: Any, *flags: str, listing: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FAKE_AUDIT_OSV": osv if osv == "down" else json.dumps(osv),
               "FAKE_AUDIT_PYPI": pypi if pypi == "down" else json.dumps(pypi)}
        url = listings.url if listing else f"http://127.0.0.1:{free_port()}/pypi"
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "audit.py"), "--python", sys.executable, "--pip-audit", str(fake),
             "--pypi-json", url, *flags], capture_output=True, text=True, env=env, check=False)

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
    done = audit("down", "down", listing=False)
    assert done.returncode == 0
    assert "NOTHING WAS AUDITED" in done.stdout
    assert "cannot resolve the osv service" in done.stdout
    assert "PyPI's project listing did not answer" in done.stdout
    assert "No known vulnerabilities" not in done.stdout
    assert audit("down", "down", "--require", listing=False).returncode == 2


def test_pypi_answers_when_osv_is_down_and_every_skipped_dependency_is_named(audit: Any,
                                                                              listings: Listings) -> None:
    listings.latest["httpx"] = "99.0.0"  # httpx is not at its latest release: the listing cannot audit it
    done = audit("down", {"httpx": "skip"})
    assert done.returncode == 0
    assert "(pypi + pypi-latest): " in done.stdout
    assert (f"NOT AUDITED: 1 dependencies (httpx); installed {HTTPX}, and PyPI's project listing gives the "
            "vulnerabilities of its latest release (99.0.0) only") in done.stdout
    assert listings.asked == ["httpx"]  # only what pip-audit could not audit is looked up
    assert audit("down", {"httpx": "skip"}, "--require").returncode == 2


def test_with_both_services_down_a_dependency_at_its_latest_release_is_audited_from_pypis_listing(
        audit: Any, listings: Listings) -> None:
    listings.latest["httpx"] = "99.0.0"
    done = audit("down", "down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NOTHING WAS AUDITED" not in done.stdout
    audited, total = done.stdout.split("audit (pypi-latest): ")[1].split(" dependencies audited")[0].split(" of ")
    assert int(audited) == int(total) - 1 > 10
    assert "NOT AUDITED: 1 dependencies (httpx); installed" in done.stdout
    assert audit("down", "down", "--require").returncode == 2


def test_a_vulnerability_in_the_latest_release_is_reported_once_per_advisory_and_fails_only_with_a_fix(
        audit: Any, listings: Listings) -> None:
    advisory = {"id": "GHSA-test-0003", "aliases": ["CVE-2099-0003", "PYSEC-2099-3"], "fixed_in": []}
    listings.vulns["httpx"] = [advisory, {**advisory, "id": "PYSEC-2099-3", "aliases": ["GHSA-test-0003"]},
                               {"id": "GHSA-test-0004", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-01"}]
    done = audit("down", "down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 known vulnerabilities with a fix, 1 without" in done.stdout
    assert (f"no fix yet     httpx {HTTPX}: GHSA-test-0003 (also CVE-2099-0003, PYSEC-2099-3) (no fix released)"
            in done.stdout)
    assert "GHSA-test-0004" not in done.stdout  # withdrawn
    listings.vulns["httpx"] = [{"id": "GHSA-test-0005", "aliases": [], "fixed_in": ["0.0.1", "99.0.1"]}]
    done = audit("down", "down")
    assert done.returncode == 1
    assert f"FIX AVAILABLE  httpx {HTTPX}: GHSA-test-0005 (fixed in 99.0.1)" in done.stdout
    listings.vulns["httpx"] = [{"id": "GHSA-test-0006", "aliases": [], "fixed_in": ["0.0.1"]}]  # an older line's
    done = audit("down", "down")
    assert done.returncode == 0
    assert f"no fix yet     httpx {HTTPX}: GHSA-test-0006 (fixed only in older releases: 0.0.1)" in done.stdout
