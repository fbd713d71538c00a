"""Plans serialize to JSON and xarray without losing what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optimizer import OptimizerConfig, Plan, optimize, synthetic_inputs
from tests.optimizer.small import T0
from twin.generator import generate_fleet


@pytest.fixture(scope="module")
def plan() -> Plan:
    fleet = generate_fleet(5, seed=4)
    fc = synthetic_inputs(fleet, 16, T0, seed=4)
    return optimize(fleet, 0.4, fc, OptimizerConfig(n_steps=16, peak_charge_eur_per_kw=1.0),
                    T0, created_s=T0 - 30.0, strict=True)


def test_plan_records_what_it_started_from_and_what_it_expects(plan):
    assert plan.created_s == T0 - 30.0 and plan.t0_s == T0
    assert plan.setpoints.shape == (16, len(plan.device_id))
    assert all(v == pytest.approx(0.4) for v in plan.initial_soc.values())
    assert len(plan.sessions["charger_id"]) > 0
    assert {"build_s", "solve_s", "disaggregate_s", "total_s"} <= set(plan.timings)
    assert plan.status == "optimal" and plan.gap == 0.0
    assert set(plan.kpis["peak_import_kw_by_site"]) == set(plan.site_id)
    assert plan.kpis["peak_import_kw"] == pytest.approx(plan.flows["import_kw"].max())


def test_json_round_trip(plan):
    text = plan.to_json()
    json.loads(text)  # strict JSON: NaN is written as null
    assert "NaN" not in text
    back = Plan.from_json(text)
    np.testing.assert_array_equal(np.isnan(back.setpoints), np.isnan(plan.setpoints))
    np.testing.assert_allclose(back.setpoints, plan.setpoints, equal_nan=True)
    np.testing.assert_allclose(back.flows["import_kw"], plan.flows["import_kw"])
    assert back.kpis["cost_eur"] == plan.kpis["cost_eur"]
    assert back.objective == plan.objective and back.plan_id == plan.plan_id
    assert back.slacks == plan.slacks


def test_xarray_dataset(plan):
    ds = plan.to_xarray()
    assert ds["setpoint_kw"].dims == ("time", "device")
    assert ds.sizes == {"time": 16, "device": len(plan.device_id), "site": len(plan.site_id)}
    np.testing.assert_allclose(ds["import_kw"].values, plan.flows["import_kw"])
    assert ds.attrs["status"] == "optimal"
    assert json.loads(ds.attrs["kpis"])["cost_eur"] == pytest.approx(plan.kpis["cost_eur"])
    assert ds["time"].values[1] - ds["time"].values[0] == np.timedelta64(900, "s")


def test_setpoint_at_picks_the_step(plan):
    np.testing.assert_array_equal(plan.setpoint_at(T0 + 900.0 * 3 + 10.0), plan.setpoints[3])
    assert np.isnan(plan.setpoint_at(T0 - 1.0)).all()
    assert np.isnan(plan.setpoint_at(T0 + 900.0 * 16)).all()
