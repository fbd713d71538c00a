"""Fast path, part 2: hand group LPs to HiGHS (highspy) and read the solutions back.

One :class:`HighsGroup` owns one ``highspy.Highs`` instance holding one group
LP, passed in a single ``passModel``. For the rolling horizon only costs,
column bounds and row bounds change (``changeColsCost``, ``changeColsBounds``,
``changeRowsBounds``); HiGHS keeps its basis and dual simplex hot-starts.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import highspy
import numpy as np

from optimizer.compile import GroupLP

log = logging.getLogger(__name__)

OPTIMAL, TIME_LIMIT, FAILED = "optimal", "time_limit", "failed"
DUAL_TOL = 1e-9


@dataclass
class GroupResult:
    """Outcome of one group solve: status, objective [EUR], gap, primal solution."""

    status: str
    objective: float
    gap: float
    x: np.ndarray | None
    solve_s: float
    iterations: int
    message: str = ""


def to_highs_lp(lp: GroupLP) -> highspy.HighsLp:
    """The group LP as a ``highspy.HighsLp`` (column-wise matrix)."""
    h_lp = highspy.HighsLp()
    h_lp.num_col_ = lp.n_cols
    h_lp.num_row_ = lp.n_rows
    h_lp.col_cost_ = lp.cost
    h_lp.col_lower_ = lp.col_lower
    h_lp.col_upper_ = lp.col_upper
    h_lp.row_lower_ = lp.row_lower
    h_lp.row_upper_ = lp.row_upper
    h_lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    h_lp.a_matrix_.num_col_ = lp.n_cols
    h_lp.a_matrix_.num_row_ = lp.n_rows
    h_lp.a_matrix_.start_ = lp.A.indptr.astype(np.int32)
    h_lp.a_matrix_.index_ = lp.A.indices.astype(np.int32)
    h_lp.a_matrix_.value_ = lp.A.data.astype(np.float64)
    return h_lp


def new_highs(threads: int = 1) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", int(threads))
    return h


class HighsGroup:
    """A group LP living in its own HiGHS instance, ready to be re-solved."""

    def __init__(self, lp: GroupLP, solver: str = "simplex",
                 options: dict | None = None):
        self.lp = lp
        self.highs = new_highs()
        self.highs.setOptionValue("solver", solver)
        # Costs are small numbers (EUR per kW and step); HiGHS's default dual
        # tolerance (1e-7) would leave optima loose by ~1e-5 relative.
        self.highs.setOptionValue("dual_feasibility_tolerance", DUAL_TOL)
        for name, value in (options or {}).items():
            if self.highs.setOptionValue(name, value) != highspy.HighsStatus.kOk:
                raise ValueError(f"HiGHS option {name}={value!r} was refused")
        status = self.highs.passModel(to_highs_lp(lp))
        if status == highspy.HighsStatus.kError:
            raise RuntimeError("HiGHS refused the model (passModel)")
        self.solves = 0
        self._remember(lp)

    def update(self, lp: GroupLP) -> None:
        """Take new costs and bounds (same matrix) from ``lp``; the basis is kept.

        Only entries that changed since the last solve are handed to HiGHS.
        """
        h, old = self.highs, self._last
        cost_idx = _changed(old[0], lp.cost)
        if len(cost_idx):
            h.changeColsCost(len(cost_idx), cost_idx, lp.cost[cost_idx])
        col_idx = _changed(old[1], lp.col_lower, old[2], lp.col_upper)
        if len(col_idx):
            h.changeColsBounds(len(col_idx), col_idx, lp.col_lower[col_idx],
                               lp.col_upper[col_idx])
        row_idx = _changed(old[3], lp.row_lower, old[4], lp.row_upper)
        if len(row_idx):
            h.changeRowsBounds(len(row_idx), row_idx, lp.row_lower[row_idx],
                               lp.row_upper[row_idx])
        self.lp = lp
        self._remember(lp)

    def _remember(self, lp: GroupLP) -> None:
        self._last = (lp.cost.copy(), lp.col_lower.copy(), lp.col_upper.copy(),
                      lp.row_lower.copy(), lp.row_upper.copy())

    def run(self, time_limit_s: float) -> GroupResult:
        """Solve within ``time_limit_s`` seconds; never raises for a solver outcome."""
        h = self.highs
        t0 = time.perf_counter()
        if time_limit_s <= 0:
            return GroupResult(TIME_LIMIT, math.nan, math.nan, None, 0.0, 0,
                               "no time left for this group")
        h.setOptionValue("time_limit", float(time_limit_s))
        try:
            h.run()
        except Exception as exc:
            log.exception("HiGHS failed")
            return GroupResult(FAILED, math.nan, math.nan, None, time.perf_counter() - t0, 0,
                               f"HiGHS error: {exc}")
        elapsed = time.perf_counter() - t0
        self.solves += 1
        model_status = h.getModelStatus()
        info = h.getInfo()
        iters = int(info.simplex_iteration_count) + int(info.ipm_iteration_count)
        feasible = int(info.primal_solution_status) == 2
        if model_status == highspy.HighsModelStatus.kOptimal:
            x = np.asarray(h.getSolution().col_value)
            return GroupResult(OPTIMAL, float(info.objective_function_value), 0.0, x, elapsed,
                               iters)
        text = h.modelStatusToString(model_status)
        if model_status == highspy.HighsModelStatus.kTimeLimit and feasible:
            x = np.asarray(h.getSolution().col_value)
            primal = float(info.objective_function_value)
            err = float(info.primal_dual_objective_error)
            gap = err if math.isfinite(err) and err >= 0 else math.inf
            return GroupResult(TIME_LIMIT, primal, gap, x, elapsed, iters,
                               "time limit: best feasible point so far")
        status = TIME_LIMIT if model_status == highspy.HighsModelStatus.kTimeLimit else FAILED
        return GroupResult(status, math.nan, math.nan, None, elapsed, iters,
                           f"HiGHS ended with '{text}' and no feasible point")



def _changed(*pairs: np.ndarray) -> np.ndarray:
    """Indices where any (old, new) pair of arrays differs, as int32."""
    mask = np.zeros(len(pairs[0]), dtype=bool)
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        mask |= old != new
    return np.flatnonzero(mask).astype(np.int32)
