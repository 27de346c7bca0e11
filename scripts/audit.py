"""pip-audit over the dependency set installed in the project's virtualenv (`make audit`; CI runs it).

    python scripts/audit.py --python .venv/bin/python --pip-audit .venv-audit/bin/pip-audit [--require]

The set audited is what `pip freeze` reports in that environment (the project itself excluded): the exact
versions the pinned ranges resolved to on this machine, runtime, dev and local extras alike. pip-audit runs
from its own virtualenv so that its dependencies are not mixed into the set it audits.

Why a wrapper: pip-audit says "No known vulnerabilities found" and exits 0 when it could not audit a single
dependency (its PyPI service reports a package it cannot look up as skipped, not as an error). Here every
dependency is accounted for: audited, or not audited with pip-audit's reason. Exit codes:

    0  every audited dependency is free of known vulnerabilities that have a fix (unfixed ones are reported)
    1  a known vulnerability with a fix available: upgrade (the fix versions are printed)
    2  --require was given and some dependency could not be audited (no vulnerability service answered)

The services are tried in order (OSV, then PyPI's JSON API); the first that audits any dependency is used.
What it could not audit is then looked up in PyPI's project listing (`/pypi/<name>/json`), whose
`vulnerabilities` are those of the project's latest release only (PyPI's JSON API documentation says so): a
dependency installed at exactly that release is audited from it; one at an older release stays not audited,
named with both versions. That listing is the one thing this machine has reached: pip-audit's own services
(api.osv.dev, and PyPI's per-release listing `/pypi/<name>/<version>/json`) have not answered here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from packaging.version import InvalidVersion, Version

SERVICES = ("osv", "pypi")
PYPI_JSON = "https://pypi.org/pypi"
LATEST = "pypi-latest"


@dataclass
class Verdict:
    service: str
    audited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> pip-audit's reason
    fixable: list[str] = field(default_factory=list)  # one line per vulnerability
    unfixed: list[str] = field(default_factory=list)

    def vulnerability(self, label: str, ident: str, fixes: list[str], *, also: Sequence[str] = (),
                      no_fix: str = "no fix released") -> None:
        """One known vulnerability of the dependency `label`: with a fix to upgrade to, or without (`no_fix` says
        why)."""
        line = (f"{label}: {ident}" + (f" (also {', '.join(also)})" if also else "")
                + (f" (fixed in {', '.join(fixes)})" if fixes else f" ({no_fix})"))
        (self.fixable if fixes else self.unfixed).append(line)

    def merge(self, other: Verdict) -> None:
        self.audited += other.audited
        self.skipped.update(other.skipped)
        self.fixable += other.fixable
        self.unfixed += other.unfixed


def judge(service: str, report: dict[str, Any]) -> Verdict:
    """Sort pip-audit's JSON report (`-f json`) into audited, skipped, and vulnerabilities with and without a fix."""
    verdict = Verdict(service)
    for dependency in report.get("dependencies", []):
        name = f"{dependency['name']} {dependency.get('version', '?')}"
        if "skip_reason" in dependency:
            verdict.skipped[dependency["name"]] = dependency["skip_reason"]
            continue
        verdict.audited.append(name)
        for vuln in dependency.get("vulns", []):
            verdict.vulnerability(name, vuln["id"], list(vuln.get("fix_versions") or []))
    return verdict


def run_service(pip_audit: str, requirements: Path, names: list[str], service: str, workdir: Path) -> Verdict:
    """One pip-audit run; a service that cannot be reached leaves no report, and counts every dependency skipped."""
    report = workdir / f"{service}.json"
    # our own command line: the pip-audit we installed, a requirements file we wrote
    done = subprocess.run(  # noqa: S603
        [pip_audit, "-r", str(requirements), "--no-deps", "--disable-pip", "-s", service, "--timeout", "20",
         "--progress-spinner", "off", "-f", "json", "-o", str(report)],
        capture_output=True, text=True, check=False)
    if report.exists() and report.stat().st_size:
        return judge(service, json.loads(report.read_text(encoding="utf-8")))
    last_line = (done.stderr.strip().splitlines() or [f"exit {done.returncode}, no report"])[-1]
    return Verdict(service, skipped=dict.fromkeys(names, f"the {service} service did not answer: {last_line[:200]}"))


def compare(one: str, other: str) -> int | None:
    """-1, 0 or 1 as version `one` is older than, the same as or newer than `other`; None when they differ and
    either is not a PEP 440 version."""
    if one == other:
        return 0
    try:
        first, second = Version(one), Version(other)
    except InvalidVersion:
        return None
    return (first > second) - (first < second)


