"""Time limits, solver failures and refused input: a plan, never a stack trace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer import (
    EvSessions,
    OptimizerConfig,
    OptimizerInputError,
    Plan,
    optimize,
    synthetic_inputs,
)
from optimizer.compile import TemplateCache, assemble_group
from optimizer.sitedata import build_site_data
from optimizer.solve import TIME_LIMIT, HighsGroup
from optimizer.validate import check_forecast
from tests.optimizer.small import T0, battery, fleet, forecast, load, site
from twin.generator import generate_fleet

FLEET = generate_fleet(10, seed=2)
FC = synthetic_inputs(FLEET, 24, T0, seed=2)
CFG = OptimizerConfig(n_steps=24)


def test_time_limit_gives_a_marked_plan_not_an_exception():
    cfg = replace(CFG, time_limit_s=1e-9)
    plan = optimize(FLEET, 0.5, FC, cfg, T0)
    assert plan.status in ("time_limit", "fallback")
    assert "time" in plan.reason
    # What could not be solved falls back: no setpoints, flows still estimated.
    assert np.isnan(plan.setpoints).all()
    assert plan.flows["import_kw"].shape == (24, FLEET.n_sites)
    assert np.isfinite(plan.flows["import_kw"]).all()


def test_time_limit_within_reach_solves_everything():
    plan = optimize(FLEET, 0.5, FC, replace(CFG, time_limit_s=30.0), T0)
    assert plan.status == "optimal" and plan.gap == 0.0
    assert plan.solver["groups_solved"] == plan.solver["groups"]


def test_solver_failure_falls_back_with_its_reason():
    # HiGHS may not iterate at all: a real solver outcome without a solution.
    cfg = replace(CFG, highs_options={"simplex_iteration_limit": 0, "presolve": "off"})
    plan = optimize(FLEET, 0.5, FC, cfg, T0)
    assert plan.status == "fallback"
    assert "Iteration limit" in plan.reason or "iteration" in plan.reason.lower()
    assert np.isnan(plan.setpoints).all()  # batteries idle, no curtailment, EVs free
    assert plan.kpis["battery_throughput_kwh"] == 0.0
    assert plan.kpis["curtailed_kwh"] == 0.0


def test_refused_highs_option_is_a_fallback_plan():
    plan = optimize(FLEET, 0.5, FC, replace(CFG, highs_options={"no_such_option": 1}), T0)
    assert plan.status == "fallback"
    assert "no_such_option" in plan.reason


@pytest.mark.parametrize(("change", "named"), [
    (lambda fc: replace(fc, pv_kw=np.where(np.arange(24)[:, None] == 5, np.nan, fc.pv_kw)),
     "pv_kw"),
    (lambda fc: replace(fc, import_price_eur_per_mwh=fc.import_price_eur_per_mwh[:12]),
     "import_price_eur_per_mwh covers 12 steps, shorter than the horizon of 24"),
    (lambda fc: replace(fc, load_kw=-fc.load_kw - 1.0), "load_kw is negative"),
    (lambda fc: replace(fc, co2_kg_per_mwh=None), "co2_kg_per_mwh is missing"),
    (lambda fc: replace(fc, feed_in_eur_per_mwh=np.ones((24, 3))), "feed_in_eur_per_mwh"),
    (lambda fc: replace(fc, ev_sessions=EvSessions(np.array([0]), np.array([T0]),
                                                   np.array([T0 + 60.0]), np.array([5.0]))),
     "is not an EV charger"),
])
def test_bad_forecast_is_refused_naming_the_input(change, named):
    bad = change(FC)
    with pytest.raises(OptimizerInputError, match=named):
        optimize(FLEET, 0.5, bad, CFG, T0, strict=True)
    plan = optimize(FLEET, 0.5, bad, CFG, T0)
    assert plan.status == "fallback" and named.split()[0] in plan.reason
    assert plan.reason.startswith("input refused")
    assert np.isnan(plan.setpoints).all()
    back = Plan.from_json(plan.to_json())
    assert back.status == "fallback" and back.reason == plan.reason


@pytest.mark.parametrize(("config", "named"), [
    (replace(CFG, peak_charge_eur_per_kw=-1.0), "peak_charge_eur_per_kw"),
    (replace(CFG, n_steps=0), "n_steps"),
    (replace(CFG, terminal_soc=1.5), "terminal_soc"),
    (replace(CFG, vpp_export_kw=np.ones(5)), "vpp_export_kw"),
    (replace(CFG, time_limit_s=float("nan")), "time_limit_s"),
])
def test_bad_config_is_refused_naming_the_setting(config, named):
    with pytest.raises(OptimizerInputError, match=named):
        optimize(FLEET, 0.5, FC, config, T0, strict=True)
    plan = optimize(FLEET, 0.5, FC, config, T0)
    assert plan.status == "fallback" and named in plan.reason


def test_bad_initial_soc_and_negative_limits_are_refused():
    with pytest.raises(OptimizerInputError, match="initial soc"):
        optimize(FLEET, 1.7, FC, CFG, T0, strict=True)
    f = fleet([site("A")], [battery("B", "A"), load("L", "A")])
    broken = replace(f, import_limit_kw=np.array([-5.0]))
    with pytest.raises(OptimizerInputError, match="import_limit_kw of 'A'"):
        optimize(broken, 0.5, forecast(4, 1), OptimizerConfig(n_steps=4), T0, strict=True)


def test_highs_stopped_by_its_time_limit_reports_it():
    big = generate_fleet(15, seed=1)
    fc = synthetic_inputs(big, 48, T0, seed=1)
    cfg = OptimizerConfig(n_steps=48, decompose=False)
    sd = build_site_data(big, 0.5, check_forecast(big, fc, cfg), cfg, T0, fc)
    group = HighsGroup(assemble_group(sd, sd.groups[0], TemplateCache()))
    res = group.run(1e-3)
    assert res.status == TIME_LIMIT
    assert "time limit" in res.message.lower() or "Time limit" in res.message
    # Given time, the same instance finishes the job.
    assert group.run(60.0).status == "optimal"
