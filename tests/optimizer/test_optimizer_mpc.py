"""Rolling horizon: the controller keeps the HiGHS models and re-solves on them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer import (
    Dispatcher,
    MpcController,
    OptimizerConfig,
    load_forecast,
    sessions_from_state,
    synthetic_inputs,
)
from optimizer.check import check_on_twin
from tests.optimizer.small import T0
from twin.fleet import LOAD_PROFILES
from twin.generator import generate_fleet
from twin.model import Twin
from twin.state import StepInputs

FLEET = generate_fleet(12, seed=5)
N = 32
CFG = OptimizerConfig(n_steps=N, peak_charge_eur_per_kw=0.5, terminal_soc=0.5)


def changed(fc, seed):
    rng = np.random.default_rng(seed)
    return replace(fc, pv_kw=fc.pv_kw * rng.uniform(0.8, 1.0, fc.pv_kw.shape), pv_device_kw=None,
                   import_price_eur_per_mwh=fc.import_price_eur_per_mwh
                   * rng.uniform(0.8, 1.2, N))


def test_resolve_reuses_the_model_and_matches_a_cold_solve():
    fc = synthetic_inputs(FLEET, N, T0, seed=5)
    disp = Dispatcher(FLEET, CFG, strict=True)
    cold = disp.plan(0.5, fc, T0)
    highs_before = [id(h.highs) for h in disp.highs]
    soc = np.random.default_rng(7).uniform(0.2, 0.8, FLEET.n_devices)
    fc2 = changed(fc, 6)
    warm = disp.plan(soc, fc2, T0)
    assert warm.solver["reused_model"] and not cold.solver["reused_model"]
    assert [id(h.highs) for h in disp.highs] == highs_before
    fresh = Dispatcher(FLEET, CFG, strict=True).plan(soc, fc2, T0)
    assert warm.objective == pytest.approx(fresh.objective, rel=1e-7)
    # Hot start: the re-solve needs far fewer simplex iterations than a cold one.
    assert warm.solver["iterations"] < 0.5 * fresh.solver["iterations"]


def test_controller_replans_every_n_steps_in_closed_loop_with_the_twin():
    twin = Twin(FLEET, backend="numpy", soc=0.5, t_s=T0)
    evs = FLEET.rows_of_type("ev_charger")[:4]
    twin.plug_in(evs, np.full(4, 20.0), np.full(4, T0 + 4 * 3600.0))
    ctl = MpcController(FLEET, CFG, every_n_steps=3)
    fetched = []

    def forecast_at(t_s):
        fetched.append(t_s)
        fc = synthetic_inputs(FLEET, N, t_s, seed=int(t_s) % 97)
        return replace(fc, ev_sessions=sessions_from_state(twin.params, twin.state))

    inputs = StepInputs.constant(FLEET.n_sites, load_frac=0.5)
    for k in range(7):
        t = T0 + 900.0 * k
        sp = ctl.setpoints(t, twin.state, forecast_at)
        assert sp.shape == (FLEET.n_devices,)
        twin.step(t, 900.0, inputs, sp)
        bat = FLEET.rows_of_type("battery")
        # The twin's batteries follow the plan (it planned from the twin's own SoC).
        np.testing.assert_allclose(twin.state.p_kw[bat], np.nan_to_num(sp[bat]), atol=1e-6)
    assert fetched == [T0, T0 + 2700.0, T0 + 5400.0]
    assert [h["reused_model"] for h in ctl.history] == ["False", "True", "True"]
    assert all(h["status"] == "optimal" for h in ctl.history)


def test_controller_rejects_a_bad_cadence():
    with pytest.raises(ValueError, match="every_n_steps"):
        MpcController(FLEET, CFG, every_n_steps=0)


def test_plan_checked_on_a_copy_of_the_twin():
    twin = Twin(FLEET, backend="numpy", soc=0.6, t_s=T0)
    fc = synthetic_inputs(FLEET, N, T0, seed=8)
    # The twin's own inputs for the horizon: no sun, loads at half of peak, so the
    # plan's PV and load match what the twin will see.
    inputs = [StepInputs.constant(FLEET.n_sites, load_frac=0.5) for _ in range(N)]
    load = load_forecast(FLEET, np.full((N, FLEET.n_sites, len(LOAD_PROFILES)), 0.5))
    fc = replace(fc, pv_kw=np.zeros((N, FLEET.n_sites)), pv_device_kw=None, load_kw=load,
                 ev_sessions=sessions_from_state(twin.params, twin.state))
    plan = Dispatcher(FLEET, CFG, strict=True).plan(twin.state, fc, T0)
    before = twin.state.e_kwh.copy()
    report = check_on_twin(twin, plan, inputs)
    np.testing.assert_array_equal(twin.state.e_kwh, before)  # the twin is untouched
    assert report["steps"] == N
    assert report["battery_kw_max_diff"] < 1e-6
    assert report["site_import_kw_max_diff"] < 1e-6
    assert report["site_export_kw_max_diff"] < 1e-6
