"""Each domain fact is defined once, in the lowest package that owns it, and read from there:
the setpoint key and bounds, the tariff and the energy flows, the command states, the
MQTT topics; zarr is spoken by the storage modules only; no two classes share a name.

Read from the source with ``ast`` (nothing is imported); a failure names the places.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.test_layers import ROOT, imports_of, module_name, source_files

# name -> the one module that defines it
HOMES: dict[str, str] = {
    "SETPOINT_KEY": "twin.limits",
    "DEVICE_RULES": "twin.limits",
    "setpoint_bounds_kw": "twin.limits",
    "record_setpoint_bounds_kw": "twin.limits",
    "rated_power_kw": "twin.limits",
    "Tariff": "twin.kpis",
    "device_flows": "twin.kpis",
    "energy_value": "twin.kpis",
    "energy_steps": "twin.kpis",
    "compute_kpis": "twin.kpis",
    "StepTracker": "twin.kpis",
    "COMMAND_STATES": "adapters.mqtt.types",
    "parse_topic": "adapters.mqtt.topics",
    "setpoint_topic": "adapters.mqtt.topics",
    "ack_topic": "adapters.mqtt.topics",
    "EVENTS_FILTER": "adapters.mqtt.topics",
    "bucket_means": "adapters.storage",
    "check_range": "adapters.storage",
    "live_forecast": "optimizer.forecast",
    "day_type": "twin.profiles",
    "time_bin": "twin.profiles",
}
ZARR_MODULES: tuple[str, ...] = ("adapters.storage", "adapters.history")
TOPIC_HOME = "adapters.mqtt.topics"


def definitions(tree: ast.Module) -> list[tuple[str, int]]:
    """Module-level definitions of a module: functions, classes, assigned names."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append((node.name, node.lineno))
        elif isinstance(node, ast.Assign):
            out += [(t.id, node.lineno) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.append((node.target.id, node.lineno))
    return out


def parsed() -> list[tuple[Path, str, ast.Module]]:
    return [(p, module_name(p), ast.parse(p.read_text())) for p in source_files()]


def where_defined(modules: list[tuple[Path, str, ast.Module]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path, mod, tree in modules:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        for name, line in definitions(tree):
            if name in HOMES:
                found[name].append(f"{mod} ({shown}:{line})")
    return found


def test_each_domain_rule_is_defined_once_in_its_home():
    found = where_defined(parsed())
    wrong = {name: places for name, places in found.items()
             if len(places) != 1 or not places[0].startswith(HOMES[name] + " ")}
    missing = sorted(set(HOMES) - set(found))
    assert wrong == {} and missing == []


def test_no_two_classes_share_a_name():
    classes: dict[str, list[str]] = defaultdict(list)
    for path, _, tree in parsed():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes[node.name].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert {k: v for k, v in classes.items() if len(v) > 1} == {}


def test_zarr_is_spoken_by_the_storage_modules_only():
    users = sorted({imp.where() for path in source_files() for imp in imports_of(path)
                    if imp.target.split(".")[0] == "zarr"
                    and not any(imp.module == m or imp.module.startswith(m + ".")
                                for m in ZARR_MODULES)})
    assert users == []


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            out.add(id(body[0].value))
    return out


def topic_strings(tree: ast.Module) -> list[int]:
    """Lines of string constants (docstrings aside) that spell an MQTT topic ``sites/...``."""
    skip = _docstrings(tree)
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and node.value.startswith("sites/")]


def test_mqtt_topics_are_spelled_in_topics_py_only():
    paths = [*source_files(), *sorted((ROOT / "benchmarks").glob("*.py"))]
    spelled = [f"{p.relative_to(ROOT)}:{line}" for p in paths
               if module_name(p) != TOPIC_HOME
               for line in topic_strings(ast.parse(p.read_text()))]
    assert spelled == []


def test_the_checks_see_a_second_definition(tmp_path):
    src = "SETPOINT_KEY = {}\n\n\nclass Tariff:\n    pass\n\nTOPIC = 'sites/S1/status'\n"
    tree = ast.parse(src)
    assert [n for n, _ in definitions(tree)] == ["SETPOINT_KEY", "Tariff", "TOPIC"]
    probe = tmp_path / "probe.py"
    probe.write_text(src)
    found = where_defined([*parsed(), (probe, "api.probe", tree)])
    assert len(found["SETPOINT_KEY"]) == 2 and len(found["Tariff"]) == 2
    assert topic_strings(tree) == [7]
