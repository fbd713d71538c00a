"""The import arrows of the code base, read from the source with ``ast`` (nothing is
imported): between the top-level packages, between the subpackages of ``api``, and
inside ``api.live`` (only the runtime wires the parts together). Imports inside
functions count, and a module may import our own code only at its top, never inside a
function, and never through ``importlib``. docs/architecture.md draws the same arrows.

A failure names ``file:line`` and the arrow that is not allowed.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS: tuple[str, ...] = ("twin", "optimizer", "scenarios", "adapters", "api", "benchmarks",
                         "tests")
PACKAGES: tuple[str, ...] = ("twin", "optimizer", "scenarios", "adapters", "api")

# package -> the packages (or modules) of ours it may import, besides itself
ALLOWED: dict[str, tuple[str, ...]] = {
    "twin": (),
    "optimizer": ("twin",),
    "adapters": ("twin",),
    "scenarios": ("twin", "optimizer", "adapters.storage"),
    "api": ("twin", "optimizer", "scenarios", "adapters"),
}
# Third-party packages twin may use: its arrays, its kernels, solar geometry (pvlib, whose
# times are pandas indexes; pandas also reads a fleet's Parquet files).
TWIN_THIRD_PARTY: frozenset[str] = frozenset({"numpy", "numba", "pvlib", "pandas"})

# api layer -> the api layers it may import, besides itself
API_LAYERS: dict[str, tuple[str, ...]] = {
    "api.cli": ("api.app", "api.live", "api.accounts", "api.analytics", "api.settings"),
    "api.app": ("api.http", "api.live", "api.settings"),
    "api.http": ("api.live", "api.alerts", "api.analytics", "api.accounts", "api.settings"),
    "api.live": ("api.alerts", "api.analytics", "api.accounts", "api.settings"),
    "api.alerts": ("api.settings",),
    "api.analytics": ("api.settings",),
    "api.accounts": ("api.settings",),
    "api.settings": (),
}
# Modules of api.live that any part may use; the other modules are parts, and only the
# runtime imports parts.
LIVE_SHARED: frozenset[str] = frozenset({"api.live.types", "api.live.hub", "api.live.heap",
                                         "api.live.metrics", "api.live.logs"})
LIVE_WIRING = "api.live.runtime"
# Dependencies a package imports only inside the function that needs them, with the reason
# in a comment there: package -> the third-party packages.
OPTIONAL: dict[str, frozenset[str]] = {
    "optimizer": frozenset({"xarray"}),  # Plan.to_xarray only; the solver's process not
}


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports
    target: str  # what it imports (a dotted module name)
    path: Path
    line: int
    top_level: bool

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None) -> list[Import]:
    """Every import in ``path`` (the module ``module``, default: by its path), with the
    absolute dotted name it refers to."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for n in tree.body:  # imports under a module-level if/try are still module level
        if isinstance(n, ast.If | ast.Try):
            top.update(id(c) for c in ast.walk(n))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # "from pkg import mod" imports pkg.mod when it is a module of ours
            names = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base
                     for a in node.names]
        else:
            continue
        for name in names:
            out.append(Import(me, name, path, node.lineno, id(node) in top))
    return out


def _is_module(dotted: str) -> bool:
    p = ROOT / Path(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def top_package(name: str) -> str:
    return name.split(".")[0]


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "migrations" not in p.parts or p.name != "env.py")


def all_imports() -> list[Import]:
    return [imp for path in source_files() for imp in imports_of(path)]


def package_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        src, dst = top_package(imp.module), top_package(imp.target)
        if dst not in OURS:
            if src == "twin" and dst not in TWIN_THIRD_PARTY \
                    and dst not in sys.stdlib_module_names and dst != "__future__":
                bad.append(f"{imp.where()}: twin imports {imp.target} (only "
                           f"{', '.join(sorted(TWIN_THIRD_PARTY))} and the standard library)")
            continue
        if dst == src:
            continue
        if not any(within(imp.target, ok) for ok in ALLOWED[src]):
            bad.append(f"{imp.where()}: {imp.module} imports {imp.target} ({src} may "
                       f"import only {', '.join(ALLOWED[src]) or 'nothing of ours'})")
    return bad


