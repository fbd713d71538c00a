"""The dispatch model in Pyomo: its one statement.

:func:`site_block` states one site's LP over the horizon (virtual battery,
PV with curtailment, EV energy by departure, fixed load, grid import and
export with soft limits, peak import, terminal storage). The fleet model
(:func:`build_fleet_model`) puts one block per site under feeder coupling
rows and an optional fleet export commitment. It is solved as it stands by
Pyomo's HiGHS interface (:func:`solve_pyomo`, the test oracle and the naive
route), while the fast path compiles one site block to matrices
(:mod:`optimizer.compile`) and replicates them.

Variables per step ``t`` [kW unless noted]: ``pv`` delivered PV, ``ch``/``dis``
battery charge/discharge (AC), ``e`` stored energy at the end of the step
[kWh], ``ev`` EV charging, ``evc`` EV energy delivered so far [kWh], ``evu``
EV energy given up at the step [kWh, slack], ``imp``/``exp`` grid import/export
within the site limits, ``impx``/``expx`` beyond them (slack). Per site:
``peak`` highest import, ``term_short`` storage short of the terminal target
[kWh, slack].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyomo.environ as pyo

from optimizer.sitedata import SCALAR_VARS, STEP_VARS, SiteData


def site_block(b: pyo.Block, n_steps: int, dt_h: float, eta_c: float, eta_d: float,
               lb: Mapping[str, np.ndarray], ub: Mapping[str, np.ndarray],
               rhs: Mapping[str, np.ndarray]) -> None:
    """Declare one site's variables and constraints on block ``b``.

    Parameters
    ----------
    b : pyomo Block
        Block to fill.
    n_steps : int
        Steps in the horizon.
    dt_h : float
        Step length [h].
    eta_c, eta_d : float
        Charge and discharge efficiency of the virtual battery (0..1].
    lb, ub : mapping of str to array
        Variable bounds by variable name, ``(n_steps,)`` or scalar.
    rhs : mapping of str to array
        Right-hand sides: ``bal`` the load [kW], ``soc`` the initial stored
        energy at step 0 [kWh], ``evb`` and ``pk`` zeros, ``term`` the
        terminal stored-energy target [kWh].
    """
    steps = range(n_steps)
    b.T = pyo.Set(initialize=steps, ordered=True)

    def bounds(name: str):
        lo, hi = np.asarray(lb[name], dtype=float), np.asarray(ub[name], dtype=float)

        def rule(_b, t=None):
            lo_t = float(lo if lo.ndim == 0 else lo[t])
            hi_t = float(hi if hi.ndim == 0 else hi[t])
            return (None if math.isinf(lo_t) else lo_t, None if math.isinf(hi_t) else hi_t)
        return rule

    for name in STEP_VARS:
        setattr(b, name, pyo.Var(b.T, bounds=bounds(name)))
    for name in SCALAR_VARS:
        setattr(b, name, pyo.Var(bounds=bounds(name)))

    b.bal = pyo.Constraint(b.T, rule=lambda b, t: (
        b.pv[t] + b.dis[t] - b.ch[t] - b.ev[t] + b.imp[t] + b.impx[t] - b.exp[t] - b.expx[t]
        == float(rhs["bal"][t])))
    b.soc = pyo.Constraint(b.T, rule=lambda b, t: (
        b.e[t] - (b.e[t - 1] if t > 0 else 0.0) - eta_c * dt_h * b.ch[t]
        + (dt_h / eta_d) * b.dis[t] == float(rhs["soc"][t])))
    b.evb = pyo.Constraint(b.T, rule=lambda b, t: (
        b.evc[t] - (b.evc[t - 1] if t > 0 else 0.0) - dt_h * b.ev[t] - b.evu[t]
        == float(rhs["evb"][t])))
    b.pk = pyo.Constraint(b.T, rule=lambda b, t: (
        b.imp[t] + b.impx[t] - b.peak <= float(rhs["pk"][t])))
    b.term = pyo.Constraint(expr=b.e[n_steps - 1] + b.term_short >= float(rhs["term"]))


def site_slice(sd: SiteData, i: int) -> tuple[dict, dict, dict, dict]:
    """Bounds, costs and right-hand sides of site ``i``."""
    return ({k: v[i] for k, v in sd.lb.items()}, {k: v[i] for k, v in sd.ub.items()},
            {k: v[i] for k, v in sd.cost.items()}, {k: v[i] for k, v in sd.rhs.items()})


def build_fleet_model(sd: SiteData) -> pyo.ConcreteModel:
    """The whole fleet's LP as one Pyomo model (site blocks plus coupling rows)."""
    m = pyo.ConcreteModel(name="dispatch")
    m.S = pyo.Set(initialize=range(sd.n_sites), ordered=True)
    m.T = pyo.Set(initialize=range(sd.n_steps), ordered=True)
    costs = []

    def rule(b, i):
        lb, ub, cost, rhs = site_slice(sd, i)
        eta_c, eta_d = sd.signatures[sd.site_sig[i]]
        site_block(b, sd.n_steps, sd.dt_h, eta_c, eta_d, lb, ub, rhs)
        costs.append((b, cost))

    m.site = pyo.Block(m.S, rule=rule)
    obj = []
    for b, cost in costs:
        for name in STEP_VARS:
            c, v = cost[name], getattr(b, name)
            obj.extend(float(c[t]) * v[t] for t in range(sd.n_steps) if c[t] != 0.0)
        obj.extend(float(cost[name]) * getattr(b, name) for name in SCALAR_VARS
                   if cost[name] != 0.0)

    def net_import(i, t):
        b = m.site[i]
        return b.imp[t] + b.impx[t] - b.exp[t] - b.expx[t]

    slack_cost = sd.dt_h * sd.limit_penalty
    m.F = pyo.Set(initialize=range(len(sd.feeder_sites)), ordered=True)
    m.fimp = pyo.Var(m.F, m.T, bounds=(0, None))
    m.fexp = pyo.Var(m.F, m.T, bounds=(0, None))

    def feeder_import(m, f, t):
        if math.isinf(sd.feeder_import_kw[f]):
            return pyo.Constraint.Skip
        return (sum(net_import(i, t) for i in sd.feeder_sites[f]) - m.fimp[f, t]
                <= float(sd.feeder_import_kw[f]))

    def feeder_export(m, f, t):
        if math.isinf(sd.feeder_export_kw[f]):
            return pyo.Constraint.Skip
        return (-sum(net_import(i, t) for i in sd.feeder_sites[f]) - m.fexp[f, t]
                <= float(sd.feeder_export_kw[f]))

    m.feeder_imp = pyo.Constraint(m.F, m.T, rule=feeder_import)
    m.feeder_exp = pyo.Constraint(m.F, m.T, rule=feeder_export)
    obj.extend(slack_cost * (m.fimp[f, t] + m.fexp[f, t]) for f in m.F for t in m.T)
    if sd.vpp_export_kw is not None:
        vpp = sd.vpp_export_kw
        m.vshort = pyo.Var(m.T, bounds=(0, None))
        m.vpp = pyo.Constraint(m.T, rule=lambda m, t: (
            -sum(net_import(i, t) for i in m.S) + m.vshort[t] >= float(vpp[t])))
        obj.extend(sd.dt_h * sd.vpp_penalty * m.vshort[t] for t in m.T)
    m.obj = pyo.Objective(expr=pyo.quicksum(obj), sense=pyo.minimize)
    return m


def solve_pyomo(sd: SiteData, solver: str = "appsi_highs",
                time_limit_s: float = 600.0) -> tuple[float, dict[str, np.ndarray]]:
    """Build and solve the fleet model through Pyomo (the oracle and the naive route).

    Returns the objective [EUR] and the site variables as ``(n_sites, n_steps)``
    arrays (``(n_sites,)`` for scalars).
    """
    m = build_fleet_model(sd)
    opt = pyo.SolverFactory(solver)
    opt.config.time_limit = time_limit_s
    if hasattr(opt, "highs_options"):
        opt.highs_options["dual_feasibility_tolerance"] = 1e-9
    res = opt.solve(m, load_solutions=True)
    status = str(res.solver.termination_condition)
    if "optimal" not in status:
        raise RuntimeError(f"Pyomo/HiGHS ended with {status}")
    sol = {name: np.array([[pyo.value(getattr(m.site[i], name)[t]) for t in m.T]
                           for i in m.S]) for name in STEP_VARS}
    sol.update({name: np.array([pyo.value(getattr(m.site[i], name)) for i in m.S])
                for name in SCALAR_VARS})
    return float(pyo.value(m.obj)), sol
