"""Fleet KPIs are the hand-computable sums of the twin's accumulators."""

import numpy as np
import pytest

from twin.fleet import Fleet
from twin.kpis import fleet_kpis
from twin.model import Twin
from twin.state import StepInputs


def test_kpis_of_a_one_site_fleet_by_hand():
    fleet = Fleet.from_records(
        [{"id": "S", "lat_deg": 45.0, "lon_deg": 7.0, "import_limit_kw": 50.0,
          "export_limit_kw": 50.0}],
        [{"id": "L", "site_id": "S", "type": "load", "load_peak_kw": 100.0,
          "load_profile": "flat"},
         {"id": "B", "site_id": "S", "type": "battery", "battery_kwh": 100.0, "charge_kw": 50.0,
          "discharge_kw": 50.0, "charge_eff": 1.0, "discharge_eff": 1.0, "soc_min": 0.0,
          "soc_max": 1.0}],
    )
    twin = Twin(fleet, "numba", soc=1.0)
    inputs = StepInputs.constant(1, load_frac=0.8, price_eur_per_mwh=200.0)
    sp = np.array([20.0, np.nan])  # battery row first (sorted by type), load ignores it
    for k in range(4):  # one hour: load 80 kW, battery 20 kW, import 60 kW (10 over the limit)
        twin.step(900.0 * k, 900.0, inputs, sp)
    k = fleet_kpis(twin.params, twin.state, hours=1.0)
    assert k["load_mwh"] == pytest.approx(0.080)
    assert k["import_mwh"] == pytest.approx(0.060)
    assert k["cost_eur"] == pytest.approx(60.0 * 200.0 / 1000.0)
    assert k["site_limit_violation_mwh"] == pytest.approx(0.010)
    assert k["battery_cycles"] == pytest.approx(20.0 / 200.0)
    assert k["max_site_peak_import_mw"] == pytest.approx(0.060)
    assert k["self_sufficiency"] == pytest.approx(1.0 - 60.0 / 80.0)
