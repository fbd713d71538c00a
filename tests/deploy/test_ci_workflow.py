""".github/workflows/ci.yml: actionlint-clean, does what .ci/run does, and runs the
benchmarks against the stored baseline with a stated regression margin."""

from __future__ import annotations

import ast
import json
import re
import subprocess

from tests.deploy.tools import ROOT, load_yaml, require_tool

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
SPEC = load_yaml(WORKFLOW)
JOBS = SPEC["jobs"]


def runs(job: str) -> str:
    return "\n".join(s.get("run", "") for s in JOBS[job]["steps"])


def test_actionlint_is_clean():
    out = subprocess.run([require_tool("actionlint"), "-no-color", str(WORKFLOW)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows"
    bad.mkdir(parents=True)
    (bad / "ci.yml").write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04",
                                                             "runs-on: ${{ matrix.os }}", 1))
    out = subprocess.run([require_tool("actionlint"), "-no-color", str(bad / "ci.yml")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "matrix" in out.stdout


def test_jobs_cover_lint_typecheck_tests_and_benchmarks():
    assert {"lint", "typecheck", "test", "benchmarks"} <= set(JOBS)
    assert re.search(r"\bruff check\b", runs("lint"))
    assert re.search(r"\bmypy\b", runs("typecheck"))
    # The test job runs .ci/run itself, so the two cannot drift apart.
    assert "bash .ci/run" in runs("test")
    assert "./bootstrap test" in (ROOT / ".ci" / "run").read_text()


def test_test_job_has_postgres_as_the_tests_expect():
    pg = JOBS["test"]["services"]["postgres"]
    assert pg["env"]["POSTGRES_DB"] == "test"
    assert pg["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert "5432:5432" in pg["ports"]
    # Mosquitto: the tests start their own broker (tests/conftest.py) from the binary that
    # ./bootstrap installs.
    assert "Broker(" in (ROOT / "tests" / "conftest.py").read_text()
    assert "mosquitto" in (ROOT / "bootstrap").read_text()


def test_benchmarks_compare_with_the_stored_baseline_and_fail_beyond_the_margin():
    env = SPEC["env"]
    step = runs("benchmarks")
    assert '--benchmark-compare="$BENCHMARK_BASELINE"' in step
    assert '--benchmark-compare-fail="$BENCHMARK_MARGIN"' in step
    assert "-m benchmark" in step
    margin = re.fullmatch(r"(min|max|mean|median):(\d+)%", env["BENCHMARK_MARGIN"])
    assert margin and 0 < int(margin.group(2)) <= 50
    assert (ROOT / env["BENCHMARK_BASELINE"]).is_file()


def _benchmark_functions() -> dict[str, set[str]]:
    """benchmarks/test_bench_*.py -> names of its test functions."""
    out = {}
    for path in (ROOT / "benchmarks").glob("test_bench_*.py"):
        tree = ast.parse(path.read_text())
        out[f"benchmarks/{path.name}"] = {n.name for n in tree.body
                                          if isinstance(n, ast.FunctionDef)
                                          and n.name.startswith("test_")}
    return out


def test_the_baseline_is_a_pytest_benchmark_file_of_existing_benchmarks():
    data = json.loads((ROOT / SPEC["env"]["BENCHMARK_BASELINE"]).read_text())
    assert {"machine_info", "commit_info", "benchmarks", "version"} <= set(data)
    functions = _benchmark_functions()
    assert data["benchmarks"]
    for bench in data["benchmarks"]:
        path, _, test = bench["fullname"].partition("::")
        assert test.split("[")[0] in functions.get(path, set()), (
            f"baseline entry {bench['fullname']} has no benchmark any more: re-record the "
            "baseline (docs/operations.md#benchmarks)")
        # Only benchmarks timed over 3 or more rounds gate a merge: the minimum of one or
        # two runs (end-to-end ingest through a broker, whole scenarios) is too noisy
        # for a percentage margin.
        assert bench["stats"]["min"] > 0 and bench["stats"]["rounds"] >= 3, bench["fullname"]


FAST = ("--benchmark-max-time=0.05", "--benchmark-min-rounds=3")


def test_the_workflow_s_benchmark_flags_fail_a_regression(tmp_path):
    """Run the benchmark step's own flags on a toy benchmark against a baseline that
    says it once ran a million times faster (recorded on "another machine", as CI
    runners are): pytest must fail, naming the regression."""
    import os
    import shlex
    import sys

    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -m 'not benchmark' -p no:cacheprovider\nfilterwarnings = error\n"
        "markers =\n    benchmark: opt-in\n")
    (tmp_path / "test_bench_toy.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.benchmark\n"
        "def test_toy(benchmark):\n"
        "    benchmark(sum, range(1000))\n")
    # The stored baseline's format, one entry re-labelled as the toy and made 10^6x faster.
    baseline = json.loads((ROOT / SPEC["env"]["BENCHMARK_BASELINE"]).read_text())
    entry = dict(baseline["benchmarks"][0])
    entry.update(name="test_toy", fullname="test_bench_toy.py::test_toy", param=None,
                 params=None, group=None)
    entry["stats"] = {k: (v * 1e-6 if k in ("min", "max", "mean", "median", "stddev", "q1",
                                            "q3", "iqr", "ld15iqr", "hd15iqr", "total")
                          else v) for k, v in entry["stats"].items()}
    baseline["benchmarks"] = [entry]
    baseline["machine_info"] = {**baseline["machine_info"], "node": "another-machine"}
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))

    step = next(s["run"] for s in JOBS["benchmarks"]["steps"]
                if "--benchmark-compare" in s.get("run", ""))
    argv = shlex.split(step.replace("\\\n", " "))
    argv = argv[argv.index("pytest") + 1:]
    subst = {"$BENCHMARK_BASELINE": "baseline.json",
             "$BENCHMARK_MARGIN": SPEC["env"]["BENCHMARK_MARGIN"]}
    args = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        args.append("test_bench_toy.py" if a == "benchmarks" else a)
    slow = subprocess.run([sys.executable, "-m", "pytest", *args, *FAST], cwd=tmp_path,
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)
    out = slow.stdout + slow.stderr
    assert slow.returncode != 0, out
    assert "Performance has regressed" in out and "test_toy" in out
    assert "Field 'min' has failed" in out  # the stated statistic, not another one
