"""Events change the run as stated and are logged with their times."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from scenarios.results import open_results
from scenarios.runner import run_scenario
from scenarios.schema import ScenarioError, parse_scenario
from tests.scenarios.helpers import tiny

EVENTS = [
    {"type": "site_outage", "sites": ["S0001"], "mode": "off", "start": "2025-06-02T08:00",
     "duration": "3h"},
    {"type": "site_outage", "sites": ["S0002"], "mode": "islanded",
     "start": "2025-06-02T10:00", "duration": "6h"},
    {"type": "device_failure", "devices": ["S0002-BAT01"], "start": "2025-06-02T06:00",
     "duration": "6h"},
    {"type": "comm_loss", "sites": ["S0004"], "start": "2025-06-02T01:00", "duration": "4h"},
    {"type": "price_spike", "factor": 3.0, "start": "2025-06-02T18:00", "duration": "2h"},
    {"type": "feeder_limit", "feeders": ["F-S0001"], "import_limit_kw": 0.0,
     "start": "2025-06-02T12:00", "duration": "4h"},
]


def _window(ds, start: str, hours: float) -> np.ndarray:
    t0 = pd.Timestamp(start, tz="Europe/Berlin").tz_convert("UTC").tz_localize(None)
    times = pd.DatetimeIndex(ds["time"].values)
    return np.asarray((times >= t0) & (times < t0 + pd.Timedelta(hours=hours)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    base = run_scenario(parse_scenario(tiny()), root / "base")
    hit = run_scenario(parse_scenario(tiny(events=EVENTS)), root / "events")
    return open_results(root / "base"), open_results(root / "events"), base, hit, root


def test_site_off_delivers_and_draws_nothing(runs) -> None:
    base, ds, *_ = runs
    w = _window(ds, "2025-06-02T08:00", 3)
    s = list(ds["site"].values).index("S0001")
    for flow in ("pv_kw", "load_kw", "battery_kw", "ev_kw", "net_kw"):
        assert np.all(ds[flow].values[w, s] == 0.0), flow
    assert np.any(base["load_kw"].values[w, s] != 0.0)
    assert np.any(ds["load_kw"].values[~w, s] != 0.0)  # back on afterwards


def test_islanded_site_neither_imports_nor_exports(runs) -> None:
    base, ds, *_ = runs
    w = _window(ds, "2025-06-02T10:00", 6)
    s = list(ds["site"].values).index("S0002")
    assert np.abs(ds["net_kw"].values[w, s]).max() < 1e-2
    assert np.all(ds["ev_kw"].values[w, s] == 0.0)
    assert np.abs(base["net_kw"].values[w, s]).max() > 10.0


def test_failed_battery_is_idle_until_repaired(runs) -> None:
    base, ds, *_ = runs
    w = _window(ds, "2025-06-02T06:00", 6)
    d = list(ds["device"].values).index("S0002-BAT01")
    assert np.all(ds["device_p_kw"].values[w, d] == 0.0)
    assert np.any(base["device_p_kw"].values[w, d] != 0.0)


def test_comm_loss_freezes_setpoints(runs) -> None:
    base, ds, *_ = runs
    w = _window(ds, "2025-06-02T01:00", 4)
    rows = [i for i, s in enumerate(ds["device_site"].values) if s == "S0004"]
    for d in rows:
        held = np.unique(np.round(ds["device_p_kw"].values[w, d], 3))
        varied = np.unique(np.round(base["device_p_kw"].values[w, d], 3))
        assert len(held) <= 3 < len(varied)  # the held setpoint (and a clamp to empty)


def test_price_spike_triples_the_import_price(runs) -> None:
    base, ds, *_ = runs
    w = _window(ds, "2025-06-02T18:00", 2)
    np.testing.assert_allclose(ds["price_eur_per_mwh"].values[w],
                               3.0 * base["price_eur_per_mwh"].values[w], rtol=1e-6)
    np.testing.assert_array_equal(ds["price_eur_per_mwh"].values[~w],
                                  base["price_eur_per_mwh"].values[~w])


def test_feeder_limit_counts_hours_over(runs) -> None:
    *_, base, hit, _root = runs
    assert hit.kpis["fleet"]["feeder_hours_over_limit"] >= \
        base.kpis["fleet"]["feeder_hours_over_limit"] + 3.5


def test_events_are_logged_with_their_times(runs) -> None:
    root = runs[-1]
    with (root / "events" / "events.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(EVENTS)
    first = next(r for r in rows if r["event"] == "site_outage" and r["phase"] == "start")
    assert first["time"] == "2025-06-02T06:00:00+00:00" and first["targets"] == "S0001"
    assert first["detail"] == "mode=off"
    assert float(first["time_s"]) == pd.Timestamp("2025-06-02T06:00Z").timestamp()
    assert [float(r["time_s"]) for r in rows] == sorted(float(r["time_s"]) for r in rows)
    in_results = json.loads(runs[1].attrs["events"])  # also in results.zarr
    assert [e["time_s"] for e in in_results] == [float(r["time_s"]) for r in rows]


def test_unknown_targets_are_refused_before_running(tmp_path) -> None:
    bad = tiny(events=[{"type": "device_failure", "devices": ["NOPE"],
                        "start": "2025-06-02T06:00"}])
    with pytest.raises(ScenarioError, match="unknown device 'NOPE'"):
        run_scenario(parse_scenario(bad), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_controller_sees_stale_battery_energy_during_comm_loss(tmp_path) -> None:
    from scenarios.runner import prepare_run

    scenario = parse_scenario(tiny(events=[EVENTS[3]]))  # S0004 offline 01:00-05:00
    prepared = prepare_run(scenario)
    rows = [prepared.fleet.device_row[d] for d in ("S0004-BAT01", "S0004-BAT02")]
    seen, true = [], []
    rule = prepared.strategy

    class Recording:
        name = "rule"

        def setpoints(self, obs):
            seen.append(obs.e_kwh[rows].copy())
            true.append(prepared.twin.state.e_kwh[rows].copy())
            return rule.setpoints(obs)

        def stats(self):
            return {}

    prepared.strategy = Recording()
    run_scenario(scenario, tmp_path / "stale", prepared=prepared)
    seen_a, true_a = np.array(seen), np.array(true)
    # Steps 4..19 (01:00-05:00 Berlin) see the energy of step 4's start, frozen.
    np.testing.assert_array_equal(seen_a[4:20], np.repeat(seen_a[4:5], 16, axis=0))
    assert np.abs(true_a[4:20] - seen_a[4:20]).max() > 1.0
    np.testing.assert_array_equal(seen_a[20:], true_a[20:])  # fresh again afterwards
