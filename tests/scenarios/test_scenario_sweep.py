"""A small sweep on a Dask LocalCluster: one folder per combination and a summary."""

from __future__ import annotations

import pandas as pd
import pytest

from scenarios.runner import is_complete
from scenarios.schema import ScenarioError
from scenarios.sweep import combination_name, combinations, run_sweep
from tests.scenarios.helpers import tiny, write


def test_combinations_and_names() -> None:
    combos = combinations({"battery_scale": [0.5, 2], "price_file": ["a.csv", "b.csv"]})
    assert len(combos) == 4 and combos[1] == {"battery_scale": 0.5, "price_file": "b.csv"}
    assert combination_name(3, combos[3]) == "003_battery_scale-2_price_file-b"


def test_sweep_on_a_local_cluster(tmp_path) -> None:
    text = tiny(period={"start": "2025-06-02T00:00", "end": "2025-06-02T12:00",
                        "timezone": "Europe/Berlin"})
    summary = run_sweep(write(tmp_path, text), {"battery_scale": [0, 1], "ev_growth": [1, 2]},
                        tmp_path / "sweep", n_workers=2)
    assert summary.all_ok
    table = pd.read_csv(summary.csv_path)
    assert len(table) == 4 and set(table["status"]) == {"complete"}
    for name in table["run"]:
        assert is_complete(tmp_path / "sweep" / name)
    no_battery = table[table["battery_scale"] == 0]
    assert (no_battery["battery_equivalent_full_cycles"].isna()
            | (no_battery["battery_equivalent_full_cycles"] == 0)).all()
    with_battery = table[table["battery_scale"] == 1]
    assert (with_battery["battery_equivalent_full_cycles"] > 0).all()
    more_evs = table[table["ev_growth"] == 2]["ev_delivered_mwh"].to_numpy()
    fewer = table[table["ev_growth"] == 1]["ev_delivered_mwh"].to_numpy()
    assert (more_evs > fewer).all()


def test_a_bad_combination_stops_the_sweep_before_it_runs(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="battery_scale"):
        run_sweep(write(tmp_path, tiny()), {"battery_scale": [1, -1]}, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_sweep_on_an_existing_scheduler(tmp_path) -> None:
    from dask.distributed import LocalCluster

    text = tiny(period={"start": "2025-06-02T00:00", "end": "2025-06-02T06:00",
                        "timezone": "Europe/Berlin"})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        summary = run_sweep(write(tmp_path, text), {"seed": [1, 2]}, tmp_path / "sweep",
                            scheduler=cluster.scheduler_address)
    table = pd.read_csv(summary.csv_path)
    assert summary.all_ok and list(table["seed"]) == [1, 2]
    assert table["generated_mwh"].iloc[0] != table["generated_mwh"].iloc[1]
