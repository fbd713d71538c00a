"""Check a plan on the twin itself: step a copy of its state with the plan's setpoints.

:func:`optimize` already replays battery setpoints through the twin's battery
physics while it disaggregates (``plan.check``). When the caller also has the
twin's step inputs for the horizon (weather, load fractions, prices), as the
scenario runner does, :func:`check_on_twin` runs the whole twin step on a
copy of the state and reports how far the twin lands from the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.plan import Plan
from twin.fleet import BATTERY
from twin.model import Twin
from twin.state import FLOW, StepInputs


def check_on_twin(twin: Twin, plan: Plan, inputs: Sequence[StepInputs],
                  n_steps: int | None = None) -> dict[str, Any]:
    """Step a copy of ``twin``'s state through the plan; the twin is left untouched.

    Parameters
    ----------
    twin : Twin
        The twin whose current state the plan starts from.
    plan : Plan
    inputs : sequence of StepInputs
        The twin's inputs for each step of the plan.
    n_steps : int, optional
        Steps to check (default: all the inputs cover, up to the horizon).

    Returns
    -------
    dict
        ``steps``; ``battery_kw_max_diff`` (twin battery power minus setpoint,
        largest [kW]); ``site_import_kw_max_diff`` and ``site_export_kw_max_diff``
        (twin minus plan, largest [kW]); ``violation_kwh`` (energy beyond site
        limits in the twin); ``ev_unmet_kwh`` (EV energy the twin could not
        deliver by departure).
    """
    n = min(plan.n_steps, len(inputs)) if n_steps is None else min(n_steps, plan.n_steps,
                                                                      len(inputs))
    saved = twin.state
    twin.state = saved.copy()
    unmet0 = float(twin.state.ev_unmet_kwh.sum())
    bat = np.flatnonzero(twin.params.device_type == BATTERY)
    diffs = {"battery": 0.0, "import": 0.0, "export": 0.0}
    violation_kwh = 0.0
    try:
        for k in range(n):
            sp = plan.setpoints[k]
            twin.step(plan.t0_s + k * plan.dt_s, plan.dt_s, inputs[k], sp)
            s = twin.state
            want = np.nan_to_num(sp[bat])
            diffs["battery"] = max(diffs["battery"], float(np.abs(s.p_kw[bat] - want).max(
                initial=0.0)))
            if plan.flows:
                diffs["import"] = max(diffs["import"], float(np.abs(
                    s.site_flows[:, FLOW["import_kw"]] - plan.flows["import_kw"][k]).max()))
                diffs["export"] = max(diffs["export"], float(np.abs(
                    s.site_flows[:, FLOW["export_kw"]] - plan.flows["export_kw"][k]).max()))
            violation_kwh += float(s.site_flows[:, FLOW["violation_kw"]].sum()) * plan.dt_s / 3600
        unmet = float(twin.state.ev_unmet_kwh.sum()) - unmet0
    finally:
        twin.state = saved
    return {"steps": n, "battery_kw_max_diff": diffs["battery"],
            "site_import_kw_max_diff": diffs["import"],
            "site_export_kw_max_diff": diffs["export"], "violation_kwh": violation_kwh,
            "ev_unmet_kwh": unmet}
