"""Known vulnerabilities in the installed dependencies: `pip-audit`, then PyPI's own advisories.

`pip-audit` asks PyPI for each installed version (`/pypi/<name>/<version>/json`). The registry
mirror this project's machines reach answers only the project-level document
(`/pypi/<name>/json`), so pip-audit reports most packages as "not found". For those, the
project-level document still carries PyPI's advisories for the newest release: when the installed
version is that release, its advisories are checked here; otherwise the package is reported as not
audited, with the newest version, so a stale pin is visible.

Exit status: 1 when any installed version has a known vulnerability (or the registry cannot be
reached at all), 0 otherwise.  Run by `.ci/run`; `python .ci/audit_deps.py` by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

PYPI = "https://pypi.org/pypi/{name}/json"
VENV_BIN = Path(sys.executable).parent


def pip_audit() -> list[dict]:
    result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        [
            str(VENV_BIN / "pip-audit"),
            "--skip-editable",
            "--progress-spinner",
            "off",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if not result.stdout.strip():
        sys.exit(f"pip-audit failed:\n{result.stderr}")
    return json.loads(result.stdout)["dependencies"]


def project_document(name: str) -> dict:
    with urllib.request.urlopen(PYPI.format(name=name), timeout=30) as response:  # noqa: S310 - fixed https URL
        return json.load(response)


def main() -> int:
    vulnerable: list[str] = []
    unaudited: list[str] = []
    audited = 0
    for dependency in pip_audit():
        name, version = dependency["name"], dependency.get("version")
        if "editable" in dependency.get("skip_reason", ""):
            continue  # the portal itself
        if "skip_reason" not in dependency:
            audited += 1
            vulnerable += [f"{name} {version}: {v['id']}" for v in dependency.get("vulns", [])]
            continue
        if version is None:  # pip-audit's skip message carries the version: "name (1.2.3)"
            version = dependency["skip_reason"].rsplit("(", 1)[-1].rstrip(")")
        try:
            document = project_document(name)
        except OSError as exc:
            print(f"error: the registry did not answer for {name}: {exc}", file=sys.stderr)
            return 1
        newest = document["info"]["version"]
        if newest != version:
            unaudited.append(f"{name} {version} (newest {newest})")
            continue
        audited += 1
        vulnerable += [
            f"{name} {version}: {advisory['id']} {advisory.get('summary') or ''}".rstrip()
            for advisory in document.get("vulnerabilities", [])
            if not advisory.get("withdrawn")
        ]
    print(f"dependencies audited: {audited}, known vulnerabilities: {len(vulnerable)}")
    if unaudited:
        print("not audited (the mirror keeps advisories only for the newest release):")
        print("".join(f"  {line}\n" for line in unaudited), end="")
    for line in vulnerable:
        print(f"VULNERABLE: {line}", file=sys.stderr)
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