def at_latest_release(client: httpx.Client, base_url: str, name: str, version: str) -> Verdict:
    """One dependency against PyPI's project listing: audited when it is installed at the latest release (the only
    release whose vulnerabilities that listing gives), else skipped with the reason."""
    verdict = Verdict(LATEST)
    try:
        answer = client.get(f"{base_url.rstrip('/')}/{name}/json")
        answer.raise_for_status()
        listing = answer.json()
        latest = str(listing["info"]["version"])
        vulns = listing.get("vulnerabilities") or []
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        verdict.skipped[name] = f"PyPI's project listing did not answer: {str(exc)[:160] or type(exc).__name__}"
        return verdict
    if compare(version, latest) != 0:
        verdict.skipped[name] = (f"installed {version}, and PyPI's project listing gives the vulnerabilities of "
                                 f"its latest release ({latest}) only")
        return verdict
    label = f"{name} {version}"
    verdict.audited.append(label)
    seen: set[str] = set()  # one advisory is often listed under each of its ids (GHSA-…, PYSEC-…)
    for vuln in vulns:
        ident = str(vuln.get("id", "?"))
        aliases = [str(alias) for alias in vuln.get("aliases") or []]
        if vuln.get("withdrawn") or ident in seen:
            continue
        seen.update([ident, *aliases])
        # a fix is one to upgrade to: a version listed as fixed that is older than this one (another release line's
        # backport) is not; one that cannot be compared counts as a fix rather than being hidden
        listed = [str(fix) for fix in vuln.get("fixed_in") or []]
        fixes = [fix for fix in listed if compare(fix, version) in (1, None)]
        verdict.vulnerability(label, ident, fixes, also=aliases, no_fix=(
            f"fixed only in older releases: {', '.join(listed)}" if listed else "no fix released"))
    return verdict


def fill_from_latest(verdict: Verdict, versions: dict[str, str], base_url: str) -> Verdict:
    """What pip-audit could not audit, looked up in PyPI's project listing (see the module's docstring)."""
    names = sorted(verdict.skipped)
    with httpx.Client(timeout=20, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda name: at_latest_release(client, base_url, name, versions[name]), names))
    merged = Verdict(f"{verdict.service} + {LATEST}" if verdict.audited else LATEST, audited=list(verdict.audited),
                     fixable=list(verdict.fixable), unfixed=list(verdict.unfixed))
    for each in found:
        merged.merge(each)
    print(f"{LATEST}: {sum(len(each.audited) for each in found)} of the {len(names)} dependencies pip-audit could "
          "not audit are at their latest release, audited from PyPI's project listing")
    return merged


def frozen(python: str) -> list[str]:
    """The environment's `name==version` pins, the project (installed editable) excluded."""
    # our own command line: the project's interpreter
    done = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"],  # noqa: S603
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "==" in line]


def report(verdict: Verdict, total: int) -> None:
    tool = "audit" if LATEST in verdict.service else "pip-audit"
    print(f"{tool} ({verdict.service}): {len(verdict.audited)} of {total} dependencies audited; "
          f"{len(verdict.fixable)} known vulnerabilities with a fix, {len(verdict.unfixed)} without")
    if not verdict.audited:
        print("  NOTHING WAS AUDITED: no vulnerability service answered. This is not a clean result.")
    for line in verdict.fixable:
        print(f"  FIX AVAILABLE  {line}")
    for line in verdict.unfixed:
        print(f"  no fix yet     {line}")
    if not verdict.skipped:
        return
    names, reasons = sorted(verdict.skipped), sorted(set(verdict.skipped.values()))
    head = f"  NOT AUDITED: {len(names)} dependencies"
    if len(reasons) > 1 and len(names) <= 10:
        print(f"{head}:")
        for name in names:
            print(f"    {name}: {verdict.skipped[name]}")
    else:
        print(f"{head} ({', '.join(names[:8])}{', …' if len(names) > 8 else ''}); {reasons[0]}"
              + (f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the interpreter of the environment to audit")
    parser.add_argument("--pip-audit", required=True, help="the pip-audit executable")
    parser.add_argument("--require", action="store_true", help="exit 2 when any dependency could not be audited")
    parser.add_argument("--pypi-json", default=PYPI_JSON, help=f"PyPI's JSON API (default {PYPI_JSON})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="overnight-audit-") as tmp:
        workdir = Path(tmp)
        requirements = workdir / "requirements.txt"
        pins = frozen(args.python)
        requirements.write_text("".join(f"{pin}\n" for pin in pins), encoding="utf-8")
        names = [pin.split("==")[0] for pin in pins]
        tried = []
        for service in SERVICES:
            verdict = run_service(args.pip_audit, requirements, names, service, workdir)
            tried.append(verdict)
            if verdict.audited:
                break
    verdict = max(tried, key=lambda each: len(each.audited))
    for other in tried:
        if not other.audited:
            print(f"pip-audit ({other.service}): audited nothing; {next(iter(other.skipped.values()), '')}")
    if verdict.skipped:
        verdict = fill_from_latest(verdict, dict(pin.split("==", 1) for pin in pins), args.pypi_json)
    report(verdict, len(names))
    if verdict.fixable:
        return 1
    if verdict.skipped and args.require:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
