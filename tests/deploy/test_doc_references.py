"""No doc refers to a file or module that is not in the repository: every path of ours in
backticks (``api/live/runtime.py``, ``deploy/k8s/``) exists, and every dotted name of ours
(``api.live.fleet.LiveFleet``) starts with a module that exists."""

from __future__ import annotations

import re

from tests.deploy.tools import ROOT

DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md",
               *(ROOT / "scenarios" / "examples").glob("*.md")])
TOP = ("twin", "optimizer", "scenarios", "adapters", "api", "benchmarks", "tests", "deploy",
       "docs", "web", "bootstrap")
PACKAGES = ("twin", "optimizer", "scenarios", "adapters", "api", "benchmarks")
CODE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(rf"^(?:\./)?((?:{'|'.join(TOP)})(?:/[\w.\-{{}}*]+)*/?)$")
DOTTED = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)+)")


def _is_module(parts: list[str]) -> bool:
    p = ROOT.joinpath(*parts)
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _exists(parts: list[str]) -> bool:
    """A module ``a.b``, or a name ``a.name`` that package ``a`` hands on."""
    if _is_module(parts[:2]):
        return True
    init = ROOT / parts[0] / "__init__.py"
    return init.is_file() and re.search(rf"\b{re.escape(parts[1])}\b", init.read_text()) \
        is not None


def missing_references(text: str) -> list[str]:
    """The backticked paths and dotted names of ``text`` that do not exist."""
    bad = []
    for code in CODE.findall(text):
        token = code.split()[0] if code.split() else ""
        m = PATH.match(token)
        if m and "{" not in token and "*" not in token:
            path = m.group(1).rstrip("/")
            if not (ROOT / path).exists():
                bad.append(path)
            continue
        d = DOTTED.match(token)
        if d:
            parts = d.group(1).split(".")
            if not _exists(parts):
                bad.append(d.group(1))
    return bad


def test_docs_name_only_files_and_modules_that_exist():
    found = {str(p.relative_to(ROOT)): missing_references(p.read_text()) for p in DOCS}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_check_sees_a_stale_reference():
    text = ("`api/service.py` and `api.history.power_flows`, but `api/live/runtime.py`, "
            "`twin.kpis.device_flows`, `deploy/k8s/` and `telemetry-{writer}.zarr` are fine")
    assert missing_references(text) == ["api/service.py", "api.history.power_flows"]