def layer_of(module: str) -> str | None:
    for layer in sorted(API_LAYERS, key=len, reverse=True):
        if within(module, layer):
            return layer
    return None


def api_layer_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        if top_package(imp.module) != "api" or top_package(imp.target) != "api":
            continue
        src, dst = layer_of(imp.module), layer_of(imp.target)
        if src is None or dst is None:
            bad.append(f"{imp.where()}: {imp.module} -> {imp.target}: a module outside the "
                       f"api layers {sorted(API_LAYERS)}")
        elif dst != src and dst not in API_LAYERS[src]:
            bad.append(f"{imp.where()}: {imp.module} imports {imp.target} ({src} may import "
                       f"only {', '.join(API_LAYERS[src]) or 'no other api layer'})")
    return bad


def live_part_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        if not (within(imp.module, "api.live") and within(imp.target, "api.live")):
            continue
        if imp.module in (LIVE_WIRING, "api.live") or imp.target == "api.live":
            continue
        if imp.target not in LIVE_SHARED and imp.target != imp.module:
            bad.append(f"{imp.where()}: {imp.module} imports the part {imp.target}; only "
                       f"{LIVE_WIRING} wires parts together (shared: {sorted(LIVE_SHARED)})")
    return bad


def local_import_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        if imp.top_level:
            continue
        if top_package(imp.target) in OURS:
            bad.append(f"{imp.where()}: {imp.module} imports {imp.target} inside a function")
        elif top_package(imp.target) not in OPTIONAL.get(top_package(imp.module), ()):
            bad.append(f"{imp.where()}: {imp.module} imports {imp.target} inside a function "
                       f"(only the optional dependencies of {OPTIONAL} may be)")
    return bad


def dynamic_import_violations() -> list[str]:
    bad = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                name = "importlib.import_module"
            elif isinstance(node, ast.Name) and node.id == "__import__":
                name = "__import__"
            if name:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} (import what "
                           "you use by name)")
    return bad


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_the_packages_import_one_way(imports):
    assert package_violations(imports) == []


def test_the_api_layers_import_one_way(imports):
    assert api_layer_violations(imports) == []


def test_only_the_runtime_wires_the_live_parts(imports):
    assert live_part_violations(imports) == []


def test_our_modules_are_imported_at_the_top_and_by_name(imports):
    assert local_import_violations(imports) == []
    assert dynamic_import_violations() == []


def test_the_checks_catch_a_wrong_import(tmp_path):
    # A twin module that imports api, an api.alerts module that imports the live runtime,
    # a live part that imports another part, and an import inside a function: each named.
    fake = [Import("twin.physics", "api.app", ROOT / "twin/physics.py", 3, True),
            Import("api.alerts.loop", "api.live.runtime", ROOT / "api/alerts/loop.py", 9, True),
            Import("api.live.approvals", "api.live.planning", ROOT / "api/live/approvals.py",
                   7, True),
            Import("adapters.emulator", "twin.model", ROOT / "adapters/emulator.py", 40, False)]
    assert package_violations(fake[:1]) == [
        "twin/physics.py:3: twin.physics imports api.app (twin may import only nothing of "
        "ours)"]
    assert "api.alerts may import only api.settings" in api_layer_violations(fake[1:2])[0]
    assert "only api.live.runtime wires parts" in live_part_violations(fake[2:3])[0]
    assert local_import_violations(fake[3:]) == [
        "adapters/emulator.py:40: adapters.emulator imports twin.model inside a function"]
    # and the reader sees a real import inside a function
    src = tmp_path / "probe.py"
    src.write_text("import numpy\n\n\ndef f():\n    from twin import fleet\n")
    found = imports_of(src, module="twin.probe")
    assert [(i.target, i.top_level, i.line) for i in found] == [
        ("numpy", True, 1), ("twin.fleet", False, 5)]
