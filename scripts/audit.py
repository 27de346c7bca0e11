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
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICES = ("osv", "pypi")


@dataclass
class Verdict:
    service: str
    audited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> pip-audit's reason
    fixable: list[str] = field(default_factory=list)  # one line per vulnerability
    unfixed: list[str] = field(default_factory=list)


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
            fixes = vuln.get("fix_versions") or []
            line = f"{name}: {vuln['id']}" + (f" (fixed in {', '.join(fixes)})" if fixes else " (no fix released)")
            (verdict.fixable if fixes else verdict.unfixed).append(line)
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


def frozen(python: str) -> list[str]:
    """The environment's `name==version` pins, the project (installed editable) excluded."""
    # our own command line: the project's interpreter
    done = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"],  # noqa: S603
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "==" in line]


def report(verdict: Verdict, total: int) -> None:
    print(f"pip-audit ({verdict.service}): {len(verdict.audited)} of {total} dependencies audited; "
          f"{len(verdict.fixable)} known vulnerabilities with a fix, {len(verdict.unfixed)} without")
    if not verdict.audited:
        print("  NOTHING WAS AUDITED: no vulnerability service answered. This is not a clean result.")
    for line in verdict.fixable:
        print(f"  FIX AVAILABLE  {line}")
    for line in verdict.unfixed:
        print(f"  no fix yet     {line}")
    if verdict.skipped:
        reasons = sorted(set(verdict.skipped.values()))
        print(f"  NOT AUDITED: {len(verdict.skipped)} dependencies ({', '.join(sorted(verdict.skipped)[:8])}"
              f"{', …' if len(verdict.skipped) > 8 else ''}); pip-audit said: {reasons[0]}"
              + (f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the interpreter of the environment to audit")
    parser.add_argument("--pip-audit", required=True, help="the pip-audit executable")
    parser.add_argument("--require", action="store_true", help="exit 2 when any dependency could not be audited")
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
        if other is not verdict and not other.audited:
            print(f"pip-audit ({other.service}): audited nothing; {next(iter(other.skipped.values()), '')}")
    report(verdict, len(names))
    if verdict.fixable:
        return 1
    if verdict.skipped and args.require:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
