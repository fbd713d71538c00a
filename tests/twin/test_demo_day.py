"""The demo's simulated day produces a sensible energy balance on a small fleet."""

import pytest

from api.cli.demo import simulate_day
from twin.generator import generate_fleet
from twin.kpis import fleet_kpis
from twin.model import Twin


def test_one_day_energy_balance():
    fleet = generate_fleet(n_sites=10, seed=2)
    twin = Twin(fleet, t_s=1_781_913_600.0)  # 2026-06-20
    simulate_day(twin, 1_781_913_600.0, 900.0, seed=2)
    k = fleet_kpis(twin.params, twin.state, hours=24.0)
    assert twin.state.steps == 96
    assert k["pv_mwh"] > 0 and k["load_mwh"] > 0
    # Energy balance of the fleet: generation (PV) + battery discharge - battery charge
    # - consumption (load + EV) = export - import.
    assert k["generation_mwh"] == k["pv_mwh"]
    assert (k["generation_mwh"] + k["battery_discharge_mwh"] - k["battery_charge_mwh"]
            - k["consumption_mwh"]) == pytest.approx(k["export_mwh"] - k["import_mwh"],
                                                     rel=1e-9, abs=1e-9)
