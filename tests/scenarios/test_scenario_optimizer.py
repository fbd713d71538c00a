"""The optimizer strategy: MPC re-solves at its cadence, without fallbacks."""

from __future__ import annotations

import pytest

from scenarios.runner import run_scenario
from scenarios.schema import parse_scenario
from tests.scenarios.helpers import tiny


@pytest.mark.slow
def test_optimizer_strategy_replans_hourly(tmp_path) -> None:
    text = tiny(period={"start": "2025-06-02T08:00", "end": "2025-06-02T11:00",
                        "timezone": "Europe/Berlin"},
                fleet={"generator": {"n_sites": 2, "seed": 0}},
                strategy={"kind": "optimizer", "cadence": "1h", "horizon": "6h",
                          "forecast_error": {"pv": 0.1}})
    result = run_scenario(parse_scenario(text), tmp_path / "opt")
    fleet = result.kpis["fleet"]
    assert fleet["optimizer_solves"] == 3
    assert fleet["optimizer_fallbacks"] == 0
    assert fleet["optimizer_solve_s_median"] > 0
