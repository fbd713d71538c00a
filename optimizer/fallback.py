"""The safe fallback: batteries idle, no curtailment, EVs at their own limits.

Used when the input is refused, when HiGHS fails, or for the feeders a time
limit left unsolved. Its setpoints are all NaN ("no setpoint" in the twin);
its expected flows are estimated from the forecast so the plan still shows
what the fleet will do.
"""

from __future__ import annotations

import numpy as np

from optimizer.sitedata import SiteData


def fallback_flows(sd: SiteData, sites: np.ndarray) -> dict[str, np.ndarray]:
    """Expected site flows ``(n_steps, k)`` [kW] of ``sites`` under the fallback.

    EVs charge as soon as they can, at up to the chargers' ratings, until the
    energy wanted at the site is delivered.
    """
    t_n, dt_h = sd.n_steps, sd.dt_h
    cap = sd.ub["ev"][sites]  # (k, t)
    left = sd.ub["evc"][sites, 0].copy()
    ev = np.zeros((t_n, len(sites)))
    for t in range(t_n):
        ev[t] = np.minimum(cap[:, t], left / dt_h)
        left = np.maximum(left - ev[t] * dt_h, 0.0)
    pv = sd.pv_kw[:, sites]
    load = sd.load_kw[:, sites]
    net = pv - load - ev
    return {"pv_kw": pv, "pv_available_kw": pv, "battery_kw": np.zeros_like(pv), "ev_kw": ev,
            "load_kw": load, "import_kw": np.maximum(-net, 0.0),
            "export_kw": np.maximum(net, 0.0)}
