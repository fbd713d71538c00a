"""Dockerfile: multi-stage, non-root, numba cache warmed at build, /healthz health
check, and the entry point is the README's `ecogrid` command; hadolint-clean."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.tools import ROOT, parse_cli, require_tool


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTR = instructions(DOCKERFILE)


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in INSTR:
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM ... AS name``."""
    for st in stages():
        if re.search(rf"\bAS\s+{name}\s*$", st[0][1], re.I):
            return st
    raise AssertionError(f"no stage {name!r} in the Dockerfile")


def final(kind: str) -> str:
    return [a for k, a in stages()[-1] if k == kind][-1]


def test_multi_stage_and_the_runtime_copies_only_the_built_environment():
    st = stages()
    assert len(st) >= 2
    names = [re.search(r"\bAS\s+(\S+)", s[0][1], re.I) for s in st]
    assert all(names), "every stage is named"
    copies = [a for k, a in st[-1] if k == "COPY"]
    assert copies and all(a.startswith("--from=build ") for a in copies)


def test_the_project_is_installed_with_pip_like_bootstrap_does():
    build = " ".join(a for k, a in stage("build") if k == "RUN")
    assert re.search(r"pip install [^&]*\"?\.(\[[a-z,]+\])?\"?", build), build
    # The dependency layer reads pyproject.toml's own lists (no second copy of them).
    assert "pyproject.toml" in build and "dependencies" in build
    bootstrap = (ROOT / "bootstrap").read_text()
    assert re.search(r"pip install -q -e \"\.\[", bootstrap)


def test_runs_as_a_numeric_non_root_user():
    user = final("USER")
    args = dict(a.split("=", 1) for k, a in stages()[-1] if k == "ARG" and "=" in a)
    uid = user.split(":")[0]
    uid = args.get(uid.strip("${}"), uid)
    assert uid.isdigit() and int(uid) >= 1000, user


def test_numba_cache_is_warmed_at_build_as_the_runtime_user():
    st = stages()[-1]
    env = " ".join(a for k, a in st if k == "ENV")
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env).group(1)
    user_at = max(i for i, (k, _) in enumerate(st) if k == "USER")
    warm = [a for i, (k, a) in enumerate(st) if k == "RUN" and i > user_at]
    assert any(re.search(r"\becogrid demo\b", a) for a in warm), "no warm-up run after USER"
    assert any(cache in a for a in warm), "the warm-up does not check the cache is filled"
    # The twin kernels are cached by numba (cache=True), so warming is worth it.
    assert "cache=True" in (ROOT / "twin" / "kernels.py").read_text()


def test_health_check_calls_healthz_on_the_served_port():
    hc = final("HEALTHCHECK")
    cmd = json.loads(hc[hc.index("CMD") + 3:].strip())
    port = re.search(r"127\.0\.0\.1:(\d+)/healthz", " ".join(cmd)).group(1)
    serve = json.loads(final("CMD"))
    assert serve[serve.index("--port") + 1] == port
    assert port in final("EXPOSE").split()
    from api.http.routes import system

    assert "/healthz" in {getattr(r, "path", None) for r in system.router.routes}


def test_entry_point_is_the_readme_command():
    entry = json.loads(final("ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["ecogrid"] and "ecogrid" in scripts
    # README: `./bootstrap demo` runs `ecogrid demo`; the image runs the same program.
    assert "./bootstrap demo" in (ROOT / "README.md").read_text()
    demo = re.search(r"demo\)[^\n]*exec \"\$VENV/bin/(\w+)\" (\w+)",
                     (ROOT / "bootstrap").read_text())
    assert demo and demo.group(1) == entry[0] and demo.group(2) == "demo"
    args = parse_cli(json.loads(final("CMD")))
    assert args.command == "serve" and args.host == "0.0.0.0"
    warm = next(a for k, a in stages()[-1] if k == "RUN" and "ecogrid demo" in a)
    demo_argv = warm.split("ecogrid ", 1)[1].split(">")[0].split()
    assert parse_cli(demo_argv).command == "demo"


def test_dockerignore_keeps_the_build_context_small_but_complete():
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".git", ".venv", "tests", "data", "**/node_modules", "api/http/dashboard/vendor"} <= ignored
    for k, a in stage("build") + stage("web"):
        if k == "COPY" and not a.startswith("--from="):
            *sources, _ = a.split()
            for src in sources:
                assert (ROOT / src).exists(), src
                assert src.rstrip("/") not in ignored, f"{src} is copied but ignored"


def test_hadolint_is_clean():
    out = subprocess.run([require_tool("hadolint"), "--no-color", "Dockerfile"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_the_warm_up_command_fills_the_numba_cache(tmp_path):
    """Run the image's warm-up line here: it must leave compiled twin kernels in
    NUMBA_CACHE_DIR (index and object files), with the image's NUMBA_CPU_NAME."""
    import os
    import sys

    st = stages()[-1]
    env_line = " ".join(a for k, a in st if k == "ENV")
    cpu = re.search(r"NUMBA_CPU_NAME=(\S+)", env_line).group(1)
    warm = next(a for k, a in st if k == "RUN" and "ecogrid demo" in a)
    argv = warm.split("ecogrid ", 1)[1].split(">")[0].split()
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_CPU_NAME": cpu}
    ecogrid = Path(sys.executable).parent / "ecogrid"
    done = subprocess.run([str(ecogrid), *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    files = [p.name for p in cache.rglob("*") if p.is_file()]
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files)
    assert any(p.name.startswith("twin") for p in cache.iterdir())


def _node_module_files(text: str) -> set[str]:
    return set(re.findall(r"node_modules\"?/([\w./*-]+)", text))


def test_dashboard_libraries_are_built_in_the_image_like_bootstrap_does():
    web = " ".join(a for k, a in stage("web") if k in ("RUN", "COPY"))
    assert "npm ci" in web and "web/package-lock.json" in web
    bootstrap = (ROOT / "bootstrap").read_text()
    assets = bootstrap[bootstrap.index("dashboard_assets() {"):]
    assets = assets[:assets.index("\n}\n")]
    wanted = {p.removeprefix("/") for p in re.findall(r"\$nm\"?(/[\w./*-]+)", assets)}
    assert wanted, "bootstrap's dashboard_assets copies nothing?"
    assert _node_module_files(web) == wanted
    from api.http.dashboard import VENDOR_FILES

    copied = {Path(p).name for p in wanted}
    assert {Path(f).name for f in VENDOR_FILES} <= copied
    build = stage("build")
    assert ("COPY", "--from=web /vendor ./api/http/dashboard/vendor") in build
