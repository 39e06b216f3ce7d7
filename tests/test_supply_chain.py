"""Every dependency is pinned (SECURITY.md "Supply chain")."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINNED = re.compile(r"^[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*$")


def test_direct_dependencies_are_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    requirements = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    loose = [r for r in requirements if not PINNED.match(r)]
    assert loose == []


def test_constraints_pin_every_installed_package():
    lines = [
        line.strip()
        for line in (ROOT / "constraints.txt").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines, "constraints.txt is empty"
    assert [line for line in lines if not PINNED.match(line)] == []
    pinned = {re.split(r"[\[=]", line)[0].lower().replace("_", "-") for line in lines}
    assert {"flask", "sqlalchemy", "argon2-cffi", "werkzeug", "jinja2"} <= pinned
