"""Scenario benchmarks (opt-in: pytest -m benchmark benchmarks/test_bench_scenario.py)."""

from __future__ import annotations

import pytest

from benchmarks.bench_scenario import scenario_yaml
from scenarios.runner import prepare_run, run_scenario
from scenarios.schema import parse_scenario


@pytest.mark.benchmark(group="scenario")
@pytest.mark.parametrize("strategy", ["none", "rule"])
def test_reference_fleet_one_day(benchmark, tmp_path, strategy: str) -> None:
    scenario = parse_scenario(scenario_yaml(1, strategy, 342, "15min", "2025-06-02"))
    counter = iter(range(100))

    def once() -> int:
        out = tmp_path / f"run{next(counter)}"
        return run_scenario(scenario, out, prepared=prepare_run(scenario)).steps

    steps = benchmark.pedantic(once, rounds=2, iterations=1)
    assert steps == 96


@pytest.mark.benchmark(group="scenario")
def test_optimizer_six_hours(benchmark, tmp_path) -> None:
    text = scenario_yaml(1, "optimizer", 20, "15min", "2025-06-02").replace(
        "end: '2025-06-03'", "end: '2025-06-02T06:00:00'")
    scenario = parse_scenario(text)
    result = benchmark.pedantic(lambda: run_scenario(scenario, tmp_path / "opt"), rounds=1,
                                iterations=1)
    assert result.kpis["fleet"]["optimizer_solves"] == 6
