"""Running a scenario: results layout, determinism, the rule's behaviour, incomplete runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scenarios.compare import CompareError, compare_runs
from scenarios.results import open_results
from scenarios.runner import INCOMPLETE, RunError, is_complete, run_scenario
from scenarios.schema import parse_scenario
from tests.scenarios.helpers import tiny
from twin.state import SITE_FLOWS


@pytest.fixture(scope="module")
def rule_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rule"
    result = run_scenario(parse_scenario(tiny()), out)
    return out, result


def test_outputs_and_layout(rule_run) -> None:
    out, result = rule_run
    assert is_complete(out)
    assert not (out / INCOMPLETE).exists()
    for name in ("results.zarr", "kpis.json", "events.csv", "scenario.yaml", "run.json"):
        assert (out / name).exists(), name
    ds = open_results(out)
    assert ds.sizes["time"] == 96 and ds.sizes["site"] == 4
    for flow in SITE_FLOWS:
        assert ds[flow].dtype == np.float32 and ds[flow].dims == ("time", "site")
        assert ds[flow].encoding["chunks"] == (40, 4)  # time_chunk_steps
    assert set(ds["device_type"].values) == {"battery"}
    assert {"device_p_kw", "device_soc", "price_eur_per_mwh"} <= set(ds.data_vars)
    assert ds.attrs["scenario"] == "tiny"
    kpis = json.loads((out / "kpis.json").read_text())
    assert set(kpis["sites"]) == {"S0001", "S0002", "S0003", "S0004"}
    assert kpis["fleet"]["hours"] == pytest.approx(24.0)
    assert result.steps == 96


def test_site_series_add_up_to_the_kpis(rule_run) -> None:
    out, result = rule_run
    ds = open_results(out)
    imported_kwh = float(ds["import_kw"].sum()) * 0.25
    assert imported_kwh / 1000 == pytest.approx(result.kpis["fleet"]["imported_mwh"], rel=1e-5)
    net = ds["pv_kw"] + ds["battery_kw"] + ds["ev_kw"] + ds["load_kw"]
    np.testing.assert_allclose(net.values, ds["net_kw"].values, atol=1e-2)


def test_rule_charges_only_from_surplus_and_discharges_only_into_demand(rule_run) -> None:
    ds = open_results(rule_run[0])
    demand = -(ds["load_kw"] + ds["ev_kw"])
    pv, bat = ds["pv_kw"].values, ds["battery_kw"].values
    charging = bat < -1e-3
    assert charging.any() and (bat > 1e-3).any()
    # Charging power never exceeds the PV surplus: no charging from the grid.
    assert np.all(-bat[charging] <= (pv - demand.values)[charging] + 0.5)
    # Discharging never exports: the battery covers at most the deficit.
    discharging = bat > 1e-3
    assert np.all(bat[discharging] <= (demand.values - pv)[discharging] + 0.5)


def test_same_seed_same_numbers_bit_for_bit(rule_run, tmp_path) -> None:
    out2 = tmp_path / "again"
    run_scenario(parse_scenario(tiny()), out2)
    a, b = open_results(rule_run[0]), open_results(out2)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert (rule_run[0] / "kpis.json").read_text() == (out2 / "kpis.json").read_text()


def test_another_seed_gives_other_weather(rule_run, tmp_path) -> None:
    text = tiny().replace("seed: 1", "seed: 2", 1)
    run_scenario(parse_scenario(text), tmp_path / "seed2")
    a, b = open_results(rule_run[0]), open_results(tmp_path / "seed2")
    assert not np.array_equal(a["pv_kw"].values, b["pv_kw"].values)


def test_interrupted_run_is_marked_incomplete(tmp_path) -> None:
    def stop(done: int, total: int, sim_t: float, wall: float) -> None:
        if done >= 30:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_scenario(parse_scenario(tiny()), out, progress=stop)
    assert (out / INCOMPLETE).exists()
    assert "KeyboardInterrupt" in (out / INCOMPLETE).read_text()
    assert not (out / "kpis.json").exists() and not (out / "run.json").exists()
    assert not is_complete(out)
    with pytest.raises(CompareError, match="incomplete"):
        compare_runs([out], tmp_path / "cmp")


def test_a_full_folder_is_not_overwritten_by_accident(rule_run) -> None:
    with pytest.raises(RunError, match="not empty"):
        run_scenario(parse_scenario(tiny()), rule_run[0])


def test_the_resolved_file_repeats_the_run(rule_run, tmp_path) -> None:
    from scenarios.schema import load_scenario

    again = load_scenario(rule_run[0] / "scenario.yaml")
    run_scenario(again, tmp_path / "repeat")
    assert (tmp_path / "repeat" / "kpis.json").read_text() == \
        (rule_run[0] / "kpis.json").read_text()
