"""The dispatch solve, end to end: check, build, solve, disaggregate, report.

:class:`Dispatcher` owns what a re-solve can reuse (compiled site blocks,
group LPs and their HiGHS instances); :func:`optimize` is the one-shot call.
Independent feeders are separate LPs (the optimum is the same as the whole
fleet's LP, which has no row linking them); a fleet export commitment links
every site, and the fleet is then one LP.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from optimizer.compile import (
    GroupLP,
    TemplateCache,
    assemble_group,
    fill_vectors,
    site_vectors,
)
from optimizer.disaggregate import disaggregate
from optimizer.fallback import fallback_flows
from optimizer.plan import FALLBACK, OPTIMAL, TIME_LIMIT, Plan
from optimizer.report import kpis, setpoint_violations, slack_diagnosis
from optimizer.sitedata import SiteData, build_site_data
from optimizer.solve import GroupResult, HighsGroup
from optimizer.types import Forecast, OptimizerConfig, OptimizerInputError
from optimizer.validate import check_config, check_fleet, check_forecast
from twin.fleet import BATTERY, Fleet
from twin.state import TwinState

log = logging.getLogger(__name__)

Initial = TwinState | float | np.ndarray | None


class Dispatcher:
    """Solves the fleet's dispatch LP and keeps it for re-solves.

    Parameters
    ----------
    fleet : Fleet
    config : OptimizerConfig
    strict : bool
        Raise :class:`OptimizerInputError` on refused input instead of
        returning a fallback plan that names the input.
    """

    def __init__(self, fleet: Fleet, config: OptimizerConfig | None = None,
                 strict: bool = False):
        self.fleet = fleet
        self.config = config or OptimizerConfig()
        self.strict = strict
        check_config(self.config)
        check_fleet(fleet)
        self.cache = TemplateCache()
        self.lps: list[GroupLP] = []
        self.highs: list[HighsGroup] = []
        self._layout: tuple | None = None

    # -- one solve -------------------------------------------------------------
    def plan(self, initial: Initial, forecast: Forecast, t0_s: float,
             created_s: float | None = None) -> Plan:
        """Plan the horizon starting at ``t0_s`` from ``initial`` (state or SoC)."""
        cfg = self.config
        t_start = time.perf_counter()
        deadline = t_start + cfg.time_limit_s
        created = t0_s if created_s is None else created_s
        try:
            series = check_forecast(self.fleet, forecast, cfg)
            sd = build_site_data(self.fleet, initial, series, cfg, t0_s, forecast)
        except OptimizerInputError as exc:
            if self.strict:
                raise
            log.warning("dispatch input refused: %s", exc)
            return refused_plan(self.fleet, cfg, t0_s, created, str(exc),
                                time.perf_counter() - t_start)
        try:
            reused = self._prepare(sd)
            t_built = time.perf_counter()
            results = self._solve(deadline)
            t_solved = time.perf_counter()
            plan = self._assemble(sd, results, t0_s, created)
        except Exception as exc:
            log.exception("dispatch solve failed")
            self._layout = None
            self.lps, self.highs = [], []
            return refused_plan(self.fleet, cfg, t0_s, created,
                                f"{type(exc).__name__}: {exc}", time.perf_counter() - t_start,
                                prefix="solver failure")
        t_done = time.perf_counter()
        plan.timings = {"build_s": t_built - t_start, "solve_s": t_solved - t_built,
                        "disaggregate_s": t_done - t_solved, "total_s": t_done - t_start,
                        "compile_s": sum(lp.template.compile_s for lp in self.lps[:1])
                        if not reused else 0.0}
        plan.solver["reused_model"] = reused
        return plan

    def _prepare(self, sd: SiteData) -> bool:
        """Build the group LPs, or refresh their vectors when the layout is unchanged."""
        layout = (sd.n_steps, sd.dt_h, tuple(sd.signatures), sd.site_sig.tobytes(),
                  tuple(tuple(g.tolist()) for g in sd.groups),
                  tuple(tuple(f.tolist()) for f in sd.feeder_sites),
                  sd.vpp_export_kw is None)
        if layout == self._layout and self.highs:
            vectors = site_vectors(sd, self.lps[0].template)
            for lp, hg in zip(self.lps, self.highs, strict=True):
                fill_vectors(lp, sd, vectors)
                hg.update(lp)
            return True
        self.lps = [assemble_group(sd, g, self.cache) for g in sd.groups]
        self.highs = [HighsGroup(lp, options=self.config.highs_options) for lp in self.lps]
        self._layout = layout
        return False

    def _solve(self, deadline: float) -> list[GroupResult]:
        def run(hg: HighsGroup) -> GroupResult:
            return hg.run(deadline - time.perf_counter())

        if self.config.threads > 1 and len(self.highs) > 1:
            with ThreadPoolExecutor(self.config.threads) as pool:
                return list(pool.map(run, self.highs))
        return [run(hg) for hg in self.highs]

    def _assemble(self, sd: SiteData, results: list[GroupResult], t0_s: float,
                  created_s: float) -> Plan:
        fleet, t_n, s_n = self.fleet, sd.n_steps, sd.n_sites
        site_vals = {name: np.zeros((s_n, t_n)) for name in
                     ("pv", "ch", "dis", "ev", "imp", "exp", "impx", "expx", "evu")}
        term_short = np.zeros(s_n)
        n_f = len(sd.feeder_sites)
        f_imp, f_exp = np.zeros((n_f, t_n)), np.zeros((n_f, t_n))
        vpp_short = np.zeros(t_n) if sd.vpp_export_kw is not None else None
        solved = np.zeros(s_n, dtype=bool)
        reasons, objective, gap = [], 0.0, 0.0
        for lp, res in zip(self.lps, results, strict=True):
            if res.x is None:
                reasons.append(res.message)
                continue
            solved[lp.sites] = True
            objective += res.objective
            gap = max(gap, res.gap)
            for name in site_vals:
                site_vals[name][lp.sites] = lp.site_values(res.x, name)
            term_short[lp.sites] = lp.site_values(res.x, "term_short")
            j0 = len(lp.sites) * lp.n_site_cols
            q = len(lp.feeders)
            slack = res.x[j0:j0 + 2 * q * t_n].reshape(2, q, t_n)
            f_imp[lp.feeders], f_exp[lp.feeders] = slack[0], slack[1]
            if lp.has_vpp and vpp_short is not None:
                vpp_short[:] = res.x[j0 + 2 * q * t_n:j0 + (2 * q + 1) * t_n]
        ok_sites = np.flatnonzero(solved)
        flows = {
            "pv_kw": site_vals["pv"].T, "pv_available_kw": sd.pv_kw.copy(),
            "battery_kw": (site_vals["dis"] - site_vals["ch"]).T, "ev_kw": site_vals["ev"].T,
            "load_kw": sd.load_kw.copy(), "import_kw": (site_vals["imp"] + site_vals["impx"]).T,
            "export_kw": (site_vals["exp"] + site_vals["expx"]).T,
        }
        flows = {k: np.ascontiguousarray(v) for k, v in flows.items()}
        dis = disaggregate(fleet, sd, ok_sites, flows["battery_kw"][:, ok_sites],
                           flows["pv_kw"][:, ok_sites], flows["ev_kw"][:, ok_sites])
        fell_back = np.flatnonzero(~solved)
        if len(fell_back):
            fb = fallback_flows(sd, fell_back)
            for k in flows:
                flows[k][:, fell_back] = fb[k]
        slacks = slack_diagnosis(fleet, sd, {**site_vals, "term_short": term_short}, f_imp,
                                 f_exp, vpp_short)
        violations = setpoint_violations(fleet, dis.setpoints)
        check = {"method": "twin.physics.battery_step over the horizon",
                 "setpoints_within_limits": not violations, "violations": violations,
                 "battery_gap_kw_max": float(dis.battery_gap_kw.max(initial=0.0)),
                 "battery_gap_kwh": float(dis.battery_gap_kw.sum() * sd.dt_h)}
        if len(fell_back) == 0:
            status, reason = OPTIMAL, ""
        elif len(ok_sites) == 0:
            status = FALLBACK
            reason = "; ".join(sorted(set(reasons))) or "no solution"
        else:
            status = TIME_LIMIT if any("time" in r for r in reasons) else FALLBACK
            reason = (f"{len(fell_back)} of {s_n} sites fell back: "
                      + "; ".join(sorted(set(reasons))))
        any_time = [r for r in results if r.status == TIME_LIMIT and r.x is not None]
        if any_time and status == OPTIMAL:
            status, reason = TIME_LIMIT, "time limit: best feasible point so far"
        plan = Plan(
            plan_id=_plan_id(t0_s, dis.setpoints), created_s=created_s, t0_s=t0_s,
            n_steps=t_n, dt_s=self.config.dt_s, device_id=fleet.device_id.tolist(),
            site_id=fleet.site_id.tolist(), setpoints=dis.setpoints, flows=flows,
            forecast={"import_price_eur_per_mwh": sd.price, "feed_in_eur_per_mwh": sd.feed_in,
                      "co2_kg_per_mwh": sd.co2, "pv_kw": sd.pv_kw, "load_kw": sd.load_kw},
            initial_soc=_initial_soc(fleet, sd), sessions=_sessions(fleet, sd),
            kpis=kpis(fleet, sd, flows, site_vals["evu"]), status=status, reason=reason,
            objective=objective if len(ok_sites) else math.nan,
            gap=gap if len(ok_sites) else math.nan, slacks=slacks, check=check,
            solver={"groups": len(self.lps), "groups_solved": sum(r.x is not None
                                                                   for r in results),
                    "variables": sum(lp.n_cols for lp in self.lps),
                    "constraints": sum(lp.n_rows for lp in self.lps),
                    "iterations": sum(r.iterations for r in results),
                    "highs_s": sum(r.solve_s for r in results)},
        )
        return plan


def optimize(fleet: Fleet, initial: Initial, forecast: Forecast,
             config: OptimizerConfig | None = None, t0_s: float = 0.0,
             created_s: float | None = None, strict: bool = False) -> Plan:
    """Plan the fleet's dispatch over one horizon (a one-shot :class:`Dispatcher`).

    Parameters
    ----------
    fleet : Fleet
    initial : TwinState, float or (n_devices,) array
        The twin's state (stored energy, working devices), or the batteries'
        state of charge (0..1) per device row, or one SoC for all.
    forecast : Forecast
        PV, load, prices, carbon intensity and EV sessions over the horizon.
    config : OptimizerConfig, optional
    t0_s : float
        Start of the horizon [Unix s].
    created_s : float, optional
        Creation time recorded in the plan [Unix s]; defaults to ``t0_s``.
    strict : bool
        Raise on refused input instead of returning a fallback plan.

    Returns
    -------
    Plan
        Never raises for a solver outcome: a failure or a refused input gives
        a fallback plan whose ``reason`` says why.
    """
    try:
        dispatcher = Dispatcher(fleet, config, strict=strict)
    except OptimizerInputError as exc:
        if strict:
            raise
        cfg = config if config is not None and _sane(config) else OptimizerConfig()
        return refused_plan(fleet, cfg, t0_s, t0_s if created_s is None else created_s,
                            str(exc), 0.0)
    return dispatcher.plan(initial, forecast, t0_s, created_s)


def refused_plan(fleet: Fleet, config: OptimizerConfig, t0_s: float, created_s: float,
                 reason: str, elapsed_s: float, prefix: str = "input refused") -> Plan:
    """A fallback plan (all setpoints NaN: batteries idle, no limits) with its reason."""
    t_n = config.n_steps if isinstance(config.n_steps, int) and config.n_steps > 0 else 1
    setpoints = np.full((t_n, fleet.n_devices), np.nan)
    return Plan(plan_id=_plan_id(t0_s, setpoints), created_s=created_s, t0_s=t0_s,
                n_steps=t_n, dt_s=float(config.dt_s), device_id=fleet.device_id.tolist(),
                site_id=fleet.site_id.tolist(), setpoints=setpoints, flows={}, forecast={},
                initial_soc={}, sessions={}, kpis={}, status=FALLBACK,
                reason=f"{prefix}: {reason}",
                timings={"build_s": elapsed_s, "solve_s": 0.0, "disaggregate_s": 0.0,
                         "total_s": elapsed_s})


def _sane(config: OptimizerConfig) -> bool:
    try:
        check_config(config)
    except OptimizerInputError:
        return False
    return True


def _initial_soc(fleet: Fleet, sd: SiteData) -> dict[str, float]:
    rows = np.flatnonzero(fleet.device_type == BATTERY)
    kwh = fleet.battery_kwh[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        soc = np.where(kwh > 0, sd.e0_device_kwh[rows] / kwh, np.nan)
    return dict(zip(fleet.device_id[rows].tolist(), soc.tolist(), strict=True))


def _sessions(fleet: Fleet, sd: SiteData) -> dict[str, list]:
    s = sd.sessions
    return {"charger_id": fleet.device_id[s.charger_row].tolist(),
            "first_step": s.first.tolist(), "last_step": s.last.tolist(),
            "need_kwh": s.need_kwh.tolist()}


def _plan_id(t0_s: float, setpoints: np.ndarray) -> str:
    """A short deterministic id from the start time and the setpoints."""
    digest = hashlib.blake2b(np.float64(t0_s).tobytes(), digest_size=8)
    digest.update(np.ascontiguousarray(setpoints).tobytes())
    return digest.hexdigest()
